"""InlineRun: a handler coroutine driven without a Task, first step at once."""

from __future__ import annotations

import asyncio

import pytest

from mcmig.node.inline import InlineRun


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


def test_cancel_raises_where_the_coroutine_waits_and_ends_the_run_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[None] = loop.create_future()
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
        for _ in range(2):
            await asyncio.sleep(0)
        assert waiting.cancelled() and seen == ["cancelled"] and done == [run]

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
