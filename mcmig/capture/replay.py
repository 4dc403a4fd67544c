"""Replaying a capture against a live node and reporting how its answers differ.

The node starts fresh; every peer it talked to in the capture is stood in
for at its captured address. Captured requests into the node are sent as
they were; when the node sends a request, the captured answer to it is
sent back, rewritten to match the live transaction (Via, tags, Call-ID,
CSeq). What the node sends is compared with what the capture shows it
sent, ignoring values that are new on every run. Over UDP and TCP: a
stand-in sends over TCP from its captured host (the port is the kernel's)
and answers on the connection a request came over. In a dialog, the peers'
later requests (ACK, BYE) get the Call-ID and tags the node made anew. TLS
cannot be replayed from a capture (its payload is encrypted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from defusedxml.ElementTree import fromstring

from mcmig.capture.reader import CapturedMessage
from mcmig.mc.body import CONTENT_TYPE, BodyError, MigrationRelease, MigrationRequest, decode
from mcmig.mc.causes import warning_cause
from mcmig.sip.errors import SipParseError
from mcmig.sip.framing import StreamFramer
from mcmig.sip.message import Message, Request, Response
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response


@dataclass(frozen=True)
class Difference:
    frame: int
    what: str
    captured: str
    live: str

    def __str__(self) -> str:
        return f"frame {self.frame}: {self.what}: captured {self.captured!r}, live {self.live!r}"


Reply = Callable[[bytes], None]


class _StandIn:
    """One peer of the node, at its captured address, over UDP and TCP.

    Whatever the node sends it lands in one inbox, with the way to answer:
    back to the datagram's source, or on the connection it came over.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.inbox: asyncio.Queue[tuple[Message, Reply]] = asyncio.Queue()
        self.udp: asyncio.DatagramTransport | None = None
        self.server: asyncio.Server | None = None
        self.outgoing: dict[tuple[str, int], asyncio.Transport] = {}
        self.streams: list[asyncio.Transport] = []

    async def open(self, udp: bool, tcp: bool) -> None:
        loop = asyncio.get_running_loop()
        if udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.host, self.port)
            )
            self.udp = transport
        if tcp:
            self.server = await loop.create_server(
                lambda: _Stream(self), self.host, self.port, reuse_address=True
            )

    def deliver(self, data: bytes, reply: Reply, datagram: bool) -> None:
        try:
            message = parse_message(data, datagram=datagram)
        except SipParseError:
            return
        if isinstance(message, Response) and message.status == 100:
            return  # provisional timing depends on the run (RFC 4320)
        self.inbox.put_nowait((message, reply))

    async def send(self, data: bytes, target: TransportAddress) -> None:
        if target.transport == "UDP":
            assert self.udp is not None
            self.udp.sendto(data, (target.host, target.port))
            return
        key = (target.host, target.port)
        conn = self.outgoing.get(key)
        if conn is None or conn.is_closing():
            # From the peer's host (the node may check it); the port is the kernel's,
            # as the captured one was.
            conn, _ = await asyncio.get_running_loop().create_connection(
                lambda: _Stream(self), target.host, target.port, local_addr=(self.host, 0)
            )
            self.outgoing[key] = conn
        conn.write(data)

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.server is not None:
            self.server.close()
        for stream in self.streams:
            stream.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: _StandIn) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport, origin = self.transport, (str(addr[0]), int(addr[1]))
        assert transport is not None
        self.owner.deliver(data, lambda answer: transport.sendto(answer, origin), True)


