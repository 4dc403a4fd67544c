"""``mcmig certs generate``: a demo CA and one certificate per MC system domain."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcmig.errors import UsageError


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    certs = sub.add_parser(
        "certs", help="make TLS certificates", description="Make TLS certificates."
    )
    certs_sub = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    gen = certs_sub.add_parser(
        "generate",
        help="write a demo CA and a certificate for each domain",
        description="Write ca.pem/ca.key and, for each DOMAIN, DOMAIN.pem/DOMAIN.key: P-256 "
        "certificates with the domain as subjectAltName (an IP address as an iPAddress name, "
        "for an IdMS reached by address), for server and client use (mutual TLS). "
        "Demo material: keep real CAs elsewhere.",
    )
    gen.add_argument("--out", required=True, metavar="DIR")
    gen.add_argument("domains", nargs="+", metavar="DOMAIN")
    gen.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.set_defaults(func=run_generate)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def make_ca(days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcmig demo CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _alt_name(name: str) -> x509.GeneralName:
    """An IP address (an IdMS reached by address) or a DNS name (a system's domain)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_leaf(
    domain: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, days: int
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_alt_name(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def run_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / "ca.pem"] + [out / f"{d}.pem" for d in args.domains]
    existing = [p for p in targets if p.exists()]
    if existing and not args.force:
        raise UsageError(f"{existing[0]} exists (use --force to overwrite)")
    ca_key, ca_cert = make_ca(args.days)
    _write_key(out / "ca.key", ca_key)
    (out / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for domain in args.domains:
        key, cert = make_leaf(domain.lower(), ca_key, ca_cert, args.days)
        _write_key(out / f"{domain}.key", key)
        (out / f"{domain}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    print(f"wrote {out}/ca.pem and a certificate for {', '.join(args.domains)}")
    return 0
