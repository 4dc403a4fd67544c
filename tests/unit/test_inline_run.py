"""InlineRun: a handler coroutine driven without a Task, first step at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcmig.node.inline import InlineRun, Reply


def test_the_first_step_runs_inside_start_and_the_rest_when_the_future_is_done() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        done: list[InlineRun] = []
        answer: asyncio.Future[str] = loop.create_future()

        async def handler() -> None:
            seen.append("first")
            seen.append(await answer)
            await asyncio.sleep(0)  # a bare yield goes round the loop once
            seen.append("after yield")

        run = InlineRun(handler(), loop, done.append)
        run.start()
        assert seen == ["first"] and done == []  # no turn of the loop yet
        answer.set_result("answered")
        for _ in range(3):
            await asyncio.sleep(0)
        assert seen == ["first", "answered", "after yield"] and done == [run]

    asyncio.run(main())


@pytest.mark.parametrize("reply", [False, True], ids=["plain future", "Reply"])
def test_cancel_raises_where_the_coroutine_waits_a_turn_later_and_ends_the_run_once(
    reply: bool,
) -> None:
    """As Task.cancel, for either kind of future: never inside the canceller's call."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[Any] = Reply(loop=loop) if reply else loop.create_future()
        seen: list[str] = []
        done: list[InlineRun] = []

        async def handler() -> None:
            try:
                await waiting
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        run = InlineRun(handler(), loop, done.append)
        run.start()
        run.cancel()
        assert waiting.cancelled() and seen == []
        await asyncio.sleep(0)
        assert seen == ["cancelled"] and done == [run]
        if isinstance(waiting, Reply):
            waiting.settle("too late")  # nothing to resume, nothing raised

    asyncio.run(main())


def test_a_handler_that_ends_at_once_or_raises_is_done_within_start() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        done: list[InlineRun] = []

        async def quick() -> None:
            return None

        async def broken() -> None:
            raise ValueError("a bug of ours")

        first = InlineRun(quick(), loop, done.append)
        first.start()
        second = InlineRun(broken(), loop, done.append)
        with pytest.raises(ValueError):
            second.start()
        assert done == [first, second]

    asyncio.run(main())


def test_a_settled_reply_resumes_its_run_inside_settle() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[object] = []
        done: list[InlineRun] = []
        answer, failure = Reply(loop=loop), Reply(loop=loop)

        async def handler() -> None:
            seen.append(await answer)
            try:
                await failure
            except LookupError as exc:
                seen.append(exc)

        run = InlineRun(handler(), loop, done.append)
        run.start()
        answer.settle("answered")
        assert seen == ["answered"]  # no turn of the loop in between
        error = LookupError("no route")
        failure.settle(error=error)
        assert seen == ["answered", error] and done == [run]
        failure.settle("too late")  # a second outcome is ignored
        assert failure.exception() is error

    asyncio.run(main())


def test_a_reply_awaited_by_a_task_behaves_as_a_plain_future() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        answer = Reply(loop=loop)
        task = loop.create_task(asyncio.wait_for(answer, 5))
        await asyncio.sleep(0)
        answer.settle(42)
        assert not task.done()  # a Task resumes on its next step, as always
        assert await task == 42

    asyncio.run(main())
