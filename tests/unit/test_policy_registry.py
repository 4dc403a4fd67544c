from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcmig.mc.policy import PrimaryPolicy, UserRange, UserRule, UserSelector, VisitorPolicy
from mcmig.registry import (
    GroupCommit,
    MigrationEnd,
    MigrationRecord,
    PipelinedCommit,
    SqliteMigrationStore,
    SqliteVisitorStore,
    TemporaryIdTaken,
    VisitorBinding,
    VisitorChange,
    VisitorRegister,
    VisitorRelease,
    new_record,
)


def test_user_range() -> None:
    r = UserRange.parse("u000000-u999999")
    assert "u000000" in r and "u999999" in r and "u123456" in r
    assert "u12345" not in r and "u1234567" not in r and "x000001" not in r and "u00000a" not in r
    for bad in ["u1-u999", "u9-u1", "alice", "u0-v9"]:
        with pytest.raises(ValueError):
            UserRange.parse(bad)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 2 * 10**6))
def test_range_membership_matches_arithmetic(a: int, b: int, n: int) -> None:
    first, last = min(a, b), max(a, b)
    r = UserRange.parse(f"u{first:07d}-u{last:07d}")
    assert (f"u{n:07d}" in r) == (first <= n <= last)


def test_primary_policy_first_rule_wins() -> None:
    policy = PrimaryPolicy(
        (
            UserRule(UserSelector(frozenset({"bob"})), frozenset()),
            UserRule(UserSelector(ranges=(UserRange.parse("u0-u9"),)), frozenset({"p.example"})),
            UserRule(UserSelector(frozenset({"bob", "alice"})), frozenset({"*"})),
        )
    )
    assert policy.is_user("bob") and not policy.may_migrate("bob", "p.example")
    assert policy.may_migrate("alice", "anywhere.example")
    assert policy.may_migrate("u5", "P.example") and not policy.may_migrate("u5", "q.example")
    assert not policy.is_user("dave")


def test_visitor_policy_default_and_exceptions() -> None:
    refuse_all_but = VisitorPolicy(default_accept=False, accept_systems=frozenset({"a.example"}))
    assert refuse_all_but.accepts_system("A.example") and not refuse_all_but.accepts_system(
        "b.example"
    )
    accept_all_but = VisitorPolicy(default_accept=True, refuse_systems=frozenset({"b.example"}))
    assert accept_all_but.accepts_system("c.example") and not accept_all_but.accepts_system(
        "b.example"
    )
    by_name = VisitorPolicy(refuse_users=frozenset({"sip:carol@a.example"}))
    assert not by_name.accepts_user("sip:carol@a.example") and by_name.accepts_user(
        "sip:alice@a.example"
    )


def test_registry_is_durable_idempotent_and_one_record_per_user(tmp_path: Path) -> None:
    path = tmp_path / "primary.sqlite3"
    store = SqliteMigrationStore(path)
    first = new_record(
        "sip:alice@p.example", "partner.example", "sip:127.0.9.2:5060", "sip:t-1@partner.example"
    )
    stored, previous = store.put(first)
    assert (stored, previous) == (first, None)
    again = MigrationRecord(
        first.mc_service_id,
        first.partner_system,
        first.partner_address,
        first.temporary_id,
        first.since + 5,
    )
    stored, previous = store.put(again)
    assert stored.since == first.since and previous == first  # a repeat keeps the first record
    moved = new_record(
        "sip:alice@p.example", "partner2.example", "sip:127.0.9.3:5060", "sip:t-2@partner2.example"
    )
    stored, previous = store.put(moved)
    assert stored == moved and previous == first
    assert not store.delete_if_partner(
        "sip:alice@p.example", "partner.example"
    )  # names another partner now
    store.close()
    reopened = SqliteMigrationStore(path)
    assert reopened.all() == [moved]
    assert (
        reopened.delete_if_partner("sip:alice@p.example", "partner2.example", "sip:t-9@x") is None
    )
    assert (
        reopened.delete_if_partner(
            "sip:alice@p.example", "partner2.example", "sip:t-2@partner2.example"
        )
        == moved
    )
    assert reopened.get("sip:alice@p.example") is None
    reopened.close()


