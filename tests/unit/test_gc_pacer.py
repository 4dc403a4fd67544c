"""The garbage collector pacer: its schedule, its timer, and why it exists."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter, deque
from collections.abc import Iterator

import pytest

from mcmig.node.gc_pacer import GarbageCollectorPacer


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def count_driven_only() -> Iterator[None]:
    """A high count threshold, as a node runs with; restored afterwards."""
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def test_schedule_young_every_tick_middle_every_tenth_full_every_six_hundredth(
    loop: asyncio.AbstractEventLoop,
) -> None:
    collected: list[int] = []
    pacer = GarbageCollectorPacer(loop, collect=collected.append, full_every=600)
    for _ in range(1200):
        pacer.tick()
    assert Counter(collected) == {0: 1080, 1: 118, 2: 2}
    assert collected[9] == 1 and collected[599] == 2 and collected[609] == 1


def test_a_phase_moves_the_full_collection(loop: asyncio.AbstractEventLoop) -> None:
    collected: list[int] = []
    pacer = GarbageCollectorPacer(loop, collect=collected.append, full_every=600, phase=595)
    for _ in range(600):
        pacer.tick()
    assert collected.index(2) == 4 and collected.count(2) == 1


def test_bad_pacing_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(ValueError):
        GarbageCollectorPacer(loop, tick=0)
    with pytest.raises(ValueError):
        GarbageCollectorPacer(loop, middle_every=10, full_every=5)


def test_runs_on_the_loop_until_stopped() -> None:
    collected: list[int] = []

    async def run() -> None:
        pacer = GarbageCollectorPacer(
            asyncio.get_running_loop(), tick=0.005, collect=collected.append
        )
        pacer.start()
        while len(collected) < 3:
            await asyncio.sleep(0.005)
        pacer.stop()
        stopped_at = len(collected)
        await asyncio.sleep(0.03)
        assert len(collected) == stopped_at

    asyncio.run(run())


def _young_after_churn(pacer: GarbageCollectorPacer | None) -> int:
    """Steady churn like a node's under load: every new long-lived object
    replaces an old one, so allocations minus deallocations stay near zero."""
    gc.collect()
    kept: deque[list[int]] = deque([[i] for i in range(20_000)])
    gc.collect()  # the initial population is old now
    for step in range(30):
        for i in range(1_000):
            kept.append([step, i])
            kept.popleft()
        if pacer is not None:
            pacer.tick()
    return len(gc.get_objects(0))


@pytest.mark.usefixtures("count_driven_only")
def test_ticks_keep_the_young_generation_to_one_ticks_worth(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Count-driven, the 20,000 survivors all pile up young: the next
    # collection would walk them at once (60-100 ms pauses in a busy node).
    assert _young_after_churn(None) >= 20_000
    pacer = GarbageCollectorPacer(loop, full_every=1_000)
    assert _young_after_churn(pacer) < 2_000
