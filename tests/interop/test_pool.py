"""A pool of primary server instances behind Kamailio's dispatcher, sharing one
PostgreSQL registry (kamailio/server-pool.cfg): each instance, the gateways and
partner, and Kamailio run as processes of their own, PostgreSQL as a throwaway
cluster. kill -9 of an instance under load loses no acknowledged migration."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.pool import PoolRun, migrate_all, recorded_users, running_pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolRun]:
    with running_pool(tmp_path_factory.mktemp("pool")) as run:
        yield run


def test_the_pool_spreads_users_over_its_instances(pool: PoolRun) -> None:
    profile, dsn, processes, _ = pool
    users = [f"sip:u{n:06d}@primary.example" for n in range(60)]
    statuses = asyncio.run(migrate_all(profile, users, rate=100))
    assert Counter(statuses.values()) == {200: len(users)}
    assert set(users) <= asyncio.run(recorded_users(dsn))
    for name in ("primary-server-1", "primary-server-2"):
        assert "migrated to partner.example" in processes[name].log.read_text(), name


def test_postgresql_restarts_under_load_503_meanwhile_nothing_acknowledged_lost(
    pool: PoolRun,
) -> None:
    profile, dsn, _, cluster = pool
    users = [f"sip:u{n:06d}@primary.example" for n in range(200000, 201000)]
    threads: list[threading.Thread] = []

    def restart(i: int) -> None:
        if i == 200:  # 1 s into the load: PostgreSQL stops, and starts 1 s later

            def stop_then_start() -> None:
                cluster.stop()
                time.sleep(1.0)
                cluster.start()

            threads.append(threading.Thread(target=stop_then_start))
            threads[0].start()

    statuses = asyncio.run(migrate_all(profile, users, rate=200, during=restart))
    threads[0].join()
    recorded = asyncio.run(recorded_users(dsn))
    acknowledged = {u for u, status in statuses.items() if status == 200}
    failed = Counter(status for status in statuses.values() if status != 200)
    print(
        f"PostgreSQL restart under 200 migrations/s: {len(acknowledged)} acknowledged, "
        f"failed {dict(failed)}"
    )
    assert acknowledged <= recorded
    assert set(failed) <= {503}  # refused while it was down, never a timeout or a 500
    assert all(statuses[u] == 200 for u in users[-200:])  # recovered by themselves


def test_kill_9_of_an_instance_under_200_migrations_per_second_loses_nothing_acknowledged(
    pool: PoolRun,
) -> None:
    profile, dsn, processes, _ = pool
    users = [f"sip:u{n:06d}@primary.example" for n in range(100000, 101000)]

    def kill_one(i: int) -> None:
        if i == 300:  # 1.5 s into the load
            processes["primary-server-1"].kill()

    statuses = asyncio.run(migrate_all(profile, users, rate=200, during=kill_one))
    recorded = asyncio.run(recorded_users(dsn))
    acknowledged = {u for u, status in statuses.items() if status == 200}
    failed = Counter(status for status in statuses.values() if status != 200)
    print(
        f"kill -9 under 200 migrations/s: {len(acknowledged)} acknowledged, failed {dict(failed)}"
    )
    assert acknowledged <= recorded  # nothing acknowledged is lost
    assert len(acknowledged) >= 0.99 * len(users), failed  # the dispatcher fails over