def test_migration_changes_written_together_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "primary.sqlite3"
    store = SqliteMigrationStore(path)
    user = "sip:alice@p.example"
    first = new_record(user, "partner.example", "sip:127.0.9.2:5060", "sip:t-1@partner.example")
    moved = new_record(user, "partner2.example", "sip:127.0.9.3:5060", "sip:t-2@partner2.example")
    outcomes = store.change_many(
        [
            first,
            MigrationEnd(user, "partner.example", "sip:t-1@partner.example"),  # deletes first
            moved,
            MigrationEnd(user, "partner.example"),  # stale: names the old partner
            MigrationEnd(user, "partner2.example", "sip:t-9@x"),  # stale: another stay
            moved,  # a repeat
        ]
    )
    assert outcomes == [(first, None), first, (moved, None), None, None, (moved, moved)]
    store.close()
    reopened = SqliteMigrationStore(path)
    assert reopened.all() == [moved]
    reopened.close()


def test_a_batch_that_fails_writes_nothing_and_the_store_goes_on(tmp_path: Path) -> None:
    store = SqliteMigrationStore(tmp_path / "primary.sqlite3")
    user = "sip:alice@p.example"
    good = new_record(user, "partner.example", "sip:127.0.9.2:5060", "sip:t-1@partner.example")
    broken = MigrationRecord("sip:bob@p.example", "partner.example", None, None, 1.0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):  # partner_address is NOT NULL
        store.change_many([good, broken])
    assert store.all() == []  # rolled back: the good record went too
    assert store.put(good) == (good, None)  # the batch connection is free again
    store.close()


def test_visitor_changes_written_together_apply_in_order_one_binding_per_user(
    tmp_path: Path,
) -> None:
    path = tmp_path / "partner.sqlite3"
    store = SqliteVisitorStore(path)
    bob = VisitorBinding("sip:t-2@x", "sip:bob@p", "sip:10.0.0.2", 2.0)
    outcomes = store.change_many(
        [
            VisitorBinding("sip:t-1@x", "sip:alice@p", "sip:10.0.0.1", 1.0),
            bob,
            VisitorBinding("sip:t-3@x", "sip:alice@p", "sip:10.0.0.3", 3.0),
            VisitorRelease("sip:alice@p", "sip:t-1@x"),  # an older stay: nothing removed
            VisitorBinding("sip:t-4@x", "sip:carol@p", None, 4.0),
            VisitorRelease("sip:bob@p"),
            VisitorRelease("sip:dave@p"),  # never bound
        ]
    )
    # each change gives the binding it removed
    assert outcomes == [
        None,
        None,
        VisitorBinding("sip:t-1@x", "sip:alice@p", "sip:10.0.0.1", 1.0),
        None,
        None,
        bob,
        None,
    ]
    store.close()
    reopened = SqliteVisitorStore(path)
    assert [(b.mc_service_id, b.temporary_id) for b in reopened.all()] == [
        ("sip:alice@p", "sip:t-3@x"),
        ("sip:carol@p", "sip:t-4@x"),
    ]
    assert set(reopened.users()) == {"sip:alice@p", "sip:carol@p"}
    reopened.close()


