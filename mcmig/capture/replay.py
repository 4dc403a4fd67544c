"""Replaying a capture against a live node and reporting how its answers differ.

The node starts fresh; every peer it talked to in the capture is stood in
for at its captured address. Captured requests into the node are sent as
they were; when the node sends a request, the captured answer to it is
sent back, rewritten to match the live transaction (Via, tags, Call-ID,
CSeq). What the node sends is compared with what the capture shows it
sent, ignoring values that are new on every run. UDP only: captured TCP
flows are reported as skipped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from defusedxml.ElementTree import fromstring

from mcmig.capture.reader import CapturedMessage
from mcmig.mc.body import CONTENT_TYPE
from mcmig.mc.causes import warning_cause
from mcmig.sip.errors import SipParseError
from mcmig.sip.message import Message, Request, Response
from mcmig.sip.parser import parse_message
from mcmig.sip.responses import make_response


@dataclass(frozen=True)
class Difference:
    frame: int
    what: str
    captured: str
    live: str

    def __str__(self) -> str:
        return f"frame {self.frame}: {self.what}: captured {self.captured!r}, live {self.live!r}"


class _Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[Message, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        if isinstance(message, Response) and message.status == 100:
            return  # provisional timing depends on the run (RFC 4320)
        self.inbox.put_nowait((message, (str(addr[0]), int(addr[1]))))


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
        self.skipped = 0
        self.compared = 0
        self._peers: dict[tuple[str, int], _Peer] = {}
        self._live_requests: dict[tuple[str, int, str], tuple[Request, tuple[str, int], _Peer]] = {}
        self._captured_to_live: dict[tuple[str, int, str], tuple[str, int, str]] = {}

    async def run(self, messages: list[CapturedMessage], timeout: float = 5.0) -> list[Difference]:
        relevant = [
            m
            for m in messages
            if m.source.host in self.node_hosts or m.destination.host in self.node_hosts
        ]
        loop = asyncio.get_running_loop()
        for m in relevant:
            if m.source.transport != "UDP":
                self.skipped += 1
                continue
            peer_address = m.destination if m.source.host in self.node_hosts else m.source
            key = (peer_address.host, peer_address.port)
            if key not in self._peers and peer_address.host not in self.node_hosts:
                _, protocol = await loop.create_datagram_endpoint(_Peer, local_addr=key)
                self._peers[key] = protocol
        seen: set[bytes] = set()
        try:
            for m in relevant:
                if m.source.transport != "UDP":
                    continue
                wire = m.message.serialize()
                if wire in seen:
                    continue  # a retransmission in the capture
                seen.add(wire)
                if isinstance(m.message, Response) and m.message.status == 100:
                    continue
                if m.source.host in self.node_hosts:
                    await self._expect(m, timeout)
                else:
                    self._feed(m)
        finally:
            for peer in self._peers.values():
                if peer.transport is not None:
                    peer.transport.close()
        return self.differences

    def _feed(self, m: CapturedMessage) -> None:
        peer = self._peers[(m.source.host, m.source.port)]
        assert peer.transport is not None
        message = m.message
        target = (m.destination.host, m.destination.port)
        if isinstance(message, Request):
            peer.transport.sendto(message.serialize(), target)
            return
        live_key = self._captured_to_live.get(_key(message))
        live = self._live_requests.get(live_key) if live_key else None
        if live is None:
            self.differences.append(
                Difference(m.frame, "answer to a request the node never sent", m.label, "-")
            )
            return
        request, origin, via_peer = live
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
        assert via_peer.transport is not None
        via_peer.transport.sendto(answer.serialize(), origin)

    async def _expect(self, m: CapturedMessage, timeout: float) -> None:
        peer = self._peers.get((m.destination.host, m.destination.port))
        if peer is None:
            return
        try:
            live, origin = await asyncio.wait_for(peer.inbox.get(), timeout)
        except TimeoutError:
            self.differences.append(Difference(m.frame, "message not sent", m.label, "nothing"))
            return
        self.compared += 1
        if isinstance(live, Request):
            self._live_requests[_key(live)] = (live, origin, peer)
            self._captured_to_live[_key(m.message)] = _key(live)
        self._compare(m, live)

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
