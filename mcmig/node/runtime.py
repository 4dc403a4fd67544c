"""A SIP node: transports + parser + transaction layer + method handlers.

Data flows one way: bytes -> transport -> parser -> transaction layer ->
handler -> transaction layer -> serializer -> transport. Handlers are
coroutines that return the final response; they never touch bytes or sockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from mcmig.node.dialogs import Dialog, InviteServerHandle, OutgoingInvite
from mcmig.node.errors import SipTimeoutError, SipTransportError
from mcmig.node.inline import InlineRun, Reply
from mcmig.node.invite_usage import InviteHandler
from mcmig.node.refusals import Gatekeeper, Refusals
from mcmig.sip.errors import SipParseError
from mcmig.sip.ids import new_branch
from mcmig.sip.invite_client_transaction import InviteClientTransaction
from mcmig.sip.invite_server_transaction import InviteServerTransaction
from mcmig.sip.message import Request, Response
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import (
    DEFAULT_PORTS,
    TransportAddress,
    reconnect_destination,
    stamp_received,
)
from mcmig.sip.responses import make_response
from mcmig.sip.server_transaction import NonInviteServerTransaction
from mcmig.sip.timers import TimerConfig
from mcmig.sip.transaction_layer import (
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionFailed,
    TransactionLayer,
    TransactionTimedOut,
)
from mcmig.sip.uri import SipUri, host_reference
from mcmig.sip.via import Via
from mcmig.transport.base import ConnectionGate, TransportConfig, format_hostport
from mcmig.transport.memory import MemoryNetwork, MemoryTransport
from mcmig.transport.stream import StreamTransport
from mcmig.transport.udp import UdpTransport

__all__ = ["InviteHandler", "SipNode", "SipTimeoutError", "SipTransportError"]

Handler = Callable[[Request, TransportAddress], Awaitable[Response]]
# (direction "sent" or "received", message, from, to): for ladders and captures
Observer = Callable[[str, Request | Response, TransportAddress, TransportAddress], None]

# Transaction timers fire on multiples of this many seconds (at most this late):
# far finer than T1 (500 ms), and coarse enough to batch wakeups under load.
TIMER_TICK = 0.01

# RFC 3261 18.1.1: larger requests go over a congestion-controlled transport.
UDP_SIZE_LIMIT = 1300


@dataclass
class NodeStats:
    received: int = 0
    malformed: int = 0
    answered_malformed: int = 0
    handler_errors: int = 0
    retransmissions: int = 0  # of our own requests, over UDP (Timer E)
    shed: int = 0  # requests answered 503 because the node was overloaded
    turned_away: int = 0  # requests from senders the gatekeeper refused, statelessly
    foreign_responses: int = 0  # responses dropped because their top Via was not ours
    calls_bridged: int = 0  # dialogs pairs a B2BUA bridged
    calls_ended_at_limit: int = 0  # bridged calls ended by the maximum duration (BYE lost)
    unreachable: int = 0  # ICMP unreachable errors for datagrams we sent
    by_method: dict[str, int] = field(default_factory=dict)


class SipNode(Refusals):
    """One SIP element listening on UDP and TCP at one host and port."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        timers: TimerConfig | None = None,
        transport_config: TransportConfig | None = None,
        server_header: str | None = None,
        network: MemoryNetwork | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.ports: dict[str, int] = {}
        self.layer = TransactionLayer(timers)
        self.config = transport_config or TransportConfig()
        self.handlers: dict[str, Handler] = {"OPTIONS": self._options}
        # Load shedding (503 overloaded + Retry-After) past this many requests in hand.
        self.max_pending = 256
        # ... and for a request that waited longer than this in the UDP socket
        # before it was read (None: never); see shed_requests_queued_longer_than.
        self.max_queue_delay: float | None = None
        self._queue_delay_since = 0.0
        self.retry_after = 2
        self.public_name = "-"
        self.shed_body: bytes | None = None
        self.shed_content_type = "application/octet-stream"
        self._shed_keys: dict[object, float] = {}
        self.gatekeeper: Gatekeeper | None = None
        # At a border: which remote addresses may hold TCP/TLS connections at all.
        self.connection_gate: ConnectionGate | None = None
        self.invite_handler: InviteHandler | None = None
        self.dialogs: dict[tuple[str, str], Dialog] = {}
        self._invites: dict[int, OutgoingInvite] = {}
        self._invite_handles: dict[int, InviteServerHandle] = {}
        self.observers: list[Observer] = []
        self.stats = NodeStats()
        self.log = logging.getLogger(f"mcmig.node.{name}")
        self._server_header = server_header
        self._udp: UdpTransport | None = None
        self._network = network
        self._memory: MemoryTransport | None = None
        self._streams: dict[str, StreamTransport] = {}
        self._pending: dict[int, Reply] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runs: set[InlineRun] = set()  # non-INVITE handlers in progress
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._network is not None:
            self._memory = self._network.attach(
                self.host, self.port, self._on_bytes, self._on_failure
            )
            return
        self._udp = await UdpTransport.bind(
            self.host, self.port, self._on_bytes, self._on_failure, self._on_unreachable
        )
        if self.port == 0:
            self.port = self._udp.local_port
        tcp = StreamTransport("TCP", self.config, self._on_bytes, self._on_failure)
        tcp.gate = self.connection_gate
        await tcp.listen(self.host, self.port)
        self._streams["TCP"] = tcp

    async def enable_tls(
        self,
        port: int,
        server: ssl.SSLContext,
        client: ssl.SSLContext,
        expected_names: dict[tuple[str, int], str],
    ) -> None:
        """Listen for SIP over TLS on ``port`` too, and connect out with ``client``."""
        tls = StreamTransport("TLS", self.config, self._on_bytes, self._on_failure, server, client)
        tls.expected_names.update(expected_names)
        tls.gate = self.connection_gate
        await tls.listen(self.host, port)
        self._streams["TLS"] = tls
        self.ports["TLS"] = port

    def peer_names(self, source: TransportAddress) -> set[str]:
        """For a request that came over TLS: the names its sender's certificate proves."""
        stream = self._streams.get(source.transport)
        return set() if stream is None or source.transport != "TLS" else stream.peer_names(source)

    async def stop(self) -> None:
        for run in list(self._runs):
            run.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(100):  # a cancelled run ends on its next step, a turn away
            if not self._runs:
                break
            await asyncio.sleep(0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = None  # else a later _rearm would trust a timer that is gone
        for reply in list(self._pending.values()):
            reply.settle(error=SipTransportError("node stopped"))
        if self._udp is not None:
            self._udp.close()
        if self._memory is not None:
            self._memory.close()
        for stream in self._streams.values():
            await stream.close()

    def resources(self) -> dict[str, int]:
        """What this node holds right now; all zero when it is idle and its timers ran out."""
        return {
            "transactions": self.layer.active,
            "timers": self.layer.scheduled,
            "handlers": self.in_progress,
            "waiting": len(self._pending),
            "invites": len(self._invites) + len(self._invite_handles),
            "dialogs": len(self.dialogs),
            "connections": sum(len(s.connections) for s in self._streams.values()),
            "connection_tasks": sum(len(s.tasks) for s in self._streams.values()),
        }

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)

    @property
    def uri(self) -> SipUri:
        return SipUri(host=host_reference(self.host), port=self.port)

    # -- sending requests --------------------------------------------------------------
    def _prepare(self, request: Request, destination: TransportAddress) -> TransportAddress:
        """Our Via with a fresh branch, a Max-Forwards, and TCP for large requests."""
        if destination.transport == "UDP" and request.wire_size() + 60 > UDP_SIZE_LIMIT:
            destination = TransportAddress("TCP", destination.host, destination.port)
        port = self.ports.get(destination.transport, self.port)
        host = host_reference(self.host)
        params: dict[str, str | None] = {"branch": new_branch(), "rport": None}
        request.push_via(Via(destination.transport, host, port, params))
        if request.max_forwards is None:
            request.set("Max-Forwards", "70")
        return destination

    async def send_request(
        self,
        request: Request,
        destination: TransportAddress,
        timeout: float | None = None,
        add_via: bool = True,
    ) -> Response:
        """Send ``request`` in a new client transaction; return its final response.

        A top Via with a fresh branch is added here. Raises SipTimeoutError or
        SipTransportError when no final response comes.
        """
        assert self._loop is not None, "node not started"
        if add_via:
            destination = self._prepare(request, destination)
        future = Reply(loop=self._loop)
        txn = self.layer.send_request(request, destination, self._loop.time(), timeout)
        self._pending[id(txn)] = future
        self._flush()
        try:
            response: Response = await future
            return response
        finally:
            self._pending.pop(id(txn), None)
            self.stats.retransmissions += txn.retransmissions

    # -- receiving ---------------------------------------------------------------
    def _on_bytes(self, data: bytes, source: TransportAddress, datagram: bool) -> None:
        assert self._loop is not None
        self.stats.received += 1
        try:
            message = parse_message(data, datagram=datagram, limits=self.config.limits)
            if isinstance(message, Request):
                stamp_received(message, source)
                if self._turned_away(message, source) or self._shed_statelessly(message, source):
                    return
                events = self.layer.receive_request(message, source, self._loop.time())
            else:
                if not self._sent_by_us(message.top_via):
                    # RFC 3261 18.1.2: a response whose top Via is not ours is dropped.
                    self.stats.foreign_responses += 1
                    return
                events = self.layer.receive_response(message, self._loop.time())
        except SipParseError as exc:
            self._reject(exc, source)
            return
        for observer in self.observers:
            observer("received", message, source, self._local(source.transport))
        self._dispatch(events)
        self._flush()

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, ResponseReceived):
                if isinstance(event.transaction, InviteClientTransaction):
                    self._on_invite_response(event.transaction, event.response)
                elif event.response.status >= 200:
                    self._resolve(id(event.transaction), event.response)
            elif isinstance(event, TransactionTimedOut):
                self._fail(id(event.transaction), SipTimeoutError("no final response"))
            elif isinstance(event, TransactionFailed):
                self._fail(id(event.transaction), SipTransportError("transport failure"))

    def _resolve(self, key: int, response: Response) -> None:
        fut = self._pending.get(key)
        if fut is not None:
            fut.settle(response)

    def _fail(self, key: int, exc: Exception) -> None:
        reply = self._pending.get(key)
        if reply is not None:
            reply.settle(error=exc)
            return
        if key in self._invites:
            fut = self._invites.pop(key).final
            if not fut.done():
                fut.set_exception(exc)

    def _on_request(self, event: RequestReceived) -> None:
        request, txn, source = event.request, event.transaction, event.source
        self.stats.by_method[request.method] = self.stats.by_method.get(request.method, 0) + 1
        if request.method == "ACK":
            self._on_ack(request, source)
            return
        assert txn is not None
        if request.method == "CANCEL":
            self._on_cancel(request, txn)
            return
        refusal = self._precheck(request)
        if refusal is not None:
            self._respond(txn, refusal)
            return
        if request.to.tag is not None:
            self._in_dialog(request, source, txn)
            return
        if self._overloaded(request):
            self._respond(txn, self._shed(request))
            return
        if request.method == "INVITE":
            assert isinstance(txn, InviteServerTransaction)
            if self.invite_handler is None:
                self._respond(txn, self._method_not_allowed(request))
                return
            self._spawn(
                self._run_invite_handler(self.invite_handler, self._invite_handle(txn, source))
            )
            return
        handler = self.handlers.get(request.method)
        if handler is None:
            self._respond(txn, self._method_not_allowed(request))
            return
        assert isinstance(txn, NonInviteServerTransaction)
        assert self._loop is not None
        run = InlineRun(self._run_handler(handler, txn, source), self._loop, self._runs.discard)
        self._runs.add(run)
        run.start()

    @property
    def in_progress(self) -> int:
        """Requests whose handlers have not finished yet."""
        return len(self._runs) + len(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(
        self, handler: Handler, txn: NonInviteServerTransaction, source: TransportAddress
    ) -> None:
        try:
            response = await handler(txn.request, source)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Our bug, not the peer's: keep the traceback, answer 500, keep serving.
            self.stats.handler_errors += 1
            self.log.exception("handler for %s failed", txn.request.method)
            response = make_response(txn.request, 500)
        if not txn.terminated:
            self._respond(txn, response)

    async def _options(self, request: Request, source: TransportAddress) -> Response:
        return make_response(request, 200, headers=[("Allow", self.allow_header())])

    def _respond(self, txn: ServerTransaction, response: Response) -> None:
        assert self._loop is not None
        if self._server_header and not response.has("Server"):
            response.add("Server", self._server_header)
        self.layer.respond(txn, response, self._loop.time())
        self._flush()

    def _sent_by_us(self, via: Via) -> bool:
        host = via.host[1:-1] if via.host.startswith("[") else via.host
        if host.lower() != self.host.lower():
            return False
        port = via.port or DEFAULT_PORTS.get(via.transport, 5060)
        return port == self.port or port in self.ports.values()

    # -- output and time ---------------------------------------------------------------
    def _local(self, transport: str) -> TransportAddress:
        return TransportAddress(transport, self.host, self.ports.get(transport, self.port))

    def _send(self, message: Request | Response, destination: TransportAddress) -> None:
        stream = self._streams.get(destination.transport)
        if (
            stream is not None
            and isinstance(message, Response)
            and destination not in stream.connections
        ):
            destination = reconnect_destination(message.top_via, destination)
        for observer in self.observers:
            observer("sent", message, self._local(destination.transport), destination)
        data = message.serialize()
        if self._memory is not None:
            self._memory.send(data, destination)
            return
        if destination.transport == "UDP":
            assert self._udp is not None
            self._udp.send(data, destination)
            return
        if stream is None:
            self.log.warning("no %s transport for %s", destination.transport, destination)
            self._on_failure(destination)
            return
        stream.send(data, destination)

    def _flush(self) -> None:
        for transmit in self.layer.take_outgoing():
            self._send(transmit.message, transmit.destination)
        self._rearm()

    def _rearm(self) -> None:
        """Arm the loop timer for the next deadline, rounded up to a TIMER_TICK.

        Rounding lets the timers of many transactions (above all Timer J and K,
        and retransmission timers a response made stale) fire in one wakeup of
        the event loop instead of one each; an armed timer that is already
        earlier is kept, and finds what is due when it fires.
        """
        assert self._loop is not None
        earliest = self.layer.take_earliest_scheduled()
        if self._timer_at is not None and earliest >= self._timer_at:
            return  # nothing new comes before the armed timer: the usual case under load
        deadline = self.layer.next_deadline()
        if deadline is None:
            return
        if deadline <= self._loop.time():
            at = deadline  # due now (Timer J and K are zero over TCP): no rounding
        else:
            at = math.ceil(deadline / TIMER_TICK) * TIMER_TICK
            if at < deadline:  # floating point
                at += TIMER_TICK
        if self._timer_at is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        self._dispatch(self.layer.handle_timer(self._loop.time()))
        self._flush()

    def _on_failure(self, destination: TransportAddress) -> None:
        if self._loop is None:
            return
        self._dispatch(self.layer.transport_failed(destination, self._loop.time()))
        self._flush()

    def _on_unreachable(self, destination: TransportAddress, quoted: bytes) -> None:
        """An ICMP error for a datagram to ``destination`` (RFC 3261 18.4): the request
        it quotes fails now if it has been trying for the grace."""
        if self._loop is None:
            return
        self.stats.unreachable += 1
        if self.stats.unreachable % 1000 == 1:  # a peer that is down answers every datagram
            self.log.warning(
                "%s unreachable (ICMP): requests to it fail after %g s (%d errors so far)",
                destination,
                self.layer.timers.unreachable_grace,
                self.stats.unreachable,
            )
        self._dispatch(self.layer.unreachable(destination, quoted, self._loop.time()))
        self._flush()
