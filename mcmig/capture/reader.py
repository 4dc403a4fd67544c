"""Reading SIP out of captures from any software: pcap or pcapng; Ethernet (802.1Q
VLAN tags included), Linux cooked (SLL, SLL2), BSD loopback and raw IP link types;
IPv4 and IPv6, fragments reassembled; IP-in-IP, IPv6-in-IP and GRE tunnels opened;
UDP, and TCP with segments reassembled per direction and cut into messages by
Content-Length.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

from mcmig.sip.errors import SipParseError
from mcmig.sip.framing import StreamFramer
from mcmig.sip.message import Request, Response
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress

LINKTYPE_LINUX_SLL2 = 276
_IP_IN_IP, _IPV6_IN_IP, _GRE = 4, 41, 47
_GRE_TRANSPARENT_ETHERNET = 0x6558
_MAX_TUNNELS = 4  # tunnels opened inside each other, at most
_MAX_PENDING_FRAGMENTS = 4096  # datagrams waiting for their other fragments, at most


@dataclass(frozen=True)
class CapturedMessage:
    frame: int  # number of the frame that holds (or completes) the message, from 1
    time: float
    source: TransportAddress
    destination: TransportAddress
    message: Request | Response

    @property
    def label(self) -> str:
        m = self.message
        return m.method if isinstance(m, Request) else f"{m.status} {m.reason}"


class CaptureError(Exception):
    """Not a capture file this reader understands."""


def _packets(path: Path) -> tuple[int, Any]:
    handle = path.open("rb")
    magic = handle.read(4)
    handle.seek(0)
    try:
        reader = (
            dpkt.pcapng.Reader(handle) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(handle)
        )
    except (ValueError, dpkt.UnpackError) as exc:
        raise CaptureError(f"{path}: not a pcap or pcapng file ({exc})") from None
    return int(reader.datalink()), reader


def _network_layer(linktype: int, data: bytes) -> Any:
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(data).data  # dpkt takes 802.1Q tags off
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(data).data
    if linktype == LINKTYPE_LINUX_SLL2:  # 20-byte header, protocol in the first two bytes
        return _by_ethertype(int.from_bytes(data[0:2], "big"), data[20:])
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback(data).data
    if linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229):
        return _ip(data)
    raise CaptureError(f"link type {linktype} is not supported")


def _ip(data: bytes) -> Any:
    return dpkt.ip.IP(data) if data[:1] and data[0] >> 4 == 4 else dpkt.ip6.IP6(data)


def _by_ethertype(proto: int, data: bytes) -> Any:
    if proto == dpkt.ethernet.ETH_TYPE_IP:
        return dpkt.ip.IP(data)
    if proto == dpkt.ethernet.ETH_TYPE_IP6:
        return dpkt.ip6.IP6(data)
    if proto == _GRE_TRANSPARENT_ETHERNET:
        return dpkt.ethernet.Ethernet(data).data
    return None


def _address(ip: Any) -> tuple[str, str]:
    if isinstance(ip, dpkt.ip6.IP6):
        return socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    return socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)


def _payload(ip: Any) -> bytes:
    """The IP payload as it was on the wire (dpkt may have parsed part of it)."""
    data = ip.data
    return data if isinstance(data, bytes) else bytes(data)


def _protocol(ip: Any) -> int:
    """The payload's protocol (for IPv6, after the extension headers dpkt read)."""
    return int(ip.p)


@dataclass
class _Datagram:
    """The fragments of one IP datagram seen so far."""

    parts: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None  # known once the last fragment came

    def whole(self) -> bytes | None:
        if self.total is None:
            return None
        out, at = bytearray(), 0
        for offset in sorted(self.parts):
            if offset > at:
                return None  # a hole
            out += self.parts[offset][at - offset :]
            at = max(at, offset + len(self.parts[offset]))
        return bytes(out[: self.total]) if at >= self.total else None


