"""A peer system that is slow or down: the partner hears 504 in time, and nothing leaks.

Issue: "Peer system down or slow: partner gets 504 within its configured
timeout; no resources leak (transaction and connection counts return to zero)."
Run over the TLS demo so that the link between the gateways is a connection
that must be closed again, not only UDP transactions that must end.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient, MigrationOutcome
from mcmig.nodes.deployment import start_deployment
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.timers import TimerConfig
from mcmig.transport.base import TransportConfig
from tests.support.lab import PARTNER, Lab

# Shorter than the defaults so that Timer J and K (which keep finished
# transactions for retransmissions) run out within the test; still long
# enough that each B2BUA's own timeout (4/6/8 s) stays below Timer F (6.4 s)
# except the partner server's, which Timer F caps.
TIMERS = TimerConfig(t1=0.1, t2=0.4, t4=0.5)
IDLE = 1.0  # seconds before an unused TCP/TLS connection is closed
USERS = [f"sip:u{n:06d}@primary.example" for n in range(20)]


def migrate_all(lab: Lab) -> tuple[list[MigrationOutcome], float]:
    system = lab.deployment.system(PARTNER)
    assert system is not None
    target = system.servers[0].listen.address()

    async def run() -> list[MigrationOutcome]:
        attempts = [
            McClient(lab.client, user).migrate(system.migration_psi, target, lab.token(user))
            for user in USERS
        ]
        return list(await asyncio.gather(*attempts))

    started = time.monotonic()
    outcomes = lab.run(run())
    return outcomes, time.monotonic() - started


def holdings(lab: Lab, extra: list[SipNode]) -> dict[str, dict[str, int]]:
    assert lab.running is not None
    held = {node.name: node.resources() for node in [*lab.running.nodes, lab.client, *extra]}
    for name, gateway in lab.running.gateways.items():
        held[name] = {"in_flight": gateway.in_flight}
    return {name: {k: v for k, v in r.items() if v} for name, r in held.items() if any(r.values())}


def wait_until_idle(lab: Lab, extra: list[SipNode], within: float) -> dict[str, dict[str, int]]:
    deadline = time.monotonic() + within
    held = holdings(lab, extra)
    while held and time.monotonic() < deadline:
        lab.run(asyncio.sleep(0.2))
        held = holdings(lab, extra)
    return held


def test_slow_primary_gives_504_in_time_and_leaks_nothing(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path)
    lab.start(
        only={"partner-server", "partner-idms", "partner-gw", "primary-gw"},
        timers=TIMERS,
        transport=TransportConfig(idle_timeout=IDLE),
    )
    # The primary server's address answers, but only after the primary
    # gateway's inbound timeout (4 s) has run out.
    answered: list[float] = []

    async def late(request: Request, source: TransportAddress) -> Response:
        await asyncio.sleep(5.0)
        answered.append(time.monotonic())
        return make_response(request, 200)

    slow = SipNode("slow-primary", "127.0.1.10", 5060, timers=TIMERS)
    slow.handlers["MESSAGE"] = late
    lab.run(slow.start())
    try:
        assert holdings(lab, [slow]) == {}
        outcomes, elapsed = migrate_all(lab)
        assert {(o.status, o.cause) for o in outcomes} == {(504, "timeout")}
        assert 3.5 < elapsed < 6.0, elapsed  # the primary gateway's 4 s, not Timer F

        # While the late answers are still on their way, something is held...
        assert holdings(lab, [slow]) != {}
        held = wait_until_idle(lab, [slow], within=20.0)
        assert held == {}, held
        # ...and the slow answers did arrive, after their transactions had ended.
        assert len(answered) == len(USERS)
        assert lab.running is not None
        inner = next(n for n in lab.running.nodes if n.name == "primary-gw/internal")
        assert inner.layer.stray_responses >= len(USERS)
        assert lab.registry("partner-server") == []

        # Service is whole again once the primary answers in time.
        lab.run(slow.stop())
        primary = lab.run(
            start_deployment(lab.deployment, tmp_path, only={"primary-server"}, timers=TIMERS)
        )
        try:
            assert lab.migrate(USERS[0]).status == 200
        finally:
            lab.run(primary.stop())
    finally:
        lab.run(slow.stop())
        lab.close()


def test_primary_system_down_gives_504_at_once_and_leaks_nothing(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo-tls.yaml", tmp_path)
    lab.start(
        only={"partner-server", "partner-idms", "partner-gw"},
        timers=TIMERS,
        transport=TransportConfig(idle_timeout=IDLE),
    )
    try:
        outcomes, elapsed = migrate_all(lab)
        # Nothing listens at the primary gateway: the TLS connection is refused,
        # which fails the partner gateway's transactions without waiting.
        assert {(o.status, o.cause) for o in outcomes} == {(504, "timeout")}
        assert elapsed < 2.0, elapsed
        held = wait_until_idle(lab, [], within=20.0)
        assert held == {}, held
        assert lab.registry("partner-server") == []
    finally:
        lab.close()
