"""RFC 3261 section 17.2.1 with RFC 6026: the INVITE server transaction, as a table.

The 100 Trying goes out at once. A 2xx moves to Accepted (Timer L); over
UDP the 2xx is retransmitted (T1 doubling to T2, 13.3.1.4) until the TU says
its ACK arrived. A non-2xx is retransmitted by Timer G until the ACK, which
the transaction absorbs (Confirmed, Timer I); no ACK by Timer H ends it.
"""

from __future__ import annotations

from collections.abc import Hashable

from mcmig.sip.client_transaction import Transmit, TransportError
from mcmig.sip.errors import LocalProtocolError
from mcmig.sip.machine import MachineEnum, TableMachine
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.timers import TimerConfig


class InviteServerState(MachineEnum):
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class InviteServerInput(MachineEnum):
    REQUEST = "INVITE retransmission"
    ACK = "ACK"
    ACKED_2XX = "TU: 2xx acknowledged"
    TU_PROVISIONAL = "TU 1xx"
    TU_SUCCESS = "TU 2xx"
    TU_FAILURE = "TU 300-699"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_L = "Timer L"
    RETRANSMIT_2XX = "2xx retransmission timer"
    TRANSPORT_ERROR = "transport error"


InviteServerAction = Transmit | TransportError

S, I = InviteServerState, InviteServerInput  # noqa: E741 - short names keep the table readable
TABLE: dict[
    tuple[InviteServerState, InviteServerInput], tuple[tuple[str, ...], InviteServerState]
] = {
    (S.PROCEEDING, I.REQUEST): (("resend",), S.PROCEEDING),
    (S.PROCEEDING, I.TU_PROVISIONAL): (("send",), S.PROCEEDING),
    (S.PROCEEDING, I.TU_SUCCESS): (("send", "accept"), S.ACCEPTED),
    (S.PROCEEDING, I.TU_FAILURE): (("send", "complete"), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): (("resend",), S.COMPLETED),
    (S.COMPLETED, I.TIMER_G): (("resend", "double_g"), S.COMPLETED),
    (S.COMPLETED, I.TIMER_H): (("transport_error",), S.TERMINATED),
    (S.COMPLETED, I.ACK): (("confirm",), S.CONFIRMED),
    (S.COMPLETED, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.CONFIRMED, I.ACK): ((), S.CONFIRMED),
    (S.CONFIRMED, I.REQUEST): ((), S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_I): ((), S.TERMINATED),
    (S.ACCEPTED, I.REQUEST): ((), S.ACCEPTED),  # RFC 6026: absorbed
    (S.ACCEPTED, I.TU_SUCCESS): (("send",), S.ACCEPTED),
    (S.ACCEPTED, I.RETRANSMIT_2XX): (("resend", "double_2xx"), S.ACCEPTED),
    (S.ACCEPTED, I.ACKED_2XX): (("stop_2xx",), S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_L): ((), S.TERMINATED),
}
del S, I


class InviteServerTransaction(
    TableMachine[InviteServerState, InviteServerInput, InviteServerAction]
):
    TABLE = TABLE  # type: ignore[assignment]
    TERMINATED = InviteServerState.TERMINATED

    def __init__(
        self,
        request: Request,
        source: TransportAddress,
        response_destination: TransportAddress,
        timers: TimerConfig,
        now: float,
        key: Hashable = None,
    ) -> None:
        super().__init__(InviteServerState.PROCEEDING, now)
        self.key = key
        self.request = request
        self.source = source
        self.destination = response_destination
        self._timers = timers
        self._reliable = source.reliable
        self._interval = timers.t1
        self._last = make_response(request, 100)
        self._pending: Response | None = None
        self._actions.append(Transmit(self._last, response_destination))

    @property
    def final_sent(self) -> bool:
        return self.state is not InviteServerState.PROCEEDING

    @property
    def last_response(self) -> Response:
        return self._last

    def respond(self, response: Response, now: float) -> list[InviteServerAction]:
        if self.final_sent and not (
            response.status // 100 == 2 and self.state is InviteServerState.ACCEPTED
        ):
            raise LocalProtocolError("a final response was already sent")
        self._pending = response
        if response.status < 200:
            kind = InviteServerInput.TU_PROVISIONAL
        elif response.status < 300:
            kind = InviteServerInput.TU_SUCCESS
        else:
            kind = InviteServerInput.TU_FAILURE
        return self._input(kind, now)

    def receive_retransmission(self, now: float) -> list[InviteServerAction]:
        return self._input(InviteServerInput.REQUEST, now)

    def receive_ack(self, now: float) -> list[InviteServerAction]:
        return self._input(InviteServerInput.ACK, now)

    def acknowledged(self, now: float) -> list[InviteServerAction]:
        """The TU saw the ACK of our 2xx: stop retransmitting it."""
        return self._input(InviteServerInput.ACKED_2XX, now)

    def transport_failed(self, now: float) -> list[InviteServerAction]:
        return self._input(InviteServerInput.TRANSPORT_ERROR, now)

    def _send(self) -> None:
        assert self._pending is not None
        self._last = self._pending
        self._actions.append(Transmit(self._last, self.destination))

    def _resend(self) -> None:
        self._actions.append(Transmit(self._last, self.destination))

    def _accept(self) -> None:
        self._deadlines[InviteServerInput.TIMER_L] = self._now + 64 * self._timers.t1
        if not self._reliable:
            self._interval = self._timers.t1
            self._deadlines[InviteServerInput.RETRANSMIT_2XX] = self._now + self._interval

    def _double_2xx(self) -> None:
        self._interval = min(2 * self._interval, self._timers.t2)
        self._deadlines[InviteServerInput.RETRANSMIT_2XX] = self._now + self._interval

    def _stop_2xx(self) -> None:
        self._deadlines.pop(InviteServerInput.RETRANSMIT_2XX, None)

    def _complete(self) -> None:
        self._deadlines[InviteServerInput.TIMER_H] = self._now + 64 * self._timers.t1
        if not self._reliable:
            self._interval = self._timers.t1
            self._deadlines[InviteServerInput.TIMER_G] = self._now + self._interval

    def _double_g(self) -> None:
        self._interval = min(2 * self._interval, self._timers.t2)
        self._deadlines[InviteServerInput.TIMER_G] = self._now + self._interval

    def _confirm(self) -> None:
        self._deadlines.pop(InviteServerInput.TIMER_G, None)
        self._deadlines.pop(InviteServerInput.TIMER_H, None)
        self._deadlines[InviteServerInput.TIMER_I] = self._now + (
            0.0 if self._reliable else self._timers.t4
        )

    def _transport_error(self) -> None:
        self._actions.append(TransportError())
