"""Captures of every shape a lab meets, made here: fragmented UDP over IPv4 and
IPv6, IP-in-IP, IPv6-in-IPv4 and GRE tunnels, 802.1Q VLAN tags, Linux cooked
captures v1 and v2. Every SIP message tshark decodes must be read by mcmig."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest

from mcmig.capture.reader import LINKTYPE_LINUX_SLL2, read_sip
from tests.support.tools import tshark_read

V4 = ("127.0.1.10", "127.0.9.1")
V6 = ("fd00::10", "fd00::91")
MTU = 1500


def _message(number: int, size: int) -> bytes:
    body = (f"message {number} " * (size // 10 + 1)).encode()[:size]
    return (
        f"MESSAGE sip:alice@primary.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.1.10:5060;branch=z9hG4bKshape{number}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bob@primary.example>;tag=s1\r\n"
        f"To: <sip:alice@primary.example>\r\nCall-ID: shape-{number}\r\n"
        f"CSeq: {number} MESSAGE\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# Small ones, and ones larger than any MTU (SIP over UDP that the IP layer fragments).
MESSAGES = [_message(i, size) for i, size in enumerate([40, 3000, 200, 9000, 1400], 1)]


def _udp(payload: bytes) -> bytes:
    return struct.pack("!HHHH", 5060, 5060, 8 + len(payload), 0) + payload


def _ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1) -> list[bytes]:
    """One IPv4 packet, or its fragments when it does not fit the MTU."""
    room = (MTU - 20) // 8 * 8
    packets = []
    for offset in range(0, max(len(payload), 1), room):
        part = payload[offset : offset + room]
        more = offset + room < len(payload)
        flags = 0x2000 if more else 0  # MF
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(part),
            ident,
            flags | offset // 8,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        checksum = dpkt.in_cksum(header)
        packets.append(header[:10] + struct.pack("!H", checksum) + header[12:] + part)
    return packets


def _ipv6(src: str, dst: str, proto: int, payload: bytes, ident: int = 1) -> list[bytes]:
    """One IPv6 packet, or its fragments (a Fragment header each) past the MTU."""
    addresses = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    if 40 + len(payload) <= MTU:
        return [struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + addresses + payload]
    room = (MTU - 48) // 8 * 8
    packets = []
    for offset in range(0, len(payload), room):
        part = payload[offset : offset + room]
        more = offset + room < len(payload)
        fragment = struct.pack("!BBHI", proto, 0, offset | int(more), ident)
        header = struct.pack("!IHBB", 6 << 28, 8 + len(part), 44, 64) + addresses
        packets.append(header + fragment + part)
    return packets


def _ethernet(ip: bytes, vlan: int | None = None) -> bytes:
    kind = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    macs = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
    if vlan is None:
        return macs + struct.pack("!H", kind) + ip
    return macs + struct.pack("!HHH", 0x8100, vlan, kind) + ip


def _sll(ip: bytes) -> bytes:
    kind = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH", 0, 772, 6) + b"\x00" * 8 + struct.pack("!H", kind) + ip


def _sll2(ip: bytes) -> bytes:
    kind = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB", kind, 0, 1, 772, 0, 6) + b"\x00" * 8 + ip


def _gre(inner: bytes) -> bytes:
    kind = 0x86DD if inner[0] >> 4 == 6 else 0x0800
    return struct.pack("!HH", 0, kind) + inner


Frames = Callable[[], tuple[int, list[bytes]]]


def _plain_v4_fragments() -> tuple[int, list[bytes]]:
    return dpkt.pcap.DLT_EN10MB, [
        _ethernet(p) for i, m in enumerate(MESSAGES) for p in _ipv4(*V4, 17, _udp(m), i + 1)
    ]


def _plain_v6_fragments() -> tuple[int, list[bytes]]:
    return dpkt.pcap.DLT_EN10MB, [
        _ethernet(p) for i, m in enumerate(MESSAGES) for p in _ipv6(*V6, 17, _udp(m), i + 1)
    ]


def _ip_in_ip() -> tuple[int, list[bytes]]:
    frames = []
    for i, m in enumerate(MESSAGES):
        for inner in _ipv4(*V4, 17, _udp(m), i + 1):
            frames += [_ethernet(p) for p in _ipv4("10.9.0.1", "10.9.0.2", 4, inner, 100 + i)]
    return dpkt.pcap.DLT_EN10MB, frames


def _v6_in_v4() -> tuple[int, list[bytes]]:
    frames = []
    for i, m in enumerate(MESSAGES):
        for inner in _ipv6(*V6, 17, _udp(m), i + 1):
            frames += [_ethernet(p) for p in _ipv4("10.9.0.1", "10.9.0.2", 41, inner, 200 + i)]
    return dpkt.pcap.DLT_EN10MB, frames


def _gre_v4() -> tuple[int, list[bytes]]:
    frames = []
    for i, m in enumerate(MESSAGES):
        for inner in _ipv4(*V4, 17, _udp(m), i + 1):
            frames += [
                _ethernet(p) for p in _ipv4("10.9.0.1", "10.9.0.2", 47, _gre(inner), 300 + i)
            ]
    return dpkt.pcap.DLT_EN10MB, frames


def _vlan() -> tuple[int, list[bytes]]:
    return dpkt.pcap.DLT_EN10MB, [
        _ethernet(p, vlan=42)
        for i, m in enumerate(MESSAGES)
        for p in _ipv4(*V4, 17, _udp(m), i + 1)
    ]


def _cooked_v1() -> tuple[int, list[bytes]]:
    return dpkt.pcap.DLT_LINUX_SLL, [
        _sll(p) for i, m in enumerate(MESSAGES) for p in _ipv6(*V6, 17, _udp(m), i + 1)
    ]


def _cooked_v2() -> tuple[int, list[bytes]]:
    return LINKTYPE_LINUX_SLL2, [
        _sll2(p) for i, m in enumerate(MESSAGES) for p in _ipv4(*V4, 17, _udp(m), i + 1)
    ]


SHAPES: dict[str, Frames] = {
    "ipv4 fragments": _plain_v4_fragments,
    "ipv6 fragments": _plain_v6_fragments,
    "ip-in-ip": _ip_in_ip,
    "ipv6-in-ipv4": _v6_in_v4,
    "gre": _gre_v4,
    "802.1q vlan": _vlan,
    "linux cooked v1": _cooked_v1,
    "linux cooked v2": _cooked_v2,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_message_tshark_decodes_is_read(tmp_path: Path, shape: str) -> None:
    linktype, frames = SHAPES[shape]()
    path = tmp_path / "shape.pcap"
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535, linktype=linktype)
        for n, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + n / 1000)
    assert len(frames) > len(MESSAGES)  # some were fragmented
    result = tshark_read(path, "-Y", "sip", "-T", "fields", "-e", "sip.Call-ID")
    assert result.returncode == 0, result.stderr
    decoded = [line for line in result.stdout.splitlines() if line]
    ours = [m.message.call_id for m in read_sip(path)]
    assert len(decoded) == len(MESSAGES), decoded  # tshark sees every one
    assert ours == [f"shape-{i}" for i in range(1, len(MESSAGES) + 1)]
    assert sorted(ours) == sorted(decoded)
