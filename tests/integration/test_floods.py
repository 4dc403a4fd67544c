"""A gateway's external side under connection floods: strangers never take a peer's
place, and a TLS handshake that never ends holds its place only for seconds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import parse_sip_uri
from mcmig.transport.base import TransportConfig
from tests.support.lab import Lab

SMALL_CAPS = TransportConfig(max_connections=16, max_connections_per_host=8)


@contextlib.contextmanager
def _idle_connections(hosts: list[str], each: int, to: tuple[str, int]) -> Iterator[int]:
    """Connections that are opened and then say nothing, as a flood would hold them."""
    sockets: list[socket.socket] = []
    try:
        for host in hosts:
            for _ in range(each):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((host, 0))
                s.settimeout(2)
                s.connect(to)  # the kernel completes it; the node decides after
                sockets.append(s)
        yield len(sockets)
    finally:
        for s in sockets:
            s.close()


def _options(lab: Lab, to: TransportAddress) -> int:
    request = make_request(
        "OPTIONS",
        parse_sip_uri("sip:primary.example"),
        from_uri="sip:health@partner.example",
        to_uri="sip:primary.example",
    )
    return lab.run(asyncio.wait_for(lab.client.send_request(request, to), 5)).status


def test_strangers_connections_never_take_a_peers_place(tmp_path: Path) -> None:
    # We stand where partner-gw stands: a configured peer of primary-gw.
    lab = Lab("sip_profiles/demo.yaml", tmp_path, client_host="127.0.9.2")
    lab.start(only={"primary-gw"}, transport=SMALL_CAPS)
    try:
        assert lab.running is not None
        external = lab.running.nodes[1]
        strangers = [f"127.0.7.{i}" for i in range(1, 7)]
        with _idle_connections(strangers, 8, ("127.0.9.1", 5060)) as opened:
            lab.run(asyncio.sleep(0.3))  # the node accepts (and closes) them all
            assert opened == 48  # three times the cap
            assert external.resources()["connections"] == 0
            assert _options(lab, TransportAddress("TCP", "127.0.9.1", 5060)) == 200
            assert external.resources()["connections"] == 1  # the peer's, and only it
    finally:
        lab.close()


def test_a_tls_handshake_that_never_finishes_is_closed_and_counts_meanwhile(
    tmp_path: Path,
) -> None:
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path, client_host="127.0.9.2")
    lab.start(
        only={"primary-gw"},
        transport=TransportConfig(max_connections=16, tls_handshake_timeout=0.5),
    )
    try:
        assert lab.running is not None
        external = lab.running.nodes[1]
        with _idle_connections(["127.0.9.2"], 1, ("127.0.9.1", 5061)):
            lab.run(asyncio.sleep(0.1))
            assert external.resources()["connections"] == 1  # counted while it waits
            lab.run(asyncio.sleep(1.0))
            assert external.resources()["connections"] == 0  # closed at the timeout
        # a stranger's TLS connection is closed at accept, before any handshake
        with _idle_connections(["127.0.7.9"], 1, ("127.0.9.1", 5061)):
            lab.run(asyncio.sleep(0.1))
            assert external.resources()["connections"] == 0
    finally:
        lab.close()
