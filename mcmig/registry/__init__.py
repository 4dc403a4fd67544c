"""The registries of MC service servers: what they hold (records.py), the
interface a server uses (engine.py) and its engines, SQLite (sqlite.py, with
group commit in group_commit.py and the partner's visitor register in
visitors.py) and PostgreSQL (postgresql.py)."""

from mcmig.registry.engine import Registry, RegistryUnavailable, SqliteRegistry
from mcmig.registry.group_commit import GroupCommit, PipelinedCommit
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
    "PipelinedCommit",
    "Registry",
    "RegistryUnavailable",
    "SqliteMigrationStore",
    "SqliteRegistry",
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
