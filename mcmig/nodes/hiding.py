"""Topology hiding at a gateway (PROFILE section 5): what may cross the border, and how.

Pure functions from what arrived on one side to what is sent on the other.
Nothing is copied by default: a request crossing is rebuilt from its method,
public URIs, Content-Type and body; a response from its status, reason,
Warning text (with our agent), cause body and a short allow-list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from mcmig.mc.body import (
    CONTENT_TYPE,
    BodyError,
    MigrationFailure,
    MigrationRequest,
    decode,
    encode,
)
from mcmig.mc.causes import rewrite_warning_agent
from mcmig.sip.errors import SipParseError
from mcmig.sip.message import Request, Response
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, parse_sip_uri

_IP_LITERAL_RE = re.compile(
    r"\[?[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?|\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?"
)
# A dotted host name in free text: labels of letters, digits and hyphens, the last
# one starting with a letter (so "8.5 s" is not one).
_HOST_NAME_RE = re.compile(
    r"(?<![\w.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*(?![\w-])"
)

# Response headers that may cross, besides those rebuilt (Via, From, To,
# Call-ID, CSeq, Content-Length) and Warning, which is rewritten.
RESPONSE_ALLOW = ("Accept", "Retry-After", "Allow", "Unsupported")
# What a B2BUA passes back from one leg's response to the other's, gateways included
# (which rewrite the Warning first).
RELAYED_HEADERS = ("Warning", *RESPONSE_ALLOW)
_RESPONSE_ALLOWED = frozenset(RESPONSE_ALLOW)
_ALLOW_ORDER = {name: i for i, name in enumerate(RESPONSE_ALLOW)}


@dataclass(frozen=True)
class Hiding:
    """What one system shows at its border: its public name, the domains that may
    be named on the wire (its own and its peers'), and its nodes' names."""

    agent: str
    public_domains: frozenset[str]
    inner_names: frozenset[str] = frozenset()

    def uri(self, uri: SipUri) -> SipUri:
        """A URI fit to leave the system: no parameters or headers, and a host only
        when it is a public domain. Users are named by their public identities (MC
        service ID, temporary identity, PSI); any other host (an address, an
        internal name such as pc7.lab.primary.internal) becomes our domain."""
        host = uri.host.lower()
        if host not in self.public_domains:
            host = self.agent
        return SipUri(host=host, user=uri.user, scheme=uri.scheme)

    def text(self, text: str) -> str:
        """Free text leaving the system keeps its words but loses addresses, host
        names that are not public, and the names of our nodes."""
        text = _IP_LITERAL_RE.sub("[address withheld]", text)
        for name in sorted(self.inner_names, key=len, reverse=True):
            if name:
                text = re.sub(re.escape(name), "[node]", text, flags=re.IGNORECASE)
        return _HOST_NAME_RE.sub(self._public_or_withheld, text)

    def _public_or_withheld(self, match: re.Match[str]) -> str:
        name = match.group(0)
        return name if name.lower() in self.public_domains else "[host withheld]"

    def warning(self, value: str) -> str:
        return self.text(rewrite_warning_agent(value, self.agent))

    def reason(self, reason: str, default: str = "Unknown") -> str:
        return plain_reason(self.text(reason), default)

    def public_contact(self, uri: str) -> bool:
        """Only a public identity may cross in a redirect's Contact, never an address."""
        try:
            parsed = parse_sip_uri(uri)
        except SipParseError:
            return False
        return parsed.user is not None and parsed.host.lower() in self.public_domains


def system_hiding(
    domain: str, peer_domains: Iterable[str], inner_names: Iterable[str] = ()
) -> Hiding:
    return Hiding(domain, frozenset({domain, *peer_domains}), frozenset(inner_names))


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


def crossing_request(request: Request, body: bytes, hiding: Hiding, max_forwards: int) -> Request:
    """A new request for the other side: fresh Call-ID, tags, CSeq; our Via is added on send."""
    assert isinstance(request.uri, SipUri)
    from_uri = request.from_.uri
    to_uri = request.to.uri
    return make_request(
        request.method,
        hiding.uri(request.uri),
        from_uri=str(hiding.uri(from_uri) if isinstance(from_uri, SipUri) else from_uri),
        to_uri=str(hiding.uri(to_uri) if isinstance(to_uri, SipUri) else to_uri),
        body=body,
        content_type=request.get("Content-Type") if body else None,
        max_forwards=max_forwards,
    )


def leaving_response(upstream: Request, response: Response, hiding: Hiding) -> Response:
    """A response leaving our system: Warning agents become our public name, and
    free text loses addresses, internal host names and the names of our nodes."""
    return crossing_response(upstream, response, hiding)


def entering_response(upstream: Request, response: Response, agent: str) -> Response:
    """A response entering from a peer: its Warning already names that system."""
    return crossing_response(upstream, response, None)


def crossing_response(upstream: Request, response: Response, hiding: Hiding | None) -> Response:
    """The answer to ``upstream`` built from what the other side answered."""
    warnings: list[tuple[str, str]] = []
    allowed: list[tuple[str, str]] = []
    for name, value in response.headers:  # one pass: this runs for every response relayed
        if name == "Warning":
            warnings.append((name, value if hiding is None else hiding.warning(value)))
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
            if isinstance(cause, MigrationFailure) and hiding is not None:
                cause = replace(cause, text=hiding.text(cause.text))
            body = encode(cause) if hiding is not None else response.body
            headers.append(("Content-Type", CONTENT_TYPE))
    # (a 408 never gets here: b2bua.forward answers it as 504 timeout, RFC 4320)
    reason = plain_reason(response.reason) if hiding is None else hiding.reason(response.reason)
    return make_response(upstream, response.status, reason, headers=headers, body=body)


def plain_reason(reason: str, default: str = "Unknown") -> str:
    """A reason phrase can carry anything; keep it short and printable."""
    if reason.isprintable():
        return reason[:64] or default
    cleaned = "".join(c for c in reason if c.isprintable())[:64]
    return cleaned or default
