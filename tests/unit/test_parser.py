from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcmig.sip.errors import SipParseError
from mcmig.sip.message import Request, Response
from mcmig.sip.parser import ParserLimits, parse_message
from mcmig.sip.uri import AbsoluteUri, SipUri, parse_uri
from tests.support.messages import MIGRATION_BODY, message_request


def test_parses_a_message_request_with_typed_views() -> None:
    msg = parse_message(message_request())
    assert isinstance(msg, Request)
    assert msg.method == "MESSAGE"
    assert msg.uri == SipUri(host="primary.example", user="alice")
    via = msg.top_via
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "127.0.2.10",
        5060,
        "z9hG4bK776asdhds",
    )
    assert via.has_rport and via.rport is None
    assert msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.cseq.seq == 314159 and msg.cseq.method == "MESSAGE"
    assert msg.max_forwards == 70
    assert msg.content_type == "application/vnd.mcmig.migration+xml"
    assert msg.body == MIGRATION_BODY


def test_compact_forms_and_hcolon_whitespace() -> None:
    raw = (
        b"OPTIONS sip:a@b.example SIP/2.0\r\nv: SIP/2.0/TCP h.example;branch=z9hG4bKx\r\n"
        b"f: <sip:c@d.example>;tag=1\r\nt : sip:a@b.example\r\ni: abc\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length : 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert msg.get("Via") == "SIP/2.0/TCP h.example;branch=z9hG4bKx"
    assert msg.call_id == "abc"
    assert [n for n, _ in msg.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]


def test_folded_header_is_unfolded() -> None:
    raw = message_request().replace(b"Max-Forwards: 70", b"Max-Forwards:\r\n  70")
    assert parse_message(raw).max_forwards == 70


def test_comma_separated_vias() -> None:
    raw = message_request().replace(
        b"Max-Forwards",
        b"Via: SIP/2.0/TCP a.example;branch=z9hG4bK1, SIP/2.0/UDP [::1]:5070;branch=z9hG4bK2\r\nMax-Forwards",
    )
    vias = parse_message(raw).vias
    assert [v.host for v in vias] == ["127.0.2.10", "a.example", "[::1]"]
    assert vias[2].port == 5070


def test_response_parses() -> None:
    raw = (
        b"SIP/2.0 403 Forbidden\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 5 MESSAGE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason, msg.to.tag) == (403, "Forbidden", "2")


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda m: m.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (lambda m: m.replace(b"CSeq: 314159 MESSAGE", b"CSeq: 314159 OPTIONS"), 400),
        (lambda m: m.replace(b"Call-ID: a84b4c76e66710\r\n", b""), 400),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards: -1"), 400),
        (lambda m: m.replace(b"Content-Length: ", b"Content-Length: -"), 400),
        (lambda m: m.replace(b"Content-Length: ", b"Content-Length: 9"), 400),
        (lambda m: m.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\nX: y\r\n"), 400),
        (lambda m: m.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\rX: y\r\n"), 400),
        (lambda m: m.replace(b"a84b4c76e66710", b"a84b\x00c76"), 400),
        (lambda m: m.replace(b"a84b4c76e66710", b"a84b\xff76"), 400),
        (lambda m: m.replace(b"To: <sip:alice", b"To: <sip:alice@x>\r\nTo: <sip:bob"), 400),
        (lambda m: m + b"x" * 70000, 413),
        (lambda m: m.replace(b"Max-Forwards: 70", b"garbage line X: 70"), 400),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max Forwards: 70"), 400),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400),
    ],
)
def test_rejections_carry_the_status_to_answer(mutate, status) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SipParseError) as info:
        parse_message(mutate(message_request()))
    assert info.value.status == status


def test_rejection_keeps_a_partial_message_to_answer_on() -> None:
    raw = message_request().replace(b"CSeq: 314159 MESSAGE", b"CSeq: 314159 OPTIONS")
    with pytest.raises(SipParseError) as info:
        parse_message(raw)
    assert isinstance(info.value.partial, Request)
    assert info.value.partial.call_id == "a84b4c76e66710"


def test_stream_requires_content_length() -> None:
    raw = message_request().replace(f"Content-Length: {len(MIGRATION_BODY)}\r\n".encode(), b"")
    assert parse_message(raw, datagram=True).body == MIGRATION_BODY
    with pytest.raises(SipParseError):
        parse_message(raw, datagram=False)


def test_datagram_bytes_past_content_length_are_ignored() -> None:
    raw = message_request() + b"trailing junk"
    assert parse_message(raw).body == MIGRATION_BODY


def test_caps_on_header_count_and_line_length() -> None:
    many = message_request().replace(b"Max-Forwards", b"X-A: 1\r\n" * 300 + b"Max-Forwards")
    with pytest.raises(SipParseError):
        parse_message(many)
    long_line = message_request().replace(
        b"Max-Forwards", b"X-A: " + b"a" * 9000 + b"\r\nMax-Forwards"
    )
    with pytest.raises(SipParseError):
        parse_message(long_line)
    assert parse_message(many, limits=ParserLimits(max_headers=400)).get("X-A") == "1"


def test_serialize_computes_content_length_and_round_trips() -> None:
    msg = parse_message(message_request())
    wire = msg.serialize()
    assert f"Content-Length: {len(MIGRATION_BODY)}\r\n".encode() in wire
    assert parse_message(wire) == msg


def test_uris() -> None:
    uri = parse_uri("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=x")
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "secret",
        "[2001:db8::1]",
        5061,
    )
    assert uri.params == {"transport": "tls", "lr": None}
    assert str(uri) == "sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=x"
    assert isinstance(parse_uri("tel:+15551234"), AbsoluteUri)
    for bad in ["sip:", "sip:a@b c", "sip:a@b:99999", "<sip:a@b>", "sip:a%zz@b"]:
        with pytest.raises(SipParseError):
            parse_uri(bad)


def test_via_received_takes_bare_ipv6_and_refuses_names() -> None:
    from mcmig.sip.via import parse_via

    assert parse_via("SIP/2.0/UDP [::1]:5060;rport=5;received=::1").received == "::1"
    assert parse_via("SIP/2.0/UDP a.example;received=192.0.2.1").received == "192.0.2.1"
    with pytest.raises(SipParseError):
        parse_via("SIP/2.0/UDP a.example;received=host.example")


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP host.example :5070;branch=z9hG4bKa",
        "SIP / 2.0 / UDP host.example:5070 ; branch = z9hG4bKa",
        "SIP/2.0/UDP host.example:5070;branch=z9hG4bKa",
    ],
)
def test_via_with_and_without_lws(value: str) -> None:
    from mcmig.sip.via import parse_via

    via = parse_via(value)
    assert (via.host, via.port, via.branch) == ("host.example", 5070, "z9hG4bKa")


@given(st.text(max_size=40))
def test_quote_then_unquote_gives_the_text_back(text: str) -> None:
    from mcmig.sip.grammar import QUOTED_STRING, quote, unquote

    quoted = quote(text)
    assert re.fullmatch(QUOTED_STRING, quoted)
    assert unquote(quoted) == text.replace("\r", "").replace("\n", "")
