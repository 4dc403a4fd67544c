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
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

TICK = 0.1  # seconds between young-generation collections
MIDDLE_EVERY = 10  # ticks per generation-1 collection: once a second
# Ticks per full collection: every ten minutes. Under load a full collection
# walks every lingering transaction (170,000 objects, 150-180 ms at 700/s)
# and, in every run measured, found no garbage: what a node drops goes by
# reference counting. Rare, it costs a pause per ten minutes, not per minute.
FULL_EVERY = 6000


class GarbageCollectorPacer:
    """Runs ``collect(0)`` every tick, ``collect(1)`` and ``collect(2)`` less often."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        tick: float = TICK,
        middle_every: int = MIDDLE_EVERY,
        full_every: int = FULL_EVERY,
        collect: Callable[[int], object] = gc.collect,
        phase: int = 0,
    ) -> None:
        if tick <= 0 or middle_every < 1 or full_every < middle_every:
            raise ValueError("pacing needs tick > 0 and 1 <= middle_every <= full_every")
        self._loop = loop
        self._tick_s = tick
        self._middle_every = middle_every
        self._full_every = full_every
        self._collect = collect
        self._handle: asyncio.TimerHandle | None = None
        # Nodes started together would otherwise all make their full collection
        # at the same moment, and a request crossing them would wait for each.
        self.ticks = phase % full_every

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self._tick_s, self._on_tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def tick(self) -> int:
        """One collection; returns the generation collected."""
        self.ticks += 1
        if self.ticks % self._full_every == 0:
            generation = 2
        elif self.ticks % self._middle_every == 0:
            generation = 1
        else:
            generation = 0
        self._collect(generation)
        return generation

    def _on_tick(self) -> None:
        self._handle = self._loop.call_later(self._tick_s, self._on_tick)
        self.tick()
