"""Cyclic garbage collection on a clock, for a node run as a service.

CPython starts a young-generation collection when allocations minus
deallocations of tracked objects pass a threshold. A node under steady load
frees old transactions (Timer J's, 32 s after their answer) about as fast as
it makes new ones, so that count creeps up slowly while the young generation
fills with everything made since: at 500 migrations/s a young collection
walked 120,000-150,000 objects and held the loop for 60-100 ms, in every
node at about the same moment, and the slowest migrations were the ones
caught there. Collecting on a clock keeps each collection to what the last
tick made. The count threshold stays as a safety net for a burst.

Each tick collects generations 0 and 1 together, so that what survives is
walked once and is then old; collecting them apart (generation 1 once a
second) walked every lingering transaction twice and took twice the time.
The old generation is looked at every ten minutes and collected only if it
has grown by a quarter since its last collection (CPython's own rule, here
by its size). Under steady load it does not grow, since what lingers is
freed by reference counting when its timer ends, and a full collection
walks all of it (150-180 ms at 700/s) to find nothing. Cyclic garbage that
does reach it makes it grow, and is then collected. Looking more often
collected it at every step of a rise in load (four pauses of 130-155 ms in
the first 40 s at 700/s); every ten minutes, a rise costs at most one.

The first look only takes the measure. Measured against the heap that
gc.freeze() left at startup, the old generation has always grown by then
(the lingering transactions alone make it many times larger), so a
collection there was decided by the start, not by garbage, and found
nothing: a 30-90 ms pause per node in its first ten minutes under load.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

TICK = 0.1  # seconds between collections of the young generations
CHECK_EVERY = 6000  # ticks between looks at the old generation's size: 10 min
GROWTH = 1.25  # the old generation is collected once it grew by this factor
OLD_FLOOR = 10_000  # objects: below this, no full collection for growth


def old_generation_size() -> int:
    # Builds a list of the generation: about 4 ms for 200,000 objects.
    return len(gc.get_objects(generation=2))


class GarbageCollectorPacer:
    """Runs ``collect(1)`` every tick, ``collect(2)`` when the old generation grew."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        tick: float = TICK,
        check_every: int = CHECK_EVERY,
        collect: Callable[[int], object] = gc.collect,
        old_size: Callable[[], int] = old_generation_size,
        phase: int = 0,
    ) -> None:
        if tick <= 0 or check_every < 1:
            raise ValueError("pacing needs tick > 0 and check_every >= 1")
        self._loop = loop
        self._tick_s = tick
        self._check_every = check_every
        self._collect = collect
        self._old_size = old_size
        self._old_after_full: int | None = None  # set by the first look
        self._handle: asyncio.TimerHandle | None = None
        # Nodes started together would otherwise all make their full collection
        # at the same moment, and a request crossing them would wait for each.
        self.ticks = phase % check_every

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self._tick_s, self._on_tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def tick(self) -> int:
        """One collection; returns the oldest generation collected."""
        self.ticks += 1
        if self.ticks % self._check_every == 0:
            size = self._old_size()
            if self._old_after_full is None:
                self._old_after_full = size
            elif size > max(OLD_FLOOR, GROWTH * self._old_after_full):
                self._collect(2)
                self._old_after_full = self._old_size()
                return 2
        self._collect(1)
        return 1

    def _on_tick(self) -> None:
        self._handle = self._loop.call_later(self._tick_s, self._on_tick)
        self.tick()
