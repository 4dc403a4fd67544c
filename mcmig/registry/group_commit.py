"""Group commit: writes that arrive in one turn of the event loop share one
transaction, in a writer thread of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def _answer_each(batch: list[tuple[Item, asyncio.Future[Outcome]]], results: list[Outcome]) -> None:
    """Each caller of a committed batch gets its outcome (unless it gave up)."""
    for (_, future), result in zip(batch, results, strict=True):
        if not future.done():
            future.set_result(result)


def _fail_each(batch: list[tuple[Item, asyncio.Future[Outcome]]], exc: BaseException) -> None:
    """Each caller of a batch that was not written is told why."""
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


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
        _answer_each(batch, results)

    def _fail(self, batch: list[tuple[Item, asyncio.Future[Outcome]]], exc: BaseException) -> None:
        # The disk failed: nobody is told 200.
        if self.settled is not None:
            self.settled([item for item, _ in batch], None)
        _fail_each(batch, exc)

    def close(self) -> None:
        """Wait for the commit in flight, if any; later puts fail."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)


class PipelinedCommit(Generic[Item, Outcome]):
    """Writes to a database server that arrive while a commit is in flight share
    the next one: one statement, one transaction, one round trip for the batch.

    ``commit_many`` sends a batch and returns one outcome per item, in order,
    once the server has committed it; each caller waits for that. One batch is
    in flight at a time, so under load the batches grow and the server's cost
    per write (a transaction, a commit, a wake-up of its backend) is shared;
    alone, a write waits one turn of the loop and no more. When a batch fails,
    every caller in it gets the exception and nothing of it was written.
    """

    def __init__(
        self, commit_many: Callable[[list[Item]], Awaitable[list[Outcome]]], max_batch: int = 256
    ) -> None:
        self.commit_many = commit_many
        self.max_batch = max_batch
        self.batches = 0
        self.records = 0
        self._pending: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def put(self, item: Item) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((item, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        return await future

    async def _write(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Outcome]]] = []
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    results = await self.commit_many([item for item, _ in batch])
                except Exception as exc:
                    _fail_each(batch, exc)
                    continue
                self.batches += 1
                self.records += len(batch)
                _answer_each(batch, results)
        except asyncio.CancelledError:
            # the loop is closing: nobody waits for ever (nor is told 200)
            for _, future in [*batch, *self._pending]:
                future.cancel()
            self._pending.clear()
            raise
        finally:
            self._writer = None

    async def close(self) -> None:
        """Wait for the batches pending to be written."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
