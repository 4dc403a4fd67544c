"""The driver shared by the transaction state machines: a table, timers, actions.

A machine is a table from (state, input) to (steps, next state); steps name
methods ``_<step>`` of the machine. Inputs missing from the table are ones
the RFC says to ignore in that state. Timers are inputs too: each armed
timer has a deadline, and ``handle_timer(now)`` feeds the expired ones in
deadline order. Nothing here knows about clocks or sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar


class MachineEnum(Enum):
    """States and inputs of the tables. Members are singletons, so identity hashing
    (a C slot) serves; Enum's own hash is Python code run on every table lookup."""

    __hash__ = object.__hash__


S = TypeVar("S", bound=Enum)
I = TypeVar("I", bound=Enum)  # noqa: E741 - the table's input type
A = TypeVar("A")

Table = dict[tuple[S, I], tuple[tuple[str, ...], S]]


class TableMachine(Generic[S, I, A]):
    TABLE: ClassVar[dict[tuple[Enum, Enum], tuple[tuple[str, ...], Enum]]]
    TERMINATED: ClassVar[Enum]

    # TABLE with each step name resolved to its method, once per class.
    _COMPILED: ClassVar[dict[tuple[Enum, Enum], tuple[tuple[Callable[[Any], None], ...], Enum]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = getattr(cls, "TABLE", None)
        if table is not None:
            cls._COMPILED = {
                key: (tuple(getattr(cls, "_" + step) for step in steps), next_state)
                for key, (steps, next_state) in table.items()
            }

    def __init__(self, state: S, now: float) -> None:
        self.state = state
        self._now = now
        self._actions: list[A] = []
        self._deadlines: dict[I, float] = {}

    @property
    def terminated(self) -> bool:
        return self.state is self.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def take_actions(self) -> list[A]:
        actions, self._actions = self._actions, []
        return actions

    def handle_timer(self, now: float) -> list[A]:
        for timer, deadline in sorted(self._deadlines.items(), key=lambda item: item[1]):
            if deadline <= now and timer in self._deadlines:
                del self._deadlines[timer]
                self._apply(timer, deadline)
        return self.take_actions()

    def _input(self, kind: I, now: float) -> list[A]:
        self._apply(kind, now)
        return self.take_actions()

    def _apply(self, kind: I, now: float) -> None:
        entry = self._COMPILED.get((self.state, kind))
        if entry is None:
            return
        steps, next_state = entry
        self._now = now
        for step in steps:
            step(self)
        self.state = next_state  # type: ignore[assignment]
        self._entered(next_state)  # type: ignore[arg-type]
        if self.terminated:
            self._deadlines.clear()

    def _entered(self, state: S) -> None:
        """A hook for what entering a state always does."""

    def _arm(self, timer: I, delay: float) -> None:
        self._deadlines[timer] = self._now + delay

    def _disarm(self, *timers: I) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)
