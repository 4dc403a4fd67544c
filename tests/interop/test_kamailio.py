"""Kamailio 5.6 as the partner system's SIP core, between the client and the partner server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcmig.sip.message import Request
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import parse_sip_uri
from tests.support.lab import Lab
from tests.support.tools import ROOT, require

KAMAILIO = "127.0.2.5"


@pytest.fixture
def lab_with_kamailio(tmp_path: Path) -> Iterator[tuple[Lab, list[Request]]]:
    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    lab.start()
    assert lab.running is not None
    seen: list[Request] = []
    partner_node = next(n for n in lab.running.nodes if n.name == "partner-server")
    partner_node.observers.append(
        lambda d, m, s, t: seen.append(m) if d == "received" and isinstance(m, Request) else None
    )
    run_dir = tmp_path / "kamailio"
    run_dir.mkdir()
    proc = subprocess.Popen(
        [
            require("kamailio"),
            "-f",
            str(ROOT / "kamailio/partner-proxy.cfg"),
            "-DD",
            "-E",
            "-Y",
            str(run_dir),
            "-P",
            str(run_dir / "kamailio.pid"),
            "-A",
            f"LISTEN=udp:{KAMAILIO}:5060",
            "-A",
            f"LISTEN_TCP=tcp:{KAMAILIO}:5060",
            "-A",
            'NEXT_HOP="sip:127.0.2.10:5060"',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_ready(lab)
        yield lab, seen
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        lab.close()


def _wait_ready(lab: Lab) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = make_request(
            "OPTIONS",
            parse_sip_uri(f"sip:{KAMAILIO}:5060"),
            from_uri="sip:probe@partner.example",
            to_uri=f"sip:{KAMAILIO}",
        )
        try:
            response = lab.run(
                asyncio.wait_for(
                    lab.client.send_request(probe, TransportAddress("UDP", KAMAILIO, 5060)), 1.0
                )
            )
        except (TimeoutError, Exception):
            time.sleep(0.2)
            continue
        if response.status == 200:
            return
    pytest.fail("kamailio did not answer OPTIONS")


def _migrate_via_kamailio(lab: Lab, user: str, transport: str) -> tuple[int, str | None]:
    from mcmig.nodes.client import McClient

    outcome = lab.run(
        McClient(lab.client, user).migrate(
            "sip:migration@partner.example",
            TransportAddress(transport, KAMAILIO, 5060),
            lab.token(user),
        )
    )
    return outcome.status, outcome.cause


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_migration_through_kamailio(
    lab_with_kamailio: tuple[Lab, list[Request]], transport: str
) -> None:
    lab, seen = lab_with_kamailio
    assert _migrate_via_kamailio(lab, "sip:alice@primary.example", transport) == (200, None)
    assert _migrate_via_kamailio(lab, "sip:bob@primary.example", transport) == (
        403,
        "migration-not-permitted",
    )
    assert _migrate_via_kamailio(lab, "sip:carol@primary.example", transport) == (
        403,
        "user-not-permitted-by-partner",
    )
    assert [r.mc_service_id for r in lab.registry()] == ["sip:alice@primary.example"]
    # Kamailio really was on the path: it record-routed and added its Via.
    migrations = [r for r in seen if r.method == "MESSAGE"]
    assert len(migrations) == 3
    for request in migrations:
        assert len(request.vias) == 2 and request.vias[0].host == KAMAILIO
        assert request.record_routes and request.record_routes[0].sip_uri.host == KAMAILIO
