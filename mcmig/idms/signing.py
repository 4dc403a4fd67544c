"""An IdMS's signing keys: the first signs, all are published in its JWKS.

Key ids are the RFC 7638 thumbprints of the public keys, so a key's id never
depends on a name someone chose, and a rotation is a change of the key list
(``reload``): the new key first, the old one still published until the tokens
it signed have expired, then removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from mcmig.mc.tokens import ALGORITHM, IdmsKey, load_key_file


@dataclass(frozen=True)
class SigningKey:
    key: IdmsKey
    jwk: dict[str, Any]  # the public part, as published


def load_signing_keys(issuer: str, files: tuple[Path, ...]) -> list[SigningKey]:
    """The keys of ``files``, in order; each must hold a P-256 private key."""
    keys: list[SigningKey] = []
    for path in files:
        public, private = load_key_file(path)
        if private is None:
            raise ValueError(f"{path}: an IdMS signs, it needs a private key")
        jwk = ECKey.import_key(public)
        kid = jwk.thumbprint()
        published = {**jwk.as_dict(private=False), "kid": kid, "use": "sig", "alg": ALGORITHM}
        keys.append(SigningKey(IdmsKey(issuer, kid, public, private), published))
    if not keys:
        raise ValueError("an IdMS needs at least one signing key")
    return keys


class SigningKeys:
    def __init__(self, issuer: str, files: tuple[Path, ...]) -> None:
        self.issuer = issuer
        self._keys = load_signing_keys(issuer, files)

    def reload(self, files: tuple[Path, ...]) -> None:
        """Take a new key list; nothing changes if any file is unusable."""
        self._keys = load_signing_keys(self.issuer, files)

    @property
    def current(self) -> IdmsKey:
        return self._keys[0].key

    def public(self) -> list[IdmsKey]:
        return [k.key for k in self._keys]

    # As a KeySource: the IdMS verifies the access tokens it issued itself.
    def key(self, kid: str) -> IdmsKey | None:
        return next((k.key for k in self._keys if k.key.kid == kid), None)

    async def refresh(self, kid: str) -> None:
        return None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk for k in self._keys]}
