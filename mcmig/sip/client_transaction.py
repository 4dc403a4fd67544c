"""RFC 3261 section 17.1.2: the non-INVITE client transaction, as a table.

The machine is sans-I/O: inputs come with ``now``; it answers with actions
for the transaction layer and exposes its next deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcmig.sip.errors import LocalProtocolError
from mcmig.sip.machine import MachineEnum, TableMachine
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.timers import TimerConfig, reap_at


class ClientState(MachineEnum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ClientInput(MachineEnum):
    PROVISIONAL = "1xx"
    FINAL = "final"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_K = "Timer K"
    TRANSPORT_ERROR = "transport error"


# Actions and events are made for every message and never changed after; they are
# not frozen only because a frozen dataclass sets each field through
# object.__setattr__, 1% of a relayed transaction's instructions.
@dataclass(slots=True)
class Transmit:
    message: Request | Response
    destination: TransportAddress


@dataclass(slots=True)
class DeliverResponse:
    response: Response


@dataclass(slots=True)
class Timeout:
    """Timer F fired: no final response. The TU must not answer 408 upstream (RFC 4320)."""


@dataclass(slots=True)
class TransportError:
    pass


ClientAction = Transmit | DeliverResponse | Timeout | TransportError

S, I = ClientState, ClientInput  # noqa: E741 - short names keep the table readable
# (state, input) -> (steps, next state). Steps name methods of the machine.
# Pairs not listed are inputs the RFC says to ignore in that state.
TABLE: dict[tuple[ClientState, ClientInput], tuple[tuple[str, ...], ClientState]] = {
    (S.TRYING, I.PROVISIONAL): (("deliver",), S.PROCEEDING),
    (S.TRYING, I.FINAL): (("deliver", "complete"), S.COMPLETED),
    (S.TRYING, I.TIMER_E): (("retransmit", "double_e"), S.TRYING),
    (S.TRYING, I.TIMER_F): (("timeout",), S.TERMINATED),
    (S.TRYING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.PROCEEDING, I.PROVISIONAL): (("deliver",), S.PROCEEDING),
    (S.PROCEEDING, I.FINAL): (("deliver", "complete"), S.COMPLETED),
    # 17.1.2.2: in Proceeding, Timer E is reset to T2 after each retransmission.
    (S.PROCEEDING, I.TIMER_E): (("retransmit", "e_at_t2"), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_F): (("timeout",), S.TERMINATED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (("transport_error",), S.TERMINATED),
    (S.COMPLETED, I.PROVISIONAL): ((), S.COMPLETED),
    (S.COMPLETED, I.FINAL): ((), S.COMPLETED),
    (S.COMPLETED, I.TIMER_K): ((), S.TERMINATED),
}
del S, I


class NonInviteClientTransaction(TableMachine[ClientState, ClientInput, ClientAction]):
    """Sends one non-INVITE request and waits for its final response."""

    def __init__(
        self,
        request: Request,
        destination: TransportAddress,
        timers: TimerConfig,
        now: float,
        timeout: float | None = None,
    ) -> None:
        super().__init__(ClientState.TRYING, now)
        self._request: Request | None = request
        self.destination = destination
        self.started = now
        self.branch = request.top_via.branch or ""
        self.method = request.method
        self.retransmissions = 0
        self._timers = timers
        self._reliable = destination.reliable
        self._interval = timers.t1
        self._response: Response | None = None
        self._actions.append(Transmit(request, destination))
        # A B2BUA may ask for a timeout shorter than Timer F, so that its own
        # upstream hears a 504 before the upstream's Timer F fires.
        f = timers.timer_f if timeout is None else min(timeout, timers.timer_f)
        self._arm(ClientInput.TIMER_F, f)
        if not self._reliable:
            self._arm(ClientInput.TIMER_E, timers.t1)

    TABLE = TABLE  # type: ignore[assignment]
    TERMINATED = ClientState.TERMINATED

    @property
    def key(self) -> tuple[str, str]:
        return (self.branch, self.method)

    @property
    def request(self) -> Request:
        """The request, until the final response: Completed only absorbs
        retransmitted responses (Timer K), for which the key is enough."""
        if self._request is None:
            raise LocalProtocolError("the request was released when the transaction completed")
        return self._request

    # -- inputs ----------------------------------------------------------------
    def receive_response(self, response: Response, now: float) -> list[ClientAction]:
        self._response = response
        kind = ClientInput.PROVISIONAL if response.status < 200 else ClientInput.FINAL
        return self._input(kind, now)

    def transport_failed(self, now: float) -> list[ClientAction]:
        return self._input(ClientInput.TRANSPORT_ERROR, now)

    # -- steps -----------------------------------------------------------------
    def _deliver(self) -> None:
        assert self._response is not None
        self._actions.append(DeliverResponse(self._response))

    def _complete(self) -> None:
        self._deadlines.pop(ClientInput.TIMER_E, None)
        self._deadlines.pop(ClientInput.TIMER_F, None)
        self._deadlines[ClientInput.TIMER_K] = reap_at(
            self._now, self._timers.timer_k(self._reliable)
        )
        self._request = self._response = None

    def _retransmit(self) -> None:
        self.retransmissions += 1
        self._actions.append(Transmit(self.request, self.destination))

    def _double_e(self) -> None:
        self._interval = min(2 * self._interval, self._timers.t2)
        self._deadlines[ClientInput.TIMER_E] = self._now + self._interval

    def _e_at_t2(self) -> None:
        self._interval = self._timers.t2
        self._deadlines[ClientInput.TIMER_E] = self._now + self._interval

    def _timeout(self) -> None:
        self._actions.append(Timeout())

    def _transport_error(self) -> None:
        self._actions.append(TransportError())
