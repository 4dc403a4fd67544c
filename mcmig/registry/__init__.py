"""The registries of MC service servers: one store interface (records.py), the
SQLite engine (sqlite.py), group commit (group_commit.py) and the partner's
visitor register (visitors.py)."""

from mcmig.registry.group_commit import GroupCommit
from mcmig.registry.records import (
    MigrationChange,
    MigrationEnd,
    MigrationOutcome,
    MigrationRecord,
    MigrationStore,
    Stored,
    TemporaryIdTaken,
    VisitorBinding,
    VisitorChange,
    VisitorOutcome,
    VisitorRelease,
    new_record,
)
from mcmig.registry.sqlite import SqliteMigrationStore, SqliteVisitorStore
from mcmig.registry.visitors import VisitorRegister

__all__ = [
    "GroupCommit",
    "MigrationChange",
    "MigrationEnd",
    "MigrationOutcome",
    "MigrationRecord",
    "MigrationStore",
    "SqliteMigrationStore",
    "SqliteVisitorStore",
    "Stored",
    "TemporaryIdTaken",
    "VisitorBinding",
    "VisitorChange",
    "VisitorOutcome",
    "VisitorRegister",
    "VisitorRelease",
    "new_record",
]
