"""SIP over UDP: one datagram is one message (RFC 3261 section 18.3).

The socket is read directly rather than through asyncio's datagram transport,
which takes one datagram per turn of the event loop. Under load a turn runs
many callbacks, the kernel's receive buffer fills and drops datagrams
silently; every drop comes back as a retransmission, seconds later. Reading
a batch per turn, from a larger buffer, keeps the queue where the node can
see it: on Linux the kernel stamps each datagram as it arrives, so the node
knows how long a request waited before it was read (``queue_delay``) and can
refuse late ones with 503 instead of serving them after their sender gave up
waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import socket
import struct
import sys
import time

from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import FailureSink, MessageSink, UnreachableSink

log = logging.getLogger("mcmig.transport")

READ_BATCH = 64  # datagrams read per readiness event at most, so one socket cannot starve the loop
MAX_DATAGRAM = 65535
SEND_QUEUE_LIMIT = 4096  # datagrams held while the socket's send buffer is full
# Asked for, not promised: the kernel caps it at net.core.rmem_max.
RECEIVE_BUFFER = 2 * 1024 * 1024
# SO_TIMESTAMP (struct timeval in the ancillary data); Python names it on no platform.
SO_TIMESTAMP = 29 if sys.platform.startswith("linux") else None
_TIMEVAL = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMEVAL.size)
# A datagram read within this many seconds of its arrival means the socket had no
# backlog: the batch stops there rather than paying for a read that finds nothing
# (the poller is level-triggered, so anything that did arrive is reported again).
NO_BACKLOG = 0.001
SOURCES_CACHED = 1024  # peers' addresses kept as TransportAddress objects

# ICMP errors (RFC 3261 18.4). Linux reports them for an unconnected socket only
# when asked (IP_RECVERR, IPV6_RECVERR), and then queues each one, with the
# destination of the datagram that caused it, on the socket's error queue.
# Python names neither option; the numbers are Linux's.
_RECVERR = (
    {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}
    if sys.platform.startswith("linux")
    else {}
)
_RECVERR_CMSGS = frozenset(_RECVERR.values())
# struct sock_extended_err: errno, origin, type, code, pad, info, data
_EXTENDED_ERR = struct.Struct("@IBBBBII")
_ORIGIN_ICMP, _ORIGIN_ICMP6 = 2, 3
# 18.4: unreachable (host, network, port, protocol) and parameter problem end the
# transaction; source quench, time exceeded and "fragmentation needed" (path MTU
# discovery, which the kernel handles) do not.
_FATAL_ICMP = frozenset(
    {(_ORIGIN_ICMP, 3), (_ORIGIN_ICMP, 12), (_ORIGIN_ICMP6, 1), (_ORIGIN_ICMP6, 4)}
)
_ICMP_FRAGMENTATION_NEEDED = 4
ERRORS_READ = 64  # queued ICMP errors read per readiness event at most
# An ICMP error quotes the start of the datagram that caused it (Linux: about
# 520 bytes over IPv4, more over IPv6), which names the transaction by its Via.
QUOTED_MAX = 2048
SEND_ATTEMPTS = 3  # a send failed by errors pending from earlier datagrams is tried again


def _fatal_error(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The errno of an ICMP error that should end a transaction, else None."""
    for level, kind, value in ancillary:
        if (level, kind) not in _RECVERR_CMSGS or len(value) < _EXTENDED_ERR.size:
            continue
        code, origin, icmp_type, icmp_code, _, _, _ = _EXTENDED_ERR.unpack_from(value)
        if (origin, icmp_type) in _FATAL_ICMP and not (
            origin == _ORIGIN_ICMP and icmp_code == _ICMP_FRAGMENTATION_NEEDED
        ):
            return int(code)
    return None


