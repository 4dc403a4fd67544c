"""IdMS sections for systems that tests build by hand."""

from __future__ import annotations

from pathlib import Path

from mcmig.profiles.model import IdmsProfile
from tests.support.tools import ROOT

KEYS = ROOT / "sip_profiles" / "keys"
CERTS = ROOT / "sip_profiles" / "certs"


def idms_of(domain: str, key: Path = KEYS / "primary-idms.pem", port: int = 8443) -> IdmsProfile:
    """An IdMS for ``domain`` signing with ``key``; tests that use it give the
    servers its keys (mcmig.profiles.keys.profile_keys) and run no IdMS."""
    return IdmsProfile(
        issuer=f"https://127.0.0.1:{port}",
        key_files=(key,),
        tls_cert=CERTS / "127.0.1.20.pem",
        tls_key=CERTS / "127.0.1.20.key",
        tls_ca=CERTS / "ca.pem",
        name=f"{domain.split('.')[0]}-idms",
    )
