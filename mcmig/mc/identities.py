"""Temporary identities (PROFILE 1): the partner-side names of migrated users."""

from __future__ import annotations

import base64
import secrets

RANDOM_BYTES = 16  # 128 bits: no collision expected before some 10**19 visitors


def new_temporary_id(domain: str) -> str:
    """``sip:t-<26 base32 characters>@domain``: random, so that no peer can guess
    one, and in the partner's domain, so that traffic to it routes by domain."""
    random = base64.b32encode(secrets.token_bytes(RANDOM_BYTES)).decode().rstrip("=").lower()
    return f"sip:t-{random}@{domain}"
