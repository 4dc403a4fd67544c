"""The registry as an MC service server uses it: one asynchronous interface, two engines.

Every write is durable when it returns (a 200 is sent only after it). The
SQLite engine keeps one file per server (the embedded default); the
PostgreSQL engine keeps one database per system, shared by every instance of
its servers, so that any instance can serve any user and deliver to any
visitor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mcmig.registry.group_commit import GroupCommit
from mcmig.registry.records import (
    MigrationChange,
    MigrationOutcome,
    MigrationRecord,
    Stored,
    VisitorBinding,
)
from mcmig.registry.sqlite import SqliteMigrationStore, SqliteVisitorStore
from mcmig.registry.visitors import VisitorRegister


class RegistryUnavailable(Exception):
    """The registry cannot be reached now: the request is answered 503, never 200."""


class Registry(Protocol):
    async def record(self, mc_service_id: str) -> MigrationRecord | None: ...

    async def change(self, change: MigrationChange) -> MigrationOutcome:
        """Store a record (outcome: what is stored now, the record it replaced) or end
        a stay (outcome: the record deleted, or None when it no longer named it)."""
        ...

    async def migrated(self, record: MigrationRecord) -> Stored:
        """PROFILE 2.4 at the primary: store ``record`` (as change) and end the user's
        binding at home, durably, in that order."""
        ...

    async def records(self) -> list[MigrationRecord]: ...

    async def visitor(self, mc_service_id: str) -> VisitorBinding | None: ...

    async def visitor_by_temporary_id(self, temporary_id: str) -> VisitorBinding | None: ...

    async def bind(self, binding: VisitorBinding) -> None:
        """Replace the user's binding; TemporaryIdTaken when another user holds the ID."""
        ...

    async def release(
        self, mc_service_id: str, temporary_id: str | None = None, expires: float | None = None
    ) -> VisitorBinding | None:
        """Remove the user's binding (only the one with ``temporary_id``, and this
        lifetime, when given); what was removed."""
        ...

    async def expired(self, now: float) -> list[VisitorBinding]: ...

    async def visitors(self) -> list[VisitorBinding]: ...

    async def close(self) -> None: ...


class SqliteRegistry:
    """One server's file: records through a group commit in a writer thread, visitor
    bindings through the VisitorRegister; reads on the loop."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteMigrationStore(path)
        self.visitor_register = VisitorRegister(SqliteVisitorStore(path))
        # Commits run in writer threads: an fsync in the event loop held up every
        # message while it lasted (py-spy: 66% of the primary's samples). Records
        # and ends of stays go the same way, in order.
        self.commits: GroupCommit[MigrationChange, MigrationOutcome] = GroupCommit(
            self.store.change_many, in_thread=True
        )

    async def record(self, mc_service_id: str) -> MigrationRecord | None:
        return self.store.get(mc_service_id)

    async def change(self, change: MigrationChange) -> MigrationOutcome:
        return await self.commits.put(change)

    async def migrated(self, record: MigrationRecord) -> Stored:
        outcome = await self.commits.put(record)
        assert isinstance(outcome, tuple)
        await self.visitor_register.release(record.mc_service_id)
        return outcome

    async def records(self) -> list[MigrationRecord]:
        return self.store.all()

    async def visitor(self, mc_service_id: str) -> VisitorBinding | None:
        return self.visitor_register.by_user(mc_service_id)

    async def visitor_by_temporary_id(self, temporary_id: str) -> VisitorBinding | None:
        return self.visitor_register.by_temporary_id(temporary_id)

    async def bind(self, binding: VisitorBinding) -> None:
        await self.visitor_register.bind(binding)

    async def release(
        self, mc_service_id: str, temporary_id: str | None = None, expires: float | None = None
    ) -> VisitorBinding | None:
        return await self.visitor_register.release(mc_service_id, temporary_id, expires)

    async def expired(self, now: float) -> list[VisitorBinding]:
        return self.visitor_register.expired(now)

    async def visitors(self) -> list[VisitorBinding]:
        return self.visitor_register.all()

    async def close(self) -> None:
        """Let the commits in flight finish, then close the file."""
        self.commits.close()
        self.visitor_register.close()
        self.store.close()
