"""Access tokens from a system's identity management server (IdMS): ES256 JWTs.

PROFILE 2.1: claims iss, sub, aud, exp, iat, jti and optionally temporary_id.
Only ES256 is accepted; ``alg: none``, HS* and unknown key ids are refused
before any signature check is attempted.

Access tokens are bearer tokens (RFC 6750, TS 33.180): good for any number of
requests until they expire. Nothing is kept per token. A stolen token is
countered by TLS on the client leg and by short lifetimes (``max_lifetime``),
not by single use, which would punish every client that retries.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"
LEEWAY = 30  # seconds of clock skew tolerated on exp, iat and nbf
MAX_LIFETIME = 3600  # seconds from iat to exp a token may span, unless the profile says


class TokenError(Exception):
    """The token is not acceptable; the text says why (for logs, not for the peer)."""


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_key_file(
    path: Path,
) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey | None]:
    """A PEM file with a P-256 private key (public part derived) or a public key."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
            raise ValueError(f"{path}: not a P-256 private key")
        return private.public_key(), private
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ValueError(f"{path}: not a P-256 public key")
    return public, None


@dataclass(frozen=True)
class IdmsKey:
    issuer: str
    kid: str
    public_key: ec.EllipticCurvePublicKey
    private_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)


def issue_token(
    key: IdmsKey,
    audience: str,
    subject: str,
    *,
    temporary_id: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    """Sign a token; a negative ``ttl`` gives one already expired (for tests)."""
    if key.private_key is None:
        raise ValueError(f"no private key for IdMS {key.issuer}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": key.issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued if ttl >= 0 else issued + int(ttl) - 60,
        "exp": issued + int(ttl),
        "jti": secrets.token_hex(12),
    }
    if temporary_id is not None:
        claims["temporary_id"] = temporary_id
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key; jwt.decode reads it again, checked.

    PyJWT's get_unverified_header decodes and checks all three segments,
    character by character: as much work again as the decode that follows
    (15 of the 121 us a verification took)."""
    head = token.partition(".")[0].rstrip("=")
    if _BASE64URL_RE.fullmatch(head) is None:
        raise TokenError("unreadable token: bad header segment")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise TokenError(f"unreadable token: {exc}") from None
    if not isinstance(header, dict):
        raise TokenError("unreadable token: header is not a JSON object")
    return header


class KeySource(Protocol):
    """Where a verifier finds an IdMS's public keys by key id."""

    def key(self, kid: str) -> IdmsKey | None:
        """The key, if known and still current; None asks for ``refresh``."""
        ...

    async def refresh(self, kid: str) -> None:
        """Learn the keys again (an unknown kid, or a cache that has aged)."""
        ...


class StaticKeys:
    """Keys given once: for tools that replay captures and for unit tests."""

    def __init__(self, keys: list[IdmsKey]) -> None:
        self._keys = {k.kid: k for k in keys}

    def key(self, kid: str) -> IdmsKey | None:
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return list(self._keys)

    async def refresh(self, kid: str) -> None:
        return None


class TokenVerifier:
    """Checks tokens for one audience (the partner's MC system id) against its IdMS keys.

    Every refusal raises TokenError with the reason, for the log only: peers
    and clients learn the PROFILE cause and a fixed text, nothing of the keys
    or of the library that checked."""

    def __init__(
        self,
        audience: str,
        keys: KeySource | list[IdmsKey],
        leeway: float = LEEWAY,
        max_lifetime: float = MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self.keys: KeySource = StaticKeys(keys) if isinstance(keys, list) else keys
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        # Wall-clock seconds; a replay of a capture passes the capture's clock.
        self._clock = clock

    async def check(self, token: str, mc_service_id: str) -> dict[str, Any]:
        """``verify``, after learning the keys again when the token names a key id
        the source does not know now (rotation; the source limits how often)."""
        header = _unverified_header(token)
        kid = str(header.get("kid"))
        if header.get("alg") == ALGORITHM and self.keys.key(kid) is None:
            await self.keys.refresh(kid)
        return self._verify(token, header, mc_service_id, None)

    def verify(self, token: str, mc_service_id: str, now: float | None = None) -> dict[str, Any]:
        return self._verify(token, _unverified_header(token), mc_service_id, now)

    def _verify(
        self, token: str, header: dict[str, Any], mc_service_id: str, now: float | None
    ) -> dict[str, Any]:
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"algorithm {header.get('alg')!r} refused")
        key = self.keys.key(str(header.get("kid")))
        if key is None:
            raise TokenError(f"unknown kid {header.get('kid')!r}")
        clock = self._clock() if now is None else now
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=key.issuer,
                leeway=self._leeway,
                options={
                    "require": ["iss", "sub", "aud", "exp", "iat", "jti"],
                    # exp, iat and nbf are checked below, on our clock (a replay
                    # of a capture runs on the capture's).
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from None
        _check_times(claims, clock, self._leeway, self._max_lifetime)
        if claims["sub"] != mc_service_id:
            raise TokenError("sub does not match the MC service ID")
        return claims


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"{name} is not a number")
    return float(value)


def _check_times(claims: dict[str, Any], now: float, leeway: float, max_lifetime: float) -> None:
    issued, expires = _number(claims, "iat"), _number(claims, "exp")
    if expires <= now - leeway:
        raise TokenError("expired")
    if issued > now + leeway:
        raise TokenError("issued in the future")
    if "nbf" in claims and _number(claims, "nbf") > now + leeway:
        raise TokenError("not yet valid (nbf)")
    if expires - issued > max_lifetime:
        raise TokenError(f"lifetime {expires - issued:g} s exceeds {max_lifetime:g} s")
