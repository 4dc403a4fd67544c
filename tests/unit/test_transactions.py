"""RFC 3261 section 17 non-INVITE transactions with a fake clock."""

from __future__ import annotations

import pytest

from mcmig.sip.client_transaction import (
    ClientState,
    DeliverResponse,
    NonInviteClientTransaction,
    Timeout,
    Transmit,
)
from mcmig.sip.errors import LocalProtocolError
from mcmig.sip.message import Request
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.server_transaction import NonInviteServerTransaction, ServerState
from mcmig.sip.timers import TimerConfig
from mcmig.sip.transaction_layer import (
    RequestReceived,
    ResponseReceived,
    TransactionFailed,
    TransactionLayer,
    TransactionTimedOut,
    quoted_request_key,
)
from tests.support.messages import message_request
from tests.support.network import FakeNetwork, Faults

UDP = TransportAddress("UDP", "127.0.0.2", 5060)
TCP = TransportAddress("TCP", "127.0.0.2", 5060)
T = TimerConfig()


def _request(branch: str = "z9hG4bKabc") -> Request:
    msg = parse_message(message_request(branch=branch))
    assert isinstance(msg, Request)
    return msg


def _run_timers(txn: NonInviteClientTransaction, until: float) -> list[float]:
    """Fire the machine's timers up to ``until``; return when it retransmitted."""
    times = []
    while (deadline := txn.next_deadline()) is not None and deadline <= until:
        for action in txn.handle_timer(deadline):
            if isinstance(action, Transmit):
                times.append(deadline)
    return times


def test_client_udp_retransmission_schedule_and_timer_f() -> None:
    txn = NonInviteClientTransaction(_request(), UDP, T, now=0.0)
    assert [type(a) for a in txn.take_actions()] == [Transmit]
    times = _run_timers(txn, 31.9)
    # Timer E: T1, then doubling to T2 = 4 s (17.1.2.2).
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert txn.next_deadline() == 32.0  # Timer F = 64*T1
    actions = txn.handle_timer(32.0)
    assert actions == [Timeout()]
    assert txn.state is ClientState.TERMINATED and txn.next_deadline() is None


def test_client_after_provisional_retransmits_every_t2() -> None:
    txn = NonInviteClientTransaction(_request(), UDP, T, now=0.0)
    txn.take_actions()
    assert _run_timers(txn, 1.0) == [0.5]
    trying = make_response(txn.request, 100)
    assert txn.receive_response(trying, 1.2) == [DeliverResponse(trying)]
    assert txn.state is ClientState.PROCEEDING
    assert _run_timers(txn, 14.0) == [1.5, 5.5, 9.5, 13.5]


def test_client_final_response_then_timer_k_absorbs_retransmissions() -> None:
    txn = NonInviteClientTransaction(_request(), UDP, T, now=0.0)
    txn.take_actions()
    ok = make_response(txn.request, 200)
    assert txn.receive_response(ok, 0.3) == [DeliverResponse(ok)]
    assert txn.state is ClientState.COMPLETED
    assert txn.receive_response(ok, 0.4) == []  # retransmitted final absorbed
    # Completed needs only the key: the request and response are let go.
    with pytest.raises(LocalProtocolError):
        _ = txn.request
    assert txn.key == ("z9hG4bKabc", "MESSAGE")
    # Timer K = T4 after 0.3 s, rounded up to the reaping grid of half a second
    assert txn.next_deadline() == pytest.approx(5.5)
    txn.handle_timer(5.5)
    assert txn.state is ClientState.TERMINATED


def test_client_over_tcp_never_retransmits_and_k_is_zero() -> None:
    txn = NonInviteClientTransaction(_request(), TCP, T, now=0.0)
    txn.take_actions()
    assert txn.next_deadline() == 32.0
    txn.receive_response(make_response(txn.request, 200), 1.0)
    assert txn.next_deadline() == 1.0
    txn.handle_timer(1.0)
    assert txn.terminated


def test_client_timeout_shorter_than_timer_f() -> None:
    txn = NonInviteClientTransaction(_request(), UDP, T, now=0.0, timeout=10.0)
    txn.take_actions()
    _run_timers(txn, 9.99)
    assert txn.handle_timer(10.0) == [Timeout()]


