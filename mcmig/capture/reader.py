"""Reading SIP out of captures from any software: pcap or pcapng; Ethernet, Linux
cooked (SLL, SLL2), BSD loopback and raw IP link types; IPv4 and IPv6; UDP, and
TCP with segments reassembled per direction and cut into messages by Content-Length.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt

from mcmig.sip.errors import SipParseError
from mcmig.sip.framing import StreamFramer
from mcmig.sip.message import Request, Response
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress


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
        return dpkt.ethernet.Ethernet(data).data
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(data).data
    if linktype == 276:  # LINUX_SLL2: 20-byte header, protocol in the first two bytes
        proto = int.from_bytes(data[0:2], "big")
        return _by_ethertype(proto, data[20:])
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback(data).data
    if linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229):
        return dpkt.ip.IP(data) if data[:1] and data[0] >> 4 == 4 else dpkt.ip6.IP6(data)
    raise CaptureError(f"link type {linktype} is not supported")


def _by_ethertype(proto: int, data: bytes) -> Any:
    if proto == dpkt.ethernet.ETH_TYPE_IP:
        return dpkt.ip.IP(data)
    if proto == dpkt.ethernet.ETH_TYPE_IP6:
        return dpkt.ip6.IP6(data)
    return None


def _address(ip: Any) -> tuple[str, str]:
    if isinstance(ip, dpkt.ip6.IP6):
        return socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    return socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)


def read_sip(path: Path) -> list[CapturedMessage]:
    """Every SIP message in the capture, in capture order; non-SIP payloads are skipped."""
    linktype, reader = _packets(path)
    out: list[CapturedMessage] = []
    streams: dict[tuple[TransportAddress, TransportAddress], tuple[StreamFramer, int]] = {}
    for number, (stamp, data) in enumerate(reader, 1):
        try:
            ip = _network_layer(linktype, data)
        except (dpkt.UnpackError, ValueError, IndexError):
            continue
        if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
            continue
        l4 = ip.data
        src_host, dst_host = _address(ip)
        if isinstance(l4, dpkt.udp.UDP):
            src = TransportAddress("UDP", src_host, l4.sport)
            dst = TransportAddress("UDP", dst_host, l4.dport)
            try:
                out.append(
                    CapturedMessage(number, float(stamp), src, dst, parse_message(bytes(l4.data)))
                )
            except SipParseError:
                continue
        elif isinstance(l4, dpkt.tcp.TCP) and l4.data:
            src = TransportAddress("TCP", src_host, l4.sport)
            dst = TransportAddress("TCP", dst_host, l4.dport)
            framer, expected = streams.get((src, dst), (StreamFramer(), l4.seq))
            if l4.seq != expected:
                if (l4.seq - expected) % 2**32 > 2**31:
                    continue  # a retransmission of bytes we already have
                framer = StreamFramer()  # a gap: resynchronise on the next message
            framer.feed(bytes(l4.data))
            streams[(src, dst)] = (framer, (l4.seq + len(l4.data)) % 2**32)
            try:
                while (frame := framer.next_message()) is not None:
                    out.append(
                        CapturedMessage(
                            number, float(stamp), src, dst, parse_message(frame, datagram=False)
                        )
                    )
            except SipParseError:
                streams[(src, dst)] = (StreamFramer(), (l4.seq + len(l4.data)) % 2**32)
    return out
