"""Access tokens from a system's identity management server (IdMS): ES256 JWTs.

PROFILE 2.1: claims iss, sub, aud, exp, iat, jti and optionally temporary_id.
Only ES256 is accepted; ``alg: none``, HS* and unknown key ids are refused
before any signature check is attempted.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"
LEEWAY = 30  # seconds of clock skew tolerated on exp, iat and nbf
_JTI_BUCKET_S = 10  # width of the expiry buckets of used tokens, seconds


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


class TokenVerifier:
    """Checks tokens for one audience (the partner's MC system id) against its IdMS keys."""

    def __init__(self, audience: str, keys: list[IdmsKey], leeway: float = LEEWAY) -> None:
        self.audience = audience
        self._keys = {k.kid: k for k in keys}
        self._leeway = leeway
        # A token is good for one authorization: the jti of each used token is kept
        # until the token expires, as its hash, in buckets by expiry time, so that
        # forgetting drops whole buckets. About 70 bytes a token (a dict and heap of
        # jti strings took 250): what is kept is rate x token lifetime.
        self._used: dict[int, set[int]] = {}
        self._swept = 0

    def verify(self, token: str, mc_service_id: str) -> dict[str, Any]:
        header = _unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"algorithm {header.get('alg')!r} refused")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise TokenError(f"unknown kid {header.get('kid')!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=key.issuer,
                leeway=self._leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from None
        if claims["iat"] > time.time() + self._leeway:
            raise TokenError("issued in the future")
        if claims["sub"] != mc_service_id:
            raise TokenError("sub does not match the MC service ID")
        self._remember(str(claims["jti"]), float(claims["exp"]))
        return claims

    def _remember(self, jti: str, expires: float) -> None:
        # Buckets below the horizon hold only tokens that expired more than the
        # leeway ago, which decode() refuses anyway.
        horizon = int((time.time() - self._leeway) // _JTI_BUCKET_S)
        if horizon > self._swept:
            for old in [b for b in self._used if b < horizon]:
                del self._used[old]
            self._swept = horizon
        # A replay carries the same exp, so it lands in the same bucket. The hash is
        # 64 bits and salted per process: no peer can aim a collision.
        bucket = self._used.setdefault(int(expires // _JTI_BUCKET_S), set())
        mark = hash(jti)
        if mark in bucket:
            raise TokenError("token replayed (jti already used)")
        bucket.add(mark)

    @property
    def remembered(self) -> int:
        return sum(len(bucket) for bucket in self._used.values())
