"""A pool of primary server instances behind Kamailio's dispatcher, sharing one
PostgreSQL registry (kamailio/server-pool.cfg): each instance, the gateways and
partner, and Kamailio run as processes of their own, PostgreSQL as a throwaway
cluster. kill -9 of an instance under load loses no acknowledged migration."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from mcmig.bench.pool import INSTANCES, pool_profile, start_dispatcher
from mcmig.bench.postgres import PostgresCluster
from mcmig.mc.tokens import issue_token
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient
from mcmig.profiles import load_deployment
from mcmig.profiles.keys import idms_key
from mcmig.sip.peer import TransportAddress
from tests.support.tools import ROOT

POOL = "127.0.1.10"  # Kamailio: the primary server's address in the profile
PARTNER_SERVER = TransportAddress("UDP", "127.0.2.10", 5060)


class Process:
    """A child process whose output goes to a file (a pipe left unread would stall it)."""

    def __init__(self, args: list[str], log: Path, ready: str | None, **options: object) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            args,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
            **options,  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + 20
        while ready is not None and ready not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{args[:4]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def mcmig_up(profile: Path, state: Path, only: str) -> Process:
    return Process(
        [
            sys.executable,
            "-m",
            "mcmig.cli",
            "up",
            str(profile),
            "--state-dir",
            str(state),
            "--only",
            only,
        ],
        state / f"{only}.log",
        "ready",
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


Pool = tuple[Path, str, dict[str, "Process"], PostgresCluster]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """The demo with primary-server as a pool of two instances on PostgreSQL."""
    folder = tmp_path_factory.mktemp("pool")
    cluster = PostgresCluster()
    processes: dict[str, Process] = {}
    dispatcher = None
    try:
        dsn = cluster.createdb("primary")
        profile = pool_profile(folder, "postgresql", dsn, len(INSTANCES))
        state = folder / "state"
        state.mkdir()
        dispatcher = start_dispatcher(folder / "kamailio", f"{POOL}:5060", INSTANCES)
        for name in ("primary-server-1", "primary-server-2"):
            processes[name] = mcmig_up(profile, state, name)
        processes["rest"] = mcmig_up(
            profile, state, "primary-gw,partner-gw,partner-server,partner-idms"
        )
        time.sleep(2.5)  # the dispatcher's first probes (1 s apart) find both instances
        yield profile, dsn, processes, cluster
    finally:
        for process in processes.values():
            process.stop()
        if dispatcher is not None:
            os.killpg(dispatcher.pid, signal.SIGTERM)
            dispatcher.wait(timeout=10)
        cluster.close()


async def _migrate_all(
    profile: Path, users: list[str], rate: float, during: object = None
) -> dict[str, int]:
    """Migrate ``users`` at ``rate`` per second; each user's final status."""
    deployment = load_deployment(profile)
    partner = deployment.system("partner.example")
    assert partner is not None
    key = idms_key(partner)
    node = SipNode("load", "127.0.2.100", 0)
    await node.start()
    statuses: dict[str, int] = {}

    async def one(user: str) -> None:
        token = issue_token(key, "partner.example", user)
        try:
            outcome = await McClient(node, user).migrate(
                partner.migration_psi, PARTNER_SERVER, token
            )
            statuses[user] = outcome.status
        except Exception:  # no final response at all
            statuses[user] = 0

    tasks = []
    try:
        for i, user in enumerate(users):
            if callable(during):
                during(i)
            tasks.append(asyncio.create_task(one(user)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    finally:
        await node.stop()
    return statuses


async def _recorded(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT mc_service_id FROM migration_records")
    finally:
        await connection.close()
    return {r["mc_service_id"] for r in rows}


def test_the_pool_spreads_users_over_its_instances(pool: Pool) -> None:
    profile, dsn, processes, _ = pool
    users = [f"sip:u{n:06d}@primary.example" for n in range(60)]
    statuses = asyncio.run(_migrate_all(profile, users, rate=100))
    assert Counter(statuses.values()) == {200: len(users)}
    assert set(users) <= asyncio.run(_recorded(dsn))
    for name in ("primary-server-1", "primary-server-2"):
        assert "migrated to partner.example" in processes[name].log.read_text(), name


def test_postgresql_restarts_under_load_503_meanwhile_nothing_acknowledged_lost(
    pool: Pool,
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

    statuses = asyncio.run(_migrate_all(profile, users, rate=200, during=restart))
    threads[0].join()
    recorded = asyncio.run(_recorded(dsn))
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
    pool: Pool,
) -> None:
    profile, dsn, processes, _ = pool
    users = [f"sip:u{n:06d}@primary.example" for n in range(100000, 101000)]

    def kill_one(i: int) -> None:
        if i == 300:  # 1.5 s into the load
            processes["primary-server-1"].kill()

    statuses = asyncio.run(_migrate_all(profile, users, rate=200, during=kill_one))
    recorded = asyncio.run(_recorded(dsn))
    acknowledged = {u for u, status in statuses.items() if status == 200}
    failed = Counter(status for status in statuses.values() if status != 200)
    print(
        f"kill -9 under 200 migrations/s: {len(acknowledged)} acknowledged, failed {dict(failed)}"
    )
    assert acknowledged <= recorded  # nothing acknowledged is lost
    assert len(acknowledged) >= 0.99 * len(users), failed  # the dispatcher fails over
