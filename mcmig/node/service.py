"""Process settings for a node that runs as a long-lived service."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mcmig.errors import UsageError

if TYPE_CHECKING:
    from mcmig.node.runtime import SipNode

# Allocations between young-generation collections (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Collect cyclic garbage less often in a long-running node.

    Under load a node keeps many finished transactions alive (Timer J holds a
    UDP server transaction for 32 s), and every full collection walks all of
    them: with CPython's defaults that cost about 110 us of CPU per relayed
    transaction in the gateway, 15% of the whole. Almost everything a node
    frees goes by reference counting, so a higher threshold only lets the
    rare cycle live a little longer. What startup built (modules, profiles,
    keys) is frozen and never walked again.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)


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
