"""RFC 3261 section 18.2.2 and RFC 3581: where responses go."""

from __future__ import annotations

import pytest

from mcmig.sip.message import Request
from mcmig.sip.peer import (
    TransportAddress,
    reconnect_destination,
    response_destination,
    stamp_received,
)
from mcmig.sip.uri import parse_uri
from mcmig.sip.via import parse_via


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        # UDP: received host and rport (RFC 3581), else sent-by.
        (
            "SIP/2.0/UDP a.example:5070;branch=z9hG4bK1;received=192.0.2.1;rport=4000",
            ("UDP", "192.0.2.1", 4000),
            ("UDP", "192.0.2.1", 4000),
        ),
        (
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1",
            ("UDP", "192.0.2.1", 4000),
            ("UDP", "192.0.2.1", 5070),
        ),
        (
            "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1",
            ("UDP", "2001:db8::1", 4000),
            ("UDP", "2001:db8::1", 5060),
        ),
        # Streams: back on the connection the request came on.
        (
            "SIP/2.0/TLS a.example:5061;branch=z9hG4bK1;received=192.0.2.1",
            ("TLS", "192.0.2.1", 40123),
            ("TLS", "192.0.2.1", 40123),
        ),
    ],
)
def test_response_destination(
    via: str, source: tuple[str, str, int], expected: tuple[str, str, int]
) -> None:
    assert response_destination(parse_via(via), TransportAddress(*source)) == TransportAddress(
        *expected
    )


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        # The connection is gone: a new one to received (else sent-by host) at
        # the sent-by port, never at the peer's ephemeral source port.
        (
            "SIP/2.0/TLS gw.example:5071;branch=z9hG4bK1;received=192.0.2.1",
            ("TLS", "192.0.2.1", 40123),
            ("TLS", "192.0.2.1", 5071),
        ),
        (
            "SIP/2.0/TLS 192.0.2.1;branch=z9hG4bK1",
            ("TLS", "192.0.2.1", 40123),
            ("TLS", "192.0.2.1", 5061),
        ),
        (
            "SIP/2.0/TCP [2001:db8::1];branch=z9hG4bK1;rport=40123",
            ("TCP", "2001:db8::1", 40123),
            ("TCP", "2001:db8::1", 5060),
        ),
    ],
)
def test_reconnect_destination(
    via: str, source: tuple[str, str, int], expected: tuple[str, str, int]
) -> None:
    assert reconnect_destination(parse_via(via), TransportAddress(*source)) == TransportAddress(
        *expected
    )


@pytest.mark.parametrize(
    ("via_lines", "expected"),
    [
        # One Via per line: the top one is rewritten in place.
        (
            ["SIP/2.0/UDP a.example:5070;branch=z9hG4bK1;rport", "SIP/2.0/UDP b.example"],
            [
                "SIP/2.0/UDP a.example:5070;branch=z9hG4bK1;rport=4000;received=192.0.2.1",
                "SIP/2.0/UDP b.example",
            ],
        ),
        # Several Vias in one line: only the first value changes; the rest stay as sent.
        (
            ["SIP/2.0/UDP a.example;branch=z9hG4bK1 , SIP/2.0/TCP b.example;branch=z9hG4bK2"],
            [
                "SIP/2.0/UDP a.example;branch=z9hG4bK1;received=192.0.2.1, "
                "SIP/2.0/TCP b.example;branch=z9hG4bK2"
            ],
        ),
    ],
)
def test_stamp_received_rewrites_only_the_top_via(
    via_lines: list[str], expected: list[str]
) -> None:
    request = Request(
        "OPTIONS",
        parse_uri("sip:x@example.net"),
        [("Via", line) for line in via_lines]
        + [
            ("From", "<sip:c@example.net>;tag=1"),
            ("To", "<sip:x@example.net>"),
            ("Call-ID", "stamp"),
            ("CSeq", "1 OPTIONS"),
        ],
    )
    stamp_received(request, TransportAddress("UDP", "192.0.2.1", 4000))
    assert request.get_all("Via") == expected
    assert request.top_via.received == "192.0.2.1"
    assert [str(v) for v in request.vias] == [
        str(parse_via(v)) for line in expected for v in line.split(", ")
    ]
