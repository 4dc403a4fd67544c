"""Limits on password guessing at the IdMS's login form.

Each check of a password costs an Argon2 hash, tens of milliseconds of CPU by
design, so the form is where a hostile client can both guess passwords and
spend the IdMS's CPU. Two limits, both answered before any hash is computed:

- per source address, a number of failed logins in a sliding window; past it
  the address is refused (HTTP 429 with Retry-After) until the oldest failure
  leaves the window. Keyed by address, not by user name, so that nobody can
  lock a user out by failing logins in the user's name;
- a number of password checks in progress at once, across all sources; past
  it a login is refused at once (HTTP 503, Retry-After: 1) rather than queued
  behind the hashes already running.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FAILURES = 5  # failed logins from one address ...
WINDOW = 60.0  # ... within this many seconds, and the address waits
CHECKS_AT_ONCE = 4  # password checks in progress at once
SOURCES_KEPT = 10_000  # addresses remembered; the least recently failed are forgotten first


class LoginThrottle:
    def __init__(
        self,
        failures: int = FAILURES,
        window: float = WINDOW,
        checks_at_once: int = CHECKS_AT_ONCE,
        clock: Callable[[], float] = time.monotonic,
        sources_kept: int = SOURCES_KEPT,
    ) -> None:
        self.failures = failures
        self.window = window
        self.checks_at_once = checks_at_once
        self.clock = clock
        self.sources_kept = sources_kept
        self.checking = 0
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_for(self, source: str) -> int | None:
        """Whole seconds ``source`` must wait before its next login, or None."""
        times = self._recent(source)
        if times is None or len(times) < self.failures:
            return None
        return max(1, math.ceil(times[0] + self.window - self.clock()))

    def busy(self) -> bool:
        """As many password checks in progress as allowed."""
        return self.checking >= self.checks_at_once

    def failed(self, source: str) -> bool:
        """Count a failed login; True when it is the one that makes ``source`` wait
        (so that it is logged once, not at each refusal after it)."""
        times = self._recent(source) or deque()
        times.append(self.clock())
        self._failed[source] = times
        self._failed.move_to_end(source)
        while len(self._failed) > self.sources_kept:
            self._failed.popitem(last=False)
        return len(times) == self.failures

    def succeeded(self, source: str) -> None:
        self._failed.pop(source, None)

    def _recent(self, source: str) -> deque[float] | None:
        times = self._failed.get(source)
        if times is None:
            return None
        horizon = self.clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failed[source]
            return None
        return times