def test_server_absorbs_retransmissions_and_resends_last_response() -> None:
    request = _request()
    txn = NonInviteServerTransaction(request, UDP, UDP, T, now=0.0)
    assert txn.receive_retransmission(0.5) == []  # Trying: nothing to resend yet
    ok = make_response(request, 200)
    assert ok.to.tag and ok.top_via  # parsed views, as a TU's reads leave them
    assert txn.respond(ok, 0.6) == [Transmit(ok, UDP)]
    assert txn.state is ServerState.COMPLETED
    # Completed keeps only what absorbing retransmissions needs, not the request.
    with pytest.raises(LocalProtocolError):
        _ = txn.request
    sent = ok.serialize()
    assert not ok._typed  # its parsed views are dropped: it is only sent again
    assert txn.receive_retransmission(1.0) == [Transmit(ok, UDP)]
    assert ok.serialize() == sent
    assert ok.top_via == request.top_via  # and parsed again if read
    assert txn.next_deadline() == pytest.approx(33.0)  # Timer J = 64*T1 after 0.6 s, rounded up
    txn.handle_timer(33.0)
    assert txn.terminated


def test_server_rfc4320_100_only_after_t2_over_udp() -> None:
    request = _request()
    txn = NonInviteServerTransaction(request, UDP, UDP, T, now=0.0)
    assert txn.respond(make_response(request, 100), 1.0) == []  # too early: suppressed
    actions = txn.handle_timer(4.0)  # the transaction's own 100 at T2
    assert len(actions) == 1 and isinstance(actions[0], Transmit)
    assert actions[0].message.status == 100  # type: ignore[union-attr]
    assert txn.state is ServerState.PROCEEDING
    assert txn.receive_retransmission(4.5) == actions  # Proceeding resends the 100


def test_server_rfc4320_forbidden_responses() -> None:
    request = _request()
    txn = NonInviteServerTransaction(request, UDP, UDP, T, now=0.0)
    with pytest.raises(LocalProtocolError):
        txn.respond(make_response(request, 408), 1.0)
    with pytest.raises(LocalProtocolError):
        txn.respond(make_response(request, 180), 1.0)
    txn.respond(make_response(request, 200), 1.0)
    with pytest.raises(LocalProtocolError):
        txn.respond(make_response(request, 500), 1.1)


def test_server_no_auto_100_over_tcp() -> None:
    txn = NonInviteServerTransaction(_request(), TCP, TCP, T, now=0.0)
    assert txn.next_deadline() is None


def test_layer_matches_responses_by_branch_and_method() -> None:
    layer = TransactionLayer()
    request = _request()
    txn = layer.send_request(request, UDP, 0.0)
    other = make_response(_request(branch="z9hG4bKother"), 200)
    assert layer.receive_response(other, 0.1) == []
    assert layer.stray_responses == 1
    ok = make_response(request, 200)
    assert layer.receive_response(ok, 0.2) == [ResponseReceived(ok, txn)]


def test_layer_reports_the_earliest_deadline_scheduled_since_last_asked() -> None:
    layer = TransactionLayer()
    assert layer.take_earliest_scheduled() == float("inf")
    request = _request()
    layer.send_request(request, UDP, 0.0)  # Timer E at T1, Timer F at 64*T1
    assert layer.take_earliest_scheduled() == pytest.approx(0.5)
    assert layer.take_earliest_scheduled() == float("inf")  # nothing new since
    layer.receive_response(make_response(request, 200), 0.2)  # Timer K = T4
    assert layer.take_earliest_scheduled() == pytest.approx(5.5)


def test_icmp_unreachable_ends_the_quoted_transaction_once_past_the_grace() -> None:
    """RFC 3261 18.4, with a grace (4*T1 = 2 s) so that a peer restarting in a
    moment still gets the request: an ICMP error ends the client transaction
    whose datagram it quotes, once that has been trying that long."""
    layer = TransactionLayer()
    first = layer.send_request(_request("z9hG4bKfirst"), UDP, 0.0)
    second = layer.send_request(_request("z9hG4bKsecond"), UDP, 0.0)
    served = layer.receive_request(_request("z9hG4bKserved"), UDP, 0.0)
    assert isinstance(served[0], RequestReceived)
    quoted = first.request.serialize()[:520]  # what Linux quotes over IPv4
    assert layer.unreachable(UDP, quoted, 1.5) == []  # trying for 1.5 s only
    elsewhere = TransportAddress("UDP", "127.0.0.3", 5060)
    assert layer.unreachable(elsewhere, quoted, 2.0) == []  # not where it was sent
    assert layer.unreachable(UDP, quoted, 2.0) == [TransactionFailed(first)]
    assert first.terminated and not second.terminated  # the other one keeps trying
    response = make_response(served[0].request, 200).serialize()
    assert layer.unreachable(UDP, response, 3.0) == []  # an answer we sent: nothing ends
    assert layer.server


