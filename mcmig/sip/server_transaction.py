"""RFC 3261 section 17.2.2: the non-INVITE server transaction, as a table.

RFC 4320 rules are enforced here, where they cannot be forgotten: no
provisional other than 100, no 100 over UDP before the client's Timer E has
reached T2 (the transaction sends it itself then, if the TU is still busy),
and never a 408.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import Enum

from mcmig.sip.client_transaction import Transmit, TransportError
from mcmig.sip.errors import LocalProtocolError
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.timers import TimerConfig


class ServerState(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ServerInput(Enum):
    REQUEST = "request retransmission"
    TU_PROVISIONAL = "TU 1xx"
    TU_FINAL = "TU final"
    TIMER_100 = "RFC 4320 100 timer"
    TIMER_J = "Timer J"
    TRANSPORT_ERROR = "transport error"


ServerAction = Transmit | TransportError

S, I = ServerState, ServerInput  # noqa: E741 - short names keep the table readable
_TABLE: dict[tuple[ServerState, ServerInput], tuple[tuple[str, ...], ServerState]] = {
    (S.TRYING, I.REQUEST): ((), S.TRYING),
    (S.TRYING, I.TU_PROVISIONAL): (("send",), S.PROCEEDING),
    (S.TRYING, I.TU_FINAL): (("send", "complete"), S.COMPLETED),
    (S.TRYING, I.TIMER_100): (("send_100",), S.PROCEEDING),
    (S.TRYING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.PROCEEDING, I.REQUEST): (("resend",), S.PROCEEDING),
    (S.PROCEEDING, I.TU_PROVISIONAL): (("send",), S.PROCEEDING),
    (S.PROCEEDING, I.TU_FINAL): (("send", "complete"), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): (("resend",), S.COMPLETED),
    (S.COMPLETED, I.TIMER_J): ((), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((), S.TERMINATED),
}
del S, I


class NonInviteServerTransaction:
    """Receives one non-INVITE request and carries the TU's responses to it."""

    def __init__(
        self,
        request: Request,
        source: TransportAddress,
        response_destination: TransportAddress,
        timers: TimerConfig,
        now: float,
        key: Hashable = None,
    ) -> None:
        self.key = key
        self.request = request
        self.source = source
        self.destination = response_destination
        self.state = ServerState.TRYING
        self.received_at = now
        self.absorbed = 0
        self._timers = timers
        self._reliable = source.reliable
        self._last: Response | None = None
        self._pending: Response | None = None
        self._actions: list[ServerAction] = []
        self._deadlines: dict[ServerInput, float] = {}
        if not self._reliable:
            self._deadlines[ServerInput.TIMER_100] = now + timers.t2
        self._now = now

    @property
    def terminated(self) -> bool:
        return self.state is ServerState.TERMINATED

    @property
    def last_response(self) -> Response | None:
        return self._last

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def take_actions(self) -> list[ServerAction]:
        actions, self._actions = self._actions, []
        return actions

    # -- inputs ----------------------------------------------------------------
    def receive_retransmission(self, now: float) -> list[ServerAction]:
        self.absorbed += 1
        return self._input(ServerInput.REQUEST, now)

    def respond(self, response: Response, now: float) -> list[ServerAction]:
        status = response.status
        if status == 408:
            raise LocalProtocolError("RFC 4320: a non-INVITE transaction never answers 408")
        if status < 200:
            if status != 100:
                raise LocalProtocolError("RFC 4320: no provisional but 100 to a non-INVITE")
            if not self._reliable and now < self.received_at + self._timers.t2:
                return []  # too early over UDP; TIMER_100 covers a slow TU
        if self.state is ServerState.COMPLETED and status >= 200:
            raise LocalProtocolError("a second final response to one request")
        self._pending = response
        kind = ServerInput.TU_PROVISIONAL if status < 200 else ServerInput.TU_FINAL
        return self._input(kind, now)

    def handle_timer(self, now: float) -> list[ServerAction]:
        for timer, deadline in sorted(self._deadlines.items(), key=lambda item: item[1]):
            if deadline <= now and timer in self._deadlines:
                del self._deadlines[timer]
                self._apply(timer, deadline)
        return self.take_actions()

    def transport_failed(self, now: float) -> list[ServerAction]:
        return self._input(ServerInput.TRANSPORT_ERROR, now)

    def _input(self, kind: ServerInput, now: float) -> list[ServerAction]:
        self._apply(kind, now)
        return self.take_actions()

    def _apply(self, kind: ServerInput, now: float) -> None:
        entry = _TABLE.get((self.state, kind))
        if entry is not None:
            steps, next_state = entry
            self._now = now
            for step in steps:
                getattr(self, "_" + step)()
            self.state = next_state
            if next_state is not ServerState.TRYING:
                self._deadlines.pop(ServerInput.TIMER_100, None)
            if next_state is ServerState.TERMINATED:
                self._deadlines.clear()

    # -- steps -----------------------------------------------------------------
    def _send(self) -> None:
        assert self._pending is not None
        self._last = self._pending
        self._actions.append(Transmit(self._last, self.destination))

    def _send_100(self) -> None:
        self._last = make_response(self.request, 100)
        self._actions.append(Transmit(self._last, self.destination))

    def _resend(self) -> None:
        if self._last is not None:
            self._actions.append(Transmit(self._last, self.destination))

    def _complete(self) -> None:
        self._deadlines[ServerInput.TIMER_J] = self._now + self._timers.timer_j(self._reliable)

    def _transport_error(self) -> None:
        self._actions.append(TransportError())
