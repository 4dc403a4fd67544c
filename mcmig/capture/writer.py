"""Writing what nodes send and receive as a standard pcap file (Ethernet, IPv4/IPv6, UDP/TCP).

Wireshark and tshark decode it as SIP with the real addresses and ports.
TCP messages become segments of a per-direction stream with consistent
sequence and acknowledgement numbers, so stream reassembly works.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import dpkt

from mcmig.sip.peer import TransportAddress

_MAC = b"\x00\x00\x00\x00\x00\x00"
SNAPLEN = 262144  # tcpdump's and Wireshark's default


class PcapRecorder:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO = path.open("wb")
        # The snapshot length covers any frame we write: a message over UDP is at
        # most 65,507 bytes, and a TCP segment holds one message of up to 64 KiB.
        self._writer = dpkt.pcap.Writer(
            self._file, snaplen=SNAPLEN, linktype=dpkt.pcap.DLT_EN10MB, nano=False
        )
        self._seq: dict[tuple[TransportAddress, TransportAddress], int] = {}
        self.packets = 0
        self._clock = clock

    def record(
        self,
        wire: bytes,
        source: TransportAddress,
        destination: TransportAddress,
        when: float | None = None,
    ) -> None:
        if self._file.closed:
            return
        stamp = self._clock() if when is None else when
        if source.transport == "UDP":
            l4: dpkt.Packet = dpkt.udp.UDP(sport=source.port, dport=destination.port, data=wire)
            l4.ulen = 8 + len(wire)
            proto = dpkt.ip.IP_PROTO_UDP
        else:
            flow, back = (source, destination), (destination, source)
            seq = self._seq.setdefault(flow, 1000)
            ack = self._seq.setdefault(back, 1000)
            l4 = dpkt.tcp.TCP(
                sport=source.port,
                dport=destination.port,
                seq=seq,
                ack=ack,
                flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK,
                win=65535,
                data=wire,
            )
            self._seq[flow] = (seq + len(wire)) % 2**32
            proto = dpkt.ip.IP_PROTO_TCP
        ip = _ip_packet(source.host, destination.host, proto, l4)
        ether_type = (
            dpkt.ethernet.ETH_TYPE_IP6
            if isinstance(ip, dpkt.ip6.IP6)
            else dpkt.ethernet.ETH_TYPE_IP
        )
        frame = dpkt.ethernet.Ethernet(src=_MAC, dst=_MAC, type=ether_type, data=ip)
        self._writer.writepkt(bytes(frame), ts=stamp)
        self._file.flush()  # a capture is readable while the nodes run
        self.packets += 1

    def close(self) -> None:
        if not self._file.closed:
            self._writer.close()


def _ip_packet(src: str, dst: str, proto: int, l4: dpkt.Packet) -> dpkt.Packet:
    if ipaddress.ip_address(src).version == 6:
        ip6 = dpkt.ip6.IP6(
            src=socket.inet_pton(socket.AF_INET6, src),
            dst=socket.inet_pton(socket.AF_INET6, dst),
            nxt=proto,
            hlim=64,
            data=l4,
        )
        ip6.plen = len(bytes(l4))
        # transport checksums over the IPv6 pseudo-header
        l4.sum = 0
        ip6.data = l4
        return dpkt.ip6.IP6(bytes(ip6))
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=l4)
    ip.len = 20 + len(bytes(l4))
    return dpkt.ip.IP(bytes(ip))  # packing fills the IP and transport checksums