@pytest.mark.parametrize(
    ("quoted", "key"),
    [
        (message_request(branch="z9hG4bKq1"), ("z9hG4bKq1", "MESSAGE")),
        # compact form, several values in the line: the top one counts
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKq2, SIP/2.0/UDP g\r\n",
            ("z9hG4bKq2", "OPTIONS"),
        ),
        # cut inside the Via line: the branch might be cut too
        (b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4b", None),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq3\r\n", None),
        (b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", None),  # no branch
        (b"MESSAGE sip:a@b SIP/2.0\r\nVia: \xff\r\n", None),
        (b"", None),
    ],
)
def test_quoted_request_key(quoted: bytes, key: tuple[str, str] | None) -> None:
    assert quoted_request_key(quoted) == key


def test_layer_server_matching_uses_sent_by_too() -> None:
    layer = TransactionLayer()
    first = layer.receive_request(_request(), UDP, 0.0)
    assert isinstance(first[0], RequestReceived)
    assert layer.receive_request(_request(), UDP, 0.1) == []  # retransmission
    moved = parse_message(
        message_request().replace(b"127.0.2.10:5060;branch", b"127.0.2.11:5060;branch")
    )
    assert isinstance(moved, Request)
    assert len(layer.receive_request(moved, UDP, 0.2)) == 1  # same branch, other sent-by


CLIENT = TransportAddress("UDP", "127.0.2.10", 5060)
SERVER = TransportAddress("UDP", "127.0.1.10", 5060)


def _pair(
    faults: Faults, seed: int = 1
) -> tuple[FakeNetwork, TransactionLayer, TransactionLayer, list[Request]]:
    net = FakeNetwork(faults, seed)
    client, server = TransactionLayer(), TransactionLayer()
    net.attach(CLIENT, client)
    net.attach(SERVER, server)
    delivered: list[Request] = []

    def answer(address: TransportAddress, event: object) -> None:
        if address == SERVER and isinstance(event, RequestReceived) and event.transaction:
            delivered.append(event.request)
            server.respond(event.transaction, make_response(event.request, 200), net.now)

    net.on_event = answer
    return net, client, server, delivered


def test_lost_requests_are_retransmitted_and_processed_once() -> None:
    net, client, _, delivered = _pair(Faults(drop_first={"MESSAGE": 2}))
    client.send_request(_request(), SERVER, net.now)
    net.flush(CLIENT)
    net.run(until=40.0)
    assert len(delivered) == 1
    finals = [e for e in net.events[CLIENT] if isinstance(e, ResponseReceived)]
    assert len(finals) == 1 and finals[0].response.status == 200
    sends = [t for t, src, _, data in net.sent if src == CLIENT]
    assert sends == [0.0, 0.5, 1.5]  # third copy (after E at 0.5 and 1.5) gets through
    assert client.active == 0 and net.layers[SERVER].active == 0


def test_lost_response_is_answered_from_the_server_transaction() -> None:
    net, client, _, delivered = _pair(Faults(drop_first={"SIP/2.0 200": 1}))
    client.send_request(_request(), SERVER, net.now)
    net.flush(CLIENT)
    net.run(until=40.0)
    assert len(delivered) == 1  # the retransmitted request was absorbed
    assert [type(e) for e in net.events[CLIENT]] == [ResponseReceived]


def test_total_loss_times_out_at_timer_f() -> None:
    net, client, _, delivered = _pair(Faults(loss=1.0))
    client.send_request(_request(), SERVER, net.now)
    net.flush(CLIENT)
    net.run(until=40.0)
    assert delivered == []
    timeouts = [e for e in net.events[CLIENT] if isinstance(e, TransactionTimedOut)]
    assert len(timeouts) == 1


@pytest.mark.parametrize("seed", range(20))
def test_loss_duplication_reordering(seed: int) -> None:
    net, client, _, delivered = _pair(Faults(loss=0.3, duplicate=0.3, max_delay=0.4), seed)
    for i in range(10):
        client.send_request(_request(branch=f"z9hG4bK{seed}x{i}"), SERVER, net.now)
    net.flush(CLIENT)
    net.run(until=60.0)
    branches = [r.top_via.branch for r in delivered]
    assert len(branches) == len(set(branches))  # each request reached the TU at most once
    outcomes = [
        e for e in net.events[CLIENT] if isinstance(e, ResponseReceived | TransactionTimedOut)
    ]
    assert len(outcomes) == 10  # and every transaction ended exactly once
    assert client.active == 0


def test_reaping_deadlines_are_rounded_up_never_down() -> None:
    from mcmig.sip.timers import REAP_TICK, reap_at

    assert reap_at(0.3, 5.0) == pytest.approx(5.5)
    assert reap_at(1.0, 32.0) == pytest.approx(33.0)  # on the grid already: unchanged
    assert reap_at(7.25, 0.0) == 7.25  # reliable transports end at once
    for now in (0.0, 0.01, 0.49, 0.5, 123.456):
        deadline = reap_at(now, 5.0)
        assert now + 5.0 <= deadline < now + 5.0 + REAP_TICK
