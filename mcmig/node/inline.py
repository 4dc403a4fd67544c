"""Running a request handler's coroutine without an asyncio.Task.

A Task takes its first step on the next turn of the event loop. For a node
that receives a request, runs its handler up to the point where it waits
(a downstream transaction, a commit), and sends, that extra turn (a Task
object, a callback handle, one more poll of the selector) costs more than
many handlers' own first step. Here the first step runs at once, inside the
call that received the request; later steps run when the future the
coroutine waits for is done, as a Task's would, or, for a :class:`Reply`,
inside the call that settles it.

What a Task offers and this does not: ``asyncio.current_task()`` is None
inside (so no ``asyncio.timeout()``), and steps run in the caller's context
variables. The handlers run this way use neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Reply(asyncio.Future[Any]):
    """A future its producer completes with :meth:`settle`, which resumes an
    InlineRun waiting on it at once, inside the producer's call.

    With a plain future the run would resume on the next turn of the event
    loop, one more poll of the selector per wait; a node that settles the
    answer to a downstream transaction as it reads it has no reason to wait
    that turn. Anything else awaiting it (a Task, wait_for) sees a plain future.
    """

    __slots__ = ("_run",)

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._run: InlineRun | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.done():
            return
        if error is None:
            self.set_result(result)
        else:
            self.set_exception(error)
        run, self._run = self._run, None
        if run is not None:
            run._step(self)

    def cancel(self, msg: Any = None) -> bool:
        cancelled = super().cancel(msg)
        run, self._run = self._run, None
        if cancelled and run is not None:
            self.get_loop().call_soon(run._step, self)  # not inside the canceller's call
        return cancelled


class InlineRun:
    """One coroutine, driven step by step; ``on_done`` is called once when it ends."""

    __slots__ = ("_cancelling", "_coro", "_loop", "_on_done", "_waiting")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[InlineRun], None],
    ) -> None:
        self._coro = coro
        self._loop = loop
        self._on_done = on_done
        self._waiting: asyncio.Future[Any] | None = None
        self._cancelling = False

    def start(self) -> None:
        self._step()

    def cancel(self) -> None:
        """As Task.cancel: the coroutine gets CancelledError where it waits."""
        self._cancelling = True
        if self._waiting is not None:
            self._waiting.cancel()

    def _step(self, _done: object = None, error: BaseException | None = None) -> None:
        self._waiting = None
        if self._cancelling and error is None:
            self._cancelling = False
            error = asyncio.CancelledError()
        try:
            yielded = self._coro.send(None) if error is None else self._coro.throw(error)
        except (StopIteration, asyncio.CancelledError):
            self._on_done(self)
            return
        except BaseException:
            self._on_done(self)
            raise
        if yielded is None:  # a bare yield, as in asyncio.sleep(0): go round once
            self._loop.call_soon(self._step)
        elif getattr(yielded, "_asyncio_future_blocking", False):
            yielded._asyncio_future_blocking = False
            self._waiting = yielded
            if type(yielded) is Reply:
                yielded._run = self  # resumed by Reply.settle or Reply.cancel
            else:
                yielded.add_done_callback(self._step)
        else:
            self._loop.call_soon(
                self._step, None, RuntimeError(f"a handler yielded {yielded!r}, not a future")
            )
