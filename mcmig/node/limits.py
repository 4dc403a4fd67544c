"""Process limits of a long-lived node: open files, and logs that stay bounded
when the same fault repeats (an accept that fails for want of descriptors)."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable

# The same message from the same logger is let through at most once in this
# many seconds; the next one that passes says how many were held back.
LOG_WINDOW = 10.0


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; (soft, hard) after.

    Every TCP or TLS connection is a descriptor: a node left at a soft limit
    of 1,024 runs out under a connection flood long before its caps apply."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit for files; its ceiling is nr_open.
        try:
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        except (OSError, ValueError):
            return soft, hard
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            return soft, hard
        soft = hard
    return soft, hard


class RepeatFilter(logging.Filter):
    """Lets the first of a run of identical records through, then one per window,
    with the count of those held back in between."""

    def __init__(self, window: float = LOG_WINDOW, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # bounded, whatever the variety of messages
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.window:g} s)"
        return True


def bound_repeated_logs(*names: str) -> RepeatFilter:
    """Put a RepeatFilter on the named loggers (asyncio's, where accept errors go)."""
    repeat = RepeatFilter()
    for name in names:
        logging.getLogger(name).addFilter(repeat)
    return repeat
