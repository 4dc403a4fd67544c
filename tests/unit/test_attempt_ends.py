"""Ends of failed attempts (nodes/releases.AttemptEnds): sent once the attempt's
legs are over, dropped for a newer attempt with the same temporary identity,
waited for once sent."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from mcmig.nodes.releases import AttemptEnds


def _ends(sent: list[tuple[str, str, float]], answer_after: float = 0.0) -> AttemptEnds:
    async def send(user: str, temporary_id: str) -> None:
        sent.append((user, temporary_id, asyncio.get_running_loop().time()))
        await asyncio.sleep(answer_after)

    def spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.ensure_future(work)

    return AttemptEnds(send, 0.2, spawn)


def test_an_end_is_sent_once_the_attempts_horizon_has_passed() -> None:
    async def main() -> None:
        sent: list[tuple[str, str, float]] = []
        ends = _ends(sent)
        began = asyncio.get_running_loop().time()
        ends.end_later("alice", "t-1", began)
        await asyncio.sleep(0.1)
        assert sent == [] and len(ends) == 1
        await asyncio.sleep(0.2)
        assert [(u, t) for u, t, _ in sent] == [("alice", "t-1")]
        assert sent[0][2] - began >= 0.2 and len(ends) == 0

    asyncio.run(main())


def test_a_new_attempt_with_the_same_identity_drops_an_end_not_yet_sent() -> None:
    async def main() -> None:
        sent: list[tuple[str, str, float]] = []
        ends = _ends(sent)
        ends.end_later("alice", "t-1", asyncio.get_running_loop().time())
        await ends.before_attempt("alice", "t-1")  # the retry decides now
        await asyncio.sleep(0.3)
        assert sent == [] and len(ends) == 0

    asyncio.run(main())


def test_a_new_attempt_waits_for_an_end_already_sent_and_ignores_other_identities() -> None:
    async def main() -> None:
        sent: list[tuple[str, str, float]] = []
        ends = _ends(sent, answer_after=0.3)
        loop = asyncio.get_running_loop()
        ends.end_later("alice", "t-1", loop.time() - 1)  # its horizon passed already
        await asyncio.sleep(0.05)
        assert len(sent) == 1
        started = loop.time()
        await ends.before_attempt("alice", "t-2")  # another identity: no wait
        assert loop.time() - started < 0.05
        await ends.before_attempt("alice", "t-1")  # same identity: after its answer
        # the answer comes 0.3 s after the end was sent (not after `started`,
        # which a busy machine may put well after the send)
        assert loop.time() >= sent[0][2] + 0.3 - 0.01

    asyncio.run(main())
