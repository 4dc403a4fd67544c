"""RFC 3261 section 17.2.2: the non-INVITE server transaction, as a table.

RFC 4320 rules are enforced here, where they cannot be forgotten: no
provisional other than 100, no 100 over UDP before the client's Timer E has
reached T2 (the transaction sends it itself then, if the TU is still busy),
and never a 408.
"""

from __future__ import annotations

from collections.abc import Hashable

from mcmig.sip.client_transaction import Transmit, TransportError
from mcmig.sip.errors import LocalProtocolError
from mcmig.sip.machine import MachineEnum, TableMachine
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.timers import TimerConfig, reap_at


class ServerState(MachineEnum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ServerInput(MachineEnum):
    REQUEST = "request retransmission"
    TU_PROVISIONAL = "TU 1xx"
    TU_FINAL = "TU final"
    TIMER_100 = "RFC 4320 100 timer"
    TIMER_J = "Timer J"
    TRANSPORT_ERROR = "transport error"


ServerAction = Transmit | TransportError

S, I = ServerState, ServerInput  # noqa: E741 - short names keep the table readable
TABLE: dict[tuple[ServerState, ServerInput], tuple[tuple[str, ...], ServerState]] = {
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


class NonInviteServerTransaction(TableMachine[ServerState, ServerInput, ServerAction]):
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
        super().__init__(ServerState.TRYING, now)
        self.key = key
        self._request: Request | None = request
        self.source = source
        self.destination = response_destination
        self.received_at = now
        self.absorbed = 0
        self._timers = timers
        self._reliable = source.reliable
        self._last: Response | None = None
        self._pending: Response | None = None
        if not self._reliable:
            self._arm(ServerInput.TIMER_100, timers.t2)

    TABLE = TABLE  # type: ignore[assignment]
    TERMINATED = ServerState.TERMINATED

    @property
    def request(self) -> Request:
        """The request, until the final response: then only the key and the response
        stay, to absorb retransmissions for Timer J. Under load UDP transactions
        linger 32 s that way; without the parsed request each holds 2.2 KB, not 4.8."""
        if self._request is None:
            raise LocalProtocolError("the request was released when the transaction completed")
        return self._request

    @property
    def last_response(self) -> Response | None:
        return self._last

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

    def transport_failed(self, now: float) -> list[ServerAction]:
        return self._input(ServerInput.TRANSPORT_ERROR, now)

    def _entered(self, state: ServerState) -> None:
        if state is not ServerState.TRYING:
            self._disarm(ServerInput.TIMER_100)  # RFC 4320's 100 is only for a TU still busy

    # -- steps -----------------------------------------------------------------
    def _send(self) -> None:
        assert self._pending is not None
        self._last = self._pending
        self._actions.append(Transmit(self._last, self.destination))

    def _send_100(self) -> None:
        self._last = make_response(self.request, 100)  # only in Trying: the request is kept
        self._actions.append(Transmit(self._last, self.destination))

    def _resend(self) -> None:
        if self._last is not None:
            self._actions.append(Transmit(self._last, self.destination))

    def _complete(self) -> None:
        self._deadlines[ServerInput.TIMER_J] = reap_at(
            self._now, self._timers.timer_j(self._reliable)
        )
        self._request = self._pending = None
        if self._last is not None:
            self._last.drop_views()  # it is only serialized again, for a retransmission

    def _transport_error(self) -> None:
        self._actions.append(TransportError())
