"""The garbage collector pacer: its schedule, its timer, and why it exists."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter, deque
from collections.abc import Iterator

import pytest

from mcmig.node.gc_pacer import OLD_FLOOR, GarbageCollectorPacer


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


class OldGeneration:
    """A stand-in for the old generation's size, which a full collection shrinks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.collected: list[int] = []

    def collect(self, generation: int) -> None:
        self.collected.append(generation)
        if generation == 2:
            self.size //= 2

    def pacer(
        self, loop: asyncio.AbstractEventLoop, check_every: int, phase: int = 0
    ) -> GarbageCollectorPacer:
        return GarbageCollectorPacer(
            loop,
            check_every=check_every,
            collect=self.collect,
            old_size=lambda: self.size,
            phase=phase,
        )


def test_young_generations_every_tick_old_only_once_it_grew_by_a_quarter(
    loop: asyncio.AbstractEventLoop,
) -> None:
    old = OldGeneration(40_000)
    pacer = old.pacer(loop, check_every=10)
    for _ in range(30):
        pacer.tick()
    assert Counter(old.collected) == {1: 30}  # steady: no full collection
    old.size = 50_000  # exactly a quarter more: not yet
    for _ in range(10):
        pacer.tick()
    assert 2 not in old.collected
    old.size = 50_001
    generations = [pacer.tick() for _ in range(10)]
    assert generations == [1] * 9 + [2]  # at the next look, every 10th tick
    assert old.size == 25_000  # and the new baseline is what the collection left
    for _ in range(20):
        pacer.tick()
    assert old.collected.count(2) == 1


def test_small_old_generations_are_never_collected_for_growth(
    loop: asyncio.AbstractEventLoop,
) -> None:
    old = OldGeneration(10)
    pacer = old.pacer(loop, check_every=1)
    old.size = OLD_FLOOR  # a thousandfold growth, still under the floor
    assert {pacer.tick() for _ in range(5)} == {1}


def test_the_first_look_takes_the_measure_without_collecting(
    loop: asyncio.AbstractEventLoop,
) -> None:
    old = OldGeneration(1)  # what gc.freeze() left
    pacer = old.pacer(loop, check_every=10)
    old.size = 200_000  # the node under load: lingering transactions
    assert {pacer.tick() for _ in range(20)} == {1}  # two looks, no growth since the first
    old.size = 250_001
    assert [pacer.tick() for _ in range(10)] == [1] * 9 + [2]


def test_a_phase_moves_the_look_at_the_old_generation(loop: asyncio.AbstractEventLoop) -> None:
    old = OldGeneration(50_000)
    pacer = old.pacer(loop, check_every=100, phase=95)
    assert {pacer.tick() for _ in range(5)} == {1}  # the first look, at the fifth tick
    old.size = 100_000
    assert [pacer.tick() for _ in range(100)] == [1] * 99 + [2]


def test_bad_pacing_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(ValueError):
        GarbageCollectorPacer(loop, tick=0)
    with pytest.raises(ValueError):
        GarbageCollectorPacer(loop, check_every=0)


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


def _churn(pacer: GarbageCollectorPacer | None) -> tuple[int, int]:
    """Steady churn like a node's under load: every new long-lived object
    replaces an old one, so allocations minus deallocations stay near zero.
    Returns the young generation's size at the end, and how many objects
    the collections walked on the way."""
    walked = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal walked
        if phase == "start":
            walked += sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1))

    gc.collect()
    kept: deque[list[int]] = deque([[i] for i in range(20_000)])
    gc.collect()  # the initial population is old now
    gc.callbacks.append(count)
    try:
        for step in range(30):
            for i in range(1_000):
                kept.append([step, i])
                kept.popleft()
            if pacer is not None:
                pacer.tick()
    finally:
        gc.callbacks.remove(count)
    return len(gc.get_objects(0)), walked


@pytest.mark.usefixtures("count_driven_only")
def test_ticks_keep_the_young_generation_to_one_ticks_worth(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Count-driven, the 20,000 survivors all pile up young: the next
    # collection would walk them at once (60-100 ms pauses in a busy node).
    assert _churn(None)[0] >= 20_000
    pacer = GarbageCollectorPacer(loop, check_every=1_000)
    young, walked = _churn(pacer)
    assert young < 2_000
    # Each survivor is walked once on its way to the old generation, not
    # once young and again in generation 1.
    assert walked < 40_000
