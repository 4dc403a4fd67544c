"""The users' passwords, kept as Argon2id hashes (PHC strings) in the profile.

argon2-cffi is the reference binding of the Password Hashing Competition's
winner; the hash string carries its own parameters, so hashes made with
other settings keep verifying.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


@cache
def _dummy() -> str:
    """Verified when the user is unknown, so that an unknown name takes as long
    as a wrong password (no user enumeration by timing). Made on first use: a
    hash costs what a login costs, and importing this module should not."""
    return _HASHER.hash("no such user")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(hashes: Mapping[str, str], user: str, password: str) -> bool:
    stored = hashes.get(user)
    try:
        return _HASHER.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
