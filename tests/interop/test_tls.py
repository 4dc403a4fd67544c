"""SIP over TLS between the gateways, mutually authenticated (demo-tls.yaml)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest

from mcmig.mc.body import CONTENT_TYPE, MigrationRequest, encode
from mcmig.node.runtime import SipNode
from mcmig.sip.ids import new_branch
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import parse_sip_uri
from tests.support.lab import Lab
from tests.support.tools import ROOT, Capture, tshark_read

CERTS = ROOT / "sip_profiles" / "certs"
ALICE = "sip:alice@primary.example"


def test_migrations_over_tls_and_no_plaintext_sip_on_the_wire(tmp_path: Path) -> None:
    pcap = tmp_path / "tls.pcap"
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path / "state")
    lab.start()
    try:
        capture = Capture(
            pcap, "host 127.0.9.1 and host 127.0.9.2", probe=("127.0.9.2", "127.0.9.1")
        )
        results = [
            (lab.migrate(ALICE).status, None),
            (lab.migrate("sip:bob@primary.example").cause, "migration-not-permitted"),
            (lab.migrate("sip:dave@primary.example").cause, "unknown-user"),
        ]
        data = capture.stop()
    finally:
        lab.close()
    assert results[0][0] == 200 and all(got == want for got, want in results[1:])
    tls = tshark_read(pcap, "-Y", "tls", "-T", "fields", "-e", "frame.number")
    assert len(tls.stdout.split()) >= 6  # handshake and application data were captured
    for plain in (
        b"SIP/2.0",
        b"MESSAGE sip:",
        b"migration xmlns",
        b"127.0.1.",
        b"127.0.2.",
        b"alice",
    ):
        assert plain not in data, plain
    assert tshark_read(pcap, "-Y", "sip").stdout.strip() == ""  # tshark sees TLS, never SIP


async def _tls_attempt(context: ssl.SSLContext, source: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.9.1", 5061, ssl=context, server_hostname="primary.example", local_addr=(source, 0)
    )
    try:
        request = make_request(
            "MESSAGE",
            parse_sip_uri(ALICE),
            from_uri="sip:migration@partner.example",
            to_uri=ALICE,
            body=encode(
                MigrationRequest(
                    ALICE, partner_system="partner.example", partner_address="sip:127.0.9.2:5061"
                )
            ),
            content_type=CONTENT_TYPE,
        )
        request.add("Via", f"SIP/2.0/TLS {source}:5061;branch={new_branch()}", first=True)
        writer.write(request.serialize())
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 3)
    finally:
        writer.close()


def _context(cert: str | None, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(CERTS / f"{cert}.pem", CERTS / f"{cert}.key")
    return context


def test_peer_without_a_valid_certificate_is_refused_at_the_handshake(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cryptography.hazmat.primitives import serialization

    from mcmig.commands.certs import make_ca, make_leaf

    # A certificate for the right domain, but from a CA the gateway does not trust.
    other_key, other_ca = make_ca(1)
    leaf_key, leaf = make_leaf("partner.example", other_key, other_ca, 1)
    (tmp_path / "rogue.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "rogue.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path / "state")
    lab.start(only={"primary-gw", "primary-server"})
    try:
        with caplog.at_level(logging.WARNING, logger="mcmig.transport"):
            for context in (_context(None, CERTS / "ca.pem"), _rogue(tmp_path)):
                try:
                    answer = lab.run(_tls_attempt(context, "127.0.9.2"))
                except (ssl.SSLError, ConnectionError):
                    answer = b""
                assert answer == b""  # nothing SIP ever came back
            lab.run(asyncio.sleep(0.3))
        refusals = [r for r in caplog.records if "refused TLS connection" in r.getMessage()]
        assert len(refusals) == 2 and all(
            r.exc_info is None and "\n" not in r.getMessage() for r in refusals
        )
        assert lab.registry() == []
    finally:
        lab.close()


def _rogue(tmp_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    context.load_cert_chain(tmp_path / "rogue.pem", tmp_path / "rogue.key")
    return context


def test_valid_certificate_for_another_domain_is_403_peer_not_authorized(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path / "state")
    lab.start(only={"primary-gw", "primary-server"})
    try:
        # partner2.example's certificate is signed by the trusted CA, but the
        # address it comes from is partner.example's: its name must match.
        answer = lab.run(_tls_attempt(_context("partner2.example", CERTS / "ca.pem"), "127.0.9.2"))
        assert answer.startswith(b"SIP/2.0 403")
        assert (
            b"peer-not-authorized" in answer
            and b"certificate does not name partner.example" in answer
        )
        assert lab.registry() == []
        good = lab.run(_tls_attempt(_context("partner.example", CERTS / "ca.pem"), "127.0.9.2"))
        assert good.startswith(b"SIP/2.0 200")  # the real peer
        assert [r.mc_service_id for r in lab.registry()] == [ALICE]
    finally:
        lab.close()


def test_plaintext_from_a_tls_peer_is_refused(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path / "state")
    lab.start(only={"primary-gw", "primary-server"})
    node = SipNode("fake-partner-gw", "127.0.9.2", 0)
    try:
        lab.run(node.start())
        request = make_request(
            "MESSAGE",
            parse_sip_uri(ALICE),
            from_uri="sip:migration@partner.example",
            to_uri=ALICE,
            body=encode(
                MigrationRequest(
                    ALICE, partner_system="partner.example", partner_address="sip:127.0.9.2:5061"
                )
            ),
            content_type=CONTENT_TYPE,
        )
        response = lab.run(node.send_request(request, TransportAddress("UDP", "127.0.9.1", 5060)))
        assert response.status == 403 and "must use TLS" in (response.get("Warning") or "")
        assert lab.registry() == []
    finally:
        lab.run(node.stop())
        lab.close()
