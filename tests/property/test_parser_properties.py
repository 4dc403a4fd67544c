"""The parser raises nothing but SipParseError, and round-trips what it makes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcmig.sip.errors import SipParseError
from mcmig.sip.framing import StreamFramer
from mcmig.sip.message import Message
from mcmig.sip.parser import parse_message
from mcmig.sip.via import parse_via, parse_via_uncached
from tests.property.strategies import hosts, ports, requests, responses, tokens
from tests.support.messages import message_request

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rfc4475"
SEEDS = [message_request()] + [p.read_bytes() for p in sorted(CORPUS.glob("*.dat"))]


def _parse_or_refuse(data: bytes, datagram: bool = True) -> None:
    try:
        parse_message(data, datagram=datagram)
    except SipParseError as exc:
        assert 400 <= exc.status < 600


@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    _parse_or_refuse(data)
    _parse_or_refuse(data, datagram=False)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"\r\n",
                        b"\r",
                        b"\n",
                        b" ",
                        b";",
                        b",",
                        b"<",
                        b'"',
                        b"\x00",
                        b":",
                        b"\xff",
                        b"%",
                    ]
                )
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 80))]
    return bytes(data)


@given(mutated())
def test_mutated_valid_messages(data: bytes) -> None:
    _parse_or_refuse(data)
    _parse_or_refuse(data, datagram=False)


@given(st.one_of(requests(), responses()))
def test_round_trip(message: Message) -> None:
    wire = message.serialize()
    parsed = parse_message(wire)
    assert parsed == message
    assert parse_message(parsed.serialize()) == parsed
    # The size a node checks against the UDP limit without serializing.
    assert message.wire_size() == len(wire) and parsed.wire_size() == len(wire)


@given(st.lists(st.one_of(requests(), responses()), min_size=1, max_size=4), st.data())
def test_stream_framing_any_segmentation(messages: list[Message], data: st.DataObject) -> None:
    stream = b"\r\n".join(m.serialize() for m in messages)  # CRLF keep-alives between
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = StreamFramer()
    out: list[bytes] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        framer.feed(stream[last:cut])
        last = cut
        while (frame := framer.next_message()) is not None:
            out.append(frame)
    assert [parse_message(f, datagram=False) for f in out] == messages
    assert framer.buffered == 0


@given(st.binary(max_size=3000))
def test_framer_never_raises_anything_else(data: bytes) -> None:
    framer = StreamFramer()
    framer.feed(data)
    try:
        while framer.next_message() is not None:
            pass
    except SipParseError:
        pass


_NAME_SPELLINGS = st.sampled_from(
    ["Via", "v", "From", "f", "To", "CALL-ID", "i", "CSeq", "Subject", "X-Odd.Name~1", "s", "l"]
)


@given(
    st.lists(
        st.tuples(
            _NAME_SPELLINGS,
            st.sampled_from(["", " ", "\t", " \t "]),  # before the colon
            st.sampled_from(["", " ", "\t "]),  # after it
            st.text(alphabet="abc ;=<>:@\t", max_size=12),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_shortcut_for_known_names_reads_lines_as_the_grammar_does(
    lines: list[tuple[str, str, str, str]],
) -> None:
    from mcmig.sip import parser

    rest = "\r\n".join(f"{n}{before}:{after}{v}" for n, before, after, v in lines)
    grammar = [
        (parser._NAMES.get(n) or parser._name(n), v)
        for n, v in parser._HEADER_LINE_RE.findall(rest)
    ]
    shortcut = parser._known_header_lines(rest)
    assert len(grammar) == len(lines)
    # The shortcut either declines (a shorter list) or agrees line for line.
    assert len(shortcut) < len(lines) or shortcut == grammar
    preloaded = {"Via", "v", "From", "f", "To", "CSeq", "Subject", "s", "l", "i"}
    if all(before == "" and n in preloaded for n, before, _, _ in lines):
        assert shortcut == grammar  # canonical and compact spellings always take it


# Via values with a branch somewhere among other parameters: the cached parse
# (template with a stand-in branch) must give what a full parse gives, or the
# same refusal, whatever the branch, its neighbours and their case.
_via_params = st.lists(
    st.tuples(
        st.one_of(tokens, st.sampled_from(["branch", "BRANCH", "rport", "received"])),
        st.one_of(st.none(), tokens, st.sampled_from(["192.0.2.1", "::1", '"q;branch=x"'])),
    ),
    max_size=4,
)


@given(
    st.sampled_from(["UDP", "TCP", "tls"]),
    hosts,
    ports,
    _via_params,
    st.integers(0, 4),
    st.one_of(tokens, st.sampled_from(["", "a b", "x,y", '"q"'])),
)
def test_cached_via_parse_matches_the_full_parse(
    transport: str,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
    at: int,
    branch: str,
) -> None:
    items = [f";{n}" if v is None else f";{n}={v}" for n, v in params]
    items.insert(min(at, len(items)), f";branch={branch}")
    value = f"SIP/2.0/{transport} {host}{'' if port is None else f':{port}'}{''.join(items)}"
    try:
        full = parse_via_uncached(value)
    except SipParseError:
        with pytest.raises(SipParseError):
            parse_via(value)
        return
    cached = parse_via(value)
    assert cached == full and str(cached) == str(full)
    assert parse_via(value) == full  # from the cache this time
