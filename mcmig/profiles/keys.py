"""Keys named by a profile, loaded."""

from __future__ import annotations

from mcmig.mc.tokens import IdmsKey, load_key_file
from mcmig.profiles.model import SystemProfile


def idms_key(system: SystemProfile) -> IdmsKey:
    public, private = load_key_file(system.idms.key_file)
    return IdmsKey(system.idms.issuer, system.idms.kid, public, private)
