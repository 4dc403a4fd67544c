"""SIP conformance on loopback: where stateless answers go, responses that are not
ours, dialogs through every B2BUA, calls that end, CANCEL's timing, truthful Allow,
and refusals in the PROFILE 2.5 format."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from mcmig.mc.body import CONTENT_TYPE, MigrationFailure, decode
from mcmig.node.dialogs import Dialog
from mcmig.node.runtime import SipNode
from mcmig.nodes.b2bua import forward
from mcmig.nodes.call_relay import end_calls
from mcmig.nodes.phone import place_call
from mcmig.nodes.ue import UserEquipment
from mcmig.profiles import load_deployment
from mcmig.sip.message import Request, Response
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import parse_sip_uri
from mcmig.sip.via import Via
from tests.support.lab import Lab, without_gateways
from tests.support.tools import ROOT

ALICE = "sip:alice@primary.example"
BOB = "sip:bob@primary.example"
PRIMARY = TransportAddress("UDP", "127.0.1.10", 5060)


def _ue(lab: Lab) -> UserEquipment:
    assert lab.running is not None
    return lab.running.clients["alice-ue"]


def _udp(host: str = "127.0.1.77") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2)
    return s


def _raw_request(method: str, via_port: int, rport: bool, length: int = 0) -> bytes:
    return (
        f"{method} sip:alice@primary.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.1.77:{via_port};branch=z9hG4bKnat{via_port}{method}"
        f"{';rport' if rport else ''}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bob@primary.example>;tag=n1\r\n"
        "To: <sip:alice@primary.example>\r\nCall-ID: nat-1\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


# -- where answers go ---------------------------------------------------------------------


@pytest.mark.parametrize("rport", [True, False], ids=["rport", "received"])
def test_answers_to_malformed_requests_reach_a_client_behind_nat(demo3: Lab, rport: bool) -> None:
    """The client listens on one port and its Via names another (as behind NAT)."""
    client = _udp()
    try:
        listening = client.getsockname()[1]
        via_port = listening if not rport else listening + 1000
        bad = _raw_request("MESSAGE", via_port, rport, length=50)  # more than it carries
        client.sendto(bad, ("127.0.1.10", 5060))
        demo3.run(asyncio.sleep(0.2))
        data, _ = client.recvfrom(65535)
        response = parse_message(data)
        assert isinstance(response, Response) and response.status == 400
        assert (response.get("Warning") or "").startswith('399 primary.example "bad-request: ')
    finally:
        client.close()


def test_503s_of_load_shedding_reach_a_client_behind_nat(demo3: Lab) -> None:
    assert demo3.running is not None
    server = next(n for n in demo3.running.nodes if n.name == "primary-server")
    server.max_pending = 0  # every new request is shed
    client = _udp()
    try:
        via_port = client.getsockname()[1] + 1000  # nobody listens there
        client.sendto(_raw_request("MESSAGE", via_port, True), ("127.0.1.10", 5060))
        demo3.run(asyncio.sleep(0.2))
        response = parse_message(client.recvfrom(65535)[0])
        assert isinstance(response, Response) and response.status == 503
    finally:
        client.close()


def test_a_response_whose_top_via_is_not_ours_is_dropped(demo3: Lab) -> None:
    assert demo3.running is not None
    server = next(n for n in demo3.running.nodes if n.name == "primary-server")
    client = _udp()
    try:
        foreign = (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.1.99:5060;branch=z9hG4bKnotours\r\n"
            b"From: <sip:a@primary.example>;tag=1\r\nTo: <sip:b@primary.example>;tag=2\r\n"
            b"Call-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        )
        client.sendto(foreign, ("127.0.1.10", 5060))
        demo3.run(asyncio.sleep(0.2))
        assert server.stats.foreign_responses == 1
    finally:
        client.close()


# -- dialogs through every B2BUA --------------------------------------------------------------


def test_info_and_update_inside_a_call_reach_the_migrated_user_and_come_back(
    demo3: Lab,
) -> None:
    answered: list[Dialog] = []
    seen: list[str] = []
    _ue(demo3).node.observers.append(
        lambda d, m, s, t: (
            seen.append(m.method) if d == "received" and isinstance(m, Request) else None
        )
    )

    async def scenario() -> list[Response]:
        call = asyncio.ensure_future(
            place_call(demo3.client, BOB, ALICE, PRIMARY, hold=1.0, on_answer=answered.append)
        )
        while not answered:
            await asyncio.sleep(0.02)
        dialog = answered[0]
        info = dialog.request("INFO", b"Signal=5\r\n", "application/dtmf-relay")
        update = dialog.request("UPDATE")
        results = [
            await demo3.client.send_request(info, dialog.destination),
            await demo3.client.send_request(update, dialog.destination),
        ]
        await call
        return results

    info, update = demo3.run(scenario())
    assert (info.status, update.status) == (200, 200)
    assert "INFO" in seen and "UPDATE" in seen  # each reached alice's client


def test_a_call_whose_bye_was_lost_ends_at_the_maximum_duration(tmp_path: Path) -> None:
    deployment = without_gateways(load_deployment(ROOT / "sip_profiles/demo3.yaml"))
    deployment = dataclasses.replace(
        deployment,
        systems=tuple(dataclasses.replace(s, call_max_duration=1.0) for s in deployment.systems),
    )
    lab = Lab(deployment, tmp_path, client_host="127.0.1.50")
    lab.start()
    try:
        assert lab.running is not None
        answered: list[Dialog] = []

        async def lose_the_bye() -> None:
            call = asyncio.ensure_future(
                place_call(lab.client, BOB, ALICE, PRIMARY, hold=30, on_answer=answered.append)
            )
            while not answered:
                await asyncio.sleep(0.02)
            lab.client.dialogs.pop(answered[0].key)  # the caller vanishes: no BYE
            call.cancel()
            await asyncio.sleep(1.6)

        lab.run(lose_the_bye())
        server = lab.running.servers["primary-server"].node
        assert server.stats.calls_bridged == 1
        assert server.stats.calls_ended_at_limit == 1
        assert _ue(lab).phone.calls == {}  # alice's client got its BYE
        assert {n.name: len(n.dialogs) for n in lab.running.nodes if n.dialogs} == {}
    finally:
        lab.close()


def test_stopping_with_calls_up_sends_bye_on_each_leg(demo3: Lab) -> None:
    answered: list[Dialog] = []

    async def scenario() -> str:
        call = asyncio.ensure_future(
            place_call(demo3.client, BOB, ALICE, PRIMARY, hold=30, on_answer=answered.append)
        )
        while not answered:
            await asyncio.sleep(0.02)
        assert demo3.running is not None
        ue = _ue(demo3)
        # the servers and gateways stop; alice's client and the caller stay up
        others = [n for n in demo3.running.nodes if n is not ue.node]
        assert await end_calls(others, 2.0) >= 2
        outcome = await asyncio.wait_for(call, 3)
        for node in others:
            await node.stop()
        for server in demo3.running.servers.values():
            await server.close()
        demo3.running.nodes, demo3.running.servers = [ue.node], {}
        return str(outcome)

    assert demo3.run(scenario()) == "200 OK; call ended by the callee"
    assert _ue(demo3).phone.calls == {}


def test_cancel_waits_for_a_provisional_response(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    node = SipNode("caller", "127.0.1.78", 0)
    callee = _udp("127.0.1.79")

    async def scenario() -> list[str]:
        await node.start()
        invite = make_request(
            "INVITE",
            parse_sip_uri("sip:alice@127.0.1.79"),
            from_uri=BOB,
            to_uri=ALICE,
            body=b"v=0\r\n",
            content_type="application/sdp",
        )
        port = callee.getsockname()[1]
        out = node.invite(invite, TransportAddress("UDP", "127.0.1.79", port))
        out.cancel()  # before anything came back: RFC 3261 9.1 says wait
        methods: list[str] = []
        callee.setblocking(False)
        await asyncio.sleep(0.8)  # the INVITE and its first retransmission arrive
        received = []
        while True:
            try:
                received.append(callee.recvfrom(65535))
            except BlockingIOError:
                break
        methods += [parse_message(d).method for d, _ in received]  # type: ignore[union-attr]
        request = parse_message(received[0][0])
        assert isinstance(request, Request)
        callee.sendto(make_response(request, 180, to_tag="c1").serialize(), received[0][1])
        await asyncio.sleep(0.2)
        while True:
            try:
                data, _ = callee.recvfrom(65535)
            except BlockingIOError:
                break
            methods.append(parse_message(data).method)  # type: ignore[union-attr]
        await node.stop()
        return methods

    try:
        methods = loop.run_until_complete(scenario())
    finally:
        loop.close()
        callee.close()
    first_cancel = methods.index("CANCEL")
    assert set(methods[:first_cancel]) == {"INVITE"} and len(methods[:first_cancel]) >= 2


# -- what a node says about itself -------------------------------------------------------------


def test_allow_lists_every_method_a_call_node_handles(demo3: Lab) -> None:
    request = make_request(
        "OPTIONS", parse_sip_uri("sip:primary.example"), from_uri=BOB, to_uri=BOB
    )
    response = demo3.run(demo3.client.send_request(request, PRIMARY))
    allowed = {m.strip() for m in (response.get("Allow") or "").split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "MESSAGE", "OPTIONS"} <= allowed


def _cause(response: Response) -> tuple[int, str, str | None]:
    body = decode(response.body) if response.content_type == CONTENT_TYPE else None
    return (
        response.status,
        response.get("Warning") or "",
        body.cause if isinstance(body, MigrationFailure) else None,
    )


def test_a_call_or_data_to_an_unknown_user_is_refused_in_the_profile_format(demo3: Lab) -> None:
    outcome = demo3.run(
        place_call(demo3.client, BOB, "sip:nobody@primary.example", PRIMARY, hold=0.1)
    )
    assert outcome.status == 404
    data = make_request(
        "MESSAGE",
        parse_sip_uri("sip:nobody@primary.example"),
        from_uri=BOB,
        to_uri="sip:nobody@primary.example",
        body=b"hello",
        content_type="text/plain",
    )
    status, warning, cause = _cause(demo3.run(demo3.client.send_request(data, PRIMARY)))
    assert status == 404 and cause == "unknown-user"
    assert warning.startswith('399 primary.example "unknown-user: ')
    data.uri = parse_sip_uri("sip:erin@primary.example")  # a user, not migrated, no client
    status, warning, cause = _cause(demo3.run(demo3.client.send_request(data, PRIMARY)))
    assert status == 480 and cause == "user-not-reachable"
    assert warning.startswith('399 primary.example "user-not-reachable: ')


def test_a_downstream_408_becomes_504_timeout() -> None:
    """A B2BUA whose next hop answers 408 to a MESSAGE answers 504 timeout upstream."""

    async def scenario() -> Response:
        b2bua = SipNode("b2bua", "127.0.1.80", 0)
        downstream = SipNode("downstream", "127.0.1.81", 0)

        async def times_out(request: Request, source: TransportAddress) -> Response:
            return make_response(request, 408)

        downstream.handlers["MESSAGE"] = times_out
        await b2bua.start()
        await downstream.start()
        try:
            upstream = make_request("MESSAGE", parse_sip_uri(ALICE), from_uri=BOB, to_uri=ALICE)
            upstream.push_via(_any_via())
            onward = make_request("MESSAGE", parse_sip_uri(ALICE), from_uri=BOB, to_uri=ALICE)
            there = TransportAddress("UDP", "127.0.1.81", downstream.port)
            return await forward(b2bua, upstream, onward, there, 4.0, "primary.example")
        finally:
            await b2bua.stop()
            await downstream.stop()

    status, warning, cause = _cause(asyncio.run(scenario()))
    assert (status, cause) == (504, "timeout")
    assert warning.startswith('399 primary.example "timeout: ')


def _any_via() -> Via:
    message = parse_message(
        b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n"
    )
    return message.top_via


def test_a_calls_answers_leave_the_partner_system_hidden(tmp_path: Path) -> None:
    """The callee's client answers with internal names in its reason phrases and
    Warning (a 183 on the way, then a 486): what reaches the caller through the
    gateways names no inside host, address or node, provisional answers too."""
    from mcmig.node.dialogs import InviteServerHandle
    from tests.support.lab import demo3_lab

    demo3 = demo3_lab(tmp_path, gateways=True)

    async def busy(handle: InviteServerHandle) -> None:
        handle.respond(handle.response(183, reason="Progress at pc7.lab.partner.internal"))
        await asyncio.sleep(0.1)
        handle.respond(
            handle.response(
                486,
                [("Warning", '399 127.0.2.100:5062 "busy on partner-server via 10.1.2.3"')],
                reason="Busy at 127.0.2.100 pc7.partner.example",
            )
        )

    _ue(demo3).node.invite_handler = busy
    seen: list[Response] = []
    demo3.client.observers.append(
        lambda d, m, s, t: seen.append(m) if d == "received" and isinstance(m, Response) else None
    )
    try:
        outcome = demo3.run(place_call(demo3.client, BOB, ALICE, PRIMARY, hold=0.1))
    finally:
        demo3.close()
    assert outcome.status == 486
    wire = b"".join(m.serialize() for m in seen if m.status > 100)
    assert b"183" in wire and b"486" in wire
    for inner in (b"pc7", b"127.0.2.", b"10.1.2.3", b"partner-server", b"5062"):
        assert inner not in wire, (inner, wire)
    assert b'399 partner.example "busy on [node] via [address withheld]"' in wire
