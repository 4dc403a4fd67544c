"""A pool of primary server instances as the pool tests run it: processes with
their output in files, load of migrations, and the records in PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from mcmig.bench.pool import (
    INSTANCES,
    POOL_ADDRESS,
    pool_profile,
    start_dispatcher,
    wait_until_answering,
)
from mcmig.bench.postgres import PostgresCluster
from mcmig.mc.tokens import issue_token
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient
from mcmig.profiles import load_deployment
from mcmig.profiles.keys import idms_key
from mcmig.sip.peer import TransportAddress
from tests.support.tools import ROOT, terminate

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
        terminate(self.proc)
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


async def migrate_all(
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


async def recorded_users(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT mc_service_id FROM migration_records")
    finally:
        await connection.close()
    return {r["mc_service_id"] for r in rows}


PoolRun = tuple[Path, str, dict[str, Process], PostgresCluster]


@contextmanager
def running_pool(
    folder: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[PoolRun]:
    """The demo with primary-server as a pool of two instances on a throwaway
    PostgreSQL, behind Kamailio's dispatcher, each node a process of its own;
    ``edit`` may change the profile first. Everything is stopped after."""
    cluster = PostgresCluster()
    processes: dict[str, Process] = {}
    dispatcher = None
    try:
        dsn = cluster.createdb("primary")
        profile = pool_profile(folder, "postgresql", dsn, len(INSTANCES))
        if edit is not None:
            data = yaml.safe_load(profile.read_text())
            edit(data)
            profile.write_text(yaml.safe_dump(data))
        state = folder / "state"
        state.mkdir()
        for name in ("primary-server-1", "primary-server-2"):
            processes[name] = mcmig_up(profile, state, name)
        processes["rest"] = mcmig_up(
            profile, state, "primary-gw,partner-gw,partner-server,partner-idms"
        )
        # after the instances: its first probes find them up
        dispatcher = start_dispatcher(folder / "kamailio", POOL_ADDRESS, INSTANCES)
        wait_until_answering(POOL_ADDRESS)
        yield profile, dsn, processes, cluster
    finally:
        for process in processes.values():
            process.stop()
        if dispatcher is not None:
            os.killpg(dispatcher.pid, signal.SIGTERM)
            dispatcher.wait(timeout=10)
        cluster.close()
