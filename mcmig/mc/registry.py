"""The primary server's migration registry (PROFILE 2.4): durable, one record per user.

SQLite in WAL mode with synchronous=FULL: a record is on disk before put()
returns, so a 200 sent after it cannot be lost to a crash. Other engines can
implement MigrationStore.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


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


@dataclass(frozen=True)
class MigrationEnd:
    """Ends a stay: deletes the user's record if it still names this partner
    (and this temporary ID, when given); a stale end changes nothing."""

    mc_service_id: str
    partner_system: str
    temporary_id: str | None = None

    def ends(self, record: MigrationRecord | None) -> bool:
        return (
            record is not None
            and record.partner_system == self.partner_system
            and (self.temporary_id is None or record.temporary_id == self.temporary_id)
        )


# What put() returns: (what is stored now, the record it replaced).
Stored = tuple[MigrationRecord, MigrationRecord | None]
MigrationChange = MigrationRecord | MigrationEnd
# One per change: Stored for a record, the deleted record (or None) for an end.
MigrationOutcome = Stored | MigrationRecord | None


class MigrationStore(Protocol):
    def get(self, mc_service_id: str) -> MigrationRecord | None: ...

    def put(self, record: MigrationRecord) -> tuple[MigrationRecord, MigrationRecord | None]:
        """Store ``record``; return (what is stored now, the record it replaced)."""
        ...

    def delete_if_partner(
        self, mc_service_id: str, partner_system: str, temporary_id: str | None = None
    ) -> MigrationRecord | None:
        """Delete the record if it names ``partner_system`` (and ``temporary_id``
        when given); return what was deleted."""
        ...

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


@dataclass(frozen=True)
class VisitorBinding:
    """A partner's record of a visitor: the temporary identity it gave, and where
    the visitor's client takes requests (its Contact)."""

    temporary_id: str
    mc_service_id: str
    contact: str | None
    since: float


@dataclass(frozen=True)
class VisitorRelease:
    """Ends a visitor's binding: whichever it has, or only the one with this temporary ID."""

    mc_service_id: str
    temporary_id: str | None = None

    def ends(self, binding: VisitorBinding | None) -> bool:
        return binding is not None and self.temporary_id in (None, binding.temporary_id)


VisitorChange = VisitorBinding | VisitorRelease


class TemporaryIdTaken(Exception):
    """A binding would take a temporary identity that another visitor holds: refused,
    never a silent rebinding of the other visitor's traffic."""

    def __init__(self, temporary_id: str, holder: str) -> None:
        super().__init__(f"{temporary_id} is held by {holder}")
        self.temporary_id = temporary_id
        self.holder = holder


# What a visitor change did: the binding it removed, None, or the refusal of a binding.
VisitorOutcome = VisitorBinding | TemporaryIdTaken | None


_VISITORS = """
CREATE TABLE IF NOT EXISTS visitors (
    temporary_id  TEXT PRIMARY KEY,
    mc_service_id TEXT NOT NULL,
    contact       TEXT,
    since         REAL NOT NULL
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
                        "INSERT INTO visitors VALUES (?, ?, ?, ?)",
                        (change.temporary_id, change.mc_service_id, change.contact, change.since),
                    )
                outcomes.append(old)
        return outcomes

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


def new_record(
    mc_service_id: str, partner_system: str, partner_address: str, temporary_id: str | None
) -> MigrationRecord:
    return MigrationRecord(
        mc_service_id, partner_system, partner_address, temporary_id, time.time()
    )


class GroupCommit(Generic[Item, Outcome]):
    """Writes that arrive together share one transaction.

    Each caller still waits for the commit that holds its write, so a 200
    sent after ``await put(...)`` is durable; under load, one fsync serves
    many migrations instead of one each. ``commit_many`` writes a batch in
    one transaction and returns one outcome per item, in order.

    With ``in_thread`` the commit runs in a writer thread of its own (SQLite
    lets go of the GIL while it writes and syncs), so the event loop keeps
    serving during the fsync and what arrives meanwhile makes the next batch.
    One commit is in flight at a time. Without it, the batch is what arrived
    in one turn of the loop, committed in the loop.

    ``settled`` is told of each batch on the loop, before any caller resumes:
    its items and outcomes, or None when the batch failed and nothing of it
    was written.
    """

    def __init__(
        self,
        commit_many: Callable[[list[Item]], list[Outcome]],
        max_batch: int = 1024,
        in_thread: bool = False,
        settled: Callable[[list[Item], list[Outcome] | None], None] | None = None,
    ) -> None:
        self.commit_many = commit_many
        self.settled = settled
        self.max_batch = max_batch
        self.batches = 0
        self.records = 0
        self._pending: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._scheduled = False
        self._writer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcmig-commit")
            if in_thread
            else None
        )
        self._in_flight = False

    async def put(self, item: Item) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((item, future))
        if self._writer is None and len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending:
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        items = [item for item, _ in batch]
        if self._writer is None:
            try:
                results = self.commit_many(items)
            except Exception as exc:
                self._fail(batch, exc)
            else:
                self._succeed(batch, results)
            if self._pending:
                self._flush()
            return
        try:
            committed = asyncio.get_running_loop().run_in_executor(
                self._writer, self.commit_many, items
            )
        except RuntimeError as exc:  # closed: the writer takes no more work
            self._fail(batch, exc)
            return
        self._in_flight = True
        committed.add_done_callback(lambda done: self._committed(batch, done))

    def _committed(
        self,
        batch: list[tuple[Item, asyncio.Future[Outcome]]],
        done: asyncio.Future[list[Outcome]],
    ) -> None:
        self._in_flight = False
        exc = asyncio.CancelledError() if done.cancelled() else done.exception()
        if exc is not None:
            self._fail(batch, exc)
        else:
            self._succeed(batch, done.result())
        self._flush()

    def _succeed(
        self, batch: list[tuple[Item, asyncio.Future[Outcome]]], results: list[Outcome]
    ) -> None:
        self.batches += 1
        self.records += len(batch)
        if self.settled is not None:
            self.settled([item for item, _ in batch], results)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _fail(self, batch: list[tuple[Item, asyncio.Future[Outcome]]], exc: BaseException) -> None:
        # The disk failed: nobody is told 200.
        if self.settled is not None:
            self.settled([item for item, _ in batch], None)
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        """Wait for the commit in flight, if any; later puts fail."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)


