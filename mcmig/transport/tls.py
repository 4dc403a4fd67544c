"""TLS contexts for SIP over TLS between gateways (RFC 3261 section 26), mutual authentication.

Each side presents a certificate for its system's domain and checks the
other's against that peer's CA and domain name (subjectAltName dNSName).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsProfile:
    cert: Path  # our certificate chain, PEM
    key: Path  # its private key, PEM
    ca: Path  # the CA(s) that peers' certificates must chain to
    port: int = 5061


def server_context(tls: TlsProfile) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    context.load_verify_locations(tls.ca)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual: a peer without a valid certificate is refused
    return context


def client_context(tls: TlsProfile) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    context.load_verify_locations(tls.ca)
    context.check_hostname = True  # the server_hostname we pass is the peer's domain
    return context


def certificate_names(peercert: dict[str, object] | None) -> set[str]:
    """The dNSName entries of a verified peer certificate (lowercased)."""
    if not peercert:
        return set()
    names: set[str] = set()
    for kind, value in peercert.get("subjectAltName", ()):  # type: ignore[attr-defined]
        if kind == "DNS":
            names.add(str(value).lower())
    return names
