"""Kamailio 5.6 as the partner system's SIP core, between the client and the partner server."""

from __future__ import annotations

import asyncio
import contextlib
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


@contextlib.contextmanager
def _kamailio(run_dir: Path, host: str, next_hop: str) -> Iterator[subprocess.Popen[str]]:
    """kamailio/partner-proxy.cfg at ``host``:5060, relaying to ``next_hop`` and
    record-routing; stopped (the whole process group) on the way out."""
    run_dir.mkdir(parents=True, exist_ok=True)
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
            f"LISTEN=udp:{host}:5060",
            "-A",
            f"LISTEN_TCP=tcp:{host}:5060",
            "-A",
            f'NEXT_HOP="sip:{next_hop}"',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


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
    try:
        with _kamailio(tmp_path / "kamailio", KAMAILIO, "127.0.2.10:5060"):
            _wait_ready(lab)
            yield lab, seen
    finally:
        lab.close()


def _wait_ready(lab: Lab, host: str = KAMAILIO) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = make_request(
            "OPTIONS",
            parse_sip_uri(f"sip:{host}:5060"),
            from_uri="sip:probe@partner.example",
            to_uri=f"sip:{host}",
        )
        try:
            response = lab.run(
                asyncio.wait_for(
                    lab.client.send_request(probe, TransportAddress("UDP", host, 5060)), 1.0
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


def test_a_record_routing_proxy_stays_on_the_path_of_the_whole_call(tmp_path: Path) -> None:
    """Kamailio record-routes in front of the primary server (RFC 3261 12.1, 12.2):
    the caller's ACK, INFO and BYE, and the callee's BYE, all pass through it."""
    from mcmig.node.dialogs import Dialog
    from mcmig.nodes.phone import place_call
    from tests.support.lab import demo3_lab

    proxy = "127.0.1.5"
    lab = demo3_lab(tmp_path / "state")
    assert lab.running is not None
    at_primary: list[tuple[str, str]] = []
    primary = lab.running.servers["primary-server"].node
    primary.observers.append(
        lambda d, m, s, t: (
            at_primary.append((m.method, s.host))
            if d == "received" and isinstance(m, Request)
            else None
        )
    )
    ue = lab.running.clients["alice-ue"]
    try:
        with _kamailio(tmp_path / "kamailio", proxy, "127.0.1.10:5060"):
            _wait_ready(lab, proxy)
            answered: list[Dialog] = []
            through = TransportAddress("UDP", proxy, 5060)

            async def caller_hangs_up() -> tuple[str, int]:
                call = asyncio.ensure_future(
                    place_call(
                        lab.client,
                        "sip:bob@primary.example",
                        "sip:alice@primary.example",
                        through,
                        hold=0.5,
                        on_answer=answered.append,
                    )
                )
                while not answered:
                    await asyncio.sleep(0.02)
                dialog = answered[0]
                assert dialog.route_set and proxy in dialog.route_set[0]
                assert dialog.destination.host == proxy
                info = dialog.request("INFO", b"Signal=1\r\n", "application/dtmf-relay")
                response = await lab.client.send_request(info, dialog.destination)
                return str(await call), response.status

            outcome, info_status = lab.run(caller_hangs_up())
            assert (outcome, info_status) == ("200 OK; call ended by the caller", 200)
            in_dialog = [(m, host) for m, host in at_primary if m in ("ACK", "INFO", "BYE")]
            assert [m for m, _ in in_dialog] == ["ACK", "INFO", "BYE"]
            assert {host for _, host in in_dialog} == {proxy}  # none went around it

            # The callee hangs up: the primary server's BYE to the caller goes
            # through the proxy too (the leg's route set, from the INVITE).
            seen_by_caller: list[str] = []
            lab.client.observers.append(
                lambda d, m, s, t: (
                    seen_by_caller.append(f"{m.method} {s.host}")
                    if d == "received" and isinstance(m, Request)
                    else None
                )
            )

            async def callee_hangs_up() -> str:
                call = asyncio.ensure_future(
                    place_call(
                        lab.client,
                        "sip:bob@primary.example",
                        "sip:alice@primary.example",
                        through,
                        hold=5,
                    )
                )
                while not ue.phone.calls:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.1)
                await ue.phone.hang_up()
                return str(await call)

            assert lab.run(callee_hangs_up()) == "200 OK; call ended by the callee"
            assert f"BYE {proxy}" in seen_by_caller
    finally:
        lab.close()
