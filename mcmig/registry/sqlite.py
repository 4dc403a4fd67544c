"""The SQLite engine (the embedded default): the primary's records and the partner's
visitor bindings in one file per server.

WAL mode with synchronous=FULL: a record is on disk before a write returns, so
a 200 sent after it cannot be lost to a crash. Batches of changes go through a
second connection (_BatchWriter), one transaction and one fsync each.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from mcmig.registry.records import (
    MigrationChange,
    MigrationEnd,
    MigrationOutcome,
    MigrationRecord,
    Stored,
    TemporaryIdTaken,
    VisitorBinding,
    VisitorChange,
    VisitorOutcome,
    VisitorRelease,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    mc_service_id   TEXT PRIMARY KEY,
    partner_system  TEXT NOT NULL,
    partner_address TEXT NOT NULL,
    temporary_id    TEXT,
    since           REAL NOT NULL
)
"""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class _BatchWriter:
    """A second connection, for batch writes only, so that a writer thread's
    open transaction never mixes with the loop's reads (which, in WAL mode,
    see the last commit and do not wait for the writer). The lock keeps two
    threads off it at once.

    ``with`` it is one write transaction: committed (one fsync) when the block
    ends, rolled back if it raises or if the commit fails."""

    def __init__(self, path: Path) -> None:
        self._db = _connect(path)
        self._lock = threading.Lock()

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is not None:
                self._db.execute("ROLLBACK")
                return
            try:
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SqliteMigrationStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = _connect(path)
        self._db.execute(_SCHEMA)
        self._batches = _BatchWriter(path)

    def get(self, mc_service_id: str) -> MigrationRecord | None:
        return self._get(self._db, mc_service_id)

    @staticmethod
    def _get(db: sqlite3.Connection, mc_service_id: str) -> MigrationRecord | None:
        row = db.execute(
            "SELECT mc_service_id, partner_system, partner_address, temporary_id, since "
            "FROM migrations WHERE mc_service_id = ?",
            (mc_service_id,),
        ).fetchone()
        return None if row is None else MigrationRecord(*row)

    def put(self, record: MigrationRecord) -> Stored:
        return self.put_many([record])[0]

    def put_many(self, records: list[MigrationRecord]) -> list[Stored]:
        """Store several records in one transaction: one fsync for the batch (group commit).

        Safe to call from a writer thread while the loop reads."""
        outcomes = self.change_many(list(records))
        return [outcome for outcome in outcomes if isinstance(outcome, tuple)]

    def delete_if_partner(
        self, mc_service_id: str, partner_system: str, temporary_id: str | None = None
    ) -> MigrationRecord | None:
        (deleted,) = self.change_many([MigrationEnd(mc_service_id, partner_system, temporary_id)])
        assert not isinstance(deleted, tuple)
        return deleted

    def change_many(self, changes: list[MigrationChange]) -> list[MigrationOutcome]:
        """Apply records and ends in order, in one transaction: one fsync for the
        batch. Writes go through the batch connection only, so the loop's own
        connection never waits for SQLite's write lock.

        Safe to call from a writer thread while the loop reads."""
        outcomes: list[MigrationOutcome] = []
        with self._batches as db:
            for change in changes:
                previous = self._get(db, change.mc_service_id)
                if isinstance(change, MigrationEnd):
                    if change.ends(previous):
                        db.execute(
                            "DELETE FROM migrations WHERE mc_service_id = ?",
                            (change.mc_service_id,),
                        )
                        outcomes.append(previous)
                    else:
                        outcomes.append(None)
                elif previous is not None and previous.same_migration(change):
                    outcomes.append((previous, previous))  # a repeat: first 'since' kept
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO migrations VALUES (?, ?, ?, ?, ?)",
                        (
                            change.mc_service_id,
                            change.partner_system,
                            change.partner_address,
                            change.temporary_id,
                            change.since,
                        ),
                    )
                    outcomes.append((change, previous))
        return outcomes

    def all(self) -> list[MigrationRecord]:
        rows = self._db.execute(
            "SELECT mc_service_id, partner_system, partner_address, temporary_id, since "
            "FROM migrations ORDER BY mc_service_id"
        ).fetchall()
        return [MigrationRecord(*row) for row in rows]

    def close(self) -> None:
        self._batches.close()
        self._db.close()


