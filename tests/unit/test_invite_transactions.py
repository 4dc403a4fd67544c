"""RFC 3261 17.1.1 / 17.2.1 with RFC 6026: INVITE transactions with a fake clock."""

from __future__ import annotations

from mcmig.sip.client_transaction import DeliverResponse, Timeout, Transmit
from mcmig.sip.invite_client_transaction import InviteClientState, InviteClientTransaction
from mcmig.sip.invite_server_transaction import InviteServerState, InviteServerTransaction
from mcmig.sip.message import Request
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.timers import TimerConfig
from mcmig.sip.transaction_layer import RequestReceived, TransactionLayer

UDP = TransportAddress("UDP", "127.0.0.2", 5060)
TCP = TransportAddress("TCP", "127.0.0.2", 5060)
T = TimerConfig()


def _invite(branch: str = "z9hG4bKinv") -> Request:
    msg = parse_message(
        f"INVITE sip:alice@primary.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.50:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bob@primary.example>;tag=b1\r\nTo: <sip:alice@primary.example>\r\n"
        "Call-ID: call-1\r\nCSeq: 7 INVITE\r\nContact: <sip:bob@127.0.1.50>\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(msg, Request)
    return msg


def _fire(
    txn: InviteClientTransaction | InviteServerTransaction, until: float
) -> list[tuple[float, object]]:
    out = []
    while (deadline := txn.next_deadline()) is not None and deadline <= until:
        out += [(deadline, a) for a in txn.handle_timer(deadline)]
    return out


def test_client_timer_a_doubles_without_cap_and_timer_b_ends_it() -> None:
    txn = InviteClientTransaction(_invite(), UDP, T, now=0.0)
    txn.take_actions()
    events = _fire(txn, 40.0)
    sends = [t for t, a in events if isinstance(a, Transmit)]
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [a for _, a in events if isinstance(a, Timeout)] == [Timeout()]
    assert txn.state is InviteClientState.TERMINATED


def test_client_provisional_stops_retransmissions_and_timer_b() -> None:
    txn = InviteClientTransaction(_invite(), UDP, T, now=0.0)
    txn.take_actions()
    txn.receive_response(make_response(txn.request, 180, to_tag="a1"), 0.2)
    assert txn.state is InviteClientState.PROCEEDING and txn.next_deadline() is None


def test_client_acks_a_failure_itself_and_again_when_it_is_retransmitted() -> None:
    txn = InviteClientTransaction(_invite(), UDP, T, now=0.0)
    txn.take_actions()
    busy = make_response(txn.request, 486, to_tag="a1")
    actions = txn.receive_response(busy, 0.3)
    assert actions[0] == DeliverResponse(busy)
    ack = actions[1]
    assert isinstance(ack, Transmit) and isinstance(ack.message, Request)
    assert ack.message.method == "ACK" and ack.message.top_via.branch == "z9hG4bKinv"
    assert ack.message.to.tag == "a1" and ack.message.cseq.seq == 7
    again = txn.receive_response(busy, 0.4)
    assert [type(a) for a in again] == [Transmit]  # ACK again, not delivered twice
    assert txn.next_deadline() == 0.3 + 32  # Timer D
    txn.handle_timer(32.3)
    assert txn.terminated


def test_client_2xx_goes_to_accepted_and_retransmissions_reach_the_tu() -> None:
    txn = InviteClientTransaction(_invite(), UDP, T, now=0.0)
    txn.take_actions()
    ok = make_response(txn.request, 200, to_tag="a1")
    assert txn.receive_response(ok, 0.3) == [DeliverResponse(ok)]
    assert txn.state is InviteClientState.ACCEPTED
    assert txn.receive_response(ok, 0.9) == [DeliverResponse(ok)]  # RFC 6026: TU re-ACKs
    assert txn.next_deadline() == 0.3 + 32  # Timer M


def test_server_sends_100_at_once_and_retransmits_2xx_until_acked() -> None:
    request = _invite()
    txn = InviteServerTransaction(request, UDP, UDP, T, now=0.0)
    first = txn.take_actions()
    assert len(first) == 1 and first[0].message.status == 100  # type: ignore[union-attr]
    ok = make_response(request, 200, to_tag="a1")
    txn.respond(ok, 1.0)
    assert txn.state is InviteServerState.ACCEPTED
    sends = [t for t, a in _fire(txn, 9.0) if isinstance(a, Transmit)]
    assert sends == [1.5, 2.5, 4.5, 8.5]  # T1 doubling, capped at T2 = 4 s
    txn.acknowledged(9.0)
    assert [t for t, a in _fire(txn, 30.0) if isinstance(a, Transmit)] == []
    assert txn.next_deadline() == 1.0 + 32  # Timer L


def test_server_failure_timer_g_then_ack_then_timer_i() -> None:
    request = _invite()
    txn = InviteServerTransaction(request, UDP, UDP, T, now=0.0)
    txn.take_actions()
    txn.respond(make_response(request, 480, to_tag="a1"), 0.0)
    sends = [t for t, a in _fire(txn, 8.0) if isinstance(a, Transmit)]
    assert sends == [0.5, 1.5, 3.5, 7.5]  # Timer G
    txn.receive_ack(8.0)
    assert txn.state is InviteServerState.CONFIRMED
    assert txn.next_deadline() == 8.0 + 5.0  # Timer I = T4
    txn.handle_timer(13.0)
    assert txn.terminated


def test_server_failure_without_ack_ends_at_timer_h() -> None:
    request = _invite()
    txn = InviteServerTransaction(request, TCP, TCP, T, now=0.0)
    txn.take_actions()
    txn.respond(make_response(request, 480, to_tag="a1"), 0.0)
    assert txn.next_deadline() == 32.0  # no Timer G over TCP; Timer H
    txn.handle_timer(32.0)
    assert txn.terminated


def test_layer_absorbs_the_ack_of_a_failure_and_passes_the_ack_of_a_2xx() -> None:
    layer = TransactionLayer()
    (received,) = layer.receive_request(_invite(), UDP, 0.0)
    assert isinstance(received, RequestReceived) and received.transaction is not None
    layer.respond(received.transaction, make_response(received.request, 486, to_tag="x"), 0.1)
    ack = parse_message(
        b"ACK sip:alice@primary.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.50:5060;branch=z9hG4bKinv\r\n"
        b"From: <sip:bob@primary.example>;tag=b1\r\nTo: <sip:alice@primary.example>;tag=x\r\n"
        b"Call-ID: call-1\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(ack, Request)
    assert layer.receive_request(ack, UDP, 0.2) == []  # absorbed by the transaction
    (second,) = layer.receive_request(_invite("z9hG4bKinv2"), UDP, 1.0)
    assert isinstance(second, RequestReceived) and second.transaction is not None
    layer.respond(second.transaction, make_response(second.request, 200, to_tag="y"), 1.1)
    ack2 = parse_message(
        ack.serialize()
        .replace(b"branch=z9hG4bKinv", b"branch=z9hG4bKnew")
        .replace(b"tag=x", b"tag=y")
    )
    assert isinstance(ack2, Request)
    events = layer.receive_request(ack2, UDP, 1.2)
    assert [type(e) for e in events] == [RequestReceived]  # the TU sees the 2xx ACK
    layer.take_outgoing()
    layer.handle_timer(5.0)
    assert layer.take_outgoing() == []  # and the 2xx is no longer retransmitted
