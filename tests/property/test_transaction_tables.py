"""Every input in every state: the machines stay in a valid state (h2's approach)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcmig.sip.client_transaction import ClientState, NonInviteClientTransaction
from mcmig.sip.errors import LocalProtocolError
from mcmig.sip.message import Request
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.server_transaction import NonInviteServerTransaction, ServerState
from mcmig.sip.timers import TimerConfig
from mcmig.sip.transaction_layer import quoted_request_key
from tests.property.strategies import requests
from tests.support.messages import message_request

ADDRESSES = [TransportAddress("UDP", "127.0.0.1", 5060), TransportAddress("TCP", "127.0.0.1", 5060)]
STATUSES = [100, 180, 200, 302, 403, 408, 500, 504]


def _request() -> Request:
    msg = parse_message(message_request())
    assert isinstance(msg, Request)
    return msg


@given(
    st.sampled_from(ADDRESSES),
    st.lists(
        st.tuples(
            st.sampled_from(["resp", "timer", "fail"]), st.sampled_from(STATUSES), st.floats(0, 5)
        ),
        max_size=30,
    ),
)
def test_client_machine(address: TransportAddress, inputs: list[tuple[str, int, float]]) -> None:
    request = _request()
    txn = NonInviteClientTransaction(request, address, TimerConfig(), now=0.0)
    now = 0.0
    finals = 0
    for kind, status, dt in inputs:
        now += dt
        if kind == "resp":
            actions = txn.receive_response(make_response(request, status), now)
        elif kind == "timer":
            actions = txn.handle_timer(now)
        else:
            actions = txn.transport_failed(now)
        finals += sum(1 for a in actions if type(a).__name__ in ("Timeout", "TransportError"))
        finals += sum(
            1 for a in actions if type(a).__name__ == "DeliverResponse" and a.response.status >= 200
        )  # type: ignore[union-attr]
        assert txn.state in ClientState
        deadline = txn.next_deadline()
        assert (deadline is None) == (
            txn.state is ClientState.TERMINATED
        ) or txn.state is ClientState.COMPLETED
        if deadline is not None:
            assert deadline >= 0
    assert finals <= 1  # the TU hears of at most one outcome


@given(
    st.sampled_from(ADDRESSES),
    st.lists(
        st.tuples(
            st.sampled_from(["retx", "respond", "timer", "fail"]),
            st.sampled_from(STATUSES),
            st.floats(0, 5),
        ),
        max_size=30,
    ),
)
def test_server_machine(address: TransportAddress, inputs: list[tuple[str, int, float]]) -> None:
    request = _request()
    txn = NonInviteServerTransaction(request, address, address, TimerConfig(), now=0.0)
    now = 0.0
    for kind, status, dt in inputs:
        now += dt
        state = txn.state
        try:
            if kind == "retx":
                txn.receive_retransmission(now)
            elif kind == "respond":
                txn.respond(make_response(request, status), now)
            elif kind == "timer":
                txn.handle_timer(now)
            else:
                txn.transport_failed(now)
        except LocalProtocolError:
            # documented refusals: 408, 1xx other than 100, a second final
            assert (
                status == 408
                or 100 < status < 200
                or state is ServerState.COMPLETED
                or state is ServerState.TERMINATED
            )
            assert txn.state is state
        assert txn.state in ServerState
        if txn.last_response is not None and txn.last_response.status >= 200:
            assert txn.state in (ServerState.COMPLETED, ServerState.TERMINATED)


@given(requests(), st.integers(0, 1500), st.binary(max_size=64))
def test_an_icmp_quote_names_the_request_or_nothing(
    request: Request, cut: int, noise: bytes
) -> None:
    """What an ICMP error quotes is a peer-influenced prefix of a datagram: any cut
    of a request gives its own key or None, and arbitrary bytes never raise."""
    wire = request.serialize()
    key = quoted_request_key(wire[:cut])
    assert key is None or key == (request.top_via.branch, request.method)
    quoted_request_key(noise)
    quoted_request_key(wire[:cut] + noise)
