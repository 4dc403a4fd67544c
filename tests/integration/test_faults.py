"""Faults: loss, duplication and reordering between every pair of nodes; nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mcmig.commands.migrate import token_for
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient, MigrationOutcome
from mcmig.nodes.deployment import start_deployment
from mcmig.profiles import Deployment, load_deployment
from mcmig.profiles.keys import profile_keys
from mcmig.profiles.model import Timeouts
from mcmig.registry import MigrationRecord, RegistryUnavailable, SqliteRegistry, Stored
from mcmig.transport.memory import Faults, MemoryNetwork
from tests.support.lab import Lab
from tests.support.tools import ROOT

ALICE = "sip:alice@primary.example"

USERS = 500
VISITORS: set[str] = set()  # the partner's visitors at the end of the last scenario
# (user, temporary identity) as each system holds them at the end of the last scenario
STAYS: dict[str, set[tuple[str, str | None]]] = {"primary": set(), "partner": set()}


def _partner_gives_up_sooner(deployment: Deployment) -> Deployment:
    """The partner's B2BUA timeouts at 6/5/2 s instead of 8/6/4 (still above the
    primary gateway's 4 s), so that it ends the attempts it answered 504 after
    13 s instead of 18, which is what these tests wait for."""
    systems = tuple(
        dataclasses.replace(s, timeouts=Timeouts(server=6, gateway_outbound=5, gateway_inbound=2))
        if s.domain == "partner.example"
        else s
        for s in deployment.systems
    )
    return dataclasses.replace(deployment, systems=systems)


async def _scenario(
    state: Path, attempts: int = 8
) -> tuple[dict[str, list[MigrationOutcome]], set[str], dict[str, int], MemoryNetwork]:
    deployment = _partner_gives_up_sooner(load_deployment(ROOT / "sip_profiles/demo.yaml"))
    network = MemoryNetwork(Faults(loss=0.2, duplicate=0.1, max_delay=0.05, seed=4))
    running = await start_deployment(
        deployment, state, network=network, token_keys=profile_keys, run_idms=False
    )
    running.servers["primary-server"].processed = Counter()
    client = SipNode("client", "127.0.2.100", 5062, network=network)
    await client.start()
    partner = deployment.system("partner.example")
    assert partner is not None
    outcomes: dict[str, list[MigrationOutcome]] = {}
    visitors = VISITORS
    visitors.clear()

    async def migrate(n: int) -> None:
        user = f"sip:u{n:06d}@primary.example"
        await asyncio.sleep(n / 200)  # 200 migrations/s offered
        for _attempt in range(attempts):  # a client tries again after a 504, a 503 or a timeout
            outcome = await McClient(client, user).migrate(
                partner.migration_psi,
                partner.servers[0].listen.address(),
                token_for(deployment, "partner.example", user),
            )
            outcomes.setdefault(user, []).append(outcome)
            if outcome.status == 503:
                await asyncio.sleep(0.5)  # Retry-After, shortened for the test
            elif outcome.status not in (504, 408):
                break

    try:
        await asyncio.gather(*(migrate(n) for n in range(USERS)))
        await asyncio.sleep(1.0)  # releases of superseded stays settle
        partner_server = running.servers["partner-server"]
        for _ in range(900):  # and the partner's ends of attempts it answered 504,
            if not len(partner_server.attempt_ends):  # 13 s after each attempt began
                break
            await asyncio.sleep(0.1)
        registry = {r.mc_service_id for r in running.servers["primary-server"].store.all()}
        visitors.update(b.mc_service_id for b in partner_server.visitors.all())
        STAYS["primary"] = {
            (r.mc_service_id, r.temporary_id) for r in running.servers["primary-server"].store.all()
        }
        STAYS["partner"] = {
            (b.mc_service_id, b.temporary_id) for b in partner_server.visitors.all()
        }
        processed = dict(running.servers["primary-server"].processed or {})
    finally:
        await client.stop()
        await running.stop()
    return outcomes, registry, processed, network


def test_twenty_percent_loss_with_duplicates_and_reordering() -> None:
    with tempfile.TemporaryDirectory() as state:
        outcomes, registry, processed, network = asyncio.run(_scenario(Path(state)))
    assert network.lost > 500 and network.duplicated > 200  # the faults really happened
    finals = {user: attempts[-1] for user, attempts in outcomes.items()}
    assert len(finals) == USERS
    # every migration ends in 200 or a clean PROFILE failure (504 timeout, or 503
    # overloaded when the machine is busy), tried again
    for attempts in outcomes.values():
        for outcome in attempts:
            assert outcome.status in (200, 503, 504, 408), outcome
            assert outcome.status != 504 or outcome.cause == "timeout"
            assert outcome.status != 503 or outcome.cause == "overloaded"
    accepted = {user for user, final in finals.items() if final.status == 200}
    assert len(accepted) == USERS  # with retries, every one got through
    assert registry == accepted  # the registry holds exactly the accepted ones
    assert STAYS["primary"] == STAYS["partner"]  # and both systems agree on each identity
    assert set(processed.values()) == {1}  # each request handled once, however often it arrived


def test_under_loss_both_systems_tell_the_same_outcome_without_retries() -> None:
    """Clients that do not try again: some are told 504 timeout while the primary
    did record them (the 200 came back too late). The partner ends each such
    attempt at the primary, so in the end the primary records exactly the users
    the clients saw accepted, and the partner holds exactly their stays."""
    with tempfile.TemporaryDirectory() as state:
        outcomes, registry, _, network = asyncio.run(_scenario(Path(state), attempts=1))
    assert network.lost > 500
    finals = {user: attempts[-1] for user, attempts in outcomes.items()}
    timed_out = {user for user, final in finals.items() if final.status == 504}
    accepted = {user for user, final in finals.items() if final.status == 200}
    assert timed_out  # the case this is about happened
    assert registry == accepted
    assert accepted == VISITORS
    assert STAYS["primary"] == STAYS["partner"]


def test_a_503_from_a_primary_that_had_committed_is_ended_there_too(tmp_path: Path) -> None:
    """The primary's database commits the record and the connection breaks before
    it says so: the primary answers 503 (it cannot know), the client is told 503,
    and the partner ends that attempt at the primary as after a 504, so that the
    primary does not keep a user the client saw refused."""
    deployment = load_deployment(ROOT / "sip_profiles/demo.yaml")
    shorter = {  # the partner ends the attempt 3 + 2 + 1 s after it began
        "primary.example": Timeouts(server=3, gateway_outbound=2, gateway_inbound=1),
        "partner.example": Timeouts(server=3, gateway_outbound=2, gateway_inbound=1),
    }
    lab = Lab(
        dataclasses.replace(
            deployment,
            systems=tuple(
                dataclasses.replace(s, timeouts=shorter[s.domain]) for s in deployment.systems
            ),
        ),
        tmp_path,
    )
    lab.start()
    try:
        assert lab.running is not None
        primary = lab.running.servers["primary-server"]
        database = primary.registry
        assert isinstance(database, SqliteRegistry)

        class CommittedThenLost:
            def __getattr__(self, name: str) -> Any:
                return getattr(database, name)

            async def migrated(self, record: MigrationRecord) -> Stored:
                await database.migrated(record)
                raise RegistryUnavailable("connection lost after the commit")

        primary.registry = CommittedThenLost()  # type: ignore[assignment]
        outcome = lab.migrate(ALICE)
        assert (outcome.status, outcome.cause) == (503, "overloaded")
        assert [r.mc_service_id for r in database.store.all()] == [ALICE]  # it did commit
        primary.registry = database  # the database answers again
        deadline = time.monotonic() + 15
        while database.store.all() and time.monotonic() < deadline:
            lab.run(asyncio.sleep(0.2))
        assert database.store.all() == []
        assert lab.registry("partner-server") == []
    finally:
        lab.close()