@dataclass
class _Reassembly:
    """IPv4 (RFC 791) and IPv6 (RFC 8200 4.5) fragments put back together."""

    pending: dict[tuple[Any, ...], _Datagram] = field(default_factory=dict)

    def payload(self, ip: Any) -> bytes | None:
        """The datagram's whole payload, or None while fragments are missing."""
        fragment = self._fragment(ip)
        if fragment is None:
            return _payload(ip)
        ident, offset, more = fragment
        key = (type(ip), ip.src, ip.dst, ident, _protocol(ip))
        datagram = self.pending.setdefault(key, _Datagram())
        if len(self.pending) > _MAX_PENDING_FRAGMENTS:
            self.pending.pop(next(iter(self.pending)))  # the oldest never completed
        part = _payload(ip)
        datagram.parts[offset] = part
        if not more:
            datagram.total = offset + len(part)
        whole = datagram.whole()
        if whole is not None:
            del self.pending[key]
        return whole

    @staticmethod
    def _fragment(ip: Any) -> tuple[int, int, bool] | None:
        if isinstance(ip, dpkt.ip.IP):
            if not ip.mf and not ip.offset:
                return None
            return int(ip.id), int(ip.offset) * 8, bool(ip.mf)  # in units of 8 bytes
        header = getattr(ip, "extension_hdrs", {}).get(dpkt.ip.IP_PROTO_FRAGMENT)
        if header is None:
            return None
        return int(header.id), int(header.frag_off) * 8, bool(header.m_flag)


def _transport(proto: int, payload: bytes) -> Any:
    if proto == dpkt.ip.IP_PROTO_UDP:
        return dpkt.udp.UDP(payload)
    if proto == dpkt.ip.IP_PROTO_TCP:
        return dpkt.tcp.TCP(payload)
    return None


def _segments(ip: Any, fragments: _Reassembly) -> Iterator[tuple[str, str, Any]]:
    """(source host, destination host, UDP or TCP) for each transport segment in an
    IP packet, through tunnels and once its fragments are all in."""
    for _ in range(_MAX_TUNNELS + 1):
        if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
            return
        payload = fragments.payload(ip)
        if payload is None:
            return
        proto = _protocol(ip)
        if proto == _IP_IN_IP:
            ip = dpkt.ip.IP(payload)
        elif proto == _IPV6_IN_IP:
            ip = dpkt.ip6.IP6(payload)
        elif proto == _GRE:
            gre = dpkt.gre.GRE(payload)
            inner = gre.data if isinstance(gre.data, bytes) else bytes(gre.data)
            ip = _by_ethertype(int(gre.p), inner)
        else:
            l4 = _transport(proto, payload)
            if l4 is not None:
                yield (*_address(ip), l4)
            return


def read_sip(path: Path) -> list[CapturedMessage]:
    """Every SIP message in the capture, in capture order; non-SIP payloads are skipped."""
    linktype, reader = _packets(path)
    out: list[CapturedMessage] = []
    streams: dict[tuple[TransportAddress, TransportAddress], tuple[StreamFramer, int]] = {}
    fragments = _Reassembly()
    for number, (stamp, data) in enumerate(reader, 1):
        try:
            segments = list(_segments(_network_layer(linktype, data), fragments))
        except (dpkt.UnpackError, ValueError, IndexError, struct.error):
            continue
        for src_host, dst_host, l4 in segments:
            if isinstance(l4, dpkt.udp.UDP):
                src = TransportAddress("UDP", src_host, l4.sport)
                dst = TransportAddress("UDP", dst_host, l4.dport)
                try:
                    message = parse_message(bytes(l4.data))
                except SipParseError:
                    continue
                out.append(CapturedMessage(number, float(stamp), src, dst, message))
            elif isinstance(l4, dpkt.tcp.TCP) and l4.data:
                src = TransportAddress("TCP", src_host, l4.sport)
                dst = TransportAddress("TCP", dst_host, l4.dport)
                _tcp(out, streams, number, float(stamp), src, dst, l4)
    return out


def _tcp(
    out: list[CapturedMessage],
    streams: dict[tuple[TransportAddress, TransportAddress], tuple[StreamFramer, int]],
    number: int,
    stamp: float,
    src: TransportAddress,
    dst: TransportAddress,
    l4: Any,
) -> None:
    framer, expected = streams.get((src, dst), (StreamFramer(), l4.seq))
    if l4.seq != expected:
        if (l4.seq - expected) % 2**32 > 2**31:
            return  # a retransmission of bytes we already have
        framer = StreamFramer()  # a gap: resynchronise on the next message
    framer.feed(bytes(l4.data))
    streams[(src, dst)] = (framer, (l4.seq + len(l4.data)) % 2**32)
    try:
        while (frame := framer.next_message()) is not None:
            out.append(
                CapturedMessage(number, stamp, src, dst, parse_message(frame, datagram=False))
            )
    except SipParseError:
        streams[(src, dst)] = (StreamFramer(), (l4.seq + len(l4.data)) % 2**32)
