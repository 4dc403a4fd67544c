"""RFC 3261 timer values (section 17 and table 4 of appendix A)."""

from __future__ import annotations

from dataclasses import dataclass


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