class VisitorRegister:
    """A partner server's visitor bindings as its event loop uses them.

    Bindings and releases go to one writer thread, in the order they were made,
    batched (GroupCommit), each caller waiting for the commit that holds its
    change; a release therefore never overtakes a binding made before it, and
    no write runs (or waits for SQLite's lock) on the loop.

    Reads stay on the loop, but a user known to have no binding, committed or
    queued, is answered from memory: a read is a call into SQLite, which lets go
    of the GIL, and on a busy machine getting it back from the writer thread
    took milliseconds (p99 2-3.5 ms at 800 migrations/s). Nearly every
    migration asks about a user with no binding (the primary, for each of its
    users that leaves; a partner, for each first-time visitor).

    What it knows is a count of bound users per slot of a hash of their ID
    (4 MB, whatever the number of visitors, so memory stays flat): a slot at
    zero means nobody there is bound; otherwise SQLite answers. With a million
    visitors about one lookup in five still reads SQLite.
    """

    SLOTS = 1 << 22  # one-byte counters
    _FULL = 255  # a counter that reached this is never lowered: it stays "maybe"

    def __init__(self, store: SqliteVisitorStore) -> None:
        self.store = store
        self._counts = bytearray(self.SLOTS)  # bound users by slot, as last committed
        for user in store.users():
            self._count(user, +1)
        self._queued: Counter[str] = Counter()  # bindings not yet settled, by user
        self._writes: GroupCommit[VisitorChange, VisitorOutcome] = GroupCommit(
            store.change_many, in_thread=True, settled=self._settled
        )

    def may_be_bound(self, mc_service_id: str) -> bool:
        return (
            self._counts[hash(mc_service_id) & (self.SLOTS - 1)] != 0
            or mc_service_id in self._queued
        )

    def by_user(self, mc_service_id: str) -> VisitorBinding | None:
        """The user's committed binding."""
        if not self.may_be_bound(mc_service_id):
            return None
        return self.store.by_user(mc_service_id)

    def by_temporary_id(self, temporary_id: str) -> VisitorBinding | None:
        return self.store.by_temporary_id(temporary_id)

    def all(self) -> list[VisitorBinding]:
        return self.store.all()

    async def bind(self, binding: VisitorBinding) -> None:
        """Durable when this returns; replaces any older binding of the user.
        Raises TemporaryIdTaken when another user holds the temporary ID."""
        self._queued[binding.mc_service_id] += 1
        outcome = await self._writes.put(binding)
        if isinstance(outcome, TemporaryIdTaken):
            raise outcome

    async def release(
        self, mc_service_id: str, temporary_id: str | None = None
    ) -> VisitorBinding | None:
        """Remove the user's binding (only the one with ``temporary_id``, if given);
        the binding removed, durably, or None if there was none to remove."""
        if not self.may_be_bound(mc_service_id):
            return None  # what SQLite would answer, after every change queued so far
        removed = await self._writes.put(VisitorRelease(mc_service_id, temporary_id))
        assert not isinstance(removed, TemporaryIdTaken)  # only bindings are refused
        return removed

    def _count(self, mc_service_id: str, step: int) -> None:
        slot = hash(mc_service_id) & (self.SLOTS - 1)
        count = self._counts[slot]
        # Never below zero, whatever SQLite reports.
        if count != self._FULL and count + step >= 0:
            self._counts[slot] = count + step

    def _settled(self, changes: list[VisitorChange], outcomes: list[VisitorOutcome] | None) -> None:
        for i, change in enumerate(changes):
            user = change.mc_service_id
            if isinstance(change, VisitorBinding):
                self._queued[user] -= 1
                if self._queued[user] <= 0:
                    del self._queued[user]
                if outcomes is not None and outcomes[i] is None:
                    self._count(user, +1)  # newly bound (a replacement changes no count)
            elif outcomes is not None and outcomes[i] is not None:
                self._count(user, -1)

    def close(self) -> None:
        """Let the commit in flight finish, then close the file."""
        self._writes.close()
        self.store.close()
