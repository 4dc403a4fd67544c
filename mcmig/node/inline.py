"""Running a request handler's coroutine without an asyncio.Task.

A Task takes its first step on the next turn of the event loop. For a node
that receives a request, runs its handler up to the point where it waits
(a downstream transaction, a commit), and sends, that extra turn (a Task
object, a callback handle, one more poll of the selector) costs more than
many handlers' own first step. Here the first step runs at once, inside the
call that received the request; later steps run when the future the
coroutine waits for is done, exactly as a Task's would.

What a Task offers and this does not: ``asyncio.current_task()`` is None
inside (so no ``asyncio.timeout()``), and steps run in the caller's context
variables. The handlers run this way use neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


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
            yielded.add_done_callback(self._step)
        else:
            self._loop.call_soon(
                self._step, None, RuntimeError(f"a handler yielded {yielded!r}, not a future")
            )