class _CountingVisitorStore(SqliteVisitorStore):
    """Counts the reads and batches that reach SQLite; can be told the disk failed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0
        self.batches: list[list[VisitorChange]] = []
        self.disk_full = False

    def by_user(self, mc_service_id: str) -> VisitorBinding | None:
        self.reads += 1
        return super().by_user(mc_service_id)

    def change_many(self, changes: list[VisitorChange]) -> list[VisitorBinding | None]:
        self.batches.append(changes)
        if self.disk_full:
            raise OSError("disk full")
        return super().change_many(changes)


def test_visitor_register_answers_unbound_users_from_memory_and_keeps_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "partner.sqlite3"
    alice = VisitorBinding("sip:t-1@x", "sip:alice@p", "sip:10.0.0.1", 1.0)

    async def first_run() -> None:
        store = _CountingVisitorStore(path)
        register = VisitorRegister(store)
        # nobody bound: no read, and a release writes nothing
        assert register.by_user("sip:alice@p") is None
        assert await register.release("sip:alice@p") is None
        assert (store.reads, store.batches) == (0, [])
        # a release made while the binding still waits for its commit is not
        # skipped, and is written after it
        bound = asyncio.create_task(register.bind(alice))
        await asyncio.sleep(0)
        assert register.may_be_bound("sip:alice@p")
        released = asyncio.create_task(register.release("sip:alice@p"))
        await bound
        assert await released == alice
        assert [c for batch in store.batches for c in batch] == [
            alice,
            VisitorRelease("sip:alice@p"),
        ]
        assert register.all() == [] and not register.may_be_bound("sip:alice@p")
        # bound again: read from SQLite, and still there after a restart
        await register.bind(alice)
        assert register.by_user("sip:alice@p") == alice and store.reads == 1
        # a failed commit binds nobody
        store.disk_full = True
        with pytest.raises(OSError):
            await register.bind(VisitorBinding("sip:t-2@x", "sip:bob@p", None, 2.0))
        assert not register.may_be_bound("sip:bob@p")
        register.close()

    async def second_run() -> None:
        register = VisitorRegister(SqliteVisitorStore(path))
        assert register.by_user("sip:alice@p") == alice
        assert await register.release("sip:alice@p", "sip:t-old@x") is None  # another stay
        assert await register.release("sip:alice@p", "sip:t-1@x") == alice
        assert register.by_user("sip:alice@p") is None
        register.close()

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_visitor_register_counts_users_that_share_a_slot(tmp_path: Path) -> None:
    class OneSlot(VisitorRegister):
        SLOTS = 1  # every user in the same slot

    def binding(n: int, user: str) -> VisitorBinding:
        return VisitorBinding(f"sip:t-{n}@x", user, None, float(n))

    async def main() -> None:
        store = _CountingVisitorStore(tmp_path / "partner.sqlite3")
        register = OneSlot(store)
        await register.bind(binding(1, "sip:alice@p"))
        await register.bind(binding(2, "sip:alice@p"))  # a replacement: still one
        await register.bind(binding(3, "sip:bob@p"))
        # carol shares the slot: SQLite answers, and says nobody
        assert register.by_user("sip:carol@p") is None and store.reads == 1
        assert await register.release("sip:alice@p") == binding(2, "sip:alice@p")
        assert register.by_user("sip:bob@p") == binding(3, "sip:bob@p")
        assert await register.release("sip:bob@p") == binding(3, "sip:bob@p")
        # the slot is empty again: no read, no write
        batches = len(store.batches)
        assert register.by_user("sip:alice@p") is None and store.reads == 2
        assert await register.release("sip:bob@p") is None and len(store.batches) == batches
        register.close()

    asyncio.run(main())


def test_a_binding_that_would_take_anothers_temporary_id_is_refused(tmp_path: Path) -> None:
    """The temporary ID stays with the visitor that holds it: a second user's binding
    with the same ID is refused, and neither row nor count changes."""

    async def main() -> None:
        store = _CountingVisitorStore(tmp_path / "partner.sqlite3")
        register = VisitorRegister(store)
        alice = VisitorBinding("sip:t-1@x", "sip:alice@p", None, 1.0)
        await register.bind(alice)
        with pytest.raises(TemporaryIdTaken, match="held by sip:alice@p"):
            await register.bind(VisitorBinding("sip:t-1@x", "sip:bob@p", None, 2.0))
        assert register.all() == [alice]
        assert register.by_user("sip:bob@p") is None and not register.may_be_bound("sip:bob@p")
        # the holder may bind it again (a repeat), and the ID is free once released
        await register.bind(VisitorBinding("sip:t-1@x", "sip:alice@p", "sip:a@h", 3.0))
        assert await register.release("sip:alice@p") is not None
        bob = VisitorBinding("sip:t-1@x", "sip:bob@p", None, 4.0)
        await register.bind(bob)
        assert register.all() == [bob]
        register.close()

    asyncio.run(main())


def test_group_commit_batches_one_turn_answers_each_in_order_and_fails_all_on_error() -> None:
    batches: list[list[int]] = []

    def commit_many(items: list[int]) -> list[int]:
        batches.append(items)
        if 13 in items:
            raise OSError("disk full")
        return [i * 10 for i in items]

    async def main() -> None:
        commits: GroupCommit[int, int] = GroupCommit(commit_many, max_batch=4)
        # six writes in one turn: a full batch of four at once, the rest at the turn's end
        assert await asyncio.gather(*(commits.put(i) for i in range(6))) == [
            0,
            10,
            20,
            30,
            40,
            50,
        ]
        assert batches == [[0, 1, 2, 3], [4, 5]]
        assert (commits.batches, commits.records) == (2, 6)
        outcomes = await asyncio.gather(commits.put(12), commits.put(13), return_exceptions=True)
        # a failed commit tells nobody it succeeded
        assert all(isinstance(o, OSError) for o in outcomes) and commits.records == 6

    asyncio.run(main())


def test_group_commit_in_a_writer_thread_keeps_the_loop_serving_and_batches_the_wait() -> None:
    batches: list[list[int]] = []
    first_commit_started = threading.Event()

    def slow_commit_many(items: list[int]) -> list[int]:
        batches.append(items)
        first_commit_started.set()
        time.sleep(0.2)  # an fsync on a slow disk
        return items

    async def main() -> None:
        commits: GroupCommit[int, int] = GroupCommit(slow_commit_many, in_thread=True)
        first = asyncio.create_task(commits.put(0))
        await asyncio.to_thread(first_commit_started.wait, 2)
        # the loop is free while the first commit syncs: these queue for the next one
        rest = [asyncio.create_task(commits.put(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        assert not first.done()
        assert await first == 0
        assert await asyncio.gather(*rest) == [1, 2, 3]
        commits.close()
        with pytest.raises(RuntimeError):  # closed: refused, not left waiting
            await asyncio.wait_for(commits.put(4), 2)

    asyncio.run(main())
    assert batches == [[0], [1, 2, 3]]


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_pipelined_commit_sends_what_arrives_during_a_commit_as_the_next_batch() -> None:
    batches: list[list[int]] = []
    gate: list[asyncio.Event] = []

    async def commit_many(items: list[int]) -> list[int]:
        batches.append(items)
        gate.append(asyncio.Event())
        await gate[-1].wait()  # the database server's round trip and commit
        if 13 in items:
            raise OSError("connection lost")
        return [i * 10 for i in items]

    async def main() -> None:
        commits: PipelinedCommit[int, int] = PipelinedCommit(commit_many, max_batch=3)
        alone = asyncio.create_task(commits.put(0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert batches == [[0]]  # alone: sent at the next turn, not held back
        waiting = [asyncio.create_task(commits.put(i)) for i in (1, 2, 3, 4)]
        await asyncio.sleep(0)
        assert batches == [[0]] and not alone.done()  # one batch in flight at a time
        gate[0].set()
        assert await alone == 0
        for _ in range(3):
            await asyncio.sleep(0)
        assert batches == [[0], [1, 2, 3]]  # what waited, up to max_batch
        gate[1].set()
        for _ in range(3):
            await asyncio.sleep(0)
        gate[2].set()
        assert await asyncio.gather(*waiting) == [10, 20, 30, 40]
        assert batches == [[0], [1, 2, 3], [4]]
        assert (commits.batches, commits.records) == (3, 5)
        # a failed batch: every caller in it is told, nobody is told it was written,
        # and the next batch goes on
        failed = [asyncio.create_task(commits.put(i)) for i in (12, 13)]
        await _turns(3)
        gate[3].set()
        outcomes = await asyncio.gather(*failed, return_exceptions=True)
        assert all(isinstance(o, OSError) for o in outcomes) and commits.records == 5
        after = asyncio.create_task(commits.put(5))
        await _turns(3)
        gate[4].set()
        assert await after == 50
        await commits.close()

    asyncio.run(main())


def test_pipelined_commit_cancelled_with_the_loop_leaves_nobody_waiting() -> None:
    async def never(items: list[int]) -> list[int]:
        await asyncio.Event().wait()
        return items

    async def main() -> None:
        commits: PipelinedCommit[int, int] = PipelinedCommit(never)
        first = asyncio.create_task(commits.put(1))
        await asyncio.sleep(0)
        second = asyncio.create_task(commits.put(2))
        await asyncio.sleep(0)
        writer = commits._writer
        assert writer is not None
        writer.cancel()
        for task in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
