"""HEPv3 (the Homer encapsulation protocol, version 3): every SIP message a node
sends or receives, sent over UDP to a capture server (Homer, heplify-server,
Kamailio's sipcapture), so that mcmig shows up next to the rest of the network.

A HEPv3 packet is "HEP3", its total length, then chunks: each a vendor id, a
type id and a length (two bytes each, the length counting the six-byte chunk
header), then the value. All numbers are in network byte order.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable

from mcmig.node.runtime import SipNode
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress

log = logging.getLogger("mcmig.hep")

GENERIC_VENDOR = 0x0000
PROTOCOL_SIP = 0x01
# Chunk types of the generic vendor (HEPv3 specification).
IP_FAMILY = 0x0001
IP_PROTOCOL = 0x0002
IPV4_SOURCE = 0x0003
IPV4_DESTINATION = 0x0004
IPV6_SOURCE = 0x0005
IPV6_DESTINATION = 0x0006
SOURCE_PORT = 0x0007
DESTINATION_PORT = 0x0008
TIMESTAMP_SECONDS = 0x0009
TIMESTAMP_MICROSECONDS = 0x000A
PROTOCOL_TYPE = 0x000B
CAPTURE_AGENT_ID = 0x000C
PAYLOAD = 0x000F
CORRELATION_ID = 0x0011

_IP_PROTOCOLS = {"UDP": 17, "TCP": 6, "TLS": 6}
_MAX_DATAGRAM = 65507


def _chunk(kind: int, value: bytes) -> bytes:
    return struct.pack("!HHH", GENERIC_VENDOR, kind, 6 + len(value)) + value


def encode(
    payload: bytes,
    source: TransportAddress,
    destination: TransportAddress,
    when: float,
    agent_id: int,
    correlation: str | None = None,
) -> bytes:
    """One HEPv3 packet carrying ``payload`` (a whole SIP message) as seen between
    ``source`` and ``destination`` at ``when`` (seconds since the epoch)."""
    src = ipaddress.ip_address(source.host)
    dst = ipaddress.ip_address(destination.host)
    if src.version != dst.version:  # an IPv4-mapped address on one side
        src = _as_v6(src)
        dst = _as_v6(dst)
    v6 = src.version == 6
    seconds = int(when)
    chunks = [
        _chunk(IP_FAMILY, bytes([socket.AF_INET6 if v6 else socket.AF_INET])),
        _chunk(IP_PROTOCOL, bytes([_IP_PROTOCOLS.get(source.transport, 17)])),
        _chunk(IPV6_SOURCE if v6 else IPV4_SOURCE, src.packed),
        _chunk(IPV6_DESTINATION if v6 else IPV4_DESTINATION, dst.packed),
        _chunk(SOURCE_PORT, struct.pack("!H", source.port)),
        _chunk(DESTINATION_PORT, struct.pack("!H", destination.port)),
        _chunk(TIMESTAMP_SECONDS, struct.pack("!I", seconds)),
        _chunk(TIMESTAMP_MICROSECONDS, struct.pack("!I", int((when - seconds) * 1_000_000))),
        _chunk(PROTOCOL_TYPE, bytes([PROTOCOL_SIP])),
        _chunk(CAPTURE_AGENT_ID, struct.pack("!I", agent_id)),
    ]
    if correlation:
        chunks.append(_chunk(CORRELATION_ID, correlation.encode()))
    chunks.append(_chunk(PAYLOAD, payload))
    body = b"".join(chunks)
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


def _as_v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(f"::ffff:{address}")


class HepSender:
    """Sends each node's messages to one HEP collector over UDP, without blocking:
    a datagram the kernel cannot take now is counted as dropped, never waited for."""

    def __init__(
        self,
        host: str,
        port: int,
        first_agent_id: int = 2001,
        clock: Callable[[], float] = time.time,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.collector = (host, port)
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._clock = clock
        self._next_agent = first_agent_id
        self.agents: dict[str, int] = {}  # node name -> capture agent id
        self.sent = 0
        self.dropped = 0

    def watch(self, node: SipNode) -> None:
        """Send what ``node`` sends and receives, under a capture agent id of its own."""
        agent = self._next_agent
        self._next_agent += 1
        self.agents[node.name] = agent

        def observe(
            direction: str,
            message: Request | Response,
            src: TransportAddress,
            dst: TransportAddress,
        ) -> None:
            self.send(message, src, dst, agent)

        node.observers.append(observe)

    def send(
        self,
        message: Request | Response,
        source: TransportAddress,
        destination: TransportAddress,
        agent: int,
    ) -> None:
        packet = encode(
            message.serialize(), source, destination, self._clock(), agent, message.call_id
        )
        if len(packet) > _MAX_DATAGRAM:
            self.dropped += 1
            return
        try:
            self._socket.sendto(packet, self.collector)
        except OSError as exc:  # a full buffer, or no collector (ICMP): never our node's fault
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("HEP to %s:%d: %s (%d dropped)", *self.collector, exc, self.dropped)
            return
        self.sent += 1

    def close(self) -> None:
        self._socket.close()
