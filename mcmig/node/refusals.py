"""What a node answers without its handlers: refusals (RFC 3261 8.2.2), stateless
answers to malformed requests, and load shedding.

The base class of SipNode (after InviteUsage), kept apart so that runtime.py
only moves messages between transports, transactions and handlers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcmig.node.invite_usage import InviteHandler, InviteUsage
from mcmig.sip.errors import SipParseError
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress, response_destination, stamp_received
from mcmig.sip.responses import make_response
from mcmig.sip.transaction_layer import server_transaction_key
from mcmig.sip.uri import SipUri

if TYPE_CHECKING:
    from mcmig.node.runtime import Handler, Observer
    from mcmig.transport.udp import UdpTransport

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
# How long a request refused statelessly stays refused (Timer J for UDP, 64*T1),
# and how many such requests are remembered at most.
SHED_MEMORY_S = 32.0
SHED_MEMORY_MAX = 65536
# What a node with calls on handles besides its handlers' methods.
CALL_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "INFO", "UPDATE"})

# The refusal for a request from a sender that may not talk to a node at all, or None.
Gatekeeper = Callable[[Request, TransportAddress], Response | None]


class Refusals(InviteUsage):
    # Set and provided by SipNode (stats, log, layer and _send come with InviteUsage).
    handlers: dict[str, Handler]
    max_pending: int
    max_queue_delay: float | None
    _queue_delay_since: float
    _udp: UdpTransport | None
    observers: list[Observer]
    retry_after: int
    public_name: str
    shed_body: bytes | None
    shed_content_type: str
    # Server transaction keys of requests refused statelessly, and until when a
    # copy of one gets the same refusal: see _shed_statelessly.
    _shed_keys: dict[object, float]
    # Set by a node at a system's border: the refusal for a request from a sender
    # that may not talk to us at all, or None to let it in.
    gatekeeper: Gatekeeper | None
    invite_handler: InviteHandler | None

    @property
    def address(self) -> str:
        raise NotImplementedError

    @property
    def in_progress(self) -> int:
        raise NotImplementedError

    def _local(self, transport: str) -> TransportAddress:
        raise NotImplementedError

    def _reject(self, exc: SipParseError, source: TransportAddress) -> None:
        """Answer a malformed request statelessly when its headers allow, else drop it."""
        self.stats.malformed += 1
        partial = exc.partial
        if (
            isinstance(partial, Request)
            and partial.method != "ACK"
            and all(partial.has(h) for h in ("Via", "From", "To", "Call-ID", "CSeq"))
        ):
            try:
                # received and rport first: the answer goes where the request came
                # from (RFC 3581), which for a client behind NAT is not its sent-by.
                stamp_received(partial, source)
                response = make_response(
                    partial, exc.status, headers=[("Warning", self._warning(exc))]
                )
                destination = self._stateless_destination(partial, source)
            except SipParseError:
                pass
            else:
                self.stats.answered_malformed += 1
                self.log.info(
                    "answered %d to malformed request from %s: %s", exc.status, source, exc.reason
                )
                self._send(response, destination)
                return
        self.log.info("dropped malformed message from %s: %s", source, exc.reason)

    def _warning(self, exc: SipParseError) -> str:
        # PROFILE 2.5: the system's public name as agent, the cause token first.
        text = exc.reason.replace("\\", "").replace('"', "'")
        if exc.status == 400:
            text = f"bad-request: {text}"
        return f'399 {self.public_name} "{text}"'

    def _turned_away(self, request: Request, source: TransportAddress) -> bool:
        """A request from a sender the gatekeeper refuses: answered without a
        transaction (a refusal retransmitted over 32 s would reflect eleven
        times over), an ACK dropped; logged at a bounded rate."""
        if self.gatekeeper is None:
            return False
        refusal = self.gatekeeper(request, source)
        if refusal is None:
            return False
        self.stats.turned_away += 1
        if self.stats.turned_away % 1000 == 1:
            self.log.warning(
                "refused %s from %s: not a peer (%d so far)",
                request.method,
                source,
                self.stats.turned_away,
            )
        if request.method != "ACK":
            self._send(refusal, self._stateless_destination(request, source))
        return True

    def _overloaded(self, request: Request) -> bool:
        """Too much in hand already: new work is refused early, at almost no cost,
        rather than accepted and left to time out (which makes peers retransmit)."""
        if request.method == "OPTIONS":
            return False
        return self.in_progress >= self.max_pending or self._queued_too_long()

    def shed_requests_queued_longer_than(self, seconds: float) -> None:
        """Refuse (503) new UDP requests read more than ``seconds`` after they
        arrived: their senders are about to retransmit or give up, and the
        queue is in front of the node, where no count of requests in hand sees
        it. Time before this call does not count, so what arrived while the
        node was still starting is served."""
        self.max_queue_delay = seconds
        self._queue_delay_since = time.time()

    def _shed_statelessly(self, request: Request, source: TransportAddress) -> bool:
        """Refuse new out-of-dialog non-INVITE work under overload without a
        server transaction: Timer J would hold one for 32 s per refusal, which
        is most of a shedding node's memory. A retransmission of the request
        gets the same 503 again, made afresh (as Kamailio's sl_send_reply
        does). INVITE keeps its transaction, for the ACK of its 503."""
        if request.method in ("INVITE", "ACK", "CANCEL") or request.to.tag is not None:
            return False
        # A copy of a request refused a moment ago (a retransmission, or a duplicate
        # the network made) is refused again even if the load has dropped since:
        # served, it would do the work its sender was told was not done.
        key = server_transaction_key(request)
        now = time.monotonic()
        if self._shed_keys.get(key, 0.0) <= now:
            if not self._overloaded(request) or self.layer.has_server_transaction(request):
                return False
            self._remember_shed(key, now)
        for observer in self.observers:
            observer("received", request, source, self._local(source.transport))
        self._send(self._shed(request), self._stateless_destination(request, source))
        return True

    def _remember_shed(self, key: object, now: float) -> None:
        keys = self._shed_keys
        keys.pop(key, None)
        keys[key] = now + SHED_MEMORY_S  # insertion order is expiry order
        while keys:
            oldest = next(iter(keys))
            if keys[oldest] > now and len(keys) <= SHED_MEMORY_MAX:
                break
            del keys[oldest]

    @staticmethod
    def _stateless_destination(request: Request, source: TransportAddress) -> TransportAddress:
        # Over TCP the answer goes back on the connection: no Via needed.
        return source if source.reliable else response_destination(request.top_via, source)

    def _queued_too_long(self) -> bool:
        if self.max_queue_delay is None or self._udp is None:
            return False
        if self._udp.queue_delay <= self.max_queue_delay:
            return False
        return time.time() - self._queue_delay_since > self.max_queue_delay

    def _shed(self, request: Request) -> Response:
        self.stats.shed += 1
        if self._queued_too_long():
            assert self._udp is not None
            why = f"request queued {self._udp.queue_delay * 1000:.0f} ms"
        else:
            why = f"{self.in_progress} requests in progress"
        if self.stats.shed % 1000 == 1:
            self.log.warning("overloaded: %s, answering 503 (%d so far)", why, self.stats.shed)
        headers = [
            ("Retry-After", str(self.retry_after)),
            ("Warning", f'399 {self.public_name} "overloaded: {why}"'),
        ]
        body = b""
        if self.shed_body is not None:
            body = self.shed_body
            headers.append(("Content-Type", self.shed_content_type))
        return make_response(request, 503, headers=headers, body=body)

    def _precheck(self, request: Request) -> Response | None:
        """Checks every UAS makes before its method logic (RFC 3261 8.2.2)."""
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416)
        if request.get("Require") is None:
            return None
        required = [v.lower() for v in request.values("Require") if v]
        unsupported = [v for v in required if v not in SUPPORTED_EXTENSIONS]
        if unsupported and request.method not in ("ACK", "CANCEL"):
            return make_response(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
        return None

    def _method_not_allowed(self, request: Request) -> Response:
        return make_response(request, 405, headers=[("Allow", self.allow_header())])

    def allow_header(self) -> str:
        """Every method this node handles (RFC 3261 20.5): its handlers', and with
        calls on, those of INVITE dialogs, in which any method is relayed or answered."""
        methods = set(self.handlers)
        if self.invite_handler is not None:
            methods |= CALL_METHODS
        return ", ".join(sorted(methods))
