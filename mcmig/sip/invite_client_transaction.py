"""RFC 3261 section 17.1.1 with RFC 6026: the INVITE client transaction, as a table.

Non-2xx finals are acknowledged here (the ACK is part of the transaction);
2xx finals are passed to the TU, which sends its own ACK, and the Accepted
state (Timer M) lets 2xx retransmissions reach the TU so it can ACK them again.
"""

from __future__ import annotations

from mcmig.sip.client_transaction import DeliverResponse, Timeout, Transmit, TransportError
from mcmig.sip.machine import MachineEnum, TableMachine
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.timers import TimerConfig


class InviteClientState(MachineEnum):
    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class InviteClientInput(MachineEnum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"


InviteClientAction = Transmit | DeliverResponse | Timeout | TransportError

S, I = InviteClientState, InviteClientInput  # noqa: E741 - short names keep the table readable
TABLE: dict[
    tuple[InviteClientState, InviteClientInput], tuple[tuple[str, ...], InviteClientState]
] = {
    (S.CALLING, I.PROVISIONAL): (("deliver", "stop_calling_timers"), S.PROCEEDING),
    (S.CALLING, I.SUCCESS): (("deliver", "accept"), S.ACCEPTED),
    (S.CALLING, I.FAILURE): (("deliver", "ack", "complete"), S.COMPLETED),
    (S.CALLING, I.TIMER_A): (("retransmit", "double_a"), S.CALLING),
    (S.CALLING, I.TIMER_B): (("timeout",), S.TERMINATED),
    (S.CALLING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.PROCEEDING, I.PROVISIONAL): (("deliver",), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): (("deliver", "accept"), S.ACCEPTED),
    (S.PROCEEDING, I.FAILURE): (("deliver", "ack", "complete"), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.COMPLETED, I.FAILURE): (("ack",), S.COMPLETED),  # our ACK was lost: send it again
    (S.COMPLETED, I.TIMER_D): ((), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((), S.TERMINATED),
    (S.ACCEPTED, I.SUCCESS): (("deliver",), S.ACCEPTED),  # RFC 6026: the TU ACKs again
    (S.ACCEPTED, I.TIMER_M): ((), S.TERMINATED),
}
del S, I


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK of a non-2xx final (17.1.1.3): same branch, To from the response."""
    headers = [("Via", invite.get("Via") or "")]
    headers += [(n, v) for n, v in invite.headers if n == "Route"]
    headers += [
        ("Max-Forwards", "70"),
        ("From", invite.get("From") or ""),
        ("To", response.get("To") or ""),
        ("Call-ID", invite.get("Call-ID") or ""),
        ("CSeq", f"{invite.cseq.seq} ACK"),
    ]
    return Request("ACK", invite.uri, headers)


class InviteClientTransaction(
    TableMachine[InviteClientState, InviteClientInput, InviteClientAction]
):
    TABLE = TABLE  # type: ignore[assignment]
    TERMINATED = InviteClientState.TERMINATED

    def __init__(
        self, request: Request, destination: TransportAddress, timers: TimerConfig, now: float
    ) -> None:
        super().__init__(InviteClientState.CALLING, now)
        self.started = now
        self.request = request
        self.destination = destination
        self.branch = request.top_via.branch or ""
        self.method = "INVITE"
        self.retransmissions = 0
        self._timers = timers
        self._reliable = destination.reliable
        self._interval = timers.t1
        self._response: Response | None = None
        self._actions: list[InviteClientAction] = [Transmit(request, destination)]
        self._deadlines: dict[InviteClientInput, float] = {
            InviteClientInput.TIMER_B: now + 64 * timers.t1
        }
        if not self._reliable:
            self._deadlines[InviteClientInput.TIMER_A] = now + timers.t1
        self._now = now

    @property
    def key(self) -> tuple[str, str]:
        return (self.branch, self.method)

    @property
    def answered(self) -> bool:
        return self.state in (
            InviteClientState.COMPLETED,
            InviteClientState.ACCEPTED,
            InviteClientState.TERMINATED,
        )

    def receive_response(self, response: Response, now: float) -> list[InviteClientAction]:
        self._response = response
        if response.status < 200:
            kind = InviteClientInput.PROVISIONAL
        elif response.status < 300:
            kind = InviteClientInput.SUCCESS
        else:
            kind = InviteClientInput.FAILURE
        return self._input(kind, now)

    def transport_failed(self, now: float) -> list[InviteClientAction]:
        return self._input(InviteClientInput.TRANSPORT_ERROR, now)

    def _deliver(self) -> None:
        assert self._response is not None
        self._actions.append(DeliverResponse(self._response))

    def _stop_calling_timers(self) -> None:
        self._deadlines.pop(InviteClientInput.TIMER_A, None)
        self._deadlines.pop(InviteClientInput.TIMER_B, None)

    def _accept(self) -> None:
        self._stop_calling_timers()
        self._deadlines[InviteClientInput.TIMER_M] = self._now + 64 * self._timers.t1

    def _ack(self) -> None:
        assert self._response is not None
        self._actions.append(Transmit(ack_for(self.request, self._response), self.destination))

    def _complete(self) -> None:
        self._stop_calling_timers()
        self._deadlines[InviteClientInput.TIMER_D] = self._now + (0.0 if self._reliable else 32.0)

    def _retransmit(self) -> None:
        self.retransmissions += 1
        self._actions.append(Transmit(self.request, self.destination))

    def _double_a(self) -> None:
        self._interval *= 2  # Timer A doubles without a cap (17.1.1.2)
        self._deadlines[InviteClientInput.TIMER_A] = self._now + self._interval

    def _timeout(self) -> None:
        self._actions.append(Timeout())

    def _transport_error(self) -> None:
        self._actions.append(TransportError())
