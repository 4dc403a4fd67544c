"""Temporary identities (PROFILE 1): the partner-side names of migrated users."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

RANDOM_BYTES = 16  # 128 bits: no collision expected before some 10**19 visitors


def new_temporary_id(domain: str) -> str:
    """``sip:t-<26 base32 characters>@domain``: random, so that no peer can guess
    one, and in the partner's domain, so that traffic to it routes by domain."""
    random = base64.b32encode(secrets.token_bytes(RANDOM_BYTES)).decode().rstrip("=").lower()
    return f"sip:t-{random}@{domain}"


class TemporaryIdSealer:
    """Temporary identities that say, to their own system only, which server holds
    the stay: ``sip:t-<base32 of key id, nonce, AES-GCM(server tag, random)>@domain``.

    A gateway (or a server, without gateways) routes a request for a temporary
    identity by opening it, so it needs no table that a restart could lose or
    that several gateways would have to share. To everyone else the identity is
    random (a fresh nonce and 32 random bits under the seal), and a forged or
    altered one fails authentication and is treated as unknown."""

    TAG_BYTES = 8  # server tag: the first bytes of SHA-256 of the server's name
    SALT_BYTES = 4

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key")
        self._keys = {self.key_id(k): AESGCM(k) for k in reversed(keys)}
        self._sealing = self.key_id(keys[0])

    @staticmethod
    def key_id(key: bytes) -> int:
        return hashlib.sha256(key).digest()[0]

    @classmethod
    def server_tag(cls, server: str) -> bytes:
        return hashlib.sha256(server.encode()).digest()[: cls.TAG_BYTES]

    def new(self, domain: str, server: str) -> str:
        nonce = secrets.token_bytes(12)
        plain = self.server_tag(server) + secrets.token_bytes(self.SALT_BYTES)
        sealed = self._keys[self._sealing].encrypt(nonce, plain, domain.lower().encode())
        text = base64.b32encode(bytes([self._sealing]) + nonce + sealed).decode()
        return f"sip:t-{text.rstrip('=').lower()}@{domain}"

    def server_tag_of(self, user: str, domain: str) -> bytes | None:
        """The server tag sealed in the user part ``user`` (``t-...``), or None when it
        was not sealed by a key of ours for ``domain``."""
        if not user.startswith("t-"):
            return None
        text = user[2:].upper()
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8))
        except (binascii.Error, ValueError):
            return None
        if base64.b32encode(raw).decode().rstrip("=") != text:
            return None  # not in the one form we write (the last character's spare bits)
        aead = self._keys.get(raw[0]) if raw else None
        if aead is None or len(raw) != 1 + 12 + self.TAG_BYTES + self.SALT_BYTES + 16:
            return None
        try:
            plain = aead.decrypt(raw[1:13], raw[13:], domain.lower().encode())
        except InvalidTag:
            return None
        return plain[: self.TAG_BYTES]
