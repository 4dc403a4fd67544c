"""The primary server's migration registry (PROFILE 2.4): durable, one record per user.

SQLite in WAL mode with synchronous=FULL: a record is on disk before put()
returns, so a 200 sent after it cannot be lost to a crash. Other engines can
implement MigrationStore.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class MigrationRecord:
    mc_service_id: str
    partner_system: str
    partner_address: str
    temporary_id: str | None
    since: float

    def same_migration(self, other: MigrationRecord) -> bool:
        return (self.partner_system, self.partner_address, self.temporary_id) == (
            other.partner_system,
            other.partner_address,
            other.temporary_id,
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class MigrationStore(Protocol):
    def get(self, mc_service_id: str) -> MigrationRecord | None: ...

    def put(self, record: MigrationRecord) -> tuple[MigrationRecord, MigrationRecord | None]:
        """Store ``record``; return (what is stored now, the record it replaced)."""
        ...

    def delete_if_partner(self, mc_service_id: str, partner_system: str) -> bool: ...

    def all(self) -> list[MigrationRecord]: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    mc_service_id   TEXT PRIMARY KEY,
    partner_system  TEXT NOT NULL,
    partner_address TEXT NOT NULL,
    temporary_id    TEXT,
    since           REAL NOT NULL
)
"""


class SqliteMigrationStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def get(self, mc_service_id: str) -> MigrationRecord | None:
        row = self._db.execute(
            "SELECT mc_service_id, partner_system, partner_address, temporary_id, since "
            "FROM migrations WHERE mc_service_id = ?",
            (mc_service_id,),
        ).fetchone()
        return None if row is None else MigrationRecord(*row)

    def put(self, record: MigrationRecord) -> tuple[MigrationRecord, MigrationRecord | None]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            previous = self.get(record.mc_service_id)
            if previous is not None and previous.same_migration(record):
                db.execute("COMMIT")
                return previous, previous  # a repeat: one record, first 'since' kept
            db.execute(
                "INSERT OR REPLACE INTO migrations VALUES (?, ?, ?, ?, ?)",
                (
                    record.mc_service_id,
                    record.partner_system,
                    record.partner_address,
                    record.temporary_id,
                    record.since,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return record, previous

    def delete_if_partner(self, mc_service_id: str, partner_system: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM migrations WHERE mc_service_id = ? AND partner_system = ?",
            (mc_service_id, partner_system),
        )
        return cursor.rowcount > 0

    def all(self) -> list[MigrationRecord]:
        rows = self._db.execute(
            "SELECT mc_service_id, partner_system, partner_address, temporary_id, since "
            "FROM migrations ORDER BY mc_service_id"
        ).fetchall()
        return [MigrationRecord(*row) for row in rows]

    def close(self) -> None:
        self._db.close()


def new_record(
    mc_service_id: str, partner_system: str, partner_address: str, temporary_id: str | None
) -> MigrationRecord:
    return MigrationRecord(
        mc_service_id, partner_system, partner_address, temporary_id, time.time()
    )
