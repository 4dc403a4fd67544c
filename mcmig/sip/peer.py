"""Transport addresses and the RFC 3261 section 18 rules that use them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mcmig.sip.message import Request
from mcmig.sip.uri import host_reference
from mcmig.sip.via import Via

RELIABLE = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


# Immutable through Final, as the other values of the message model (uri.py).
@dataclass(slots=True, init=False, unsafe_hash=True)
class TransportAddress:
    """Where a message came from or goes to: transport, IP host, port."""

    transport: Final[str]  # "UDP", "TCP" or "TLS"
    host: Final[str]
    port: Final[int]

    def __init__(self, transport: str, host: str, port: int) -> None:
        self.transport = transport
        self.host = host
        self.port = port

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def __str__(self) -> str:
        host = host_reference(self.host)
        return f"{self.transport.lower()}:{host}:{self.port}"


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def stamp_received(request: Request, source: TransportAddress) -> None:
    """Add ``received`` and fill ``rport`` on the top Via (RFC 3261 18.2.1, RFC 3581)."""
    via = request.top_via
    params: dict[str, str | None] = {}
    if _bare(via.host).lower() != source.host.lower():
        params["received"] = source.host
    if via.has_rport:
        params["rport"] = str(source.port)
        params["received"] = source.host
    if params:
        request.replace_top_via(via.with_params(**params))


def response_destination(via: Via, source: TransportAddress) -> TransportAddress:
    """Where a server transaction sends its responses (RFC 3261 18.2.2, RFC 3581 4).

    Over a reliable transport the answer goes back on the connection the request
    came on; the transport layer finds it by the source address.
    """
    if source.reliable:
        return source
    host = via.received or _bare(via.host)
    port = (
        via.rport if via.rport is not None else (via.port or DEFAULT_PORTS.get(via.transport, 5060))
    )
    if port == source.port and host == source.host:
        return source  # the usual case once rport is stamped: no new address object
    return TransportAddress(source.transport, _bare(host), port)


def reconnect_destination(via: Via, source: TransportAddress) -> TransportAddress:
    """Where a response goes when the connection its request came on has closed.

    RFC 3261 18.2.2: a new connection to the ``received`` address (else the
    sent-by host) at the sent-by port, or the transport's default port. The
    request's source port was the peer's ephemeral one and nobody listens there.
    """
    host = via.received or _bare(via.host)
    port = via.port or DEFAULT_PORTS.get(source.transport, 5060)
    return TransportAddress(source.transport, _bare(host), port)
