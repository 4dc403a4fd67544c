"""Faults: loss, duplication and reordering between every pair of nodes; nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from mcmig.commands.migrate import token_for
from mcmig.deployment import start_deployment
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient, MigrationOutcome
from mcmig.profiles import load_deployment
from mcmig.transport.memory import Faults, MemoryNetwork
from tests.support.tools import ROOT

USERS = 500


async def _scenario(
    state: Path,
) -> tuple[dict[str, list[MigrationOutcome]], set[str], dict[str, int], MemoryNetwork]:
    deployment = load_deployment(ROOT / "sip_profiles/demo.yaml")
    network = MemoryNetwork(Faults(loss=0.2, duplicate=0.1, max_delay=0.05, seed=4))
    running = await start_deployment(deployment, state, network=network)
    running.servers["primary-server"].processed = Counter()
    client = SipNode("client", "127.0.2.100", 5062, network=network)
    await client.start()
    partner = deployment.system("partner.example")
    assert partner is not None
    outcomes: dict[str, list[MigrationOutcome]] = {}

    async def migrate(n: int) -> None:
        user = f"sip:u{n:06d}@primary.example"
        await asyncio.sleep(n / 200)  # 200 migrations/s offered
        for _attempt in range(8):  # a client tries again after a 504, a 503 or its own timeout
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
        registry = {r.mc_service_id for r in running.servers["primary-server"].store.all()}
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
    assert set(processed.values()) == {1}  # each request handled once, however often it arrived
