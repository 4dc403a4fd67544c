"""Topology hiding as a property: nothing of the inside appears in what a gateway emits."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from mcmig.mc.body import CONTENT_TYPE, MigrationFailure, MigrationRequest, encode
from mcmig.mc.causes import Cause, failure_response
from mcmig.nodes.hiding import (
    Hiding,
    crossing_request,
    leaving_response,
    outbound_body,
    system_hiding,
)
from mcmig.sip.message import Request
from mcmig.sip.parser import parse_message
from mcmig.sip.responses import make_response

EXTERNAL_URI = "sip:127.0.9.1:5060"
OWN = "primary.example"

secrets = st.text(string.ascii_lowercase + string.digits, min_size=8, max_size=12).map(
    lambda s: "in" + s
)
inner_ips = st.tuples(st.sampled_from([1, 2]), st.integers(1, 254)).map(
    lambda t: f"127.0.{t[0]}.{t[1]}"
)
# Internal host names: under an internal zone, and under the system's own public
# domain too (pc7.primary.example names a host, not the system).
inner_names = st.one_of(
    secrets.map(lambda s: f"{s}.core.internal"),
    secrets.map(lambda s: f"pc-{s}.lab.primary.internal"),
    secrets.map(lambda s: f"{s}.{OWN}"),
    secrets.map(lambda s: f"{s}.partner.example"),
)
inner_hosts = st.one_of(inner_ips, inner_names, st.just("[fd00::17]"))
NODE_NAMES = frozenset({"primary-server", "primary-gw", "core-7"})
HIDING = system_hiding(OWN, ["partner.example"], NODE_NAMES)


@st.composite
def inner_request(draw: st.DrawFn) -> tuple[Request, set[str]]:
    """A request as an inside node might send it to its gateway, and its inner values."""
    marks: set[str] = set()

    def mark(value: str) -> str:
        marks.add(value.strip("[]"))
        return value

    host = mark(draw(inner_hosts))
    branch, call_id, tag = (mark(draw(secrets)) for _ in range(3))
    ruri_param = mark(draw(secrets))
    headers = [
        ("Via", f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{branch};rport"),
        ("Via", f"SIP/2.0/TCP {mark(draw(inner_hosts))};branch=z9hG4bK{mark(draw(secrets))}"),
        ("Max-Forwards", str(draw(st.integers(1, 70)))),
        (
            "From",
            f'"{mark(draw(secrets))}" <sip:migration@{draw(st.sampled_from([OWN, mark(draw(inner_hosts))]))}'
            f";maddr={mark(draw(inner_ips))}>;tag={tag}",
        ),
        (
            "To",
            f"<sip:alice@{draw(st.sampled_from(['partner.example', mark(draw(inner_names))]))};{ruri_param}>",
        ),
        ("Call-ID", f"{call_id}@{host}"),
        ("CSeq", f"{draw(st.integers(1, 10**6))} MESSAGE"),
        ("Contact", f"<sip:{mark(draw(secrets))}@{mark(draw(inner_hosts))}:5060>"),
        ("Record-Route", f"<sip:{mark(draw(inner_hosts))};lr>"),
        ("Route", f"<sip:{mark(draw(inner_hosts))};lr>"),
        ("Path", f"<sip:{mark(draw(inner_hosts))};lr>"),
        ("User-Agent", f"mcmig {mark(draw(secrets))}"),
        ("P-Asserted-Identity", f"<sip:{mark(draw(secrets))}@{mark(draw(inner_hosts))}>"),
        ("Content-Type", CONTENT_TYPE),
    ]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["X-", "P-", "Y-"])) + draw(
            st.text(string.ascii_letters, min_size=1, max_size=6)
        )
        headers.append((name, mark(draw(secrets))))
    body = encode(
        MigrationRequest(
            "sip:alice@partner.example",
            partner_system=OWN,
            partner_address=f"sip:{mark(draw(inner_ips))}:5060",
            temporary_id=None,
        )
    )
    request = Request(
        "MESSAGE",
        parse_message(
            f"MESSAGE sip:alice@{draw(st.sampled_from(['partner.example', mark(draw(inner_ips))]))};x={ruri_param} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 1.1.1.1;branch=z9hG4bKa\r\nFrom: <sip:a@b.example>;tag=1\r\nTo: <sip:a@b.example>\r\n"
            "Call-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n".encode()
        ).uri,
        headers,
        body,
    )  # type: ignore[union-attr]
    return request, marks


@given(inner_request())
def test_requests_leaving_carry_nothing_inner(case: tuple[Request, set[str]]) -> None:
    request, marks = case
    reparsed = parse_message(request.serialize())  # what the gateway really receives
    assert isinstance(reparsed, Request)
    onward = crossing_request(reparsed, outbound_body(reparsed, EXTERNAL_URI), HIDING, 69)
    wire = onward.serialize().decode()
    for value in marks:
        assert value not in wire, (value, wire)
    assert "127.0.1." not in wire and "127.0.2." not in wire
    assert EXTERNAL_URI in wire  # partner-address became the gateway's


@given(
    inner_request(),
    st.sampled_from(list(Cause)),
    secrets,
    inner_ips,
    st.sampled_from(sorted(NODE_NAMES)),
    inner_names,
    st.sampled_from([100, 180, 183, 200, 403, 404, 480, 486, 500, 503, 504]),
)
def test_responses_leaving_carry_nothing_inner(
    case: tuple[Request, set[str]],
    cause: Cause,
    secret: str,
    ip: str,
    node: str,
    host: str,
    status: int,
) -> None:
    inner, marks = case
    upstream = parse_message(
        b"MESSAGE sip:alice@primary.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.9.2:5060;branch=z9hG4bKout\r\n"
        b"From: <sip:migration@partner.example>;tag=o1\r\nTo: <sip:alice@primary.example>\r\n"
        b"Call-ID: outer\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(upstream, Request)
    response = failure_response(
        inner, cause, f"refused by {node} at {ip}:5060 (sip:bob@{host})", f"{host}:5060"
    )
    response.add("Warning", f'399 {node} "see {host} or {ip}"')
    for name, value in [
        ("Server", secret),
        ("Contact", f"<sip:{ip}>"),
        ("Record-Route", f"<sip:{ip};lr>"),
        ("X-Debug", secret),
    ]:
        response.add(name, value)
    marks |= {secret, ip, node, host}
    wire = (
        leaving_response(upstream, parse_message(response.serialize()), HIDING)  # type: ignore[arg-type]
        .serialize()
        .decode()
    )  # type: ignore[arg-type]
    for value in marks:
        assert value not in wire, (value, wire)
    assert f'399 primary.example "{cause.token}:' in wire
    other = make_response(inner, status, f"from {host} at {ip} via {node}")
    other.add("Warning", f'399 {host} "{node} {ip}"')
    ok = leaving_response(upstream, other, HIDING).serialize().decode()
    assert not any(value in ok for value in marks), ok


def test_a_clean_failure_crosses_unchanged_but_for_the_agent() -> None:
    inner = parse_message(
        b"MESSAGE sip:alice@primary.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.1:5060;branch=z9hG4bKi\r\n"
        b"From: <sip:migration@partner.example>;tag=i\r\nTo: <sip:alice@primary.example>\r\n"
        b"Call-ID: inner\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(inner, Request)
    response = failure_response(
        inner, Cause.MIGRATION_NOT_PERMITTED, "alice may not go there", "primary-server"
    )
    out = leaving_response(inner, response, HIDING)
    assert (
        out.status == 403
        and out.get("Warning")
        == '399 primary.example "migration-not-permitted: alice may not go there"'
    )
    assert out.body == encode(MigrationFailure("migration-not-permitted", "alice may not go there"))


def test_public_domains_keep_their_hosts_and_nothing_else_does() -> None:
    hiding = Hiding(OWN, frozenset({OWN, "partner.example"}))
    keep = ["sip:alice@primary.example", "sip:t-x@partner.example", "sip:a@PRIMARY.example"]
    for uri in keep:
        parsed = parse_message(
            f"MESSAGE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@b.example>"
            ";tag=1\r\nTo: <sip:a@b.example>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n".encode()
        )
        assert isinstance(parsed, Request)
        assert hiding.uri(parsed.uri).host == uri.rsplit("@", 1)[1].lower()  # type: ignore[arg-type]
    assert hiding.text("see pc7.lab.primary.internal") == "see [host withheld]"
    assert hiding.text("alice@primary.example in 8.5 s") == "alice@primary.example in 8.5 s"