_VISITORS = """
CREATE TABLE IF NOT EXISTS visitors (
    temporary_id  TEXT PRIMARY KEY,
    mc_service_id TEXT NOT NULL,
    contact       TEXT,
    since         REAL NOT NULL,
    expires       REAL
)
"""


class SqliteVisitorStore:
    """The partner side's bindings, durable like the migration records (same file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(path)
        self._db.execute(_VISITORS)
        # bindings and by_user() look visitors up by MC service ID: without this
        # index every migration scanned the whole table (found by the soak)
        self._db.execute("CREATE INDEX IF NOT EXISTS visitors_by_user ON visitors (mc_service_id)")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(visitors)")}
        if "expires" not in columns:  # a file from before stays had a lifetime
            self._db.execute("ALTER TABLE visitors ADD COLUMN expires REAL")
        self._db.execute("CREATE INDEX IF NOT EXISTS visitors_by_expiry ON visitors (expires)")
        self._batches = _BatchWriter(path)

    def change_many(self, changes: list[VisitorChange]) -> list[VisitorOutcome]:
        """Apply bindings and releases in order, in one transaction: one fsync for the
        batch. A binding replaces any older one of the same user, and is refused
        (TemporaryIdTaken, nothing written) when another user holds its temporary
        ID; a release removes the user's binding (only if it has the temporary ID
        given). Each outcome is the binding that change removed, None, or the refusal.

        Safe to call from a writer thread while the loop reads."""
        outcomes: list[VisitorOutcome] = []
        with self._batches as db:
            for change in changes:
                if isinstance(change, VisitorBinding):
                    holder = db.execute(
                        "SELECT mc_service_id FROM visitors WHERE temporary_id = ?",
                        (change.temporary_id,),
                    ).fetchone()
                    if holder is not None and holder[0] != change.mc_service_id:
                        outcomes.append(TemporaryIdTaken(change.temporary_id, holder[0]))
                        continue
                old = self._by_user(db, change.mc_service_id)
                if isinstance(change, VisitorRelease) and not change.ends(old):
                    old = None  # none, or the release names another stay: nothing removed
                if old is not None:
                    db.execute("DELETE FROM visitors WHERE temporary_id = ?", (old.temporary_id,))
                if isinstance(change, VisitorBinding):
                    db.execute(
                        "INSERT INTO visitors VALUES (?, ?, ?, ?, ?)",
                        (
                            change.temporary_id,
                            change.mc_service_id,
                            change.contact,
                            change.since,
                            change.expires,
                        ),
                    )
                outcomes.append(old)
        return outcomes

    def expired(self, now: float, limit: int = 1000) -> list[VisitorBinding]:
        """Bindings whose stay ended at ``now`` or before, the oldest first."""
        rows = self._db.execute(
            "SELECT * FROM visitors WHERE expires IS NOT NULL AND expires <= ? "
            "ORDER BY expires LIMIT ?",
            (now, limit),
        )
        return [VisitorBinding(*row) for row in rows]

    def by_temporary_id(self, temporary_id: str) -> VisitorBinding | None:
        row = self._db.execute(
            "SELECT * FROM visitors WHERE temporary_id = ?", (temporary_id,)
        ).fetchone()
        return None if row is None else VisitorBinding(*row)

    def by_user(self, mc_service_id: str) -> VisitorBinding | None:
        return self._by_user(self._db, mc_service_id)

    @staticmethod
    def _by_user(db: sqlite3.Connection, mc_service_id: str) -> VisitorBinding | None:
        row = db.execute(
            "SELECT * FROM visitors WHERE mc_service_id = ?", (mc_service_id,)
        ).fetchone()
        return None if row is None else VisitorBinding(*row)

    def users(self) -> Iterator[str]:
        """The MC service IDs that have a binding now."""
        return (r[0] for r in self._db.execute("SELECT mc_service_id FROM visitors"))

    def all(self) -> list[VisitorBinding]:
        return [
            VisitorBinding(*r)
            for r in self._db.execute("SELECT * FROM visitors ORDER BY mc_service_id")
        ]

    def close(self) -> None:
        self._batches.close()
        self._db.close()
