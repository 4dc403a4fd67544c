"""Process limits of a node: open files raised, repeated log lines bounded (fake clock)."""

from __future__ import annotations

import logging
import resource

import pytest

from mcmig.node.limits import RepeatFilter, raise_open_file_limit


def _record(msg: str, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_a_repeated_fault_is_logged_once_per_window_with_a_count() -> None:
    now = [0.0]
    repeat = RepeatFilter(window=10, clock=lambda: now[0])
    passed = []
    for i in range(162_585):  # what one accept error did in 45 s
        now[0] = i * 45 / 162_585
        record = _record("socket.accept() out of system resource")
        if repeat.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 5  # at 0, 10, 20, 30 and 40 s
    assert passed[0] == "socket.accept() out of system resource"
    assert passed[1].endswith("more like it in the last 10 s)")
    held = [int(p.rsplit("(", 1)[1].split()[0]) for p in passed[1:]]
    assert all(n > 30_000 for n in held)


def test_different_messages_are_not_held_back_by_each_other() -> None:
    repeat = RepeatFilter(window=10, clock=lambda: 0.0)
    assert repeat.filter(_record("a")) and repeat.filter(_record("b"))
    assert repeat.filter(_record("a", name="mcmig.transport"))
    assert not repeat.filter(_record("a"))


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = {"now": (1024, 524288)}
    monkeypatch.setattr(resource, "getrlimit", lambda kind: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda kind, value: limits.update(now=value))
    assert raise_open_file_limit() == (524288, 524288)
    assert limits["now"] == (524288, 524288)
