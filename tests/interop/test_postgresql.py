"""The PostgreSQL registry engine against a real PostgreSQL (a throwaway cluster per
module): schema versions, the same outcomes as SQLite, the rules enforced in SQL
between concurrent instances, and a deployment that answers 503 while PostgreSQL
is down and recovers by itself."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from mcmig.bench.postgres import PostgresCluster
from mcmig.mc.policy import VisitorPolicy
from mcmig.profiles import Deployment, load_deployment
from mcmig.profiles.model import RegistryProfile
from mcmig.registry import (
    MigrationEnd,
    MigrationRecord,
    SqliteRegistry,
    TemporaryIdTaken,
    VisitorBinding,
)
from mcmig.registry.postgresql import SCHEMA_VERSION, PostgresRegistry, RegistrySetupError
from tests.support.lab import Lab
from tests.support.tools import ROOT

ALICE, ERIN = "sip:alice@primary.example", "sip:erin@primary.example"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.close()


_names = iter(range(1000))


def database(cluster: PostgresCluster) -> str:
    return cluster.createdb(f"t{next(_names)}")


def test_schema_is_versioned_and_a_missing_or_newer_database_is_refused(
    cluster: PostgresCluster,
) -> None:
    dsn = database(cluster)

    async def run() -> None:
        registry = await PostgresRegistry.open(dsn)
        await registry.close()
        registry = await PostgresRegistry.open(dsn)  # again: nothing to migrate
        versions = await registry.pool.fetch("SELECT version FROM mcmig_schema")
        assert [v["version"] for v in versions] == list(range(1, SCHEMA_VERSION + 1))
        await registry.pool.execute("INSERT INTO mcmig_schema VALUES (99)")
        await registry.close()
        with pytest.raises(RegistrySetupError, match="schema version 99"):
            await PostgresRegistry.open(dsn)
        with pytest.raises(RegistrySetupError, match="createdb"):
            await PostgresRegistry.open(cluster.dsn("no_such_database"))

    asyncio.run(run())


def _record(user: str, partner: str, n: int) -> MigrationRecord:
    return MigrationRecord(user, partner, f"sip:{partner}", f"sip:t-{n}@{partner}", 1000.0 + n)


SCRIPT: list[MigrationRecord | MigrationEnd] = [
    _record(ALICE, "a.example", 1),
    _record(ALICE, "a.example", 1),  # a repeat: the same outcome, the first since kept
    _record(ALICE, "b.example", 2),  # replaces: the first is returned to be released
    MigrationEnd(ALICE, "a.example", "sip:t-1@a.example"),  # stale: nothing
    MigrationEnd(ALICE, "b.example", "sip:t-9@b.example"),  # another stay there: nothing
    MigrationEnd(ALICE, "b.example", "sip:t-2@b.example"),  # ends it
    _record(ERIN, "a.example", 3),
    MigrationEnd(ERIN, "a.example"),  # no temporary identity: the partner's rule
]


def test_the_same_outcomes_as_sqlite(cluster: PostgresCluster, tmp_path: Path) -> None:
    dsn = database(cluster)

    async def run() -> None:
        sqlite = SqliteRegistry(tmp_path / "s.sqlite3")
        postgres = await PostgresRegistry.open(dsn)
        try:
            for change in SCRIPT:
                assert await postgres.change(change) == await sqlite.change(change), change
            assert await postgres.records() == await sqlite.records()
            for registry in (sqlite, postgres):
                binding = VisitorBinding("sip:t-1@p", ALICE, "sip:c", 1.0, 10.0)
                await registry.bind(binding)
                await registry.bind(dataclasses.replace(binding, expires=20.0))  # a refresh
                with pytest.raises(TemporaryIdTaken):
                    await registry.bind(VisitorBinding("sip:t-1@p", ERIN, None, 1.0))
                assert await registry.visitor_by_temporary_id("sip:t-1@p") == dataclasses.replace(
                    binding, expires=20.0
                )
                assert await registry.expired(15.0) == []
                assert await registry.release(ALICE, None, 10.0) is None  # not that lifetime
                assert await registry.expired(25.0) != []
                assert await registry.release(ALICE, "sip:t-1@p") is not None
                assert await registry.visitors() == []
        finally:
            await sqlite.close()
            await postgres.close()

    asyncio.run(run())


@pytest.mark.parametrize("write", ["change", "migrated"])
def test_concurrent_instances_end_in_one_record_by_the_rules(
    cluster: PostgresCluster, write: str
) -> None:
    """Two instances (two pools) migrate the same users to two partners at once, and
    end stays that may or may not be current, all concurrently. Every record stored
    is then accounted for exactly once: replaced (and returned, to be released),
    ended, or the one left. An end never deletes a record it does not name.
    ``migrated`` is the primary's path, where the writes that reach an instance
    together go in one statement: batches of both instances hold the same users in
    other orders, and still neither waits on the other for ever."""
    dsn = database(cluster)
    users = [f"sip:u{n}@primary.example" for n in range(40)]
    rng = random.Random(7)

    async def run() -> None:
        instances = [await PostgresRegistry.open(dsn, max_size=8) for _ in range(2)]
        for instance in instances:
            instance.migrations.max_batch = 6  # many batches, each with several users
        work: list[tuple[PostgresRegistry, MigrationRecord | MigrationEnd]] = []
        n = 0
        for user in users:
            for _ in range(6):
                n += 1
                partner = rng.choice(["a.example", "b.example"])
                work.append((rng.choice(instances), _record(user, partner, n)))
                if rng.random() < 0.5:
                    end = MigrationEnd(user, partner, f"sip:t-{rng.randint(1, n)}@{partner}")
                    work.append((rng.choice(instances), end))
        rng.shuffle(work)
        outcomes = await asyncio.gather(
            *(
                r.migrated(c)
                if write == "migrated" and isinstance(c, MigrationRecord)
                else r.change(c)
                for r, c in work
            )
        )
        if write == "migrated":  # batches did form, and not one per write
            assert sum(i.migrations.batches for i in instances) < sum(
                i.migrations.records for i in instances
            )
        final = {r.mc_service_id: r for r in await instances[0].records()}
        accounted: Counter[MigrationRecord] = Counter()
        for (_, change), outcome in zip(work, outcomes, strict=True):
            if isinstance(change, MigrationEnd):
                if outcome is not None:
                    assert isinstance(outcome, MigrationRecord) and change.ends(outcome)
                    accounted[outcome] += 1
            else:
                assert isinstance(outcome, tuple)
                stored, previous = outcome
                assert stored == change  # every temporary identity differs: no repeats
                if previous is not None:
                    accounted[previous] += 1
        for _, change in work:
            if isinstance(change, MigrationRecord):
                left = final.get(change.mc_service_id) == change
                assert accounted[change] + left == 1, change
        for instance in instances:
            await instance.close()

    asyncio.run(run())


def _on_postgresql(cluster: PostgresCluster, profile: str, **changes: object) -> Deployment:
    deployment = load_deployment(ROOT / profile)
    systems = []
    for system in deployment.systems:
        registry = RegistryProfile("postgresql", database(cluster))
        systems.append(
            dataclasses.replace(system, registry=registry, **changes.get(system.domain, {}))
        )  # type: ignore[arg-type]
    return dataclasses.replace(deployment, systems=tuple(systems))


def test_a_deployment_answers_503_while_postgresql_is_down_and_recovers(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    lab = Lab(_on_postgresql(cluster, "sip_profiles/demo.yaml"), tmp_path)
    lab.start()
    try:
        assert lab.migrate(ALICE).status == 200
        cluster.stop()
        try:
            outcome = lab.migrate(ERIN)
            assert (outcome.status, outcome.cause) == (503, "overloaded")
        finally:
            cluster.start()
        # the pools reconnect by themselves: no node restarts
        assert lab.migrate(ERIN).status == 200
        records = {r.mc_service_id for r in lab.run(_records(lab, "primary-server"))}
        assert records == {ALICE, ERIN}
    finally:
        lab.close()


async def _records(lab: Lab, server: str) -> list[MigrationRecord]:
    assert lab.running is not None
    return await lab.running.servers[server].registry.records()


def test_a_stay_ends_by_itself_on_postgresql(cluster: PostgresCluster, tmp_path: Path) -> None:
    short = {
        "partner.example": {
            "visitors": VisitorPolicy(
                accept_systems=frozenset({"primary.example"}),
                refuse_users=frozenset({"sip:carol@primary.example"}),
                max_stay=1.0,
            )
        }
    }
    lab = Lab(_on_postgresql(cluster, "sip_profiles/direct.yaml", **short), tmp_path)
    lab.start()
    try:
        assert lab.running is not None
        partner = lab.running.servers["partner-server"]
        partner.expiry_interval = 0.05
        assert lab.migrate(ALICE).status == 200
        assert [b.mc_service_id for b in lab.run(partner.registry.visitors())] == [ALICE]
        lab.run(asyncio.sleep(1.6))
        assert lab.run(partner.registry.visitors()) == []
        assert lab.run(_records(lab, "primary-server")) == []  # ended at the primary too
    finally:
        lab.close()


def test_the_database_holds_what_any_instance_needs(cluster: PostgresCluster) -> None:
    """One system's servers share the database: what one wrote, another reads."""
    dsn = database(cluster)

    async def run() -> None:
        one, two = await PostgresRegistry.open(dsn), await PostgresRegistry.open(dsn)
        await one.change(_record(ALICE, "a.example", 1))
        await one.bind(VisitorBinding("sip:t-5@p", ERIN, "sip:c", 1.0, 99.0))
        assert (await two.record(ALICE)) == _record(ALICE, "a.example", 1)
        assert (await two.visitor(ERIN)) is not None
        connection = await asyncpg.connect(dsn)
        assert await connection.fetchval("SELECT count(*) FROM migration_records") == 1
        await connection.close()
        await one.close()
        await two.close()

    asyncio.run(run())
