"""Which server serves which users: overlaps and gaps, decided when a profile loads.

Each user of a system is served by exactly one of its MC service servers. The
selectors (names, numbered ranges, prefix patterns) are chosen so that both
faults can be found exactly, and the error can name a user that shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcmig.mc.policy import PrimaryPolicy, UserRange, UserSelector


def _prefix_interval(r: UserRange, prefix: str) -> tuple[int, int] | None:
    """The numbers of ``r`` whose users start with ``prefix``, as an interval."""
    if r.prefix.startswith(prefix):
        return r.first, r.last
    if not prefix.startswith(r.prefix):
        return None
    digits = prefix[len(r.prefix) :]
    if not digits.isdigit() or len(digits) > r.width:
        return None
    scale = 10 ** (r.width - len(digits))
    low, high = max(r.first, int(digits) * scale), min(r.last, (int(digits) + 1) * scale - 1)
    return (low, high) if low <= high else None


def _member(r: UserRange, number: int) -> str:
    return f"{r.prefix}{number:0{r.width}d}"


def _intervals(r: UserRange, selector: UserSelector) -> list[tuple[int, int]]:
    """The parts of ``r`` that ``selector`` takes."""
    found = [
        (max(r.first, o.first), min(r.last, o.last))
        for o in selector.ranges
        if (o.prefix, o.width) == (r.prefix, r.width) and o.first <= r.last and r.first <= o.last
    ]
    found += [i for i in (_prefix_interval(r, p) for p in selector.prefixes) if i is not None]
    found += [(int(n[len(r.prefix) :]),) * 2 for n in selector.names if n in r]
    return found


def shared_user(a: UserSelector, b: UserSelector) -> str | None:
    """A user that both selectors take, or None when they are disjoint."""
    for name in sorted(a.names):
        if b.matches(name):
            return name
    for name in sorted(b.names):
        if a.matches(name):
            return name
    for r in a.ranges:
        parts = _intervals(r, UserSelector(ranges=b.ranges, prefixes=b.prefixes))
        if parts:
            return _member(r, min(low for low, _ in parts))
    for r in b.ranges:
        parts = _intervals(r, UserSelector(prefixes=a.prefixes))
        if parts:
            return _member(r, min(low for low, _ in parts))
    for p in a.prefixes:
        for q in b.prefixes:
            if p.startswith(q) or q.startswith(p):
                return f"{max(p, q, key=len)}*"
    return None


def unserved_user(users: PrimaryPolicy, servers: Sequence[UserSelector]) -> str | None:
    """A user of the system that no server takes, or None when all are served."""
    for rule in users.rules:
        for name in sorted(rule.selector.names):
            if not any(s.matches(name) for s in servers):
                return name
        for r in rule.selector.ranges:
            gap = _first_gap(r, [i for s in servers for i in _intervals(r, s)])
            if gap is not None:
                return _member(r, gap)
    return None


def _first_gap(r: UserRange, taken: list[tuple[int, int]]) -> int | None:
    next_free = r.first
    for low, high in sorted(taken):
        if low > next_free:
            return next_free
        next_free = max(next_free, high + 1)
    return next_free if next_free <= r.last else None
