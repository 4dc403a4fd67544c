"""The PostgreSQL engine: one database per MC system, shared by every instance of its
servers, through asyncpg.

asyncpg rather than psycopg 3: it is asyncio-native with its own connection
pool (psycopg's pool is a separate package), speaks the binary protocol, and
is the faster of the two for the short single-row statements a registry makes.

Each write is one statement, a function of the schema, so that the rules
hold in the database whatever the timing between instances: writes of one
user are serialised by a transaction-scoped advisory lock on the user; the
newer record replaces the older and returns it (so that its partner is
released); an end of stay deletes the record only if it still names that
partner and temporary identity. A statement returns once PostgreSQL has
committed it (synchronous_commit on, the default), before any 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mcmig.registry.engine import RegistryUnavailable
from mcmig.registry.group_commit import PipelinedCommit
from mcmig.registry.records import (
    MigrationChange,
    MigrationEnd,
    MigrationOutcome,
    MigrationRecord,
    Stored,
    TemporaryIdTaken,
    VisitorBinding,
)

# Seconds: a statement, or the wait for a connection, that takes longer fails
# (503) rather than holding the request while PostgreSQL is away.
COMMAND_TIMEOUT = 5.0
ACQUIRE_TIMEOUT = 2.0

# Schema versions, each the statements that take the database from the one
# before to it. Never edit a released version: add the next.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE migration_records (
    mc_service_id   text PRIMARY KEY,
    partner_system  text NOT NULL,
    partner_address text NOT NULL,
    temporary_id    text,
    since           double precision NOT NULL
);
CREATE TABLE visitor_bindings (
    mc_service_id text PRIMARY KEY,
    temporary_id  text NOT NULL UNIQUE,
    contact       text,
    since         double precision NOT NULL,
    expires       double precision
);
CREATE INDEX visitor_bindings_by_expiry ON visitor_bindings (expires)
    WHERE expires IS NOT NULL;

-- A record for a user: rows ('stored', ...) and, when one was replaced or repeated,
-- ('previous', ...). A repeat of the stored migration keeps its first 'since'.
CREATE FUNCTION mcmig_put_record(u text, p text, a text, t text, s double precision)
RETURNS TABLE (role text, mc_service_id text, partner_system text,
               partner_address text, temporary_id text, since double precision)
LANGUAGE plpgsql AS $$
DECLARE old migration_records;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(u, 0));
    SELECT * INTO old FROM migration_records r WHERE r.mc_service_id = u;
    IF FOUND AND old.partner_system = p AND old.partner_address = a
            AND old.temporary_id IS NOT DISTINCT FROM t THEN
        RETURN QUERY VALUES ('stored', old.mc_service_id, old.partner_system,
                             old.partner_address, old.temporary_id, old.since),
                            ('previous', old.mc_service_id, old.partner_system,
                             old.partner_address, old.temporary_id, old.since);
        RETURN;
    END IF;
    INSERT INTO migration_records AS r VALUES (u, p, a, t, s)
        ON CONFLICT ON CONSTRAINT migration_records_pkey DO UPDATE
        SET partner_system = EXCLUDED.partner_system,
            partner_address = EXCLUDED.partner_address,
            temporary_id = EXCLUDED.temporary_id,
            since = EXCLUDED.since;
    RETURN QUERY VALUES ('stored', u, p, a, t, s);
    IF old.mc_service_id IS NOT NULL THEN
        RETURN QUERY VALUES ('previous', old.mc_service_id, old.partner_system,
                             old.partner_address, old.temporary_id, old.since);
    END IF;
END $$;

-- The end of a stay: only the record that still names this partner (and this
-- temporary identity, when given) is deleted; a newer record never is.
CREATE FUNCTION mcmig_end_record(u text, p text, t text)
RETURNS SETOF migration_records
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(u, 0));
    RETURN QUERY DELETE FROM migration_records r
        WHERE r.mc_service_id = u AND r.partner_system = p
          AND (t IS NULL OR r.temporary_id = t)
        RETURNING *;
END $$;

-- A visitor's binding replaces the user's older one; NULL, or the user that
-- holds the temporary identity (then nothing is written).
CREATE FUNCTION mcmig_bind(t text, u text, c text, s double precision, e double precision)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE holder text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(u, 0));
    SELECT b.mc_service_id INTO holder FROM visitor_bindings b WHERE b.temporary_id = t;
    IF FOUND AND holder <> u THEN
        RETURN holder;
    END IF;
    DELETE FROM visitor_bindings b WHERE b.mc_service_id = u;
    INSERT INTO visitor_bindings VALUES (u, t, c, s, e);
    RETURN NULL;
EXCEPTION WHEN unique_violation THEN
    SELECT b.mc_service_id INTO holder FROM visitor_bindings b WHERE b.temporary_id = t;
    RETURN coalesce(holder, '?');
END $$;
""",
}
MIGRATIONS[2] = """
-- A primary's record of a user who migrated, and the end of the user's binding
-- at home, in one statement: one round trip per migration.
CREATE FUNCTION mcmig_migrated(u text, p text, a text, t text, s double precision)
RETURNS TABLE (role text, mc_service_id text, partner_system text,
               partner_address text, temporary_id text, since double precision)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM visitor_bindings b WHERE b.mc_service_id = u;
    RETURN QUERY SELECT * FROM mcmig_put_record(u, p, a, t, s);
END $$;
"""
MIGRATIONS[3] = """
-- Migrations that reached one instance together, in one statement and one commit.
-- Every user's lock is taken first, in one order for all (two instances' batches
-- never wait on each other in a cycle), then each migration in arrival order.
CREATE FUNCTION mcmig_migrated_many(us text[], ps text[], pa text[], ts text[],
                                    ss double precision[])
RETURNS TABLE (n integer, role text, mc_service_id text, partner_system text,
               partner_address text, temporary_id text, since double precision)
LANGUAGE plpgsql AS $$
DECLARE k bigint; i integer;
BEGIN
    FOR k IN SELECT DISTINCT hashtextextended(x, 0) FROM unnest(us) x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(us, 1), 0) LOOP
        RETURN QUERY SELECT i, m.* FROM mcmig_migrated(us[i], ps[i], pa[i], ts[i], ss[i]) m;
    END LOOP;
END $$;
"""
SCHEMA_VERSION = max(MIGRATIONS)


