"""RFC 3261 section 17 transaction layer: matching, timers, events for the TU.

Sans-I/O: the caller feeds parsed messages and ``now``, then drains
``take_outgoing()`` and re-arms one timer at ``next_deadline()``.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from mcmig.sip.client_transaction import (
    DeliverResponse,
    NonInviteClientTransaction,
    Timeout,
    Transmit,
    TransportError,
)
from mcmig.sip.errors import SipParseError
from mcmig.sip.invite_client_transaction import InviteClientTransaction
from mcmig.sip.invite_server_transaction import InviteServerState, InviteServerTransaction
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress, response_destination
from mcmig.sip.server_transaction import NonInviteServerTransaction
from mcmig.sip.timers import TimerConfig
from mcmig.sip.via import parse_via

ClientTransaction = NonInviteClientTransaction | InviteClientTransaction
ServerTransaction = NonInviteServerTransaction | InviteServerTransaction
Transaction = ClientTransaction | ServerTransaction


# Not frozen, for speed, like the transactions' actions (client_transaction.py).
@dataclass(slots=True)
class RequestReceived:
    """A new request. ``transaction`` is None for an ACK of a 2xx (it has none)."""

    request: Request
    source: TransportAddress
    transaction: ServerTransaction | None


@dataclass(slots=True)
class ResponseReceived:
    response: Response
    transaction: ClientTransaction


@dataclass(slots=True)
class TransactionTimedOut:
    transaction: ClientTransaction


@dataclass(slots=True)
class TransactionFailed:
    transaction: Transaction


Event = RequestReceived | ResponseReceived | TransactionTimedOut | TransactionFailed


def quoted_request_key(quoted: bytes) -> tuple[str, str] | None:
    """The client transaction key (branch, method) of a request whose start an
    ICMP error quotes; None for a response or a quote cut before the top Via's end."""
    lines = quoted.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    if not rest or method.startswith(b"SIP/"):
        return None
    for line in lines[1:-1]:  # the last may be cut short
        name, colon, value = line.partition(b":")
        if colon and name.strip(b" \t").lower() in (b"via", b"v"):
            try:
                via = parse_via(value.decode("ascii").split(",", 1)[0].strip(" \t"))
            except (UnicodeDecodeError, SipParseError):
                return None
            return None if via.branch is None else (via.branch, method.decode("ascii"))
    return None


