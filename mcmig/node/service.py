"""Process settings for a node that runs as a long-lived service."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mcmig.errors import UsageError
from mcmig.node.gc_pacer import CHECK_EVERY, GarbageCollectorPacer

if TYPE_CHECKING:
    from mcmig.node.runtime import SipNode

# Net allocations that start a young-generation collection between the pacer's
# ticks (CPython's default is 700): only a burst reaches it.
YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> GarbageCollectorPacer:
    """Collect cyclic garbage on a clock in a long-running node; returns the
    pacer, started on the running loop (stop it before the loop closes).

    Under load a node keeps many finished transactions alive (Timer J holds a
    UDP server transaction for 32 s). CPython's count-driven collections walk
    them in large, late batches (long pauses, see gc_pacer), and with its
    default thresholds in frequent full collections (about 110 us of CPU per
    relayed transaction in the gateway, 15% of the whole). The pacer collects
    the two young generations every tick and the old one only when it has
    grown; the count threshold is set high, as a safety net for a burst.
    What startup built (modules, profiles, keys) is frozen and never walked
    again.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
    pacer = GarbageCollectorPacer(asyncio.get_running_loop(), phase=random.randrange(CHECK_EVERY))
    pacer.start()
    return pacer


# A UDP request read this long after it arrived is refused with 503 at once.
# Its sender's first retransmission is due at T1 (0.5 s); serving it later
# only adds to a backlog whose senders have already sent it again.
MAX_QUEUE_DELAY = 0.2


def shed_late_requests(nodes: Iterable[SipNode], seconds: float = MAX_QUEUE_DELAY) -> None:
    """Refuse requests that queued more than ``seconds`` in front of a node
    (0: never).

    Only for nodes run as services: a test that holds its event loop (and
    so every node in it) for a moment would see its own requests refused.
    """
    if seconds <= 0:
        return
    for node in nodes:
        node.shed_requests_queued_longer_than(seconds)


EVENT_LOOPS = ("asyncio", "uvloop")


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop a service runs on. asyncio's own is the default and the
    one every test runs; uvloop is optional (``pip install 'mcmig[uvloop]'``)."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise UsageError("uvloop is not installed: pip install 'mcmig[uvloop]'") from None
        return uvloop.new_event_loop
    raise UsageError(f"unknown event loop {name!r} (one of {', '.join(EVENT_LOOPS)})")