class RegistrySetupError(Exception):
    """The database is missing, unreachable at start, or at a schema this mcmig does not know."""


def _record(row: Any) -> MigrationRecord:
    return MigrationRecord(
        row["mc_service_id"],
        row["partner_system"],
        row["partner_address"],
        row["temporary_id"],
        row["since"],
    )


def _columns(record: MigrationRecord) -> tuple[str, str, str, str | None, float]:
    """The record as the schema's functions take it."""
    return (
        record.mc_service_id,
        record.partner_system,
        record.partner_address,
        record.temporary_id,
        record.since,
    )


def _stored(by_role: dict[str, MigrationRecord]) -> Stored:
    return by_role["stored"], by_role.get("previous")


def _binding(row: Any) -> VisitorBinding:
    return VisitorBinding(
        row["temporary_id"], row["mc_service_id"], row["contact"], row["since"], row["expires"]
    )


_BINDING_COLUMNS = "temporary_id, mc_service_id, contact, since, expires"
# Whatever a lost or refused connection raises; asyncpg's InternalClientError is
# what a statement on a connection dropped mid-operation can raise.
_FAILURES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection goes back to its pool with. asyncpg's default sends a
    reset query (unlock, CLOSE ALL, UNLISTEN, RESET ALL) on every release: a
    second round trip for each statement, a third of PostgreSQL's CPU per
    migration. This registry leaves nothing in a session to reset (its locks
    are transaction-scoped; no SET, LISTEN or cursor), and asyncpg still rolls
    back a transaction left open before calling this."""


class PostgresRegistry:
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn
        # A migration is the write every request makes: those that arrive while
        # one batch is being committed go in the next, in one statement.
        self.migrations: PipelinedCommit[MigrationRecord, Stored] = PipelinedCommit(
            self._migrated_many
        )
        self._writer: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> PostgresRegistry:
        """Connect, bring the schema to SCHEMA_VERSION (under a lock, so that
        instances starting together migrate once), and refuse a newer schema."""
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=COMMAND_TIMEOUT,
                reset=_keep_session,
            )
        except asyncpg.InvalidCatalogNameError as exc:
            raise RegistrySetupError(f"{exc} (create it: createdb)") from None
        except _FAILURES as exc:
            raise RegistrySetupError(
                f"cannot reach PostgreSQL at {_safe(dsn)}: {exc} (start it, e.g. "
                "pg_ctlcluster 15 main start; docs/scale-out.md)"
            ) from None
        try:
            await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, dsn)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as connection:
                yield connection
        except _FAILURES as exc:
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def record(self, mc_service_id: str) -> MigrationRecord | None:
        async with self._connection() as c:
            row = await c.fetchrow(
                "SELECT * FROM migration_records WHERE mc_service_id = $1", mc_service_id
            )
        return None if row is None else _record(row)

    async def change(self, change: MigrationChange) -> MigrationOutcome:
        if not isinstance(change, MigrationEnd):
            return await self._store("mcmig_put_record", change)
        async with self._connection() as c:
            row = await c.fetchrow(
                "SELECT * FROM mcmig_end_record($1, $2, $3)",
                change.mc_service_id,
                change.partner_system,
                change.temporary_id,
            )
        return None if row is None else _record(row)

    async def migrated(self, record: MigrationRecord) -> Stored:
        return await self.migrations.put(record)

    async def _migrated_many(self, records: list[MigrationRecord]) -> list[Stored]:
        # One batch is in flight at a time, on a connection of its own: taking one
        # from the pool and giving it back cost about as much client CPU as the
        # statement itself.
        try:
            if self._writer is None or self._writer.is_closed():
                self._writer = await asyncpg.connect(
                    self.dsn, timeout=ACQUIRE_TIMEOUT, command_timeout=COMMAND_TIMEOUT
                )
            rows = await self._writer.fetch(
                "SELECT * FROM mcmig_migrated_many($1, $2, $3, $4, $5)",
                *(list(column) for column in zip(*map(_columns, records), strict=True)),
            )
        except _FAILURES as exc:
            if self._writer is not None:
                self._writer.terminate()  # the next batch connects again
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        by_n: dict[int, dict[str, MigrationRecord]] = {}
        for row in rows:
            by_n.setdefault(row["n"], {})[row["role"]] = _record(row)
        return [_stored(by_n[n]) for n in range(1, len(records) + 1)]

    async def _store(self, function: str, record: MigrationRecord) -> Stored:
        """A record through one of the schema's functions: (stored, replaced)."""
        async with self._connection() as c:
            rows = await c.fetch(f"SELECT * FROM {function}($1, $2, $3, $4, $5)", *_columns(record))
        return _stored({row["role"]: _record(row) for row in rows})

    async def records(self) -> list[MigrationRecord]:
        async with self._connection() as c:
            rows = await c.fetch("SELECT * FROM migration_records ORDER BY mc_service_id")
        return [_record(row) for row in rows]

    async def visitor(self, mc_service_id: str) -> VisitorBinding | None:
        return await self._binding("mc_service_id", mc_service_id)

    async def visitor_by_temporary_id(self, temporary_id: str) -> VisitorBinding | None:
        return await self._binding("temporary_id", temporary_id)

    async def _binding(self, column: str, value: str) -> VisitorBinding | None:
        async with self._connection() as c:
            row = await c.fetchrow(
                f"SELECT {_BINDING_COLUMNS} FROM visitor_bindings WHERE {column} = $1", value
            )
        return None if row is None else _binding(row)

    async def bind(self, binding: VisitorBinding) -> None:
        async with self._connection() as c:
            holder = await c.fetchval(
                "SELECT mcmig_bind($1, $2, $3, $4, $5)",
                binding.temporary_id,
                binding.mc_service_id,
                binding.contact,
                binding.since,
                binding.expires,
            )
        if holder is not None:
            raise TemporaryIdTaken(binding.temporary_id, holder)

    async def release(
        self, mc_service_id: str, temporary_id: str | None = None, expires: float | None = None
    ) -> VisitorBinding | None:
        async with self._connection() as c:
            row = await c.fetchrow(
                f"DELETE FROM visitor_bindings WHERE mc_service_id = $1 "
                f"AND ($2::text IS NULL OR temporary_id = $2) "
                f"AND ($3::double precision IS NULL OR expires = $3) "
                f"RETURNING {_BINDING_COLUMNS}",
                mc_service_id,
                temporary_id,
                expires,
            )
        return None if row is None else _binding(row)

    async def expired(self, now: float) -> list[VisitorBinding]:
        async with self._connection() as c:
            rows = await c.fetch(
                f"SELECT {_BINDING_COLUMNS} FROM visitor_bindings "
                "WHERE expires IS NOT NULL AND expires <= $1 ORDER BY expires LIMIT 1000",
                now,
            )
        return [_binding(row) for row in rows]

    async def visitors(self) -> list[VisitorBinding]:
        async with self._connection() as c:
            rows = await c.fetch(
                f"SELECT {_BINDING_COLUMNS} FROM visitor_bindings ORDER BY mc_service_id"
            )
        return [_binding(row) for row in rows]

    async def close(self) -> None:
        await self.migrations.close()
        if self._writer is not None:
            with suppress(*_FAILURES):
                await self._writer.close(timeout=ACQUIRE_TIMEOUT)
        await self.pool.close()


async def migrate(pool: asyncpg.Pool) -> int:
    """Apply the schema versions the database lacks; the version it is at now."""
    async with pool.acquire() as c, c.transaction():
        await c.execute("SELECT pg_advisory_xact_lock(7232000)")  # one migrator at a time
        await c.execute("CREATE TABLE IF NOT EXISTS mcmig_schema (version integer NOT NULL)")
        version = await c.fetchval("SELECT max(version) FROM mcmig_schema") or 0
        if version > SCHEMA_VERSION:
            raise RegistrySetupError(
                f"the database is at schema version {version}; this mcmig knows up to "
                f"{SCHEMA_VERSION} (upgrade mcmig, or use another database)"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            await c.execute(MIGRATIONS[step])
            await c.execute("INSERT INTO mcmig_schema VALUES ($1)", step)
    return SCHEMA_VERSION


def _safe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    head, at, tail = dsn.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return dsn
    scheme, _, credentials = head.partition("//")
    return f"{scheme}//{credentials.split(':', 1)[0]}:***@{tail}"
