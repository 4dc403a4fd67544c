"""What the transports hand up to a node, and how they are configured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcmig.sip.parser import DEFAULT_LIMITS, ParserLimits
from mcmig.sip.peer import TransportAddress
from mcmig.sip.uri import host_reference

# (raw message bytes, where they came from, True when a whole datagram)
MessageSink = Callable[[bytes, TransportAddress, bool], None]
# a destination that could not be reached or whose connection broke
FailureSink = Callable[[TransportAddress], None]
# an ICMP error for a datagram sent to that destination, and the start of that datagram
UnreachableSink = Callable[[TransportAddress, bytes], None]
# whether a connection from this remote IP address may be accepted at all
ConnectionGate = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Per-node transport settings.

    idle_timeout: seconds a TCP connection may go without a complete message
        before it is closed; this also bounds slowloris senders.
    max_connections: TCP connections open at once, in and out.
    max_connections_per_host: TCP connections from one remote IP address.
    tls_handshake_timeout: seconds an accepted TLS connection may take to finish
        its handshake; it holds a place under the caps meanwhile.
    """

    limits: ParserLimits = DEFAULT_LIMITS
    idle_timeout: float = 60.0
    max_connections: int = 1024
    max_connections_per_host: int = 64
    tls_handshake_timeout: float = 5.0


def split_hostport(text: str, default_port: int = 5060) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host, as (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    number = int(port) if port else default_port
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, number


def format_hostport(host: str, port: int) -> str:
    return f"{host_reference(host)}:{port}"
