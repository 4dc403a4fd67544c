"""RFC 3261 timer values (section 17 and table 4 of appendix A)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Timers J and K end transactions that only wait to absorb retransmissions.
# The RFC sets how long they must wait at least; rounding their deadlines up to
# a grid lets a busy node end half a second's worth in one timer wakeup, where
# it woke every few milliseconds (a third of its wakeups at 400 transactions/s).
REAP_TICK = 0.5


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Transaction timer base values.

    t1: RTT estimate, seconds (default 0.5); retransmission intervals start here.
    t2: the cap of the non-INVITE retransmission interval, seconds (default 4).
    t4: the longest a message may stay in the network, seconds (default 5).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("timers need 0 < T1 <= T2")
        if self.t4 <= 0:
            raise ValueError("T4 must be positive")

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout: 64*T1."""
        return 64 * self.t1

    def timer_j(self, reliable: bool) -> float:
        """How long a non-INVITE server transaction absorbs retransmissions."""
        return 0.0 if reliable else 64 * self.t1

    @property
    def unreachable_grace(self) -> float:
        """How long a client transaction over UDP keeps retransmitting through ICMP
        unreachable errors before one ends it: 4*T1, so that a peer restarting
        within a second or two still gets the request (by default the error
        that ends it comes with the retransmission at 3.5 s, before any B2BUA's
        timeout), while one that is down fails well before Timer F."""
        return 4 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """How long a non-INVITE client transaction absorbs response retransmissions."""
        return 0.0 if reliable else self.t4


def reap_at(now: float, delay: float) -> float:
    """The deadline of Timer J or K: ``delay`` after ``now``, rounded up to the
    next multiple of REAP_TICK. Zero (reliable transports) stays now."""
    if delay <= 0:
        return now
    return math.ceil((now + delay) / REAP_TICK) * REAP_TICK