def server_transaction_key(request: Request) -> Hashable:
    """17.2.3 matching: branch + sent-by + method, or the RFC 2543 fallback."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if via.rfc3261_branch:
        return (via.branch, via.sent_by, method)
    return (
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
    )


class TransactionLayer:
    def __init__(self, timers: TimerConfig | None = None) -> None:
        self.timers = timers or TimerConfig()
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self.server: dict[Hashable, ServerTransaction] = {}
        # 2xx-answered INVITEs by (Call-ID, CSeq number): their ACK has its own branch
        self._accepted: dict[tuple[str, int], InviteServerTransaction] = {}
        self.stray_responses = 0
        self._outgoing: list[Transmit] = []
        self._heap: list[tuple[float, int, Transaction]] = []
        self._earliest_pushed = math.inf
        self._scheduled: dict[int, float] = {}
        self._seq = itertools.count()

    # -- TU requests -----------------------------------------------------------
    def send_request(
        self,
        request: Request,
        destination: TransportAddress,
        now: float,
        timeout: float | None = None,
    ) -> ClientTransaction:
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(request, destination, self.timers, now)
        else:
            txn = NonInviteClientTransaction(request, destination, self.timers, now, timeout)
        self.client[txn.key] = txn
        self._apply(txn, txn.take_actions())
        return txn

    def respond(self, txn: ServerTransaction, response: Response, now: float) -> None:
        self._apply(txn, txn.respond(response, now))
        if isinstance(txn, InviteServerTransaction) and txn.state is InviteServerState.ACCEPTED:
            self._accepted[(txn.request.call_id, txn.request.cseq.seq)] = txn

    def invite_for_cancel(self, cancel: Request) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL targets (9.2): same branch and sent-by."""
        via = cancel.top_via
        txn = self.server.get((via.branch, via.sent_by, "INVITE"))
        return txn if isinstance(txn, InviteServerTransaction) else None

    # -- network input ---------------------------------------------------------
    def receive_request(
        self, request: Request, source: TransportAddress, now: float
    ) -> list[Event]:
        key = server_transaction_key(request)
        txn = self.server.get(key)
        if request.method == "ACK":
            if (
                isinstance(txn, InviteServerTransaction)
                and txn.state is not InviteServerState.ACCEPTED
            ):
                self._apply(txn, txn.receive_ack(now))  # the ACK of our non-2xx: ours to absorb
                return []
            accepted = self._accepted.get((request.call_id, request.cseq.seq))
            if accepted is not None:
                self._apply(accepted, accepted.acknowledged(now))
            return [RequestReceived(request, source, None)]
        if txn is not None:
            self._apply(txn, txn.receive_retransmission(now))
            return []
        destination = response_destination(request.top_via, source)
        new: ServerTransaction
        if request.method == "INVITE":
            new = InviteServerTransaction(request, source, destination, self.timers, now, key)
        else:
            new = NonInviteServerTransaction(request, source, destination, self.timers, now, key)
        self.server[key] = new
        self._apply(new, new.take_actions())
        return [RequestReceived(request, source, new)]

    def has_server_transaction(self, request: Request) -> bool:
        """Whether ``request`` belongs to a server transaction already (a retransmission)."""
        return server_transaction_key(request) in self.server

    def receive_response(self, response: Response, now: float) -> list[Event]:
        via = response.top_via
        txn = self.client.get((via.branch or "", response.cseq.method))
        if txn is None:
            # 17.1.3: no match means the response is dropped (we are no proxy).
            self.stray_responses += 1
            return []
        return self._apply(txn, txn.receive_response(response, now))

    def transport_failed(self, destination: TransportAddress, now: float) -> list[Event]:
        """A connection or send failed: every transaction using it ends."""
        events: list[Event] = []
        for ctxn in [t for t in self.client.values() if t.destination == destination]:
            events += self._apply(ctxn, ctxn.transport_failed(now))
        for stxn in [t for t in self.server.values() if t.destination == destination]:
            events += self._apply(stxn, stxn.transport_failed(now))
        return events

    def unreachable(self, destination: TransportAddress, quoted: bytes, now: float) -> list[Event]:
        """An ICMP error came back for a datagram to ``destination`` (RFC 3261 18.4).

        The error quotes the start of that datagram; when it is one of our
        requests, its top Via and method name the client transaction, which
        ends if it has been trying for the unreachable grace. A younger one
        keeps retransmitting (a peer restarting may be back for the next
        datagram), and the error that datagram brings decides again. Errors
        for responses, and quotes too short to name a transaction, change
        nothing: the transactions then end by their timers, as without ICMP.
        """
        key = quoted_request_key(quoted)
        txn = None if key is None else self.client.get(key)
        if (
            txn is None
            or txn.destination != destination
            or txn.started > now - self.timers.unreachable_grace
        ):
            return []
        return self._apply(txn, txn.transport_failed(now))

    # -- time ------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, txn = heap[0]
            if self._scheduled.get(id(txn)) == deadline and not txn.terminated:
                return deadline
            heapq.heappop(heap)
        return None

    def take_earliest_scheduled(self) -> float:
        """The earliest deadline scheduled since the last call (inf if none).

        A timer already armed no later than this finds everything due when it
        fires, so the caller need not look at the heap again."""
        earliest, self._earliest_pushed = self._earliest_pushed, math.inf
        return earliest

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn = heapq.heappop(heap)
            if self._scheduled.get(id(txn)) != deadline or txn.terminated:
                continue
            del self._scheduled[id(txn)]
            events += self._apply(txn, txn.handle_timer(now))
        return events

    def take_outgoing(self) -> list[Transmit]:
        out, self._outgoing = self._outgoing, []
        return out

    @property
    def active(self) -> int:
        return len(self.client) + len(self.server) + len(self._accepted)

    @property
    def scheduled(self) -> int:
        """Timer entries still queued, stale ones included until their deadline passes."""
        return len(self._heap)

    # -- internals -------------------------------------------------------------
    def _apply(self, txn: Transaction, actions: Sequence[object]) -> list[Event]:
        events: list[Event] = []
        for action in actions:
            if isinstance(action, Transmit):
                self._outgoing.append(action)
            elif isinstance(action, DeliverResponse):
                assert isinstance(txn, NonInviteClientTransaction | InviteClientTransaction)
                events.append(ResponseReceived(action.response, txn))
            elif isinstance(action, Timeout):
                assert isinstance(txn, NonInviteClientTransaction | InviteClientTransaction)
                events.append(TransactionTimedOut(txn))
            elif isinstance(action, TransportError):
                events.append(TransactionFailed(txn))
        if txn.terminated:
            self._forget(txn)
        else:
            self._schedule(txn)
        return events

    def _schedule(self, txn: Transaction) -> None:
        deadline = txn.next_deadline()
        if deadline is None:
            self._scheduled.pop(id(txn), None)
            return
        if self._scheduled.get(id(txn)) != deadline:
            self._scheduled[id(txn)] = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), txn))
            if deadline < self._earliest_pushed:
                self._earliest_pushed = deadline

    def _forget(self, txn: Transaction) -> None:
        self._scheduled.pop(id(txn), None)
        if isinstance(txn, NonInviteClientTransaction | InviteClientTransaction):
            if self.client.get(txn.key) is txn:
                del self.client[txn.key]
            return
        if self.server.get(txn.key) is txn:
            del self.server[txn.key]
        if isinstance(txn, InviteServerTransaction):
            accepted = (txn.request.call_id, txn.request.cseq.seq)
            if self._accepted.get(accepted) is txn:
                del self._accepted[accepted]
