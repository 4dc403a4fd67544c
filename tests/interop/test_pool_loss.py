"""The same outcome in both systems with a pool: 20% loss (duplicates and
reordering too) on the link between the two systems' gateways, and a kill -9
of one primary instance under load, behind Kamailio's dispatcher. The users
recorded at the primary must be exactly those the clients saw accepted, once
the partner's releases of the attempts it answered 504 have landed (PROFILE 3).

The lossy link carries what the partner's gateway sends to the primary's and
the answers (they come back to the source port: rport); the primary's own
requests to the partner go straight to it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.lossy_link import Faults, LinksThread, LossyLink
from tests.support.pool import Process, migrate_all, recorded_users, running_pool

# The partner's gateway sends to the link's front; the link passes on from the
# partner gateway's host (the primary knows its peer by host) to the primary's.
FRONT, BACK, PRIMARY_GW = ("127.0.9.5", 5060), ("127.0.9.2", 5099), ("127.0.9.1", 5060)
LOSS = Faults(loss=0.2, duplicate=0.1, max_delay=0.05)
# The partner sends its release 13 s after an attempt it answered 504 began
# (its B2BUA timeouts added up), and tries again up to three times: the
# records are compared until they match or this many seconds have passed.
SETTLE = 40.0

Lab = tuple[Path, str, dict[str, Process], LinksThread]


def _through_the_link(profile: dict[str, Any]) -> None:
    """The partner sends to the primary at the link's front; the primary's
    gateway still sends from its own address. The partner's B2BUA timeouts are
    shortened (6/5/2 s, still above the primary gateway's 4 s), so that it ends
    the attempts it answered 504 after 13 s instead of 18."""
    partner = profile["systems"][1]
    partner["peers"] = [
        {"domain": "primary.example", "address": "127.0.9.5:5060", "sources": ["127.0.9.1"]}
    ]
    partner["timeouts"] = {"server": 6, "gateway_outbound": 5, "gateway_inbound": 2}


@pytest.fixture(scope="module")
def lossy_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    links = LinksThread([LossyLink(FRONT, BACK, PRIMARY_GW, Faults(), seed=7)])
    try:
        with running_pool(tmp_path_factory.mktemp("lossy-pool"), _through_the_link) as run:
            profile, dsn, processes, _ = run
            yield profile, dsn, processes, links
    finally:
        links.close()


def test_under_loss_and_a_kill_the_pool_records_exactly_what_clients_saw_accepted(
    lossy_pool: Lab,
) -> None:
    profile, dsn, processes, links = lossy_pool
    users = [f"sip:u{n:06d}@primary.example" for n in range(300)]

    def kill_one(i: int) -> None:
        if i == 100:  # 1 s into the load
            processes["primary-server-1"].kill()

    links.set_faults(LOSS)
    statuses = asyncio.run(migrate_all(profile, users, rate=100, during=kill_one))
    accepted = {u for u, status in statuses.items() if status == 200}
    # under loss still: the partner's releases go through it too. Once they have
    # landed nothing records again (a release is sent when no copy of its
    # attempt can still be on its way), so the first match is the last word.
    deadline = time.monotonic() + SETTLE
    recorded = asyncio.run(recorded_users(dsn))
    while recorded != accepted and time.monotonic() < deadline:
        time.sleep(1.0)
        recorded = asyncio.run(recorded_users(dsn))
    outcomes = Counter(statuses.values())
    dropped = sum(link.dropped for link in links.links)
    # records the partner's releases ended: attempts that were recorded though
    # their client was told 504 (what this test is about)
    logs = "".join(p.log.read_text() for n, p in processes.items() if n.startswith("primary"))
    ended = logs.count("released by partner.example")
    print(
        f"pool under 20% loss and a kill -9: {dict(outcomes)}; {len(recorded)} recorded; "
        f"{dropped} datagrams dropped between the gateways; {ended} records ended by the "
        "partner's releases after its 504"
    )
    assert dropped > 50  # the links did lose datagrams
    assert accepted, outcomes
    assert recorded == accepted, (sorted(recorded - accepted), sorted(accepted - recorded))
