"""Fresh branch, tag and Call-ID values (RFC 3261 8.1.1.4, 8.1.1.7, 19.3)."""

from __future__ import annotations

import secrets

from mcmig.sip.via import MAGIC_COOKIE


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id() -> str:
    # No host part: a Call-ID must not reveal where it was made (topology hiding).
    return secrets.token_hex(16)
