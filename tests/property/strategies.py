"""Hypothesis strategies for SIP messages."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from mcmig.sip.headers import canonical_name
from mcmig.sip.message import Request, Response
from mcmig.sip.uri import SipUri

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8).map(
    lambda s: "h" + s
)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[::1]", "[2001:db8::5]"]),
)
users = st.text(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/", min_size=1, max_size=10)
ports = st.one_of(st.none(), st.integers(1, 65535))
uri_params = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=6),
    st.one_of(st.none(), st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)),
    max_size=3,
)
sip_uris = st.builds(
    SipUri,
    host=hosts,
    user=st.one_of(st.none(), users),
    port=ports,
    scheme=st.sampled_from(["sip", "sips"]),
    params=uri_params,
)
# A value for an extension header: printable, no edge whitespace.
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("éü中"), max_size=30
).map(lambda s: s.strip(" \t"))
extension_names = tokens.map(lambda s: "X-" + s).filter(lambda n: canonical_name(n) == n)
methods = st.one_of(
    st.sampled_from(["MESSAGE", "OPTIONS", "INFO", "NOTIFY"]), tokens.map(str.upper)
)


@st.composite
def core_headers(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    via_host = draw(hosts)
    branch = "z9hG4bK" + draw(
        st.text(string.ascii_letters + string.digits, min_size=1, max_size=16)
    )
    headers = [
        (
            "Via",
            f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {via_host};branch={branch}",
        ),
        ("From", f"<{draw(sip_uris)}>;tag={draw(tokens)}"),
        ("To", f"<{draw(sip_uris)}>"),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    extras = draw(st.lists(st.tuples(extension_names, header_values), max_size=5))
    merged = headers + extras
    return draw(st.permutations(merged))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(methods)
    return Request(
        method, draw(sip_uris), draw(core_headers(method)), draw(st.binary(max_size=200))
    )


@st.composite
def responses(draw: st.DrawFn) -> Response:
    method = draw(methods)
    headers = [h for h in draw(core_headers(method)) if h[0] != "Max-Forwards"]
    reason = draw(st.text(string.ascii_letters + " ", max_size=20))
    return Response(draw(st.integers(100, 699)), reason, headers, draw(st.binary(max_size=200)))