class UdpTransport:
    def __init__(
        self,
        sock: socket.socket,
        on_message: MessageSink,
        on_failure: FailureSink,
        on_unreachable: UnreachableSink | None = None,
    ) -> None:
        self._sock = sock
        self._on_message = on_message
        self._on_failure = on_failure
        # The node decides what an ICMP error ends, from what the error quotes.
        self._on_unreachable = on_unreachable
        self._loop = asyncio.get_running_loop()
        self._unsent: collections.deque[tuple[bytes, tuple[str, int], TransportAddress]] = (
            collections.deque()
        )
        self._closed = False
        self._sources: dict[tuple[str, int], TransportAddress] = {}
        # Seconds the datagram being handed up waited in the socket; 0 when unknown.
        self.queue_delay = 0.0
        self._stamped = False
        if SO_TIMESTAMP is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
                self._stamped = True
            except OSError:
                pass
        with contextlib.suppress(OSError):  # else the system default stays
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._errors_queued = False
        if on_unreachable is not None and sock.family in _RECVERR:
            with contextlib.suppress(OSError):  # else transactions time out instead
                sock.setsockopt(*_RECVERR[sock.family], 1)
                self._errors_queued = True
        self._loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def bind(
        cls,
        host: str,
        port: int,
        on_message: MessageSink,
        on_failure: FailureSink,
        on_unreachable: UnreachableSink | None = None,
    ) -> UdpTransport:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        error: OSError | None = None
        for family, kind, proto, _, address in infos:  # as asyncio does: first that binds
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.bind(address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return cls(sock, on_message, on_failure, on_unreachable)
        assert error is not None  # getaddrinfo returns at least one address or raises
        raise error

    def _read_ready(self) -> None:
        for count in range(READ_BATCH):
            try:
                if self._stamped:
                    data, ancillary, _, addr = self._sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
                else:
                    data, addr = self._sock.recvfrom(MAX_DATAGRAM)
                    ancillary = []
            except (BlockingIOError, InterruptedError):
                if count == 0 and self._errors_queued:
                    # Woken with nothing to read: the poller may be reporting a
                    # queued error, and keeps doing so until the queue is read.
                    self._read_errors()
                return
            except OSError as exc:
                # A pending ICMP error is reported ahead of the data; the details
                # (and the destination) are on the error queue.
                if self._errors_queued:
                    self._read_errors()
                else:
                    log.debug("UDP error: %s", exc)
                continue
            if len(data) <= 4 and data.strip(b"\r\n") == b"":
                continue  # keep-alive (RFC 5626 3.5.1 style CRLF ping)
            waited: float | None = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    seconds, micros = _TIMEVAL.unpack(value[: _TIMEVAL.size])
                    # Kernel stamps are wall-clock time; a clock step is at worst one odd delay.
                    waited = self.queue_delay = max(0.0, time.time() - seconds - micros / 1e6)
            source = self._sources.get(addr)
            if source is None:
                source = TransportAddress("UDP", str(addr[0]), int(addr[1]))
                if len(self._sources) >= SOURCES_CACHED:
                    self._sources.clear()
                self._sources[addr] = source
            try:
                self._on_message(data, source, True)
            finally:
                self.queue_delay = 0.0
            if self._closed or (waited is not None and waited < NO_BACKLOG):
                return

    def _read_errors(self, later: bool = False) -> int:
        """Read the queued ICMP errors; hand up each fatal one with what it quotes
        (on the next turn of the loop when ``later``). Returns how many were read."""
        read = 0
        for _ in range(ERRORS_READ):
            try:
                quoted, ancillary, _, addr = self._sock.recvmsg(
                    QUOTED_MAX, 512, socket.MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                return read
            except OSError as exc:
                log.debug("UDP error queue: %s", exc)
                return read
            read += 1
            code = _fatal_error(ancillary)
            if code is None:
                continue
            host = str(addr[0])
            if host.startswith("::ffff:") and "." in host:
                host = host[7:]  # an IPv4 peer reached through a dual-stack socket
            destination = TransportAddress("UDP", host, int(addr[1]))
            log.debug("UDP: %s unreachable (ICMP, %s)", destination, errno.errorcode.get(code))
            if self._on_unreachable is None or self._closed:
                continue
            if later:
                self._loop.call_soon(self._on_unreachable, destination, quoted)
            else:
                self._on_unreachable(destination, quoted)
        return read

    def _sendto(self, data: bytes, address: tuple[str, int]) -> None:
        """sendto, past ICMP errors pending on the socket.

        With IP_RECVERR the kernel fails the next send, to whatever peer, with
        the pending error of an earlier datagram (and does not send). That
        error is not this datagram's: read the queue, which reports it where it
        belongs (a turn later, not inside our caller's send), and send again.
        """
        for _ in range(SEND_ATTEMPTS - 1):
            try:
                self._sock.sendto(data, address)
                return
            except OSError as exc:
                if (
                    isinstance(exc, BlockingIOError | InterruptedError)
                    or not self._errors_queued
                    or self._read_errors(later=True) == 0
                ):
                    raise
        self._sock.sendto(data, address)

    def send(self, data: bytes, destination: TransportAddress) -> None:
        if self._closed:
            self._on_failure(destination)
            return
        address = (destination.host, destination.port)
        if not self._unsent:
            try:
                self._sendto(data, address)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._sock.fileno(), self._write_ready)
            except OSError as exc:
                log.warning("UDP send to %s failed: %s", destination, exc)
                self._on_failure(destination)
                return
        if len(self._unsent) >= SEND_QUEUE_LIMIT:
            # A full queue means the host cannot send; UDP loses it and the
            # transaction's retransmission timer makes up for it.
            log.warning("UDP send queue full, datagram to %s dropped", destination)
            return
        self._unsent.append((data, address, destination))

    def _write_ready(self) -> None:
        while self._unsent:
            data, address, destination = self._unsent[0]
            try:
                self._sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("UDP send to %s failed: %s", destination, exc)
                self._on_failure(destination)
            self._unsent.popleft()
        self._loop.remove_writer(self._sock.fileno())

    @property
    def local_port(self) -> int:
        return int(self._sock.getsockname()[1])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_writer(self._sock.fileno())
        self._unsent.clear()
        self._sock.close()
