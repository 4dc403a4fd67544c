"""Topology hiding at a gateway (PROFILE section 5): what may cross the border, and how.

Pure functions from what arrived on one side to what is sent on the other.
Nothing is copied by default: a request crossing is rebuilt from its method,
public URIs, Content-Type and body; a response from its status, reason,
Warning text (with our agent), cause body and a short allow-list.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mcmig.mc.body import (
    CONTENT_TYPE,
    BodyError,
    MigrationFailure,
    MigrationRequest,
    decode,
    encode,
)
from mcmig.mc.causes import rewrite_warning_agent
from mcmig.sip.message import Request, Response
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, is_ip_address

_IP_LITERAL_RE = re.compile(
    r"\[?[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?|\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?"
)

# Response headers that may cross, besides those rebuilt (Via, From, To,
# Call-ID, CSeq, Content-Length) and Warning, which is rewritten.
RESPONSE_ALLOW = ("Accept", "Retry-After", "Allow", "Unsupported")
# What a B2BUA passes back from one leg's response to the other's, gateways included
# (which rewrite the Warning first).
RELAYED_HEADERS = ("Warning", *RESPONSE_ALLOW)
_RESPONSE_ALLOWED = frozenset(RESPONSE_ALLOW)
_ALLOW_ORDER = {name: i for i, name in enumerate(RESPONSE_ALLOW)}


def public_uri(uri: SipUri, own_domain: str) -> SipUri:
    """A URI fit to leave the system: no parameters or headers, no IP host.

    Users are named by their public identities (MC service ID, temporary
    identity, PSI); a URI naming a host by address is replaced by our domain.
    """
    host = uri.host
    if is_ip_address(host) or "." not in host:
        host = own_domain
    return SipUri(host=host, user=uri.user, scheme=uri.scheme)


def outbound_body(request: Request, external_uri: str) -> bytes:
    """The body to send on: migration bodies with partner-address made ours.

    Raises BodyError for a migration body that cannot be read.
    """
    if request.content_type != CONTENT_TYPE:
        return request.body
    body = decode(request.body)
    if isinstance(body, MigrationRequest) and body.partner_address is not None:
        body = replace(body, partner_address=external_uri)
    return encode(body)


def crossing_request(request: Request, body: bytes, own_domain: str, max_forwards: int) -> Request:
    """A new request for the other side: fresh Call-ID, tags, CSeq; our Via is added on send."""
    assert isinstance(request.uri, SipUri)
    from_uri = request.from_.uri
    to_uri = request.to.uri
    return make_request(
        request.method,
        public_uri(request.uri, own_domain),
        from_uri=str(
            public_uri(from_uri, own_domain) if isinstance(from_uri, SipUri) else from_uri
        ),
        to_uri=str(public_uri(to_uri, own_domain) if isinstance(to_uri, SipUri) else to_uri),
        body=body,
        content_type=request.get("Content-Type") if body else None,
        max_forwards=max_forwards,
    )


def leaving_response(
    upstream: Request, response: Response, agent: str, inner_names: frozenset[str] = frozenset()
) -> Response:
    """A response leaving our system: Warning agents become our public name, and
    free text loses IP addresses and the names of our nodes."""
    return crossing_response(upstream, response, agent, inner_names)


def entering_response(upstream: Request, response: Response, agent: str) -> Response:
    """A response entering from a peer: its Warning already names that system."""
    return crossing_response(upstream, response, None)


def crossing_response(
    upstream: Request,
    response: Response,
    agent: str | None,
    inner_names: frozenset[str] = frozenset(),
) -> Response:
    """The answer to ``upstream`` built from what the other side answered."""

    def clean(text: str) -> str:
        return text if agent is None else scrub(text, inner_names)

    warnings: list[tuple[str, str]] = []
    allowed: list[tuple[str, str]] = []
    for name, value in response.headers:  # one pass: this runs for every response relayed
        if name == "Warning":
            value = value if agent is None else clean(rewrite_warning_agent(value, agent))
            warnings.append((name, value))
        elif name in _RESPONSE_ALLOWED:
            allowed.append((name, value))
    # Warnings first, then the allowed headers in RESPONSE_ALLOW's order.
    allowed.sort(key=lambda item: _ALLOW_ORDER[item[0]])
    headers = warnings + allowed
    body = b""
    if response.content_type == CONTENT_TYPE and response.body:
        try:
            cause = decode(response.body)  # only a valid cause body crosses
        except BodyError:
            pass
        else:
            if isinstance(cause, MigrationFailure) and agent is not None:
                cause = replace(cause, text=clean(cause.text))
            body = encode(cause) if agent is not None else response.body
            headers.append(("Content-Type", CONTENT_TYPE))
    status = 500 if response.status == 408 else response.status  # RFC 4320: never pass on a 408
    reason = response.reason if status == response.status else "Server Internal Error"
    return make_response(upstream, status, plain_reason(reason), headers=headers, body=body)


def scrub(text: str, inner_names: frozenset[str] = frozenset()) -> str:
    """Free text leaving the system keeps its words but loses IP addresses and inner names."""
    text = _IP_LITERAL_RE.sub("[address withheld]", text)
    for name in sorted(inner_names, key=len, reverse=True):
        if name:
            text = re.sub(re.escape(name), "[node]", text, flags=re.IGNORECASE)
    return text


def plain_reason(reason: str, default: str = "Unknown") -> str:
    """A reason phrase can carry anything; keep it short and printable."""
    if reason.isprintable():
        return reason[:64] or default
    cleaned = "".join(c for c in reason if c.isprintable())[:64]
    return cleaned or default
