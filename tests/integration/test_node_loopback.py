"""Real nodes on loopback: UDP, TCP, IPv6, bad input, retransmissions."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.nodes.responder import Responder
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.timers import TimerConfig
from mcmig.sip.uri import parse_uri
from mcmig.transport.base import TransportConfig, format_hostport
from tests.support.messages import message_request
from tests.support.wire import TcpPeer, UdpPeer

HOST = "127.0.5.1"


def _with_rport_to(data: bytes, host: str, port: int) -> bytes:
    return data.replace(b"127.0.2.10:5060;branch", f"{host}:{port};branch".encode())


async def _responder(host: str = HOST, **kw: object) -> SipNode:
    node = SipNode("responder", host, 0, **kw)  # type: ignore[arg-type]
    Responder(node)
    await node.start()
    return node


def test_udp_message_and_options_answered_200() -> None:
    async def main() -> None:
        node = await _responder()
        peer = UdpPeer(HOST)
        try:
            await peer.send(_with_rport_to(message_request(), HOST, peer.port), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 200
            assert response.to.tag is not None
            assert response.top_via.received == HOST  # RFC 3581: always with rport
            assert response.top_via.rport == peer.port
            options = message_request().replace(b"MESSAGE", b"OPTIONS")
            await peer.send(_with_rport_to(options, HOST, peer.port), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 200
            assert "MESSAGE" in (response.get("Allow") or "")
        finally:
            peer.close()
            await node.stop()

    asyncio.run(main())


def test_unsupported_method_gets_405_with_allow_and_scheme_416() -> None:
    async def main() -> None:
        node = await _responder()
        peer = UdpPeer(HOST)
        try:
            info = message_request().replace(b"MESSAGE", b"PUBLISH")
            await peer.send(_with_rport_to(info, HOST, peer.port), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 405
            assert response.get("Allow") == "MESSAGE, OPTIONS"
            tel = message_request().replace(
                b"MESSAGE sip:alice@primary.example", b"MESSAGE tel:+15551234", 1
            )
            await peer.send(_with_rport_to(tel, HOST, peer.port), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 416
        finally:
            peer.close()
            await node.stop()

    asyncio.run(main())


def test_retransmitted_request_processed_once_and_answered_again() -> None:
    async def main() -> None:
        node = await _responder()
        peer = UdpPeer(HOST)
        data = _with_rport_to(message_request(), HOST, peer.port)
        try:
            for _ in range(3):
                await peer.send(data, HOST, node.port)
                response = await peer.receive()
                assert isinstance(response, Response) and response.status == 200
            assert node.stats.by_method == {"MESSAGE": 1}
        finally:
            peer.close()
            await node.stop()

    asyncio.run(main())


def test_malformed_input_answered_or_dropped_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        node = await _responder()
        peer = UdpPeer(HOST)
        try:
            bad_cseq = message_request().replace(b"CSeq: 314159 MESSAGE", b"CSeq: 314159 OPTIONS")
            await peer.send(_with_rport_to(bad_cseq, HOST, peer.port), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 400
            assert "CSeq" in (response.get("Warning") or "")
            version = message_request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
            await peer.send(_with_rport_to(version, HOST, peer.port), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 505
            for junk in [
                b"\x00\xff garbage",
                b"INVITE\r\n\r\n",
                message_request().replace(b"Via", b"Vi\x00a"),
            ]:
                await peer.send(junk, HOST, node.port)
            assert await peer.nothing()
            # still serving
            await peer.send(
                _with_rport_to(message_request(branch="z9hG4bKnext"), HOST, peer.port),
                HOST,
                node.port,
            )
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 200
        finally:
            peer.close()
            await node.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 5


def test_tcp_several_messages_in_one_segment_and_one_over_many() -> None:
    async def main() -> None:
        node = await _responder()
        peer = await TcpPeer.connect(HOST, node.port)
        try:
            two = (
                message_request(branch="z9hG4bKa")
                + b"\r\n\r\n"
                + message_request(branch="z9hG4bKb")
            )
            await peer.send(two.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            first, second = await peer.receive(), await peer.receive()
            assert [first.top_via.branch, second.top_via.branch] == ["z9hG4bKa", "z9hG4bKb"]
            one = message_request(branch="z9hG4bKc").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
            for i in range(0, len(one), 7):
                await peer.send(one[i : i + 7])
                await asyncio.sleep(0)
            third = await peer.receive()
            assert isinstance(third, Response) and third.top_via.branch == "z9hG4bKc"
            assert third.top_via.received == "127.0.0.1"  # where the test's socket really is
            assert third.top_via.rport == peer.port
        finally:
            peer.close()
            await node.stop()

    asyncio.run(main())


def test_tcp_framing_error_closes_only_that_connection() -> None:
    async def main() -> None:
        node = await _responder()
        bad = await TcpPeer.connect(HOST, node.port)
        good = await TcpPeer.connect(HOST, node.port)
        try:
            no_length = message_request().replace(b"Content-Length", b"X-Length")
            await bad.send(no_length)
            assert await bad.closed_by_peer()
            await good.send(message_request().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            response = await good.receive()
            assert isinstance(response, Response) and response.status == 200
        finally:
            bad.close()
            good.close()
            await node.stop()

    asyncio.run(main())


def test_tcp_idle_and_slowloris_connections_are_closed() -> None:
    async def main() -> None:
        node = await _responder(transport_config=TransportConfig(idle_timeout=0.3))
        slow = await TcpPeer.connect(HOST, node.port)
        try:
            data = message_request()
            closed = False
            for i in range(8):  # one byte every 0.1 s never completes a message in time
                try:
                    await slow.send(data[i : i + 1])
                except ConnectionError:
                    closed = True
                    break
                await asyncio.sleep(0.1)
            assert closed or await slow.closed_by_peer(timeout=1.0)
        finally:
            slow.close()
            await node.stop()

    asyncio.run(main())


def test_tcp_connection_caps() -> None:
    async def main() -> None:
        node = await _responder(transport_config=TransportConfig(max_connections_per_host=2))
        peers = [await TcpPeer.connect(HOST, node.port) for _ in range(3)]
        try:
            assert await peers[2].closed_by_peer()
            await peers[0].send(message_request().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            assert (await peers[0].receive()).status == 200  # type: ignore[union-attr]
        finally:
            for p in peers:
                p.close()
            await node.stop()

    asyncio.run(main())


def _new_request(target: SipNode, body: bytes = b"hello") -> Request:
    uri = parse_uri(f"sip:responder@{target.address}")
    assert not isinstance(uri, str)
    return Request(
        "MESSAGE",
        uri,
        [
            ("From", "<sip:client@example.com>;tag=abc"),
            ("To", f"<{uri}>"),
            ("Call-ID", "call-1"),
            ("CSeq", "1 MESSAGE"),
            ("Content-Type", "text/plain"),
        ],
        body,
    )


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_node_to_node_client_transaction(transport: str) -> None:
    async def main() -> None:
        server = await _responder()
        client = SipNode("client", "127.0.5.2", 0)
        await client.start()
        try:
            dest = TransportAddress(transport, HOST, server.port)
            response = await client.send_request(_new_request(server), dest)
            assert response.status == 200
            # connection reuse: a second request over TCP uses the same connection
            await client.send_request(_new_request(server), dest)
            if transport == "TCP":
                assert len(client._streams["TCP"].connections) == 1
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(main())


def test_large_request_goes_over_tcp() -> None:
    async def main() -> None:
        server = await _responder()
        client = SipNode("client", "127.0.5.2", 0)
        await client.start()
        try:
            request = _new_request(server, body=b"x" * 1400)
            response = await client.send_request(
                request, TransportAddress("UDP", HOST, server.port)
            )
            assert response.status == 200
            assert request.top_via.transport == "TCP"
            assert server.stats.by_method == {"MESSAGE": 1}
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(main())


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.fail("IPv6 is required on these machines")

    async def main() -> None:
        server = await _responder(host="::1")
        client = SipNode("client", "::1", 0)
        await client.start()
        try:
            for transport in ("UDP", "TCP"):
                dest = TransportAddress(transport, "::1", server.port)
                assert (await client.send_request(_new_request(server), dest)).status == 200
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(main())


def test_client_timeout_when_nobody_answers() -> None:
    async def main() -> None:
        client = SipNode("client", "127.0.5.2", 0, timers=TimerConfig(t1=0.01, t2=0.04))
        await client.start()
        silent = UdpPeer("127.0.5.3")
        try:
            dest = TransportAddress("UDP", "127.0.5.3", silent.port)
            with pytest.raises(SipTimeoutError):
                await client.send_request(_options_to(dest), dest)
            assert client.layer.active == 0
        finally:
            silent.close()
            await client.stop()

    asyncio.run(main())


def test_a_new_earlier_deadline_rearms_the_timer_set_for_a_later_one() -> None:
    """The node keeps its loop timer when nothing new comes before it; a request
    sent while only Timer J (32 s) is armed must still be retransmitted at T1."""

    async def main() -> None:
        node = await _responder()
        peer, silent = UdpPeer(HOST), UdpPeer("127.0.5.3")
        try:
            await peer.send(_with_rport_to(message_request(), HOST, peer.port), HOST, node.port)
            assert (await peer.receive()).status == 200  # type: ignore[union-attr]
            assert node._timer_at is not None
            assert node._timer_at > asyncio.get_running_loop().time() + 30
            dest = TransportAddress("UDP", "127.0.5.3", silent.port)
            pending = asyncio.ensure_future(node.send_request(_options_to(dest), dest))
            first = await silent.receive()
            again = await silent.receive(timeout=1.5)  # Timer E: T1 = 0.5 s
            assert again.serialize() == first.serialize()
            pending.cancel()
        finally:
            peer.close()
            silent.close()
            await node.stop()
        # stopped: no armed timer is remembered (the skip would trust one that is gone)
        assert node._timer is None and node._timer_at is None

    asyncio.run(main())


def _closed_udp_port(host: str) -> int:
    """A port on ``host`` where nothing listens (bound once, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _options_to(destination: TransportAddress) -> Request:
    uri = parse_uri(f"sip:x@{format_hostport(destination.host, destination.port)}")
    return Request(
        "OPTIONS",
        uri,
        [
            ("From", "<sip:c@example.net>;tag=1"),
            ("To", f"<{uri}>"),
            ("Call-ID", f"options-{destination.port}"),
            ("CSeq", "1 OPTIONS"),
        ],
    )


@pytest.mark.parametrize("host", ["127.0.5.2", "::1"])
def test_icmp_port_unreachable_fails_the_request_after_the_grace(host: str) -> None:
    """RFC 3261 18.4: ICMP errors for a request's datagrams end its client
    transaction with a transport error once it has tried for the unreachable
    grace (4*T1), long before Timer F (64*T1)."""
    timers = TimerConfig(t1=0.05, t2=0.4)

    async def main() -> None:
        client = SipNode("client", host, 0, timers=timers)
        await client.start()
        peer = await _responder(host)
        try:
            for port in (_closed_udp_port(host), _closed_udp_port(host)):
                started = time.monotonic()
                with pytest.raises(SipTransportError):
                    destination = TransportAddress("UDP", host, port)
                    await client.send_request(_options_to(destination), destination)
                elapsed = time.monotonic() - started
                assert timers.unreachable_grace <= elapsed < timers.timer_f / 2
            # one error per datagram: the first send and its retransmissions
            assert client.stats.unreachable >= 4
            assert client.layer.active == 0
            # The error queue was read (else the poller would report it for ever),
            # and the socket still serves.
            assert client._udp is not None
            with pytest.raises(BlockingIOError):
                client._udp._sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            destination = TransportAddress("UDP", host, peer.port)
            answer = await client.send_request(_options_to(destination), destination)
            assert answer.status == 200
        finally:
            await peer.stop()
            await client.stop()

    asyncio.run(main())


def test_an_icmp_error_pending_on_the_socket_does_not_fail_a_send_elsewhere() -> None:
    """With IP_RECVERR the kernel fails the next sendto, to any peer, with an
    error pending from an earlier datagram. That send must still go out."""

    async def main() -> None:
        host = "127.0.5.2"
        client = SipNode("client", host, 0)
        await client.start()
        peer = await _responder(host)
        try:
            assert client._udp is not None
            client._udp.send(b"ping", TransportAddress("UDP", host, _closed_udp_port(host)))
            time.sleep(0.05)  # the ICMP error arrives; the loop has not read it yet
            destination = TransportAddress("UDP", host, peer.port)
            answer = await client.send_request(_options_to(destination), destination)
            assert answer.status == 200
            await asyncio.sleep(0.01)
            assert client.stats.unreachable == 1  # the error was still reported, once
        finally:
            await peer.stop()
            await client.stop()

    asyncio.run(main())


def test_a_peer_that_comes_up_within_the_grace_gets_the_request() -> None:
    """A peer restarting: the first datagrams meet a closed port, a
    retransmission within the grace reaches the new process."""
    timers = TimerConfig(t1=0.05, t2=0.4)
    host = "127.0.5.2"

    async def main() -> None:
        client = SipNode("client", host, 0, timers=timers)
        await client.start()
        port = _closed_udp_port(host)
        late: list[SipNode] = []

        async def start_late() -> None:
            await asyncio.sleep(timers.t1 * 2)  # after the first send and a retransmission
            node = SipNode("restarted", host, port)
            Responder(node)
            await node.start()
            late.append(node)

        try:
            starting = asyncio.create_task(start_late())
            destination = TransportAddress("UDP", host, port)
            answer = await client.send_request(_options_to(destination), destination)
            await starting
            assert answer.status == 200
            assert client.stats.unreachable >= 1  # it did meet the closed port
        finally:
            for node in late:
                await node.stop()
            await client.stop()

    asyncio.run(main())


def test_overload_sheds_new_work_with_503_keeps_options_and_recovers() -> None:
    """Past max_pending requests in hand a node answers new ones at once with 503
    overloaded, Retry-After and the PROFILE cause body; OPTIONS is still
    answered; once the work in hand is done, new requests are served again."""
    from mcmig.mc.body import MigrationFailure, decode
    from mcmig.nodes.b2bua import shed_like_the_profile
    from mcmig.sip.requests import make_request
    from mcmig.sip.responses import make_response

    async def main() -> None:
        release = asyncio.Event()

        async def slow(request: Request, source: TransportAddress) -> Response:
            await release.wait()
            return make_response(request, 200)

        server = SipNode("busy", HOST, 0)
        server.handlers["MESSAGE"] = slow
        server.max_pending = 3
        shed_like_the_profile(server, "busy.example")
        client = SipNode("client", "127.0.5.2", 0)
        await server.start()
        await client.start()
        target = TransportAddress("UDP", HOST, server.port)

        def request(method: str) -> Request:
            return make_request(
                method,
                parse_uri("sip:x@busy.example"),
                from_uri="sip:c@client.example",
                to_uri="sip:x@busy.example",
            )

        try:
            held = [
                asyncio.create_task(client.send_request(request("MESSAGE"), target))
                for _ in range(3)
            ]
            await asyncio.sleep(0.2)
            assert server.resources()["handlers"] == 3
            shed = await asyncio.gather(
                *(client.send_request(request("MESSAGE"), target) for _ in range(2))
            )
            for response in shed:
                assert response.status == 503 and response.get("Retry-After") == "2"
                assert "overloaded" in (response.get("Warning") or "")
                failure = decode(response.body)
                assert isinstance(failure, MigrationFailure) and failure.cause == "overloaded"
            options = await client.send_request(request("OPTIONS"), target)
            assert options.status == 200  # health checks are never shed
            release.set()
            assert [r.status for r in await asyncio.gather(*held)] == [200, 200, 200]
            assert (await client.send_request(request("MESSAGE"), target)).status == 200
            assert server.resources()["handlers"] == 0 and server.stats.shed == 2
            # the two refusals left no server transaction for Timer J to keep:
            # the three served MESSAGEs, OPTIONS and the last MESSAGE have one each
            assert server.resources()["transactions"] == 5
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize("enabled", ["before", "after", "never"])
def test_requests_left_queued_too_long_get_503_only_when_configured(enabled: str) -> None:
    """A UDP request read more than max_queue_delay after it arrived (the
    kernel stamps the arrival) is answered 503 overloaded at once; OPTIONS is
    still served, and so is a request read promptly. Time before shedding was
    enabled does not count (what queued while a node started is served), and
    without it (as in test labs, whose loops pause between steps) the late
    request is served."""

    async def main() -> None:
        node = await _responder()
        if enabled == "before":
            node.shed_requests_queued_longer_than(0.1)
        peer = UdpPeer(HOST)
        late = _with_rport_to(message_request(branch="z9hG4bKlate"), HOST, peer.port)
        options = late.replace(b"MESSAGE", b"OPTIONS").replace(b"z9hG4bKlate", b"z9hG4bKopt")
        prompt = _with_rport_to(message_request(branch="z9hG4bKprompt"), HOST, peer.port)
        try:
            # Served at once. It also lets Linux switch receive timestamps on:
            # it does so in the background, and until then datagrams are
            # stamped when read, which would hide the wait below.
            await peer.send(prompt, HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 200
            await asyncio.sleep(0.05)
            peer.sock.sendto(late, (HOST, node.port))
            peer.sock.sendto(options, (HOST, node.port))
            time.sleep(0.3)  # the node's loop is held: both wait in its socket
            if enabled == "after":
                node.shed_requests_queued_longer_than(0.1)
            answers: dict[str, Response] = {}
            for _ in range(2):
                response = await peer.receive()
                assert isinstance(response, Response)
                answers[response.cseq.method] = response
            if enabled == "before":
                shed = answers["MESSAGE"]
                assert shed.status == 503 and shed.get("Retry-After") == "2"
                assert "queued" in (shed.get("Warning") or "")
                assert node.stats.shed == 1
                # refused statelessly: transactions only for the first MESSAGE and OPTIONS
                assert node.resources()["transactions"] == 2
            else:
                assert answers["MESSAGE"].status == 200 and node.stats.shed == 0
            assert answers["OPTIONS"].status == 200
            await peer.send(prompt.replace(b"z9hG4bKprompt", b"z9hG4bKagain"), HOST, node.port)
            response = await peer.receive()
            assert isinstance(response, Response) and response.status == 200
        finally:
            peer.close()
            await node.stop()

    asyncio.run(main())


def test_a_copy_of_a_shed_request_is_refused_again_after_the_load_drops() -> None:
    """A request refused statelessly under overload stays refused: its
    retransmission (or a duplicate the network made) that arrives once the load
    has dropped gets the same 503, and the handler never runs for it. Otherwise
    the sender, told 503, would not know the work was done (a migration recorded
    at the primary that the client was told failed)."""
    import socket

    from mcmig.sip.responses import make_response

    async def main() -> None:
        release = asyncio.Event()
        handled: list[str] = []

        async def slow(request: Request, source: TransportAddress) -> Response:
            handled.append(request.top_via.branch or "")
            await release.wait()
            return make_response(request, 200)

        server = SipNode("busy", HOST, 0)
        server.handlers["MESSAGE"] = slow
        server.max_pending = 1
        await server.start()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.5.3", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]

        def message(branch: str) -> bytes:
            return (
                f"MESSAGE sip:x@busy.example SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.5.3:{port};branch=z9hG4bK{branch}\r\n"
                f"From: <sip:c@client.example>;tag=1\r\nTo: <sip:x@busy.example>\r\n"
                f"Call-ID: {branch}@client\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
                f"Content-Length: 0\r\n\r\n"
            ).encode()

        async def ask(branch: str) -> int:
            await loop.sock_sendto(sock, message(branch), (HOST, server.port))
            while True:  # the final response to this branch (earlier answers may wait)
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 2)
                status = int(data.split(b" ", 2)[1])
                if status >= 200 and f"branch=z9hG4bK{branch}".encode() in data:
                    return status

        try:
            await loop.sock_sendto(sock, message("held"), (HOST, server.port))
            await asyncio.sleep(0.2)
            assert await ask("shed") == 503  # one request in hand: the next is refused
            release.set()
            assert await ask("held") == 200  # the held one is answered
            assert await ask("shed") == 503  # the copy of the refused one, refused again
            assert await ask("fresh") == 200  # new work is served
            assert handled == ["z9hG4bKheld", "z9hG4bKfresh"]
        finally:
            sock.close()
            await server.stop()

    asyncio.run(main())