class _Stream(asyncio.Protocol):
    def __init__(self, owner: _StandIn) -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.streams.append(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            self.framer.feed(data)
            while (frame := self.framer.next_message()) is not None:
                self.owner.deliver(frame, transport.write, False)
        except SipParseError:
            transport.close()


def _key(message: Message) -> tuple[str, int, str]:
    return (message.call_id, message.cseq.seq, message.cseq.method)


def _xml(body: bytes) -> object:
    def canonical(element: object) -> object:
        tag = getattr(element, "tag", "")
        text = (getattr(element, "text", None) or "").strip()
        attrib = sorted(getattr(element, "attrib", {}).items())
        return (tag, attrib, text, [canonical(child) for child in list(element)])  # type: ignore[call-overload]

    return canonical(fromstring(body))


class Replayer:
    def __init__(self, node_hosts: set[str], ignore_temporary_id: bool = True) -> None:
        self.node_hosts = node_hosts
        self.ignore_temporary_id = ignore_temporary_id
        self.differences: list[Difference] = []
        self.compared = 0
        self._peers: dict[tuple[str, int], _StandIn] = {}
        self._live_requests: dict[tuple[str, int, str], tuple[Request, Reply]] = {}
        self._captured_to_live: dict[tuple[str, int, str], tuple[str, int, str]] = {}
        # Values the node makes anew on every run, captured -> live, so that a
        # peer's later requests in a dialog (ACK, BYE) reach the live dialog.
        self._renamed: dict[str, str] = {}
        # Temporary identities the node allocated anew, captured -> live: requests
        # to the visitor (calls, data, releases) are sent to the live one.
        self._temporary: dict[bytes, bytes] = {}

    async def run(self, messages: list[CapturedMessage], timeout: float = 5.0) -> list[Difference]:
        relevant = [
            m
            for m in messages
            if m.source.host in self.node_hosts or m.destination.host in self.node_hosts
        ]
        try:
            await self._stand_in(relevant)
            seen: set[bytes] = set()
            for m in relevant:
                wire = m.message.serialize()
                if wire in seen:
                    continue  # a retransmission in the capture
                seen.add(wire)
                if isinstance(m.message, Response) and m.message.status == 100:
                    continue
                if m.source.host in self.node_hosts:
                    await self._expect(m, timeout)
                else:
                    await self._feed(m)
        finally:
            for peer in self._peers.values():
                peer.close()
        return self.differences

    async def _stand_in(self, relevant: list[CapturedMessage]) -> None:
        """A stand-in at each peer address: UDP where the capture shows UDP; a TCP
        listener where the node sent a request over TCP (it connects there)."""
        udp: set[tuple[str, int]] = set()
        tcp: set[tuple[str, int]] = set()
        for m in relevant:
            from_node = m.source.host in self.node_hosts
            peer = m.destination if from_node else m.source
            if peer.host in self.node_hosts:
                continue  # between two addresses of the node itself
            key = (peer.host, peer.port)
            self._peers.setdefault(key, _StandIn(*key))
            if peer.transport == "UDP":
                udp.add(key)
            elif from_node and isinstance(m.message, Request):
                tcp.add(key)
        for key, stand_in in self._peers.items():
            await stand_in.open(udp=key in udp, tcp=key in tcp)

    async def _feed(self, m: CapturedMessage) -> None:
        peer = self._peers[(m.source.host, m.source.port)]
        message = m.message
        if isinstance(message, Request):
            try:
                await peer.send(self._in_live_dialog(message), m.destination)
            except OSError as exc:
                self.differences.append(
                    Difference(m.frame, "node not reachable", str(m.destination), str(exc))
                )
            return
        live_key = self._captured_to_live.get(_key(message))
        live = self._live_requests.get(live_key) if live_key else None
        if live is None:
            self.differences.append(
                Difference(m.frame, "answer to a request the node never sent", m.label, "-")
            )
            return
        request, reply = live
        headers = [
            (n, v)
            for n, v in message.headers
            if n in ("Warning", "Content-Type", "Contact", "Accept", "Retry-After")
        ]
        answer = make_response(
            request,
            message.status,
            message.reason,
            to_tag=message.to.tag,
            headers=headers,
            body=message.body,
        )
        reply(answer.serialize())

    async def _expect(self, m: CapturedMessage, timeout: float) -> None:
        peer = self._peers.get((m.destination.host, m.destination.port))
        if peer is None:
            return
        try:
            live, reply = await asyncio.wait_for(peer.inbox.get(), timeout)
        except TimeoutError:
            self.differences.append(Difference(m.frame, "message not sent", m.label, "nothing"))
            return
        self.compared += 1
        if isinstance(live, Request):
            self._live_requests[_key(live)] = (live, reply)
            self._captured_to_live[_key(m.message)] = _key(live)
        self._learn(m.message, live)
        self._compare(m, live)

    def _learn(self, captured: Message, live: Message) -> None:
        """The node's new Call-ID and tags, as the capture spelled them."""
        pairs = [(captured.to.tag, live.to.tag)]
        if isinstance(captured, Request):
            pairs += [(captured.call_id, live.call_id), (captured.from_.tag, live.from_.tag)]
        for old, new in pairs:
            if old and new and old != new:
                self._renamed[old] = new
        was, now = _temporary_id(captured), _temporary_id(live)
        if was and now and was != now:
            self._temporary[was.encode()] = now.encode()

    def _in_live_dialog(self, request: Message) -> bytes:
        """A peer's captured request with the node's live Call-ID and tags."""
        wire = request.serialize()
        head, sep, body = wire.partition(b"\r\n\r\n")
        for old in {request.call_id, request.from_.tag or "", request.to.tag or ""} - {""}:
            new = self._renamed.get(old)
            if new is not None:
                head = head.replace(old.encode(), new.encode())
        for was, now in self._temporary.items():
            head = head.replace(was, now)
            if len(was) == len(now):  # a body keeps its Content-Length
                body = body.replace(was, now)
        return head + sep + body

    def _compare(self, m: CapturedMessage, live: Message) -> None:
        captured = m.message

        def differ(what: str, a: object, b: object) -> None:
            if a != b:
                self.differences.append(Difference(m.frame, what, str(a), str(b)))

        differ("method/status", _kind(captured), _kind(live))
        if isinstance(captured, Request) and isinstance(live, Request):
            temporary = self.ignore_temporary_id and str(captured.uri).startswith("sip:t-")
            if not temporary:
                differ("Request-URI", captured.uri, live.uri)
            differ("Max-Forwards", captured.max_forwards, live.max_forwards)
        differ("From URI", _aor(captured.from_.uri), _aor(live.from_.uri))
        differ("To URI", _aor(captured.to.uri), _aor(live.to.uri))
        differ("CSeq method", captured.cseq.method, live.cseq.method)
        differ("Content-Type", captured.content_type, live.content_type)
        differ("Warning cause", _cause(captured), _cause(live))
        if captured.content_type == CONTENT_TYPE and live.content_type == CONTENT_TYPE:
            differ("body (XML)", self._body(captured.body), self._body(live.body))
        elif captured.content_type != "application/sdp":
            differ("body", captured.body, live.body)

    def _body(self, body: bytes) -> object:
        try:
            tree = _xml(body)
        except Exception:  # an unreadable body is itself the difference
            return body
        if self.ignore_temporary_id:
            return _drop(tree, "{urn:mcmig:params:xml:ns:migration:1}temporary-id")
        return tree


def _temporary_id(message: Message) -> str | None:
    """The temporary identity a migration request or release carries, if any."""
    if message.content_type != CONTENT_TYPE:
        return None
    try:
        body = decode(message.body)
    except BodyError:
        return None
    if isinstance(body, MigrationRequest | MigrationRelease):
        return body.temporary_id
    return None


def _kind(message: Message) -> str:
    return message.method if isinstance(message, Request) else str(message.status)  # type: ignore[attr-defined]


def _cause(message: Message) -> str:
    parsed = warning_cause(message.get("Warning"))
    return "" if parsed is None else parsed[1].split(":", 1)[0]


def _aor(uri: object) -> str:
    text = str(uri)
    return text if not text.startswith("sip:t-") else "sip:t-*@" + text.split("@", 1)[-1]


def _drop(tree: object, tag: str) -> object:
    """The canonical tree without elements named ``tag`` (values new on every run)."""
    assert isinstance(tree, tuple)
    name, attrib, text, children = tree
    kept = [_drop(c, tag) for c in children if isinstance(c, tuple) and c[0] != tag]
    return (name, attrib, text, kept)
