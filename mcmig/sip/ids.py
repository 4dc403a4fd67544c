"""Fresh branch, tag and Call-ID values (RFC 3261 8.1.1.4, 8.1.1.7, 19.3).

They come from the operating system's CSPRNG, read 4 KiB at a time: one
getrandom() call per value cost 4% of a gateway's CPU. The pool is per
process (emptied in a forked child, so that no two processes hand out the
same bytes) and taken under a lock.
"""

from __future__ import annotations

import os
import threading

from mcmig.sip.via import MAGIC_COOKIE

_POOL_SIZE = 4096
_lock = threading.Lock()
_pool = b""
_pos = 0


def _reset() -> None:
    global _pool, _pos
    _pool, _pos = b"", 0


os.register_at_fork(after_in_child=_reset)


def random_hex(nbytes: int) -> str:
    """``nbytes`` fresh random bytes as hex, like secrets.token_hex."""
    global _pool, _pos
    with _lock:
        if _pos + nbytes > len(_pool):
            _pool, _pos = os.urandom(max(_POOL_SIZE, nbytes)), 0
        start = _pos
        _pos += nbytes
        return _pool[start : start + nbytes].hex()


def new_branch() -> str:
    return MAGIC_COOKIE + random_hex(10)


def new_tag() -> str:
    return random_hex(6)


def new_call_id() -> str:
    # No host part: a Call-ID must not reveal where it was made (topology hiding).
    return random_hex(16)
