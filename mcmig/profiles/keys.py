"""Keys named by a profile, loaded: for test tools that sign tokens by hand
(``mcmig token issue``, benchmarks, tests) as the system's IdMS would."""

from __future__ import annotations

from mcmig.idms.signing import load_signing_keys
from mcmig.mc.tokens import IdmsKey, StaticKeys
from mcmig.profiles.model import SystemProfile


def idms_key(system: SystemProfile) -> IdmsKey:
    """The key the system's IdMS signs with now (the first of its list)."""
    return load_signing_keys(system.idms.issuer, system.idms.key_files[:1])[0].key


def profile_keys(system: SystemProfile) -> StaticKeys:
    """The public keys the system's IdMS publishes, read from the key files the
    profile names: for a server run without its IdMS (``mcmig replay`` of one
    node, in-memory tests). Servers of a running deployment read the JWKS."""
    keys = load_signing_keys(system.idms.issuer, system.idms.key_files)
    return StaticKeys([IdmsKey(k.key.issuer, k.key.kid, k.key.public_key) for k in keys])
