"""The UDP transport on loopback: batches read in order with their queueing
delay, and datagrams held (not lost) while the socket cannot send."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from mcmig.sip.peer import TransportAddress
from mcmig.transport.udp import READ_BATCH, SO_TIMESTAMP, UdpTransport

HOST = "127.0.5.7"


def test_a_backlog_is_read_in_order_with_the_time_each_datagram_waited() -> None:
    async def main() -> None:
        seen: list[tuple[bytes, float]] = []
        transport: UdpTransport | None = None

        def sink(data: bytes, source: TransportAddress, datagram: bool) -> None:
            assert transport is not None and datagram and source.transport == "UDP"
            seen.append((data, transport.queue_delay))

        transport = await UdpTransport.bind(HOST, 0, sink, lambda _: None)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        count = READ_BATCH * 3 + 5
        try:
            # Linux switches receive timestamps on in the background; until
            # then datagrams are stamped when read. One round first.
            sender.sendto(b"warm-up", (HOST, transport.local_port))
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert [data for data, _ in seen] == [b"warm-up"]
            seen.clear()
            await asyncio.sleep(0.05)
            for n in range(count):
                sender.sendto(b"%d" % n, (HOST, transport.local_port))
            time.sleep(0.2)  # the loop is held; the datagrams wait in the socket
            sender.sendto(b"\r\n\r\n", (HOST, transport.local_port))  # keep-alive: not handed up
            for _ in range(100):
                if len(seen) == count:
                    break
                await asyncio.sleep(0.01)
        finally:
            sender.close()
            transport.close()
        assert [data for data, _ in seen] == [b"%d" % n for n in range(count)]
        assert all(delay >= 0.15 for _, delay in seen)
        assert transport.queue_delay == 0.0  # only meaningful while a datagram is handed up

    asyncio.run(main())


class _CountingReads(socket.socket):
    """A socket that counts the reads that found nothing."""

    empty_reads = 0

    def recvmsg(self, *args: Any) -> Any:
        try:
            return super().recvmsg(*args)
        except BlockingIOError:
            self.empty_reads += 1
            raise


@pytest.mark.skipif(SO_TIMESTAMP is None, reason="kernel arrival stamps are Linux only")
def test_a_datagram_read_as_it_arrives_is_not_followed_by_a_read_that_finds_nothing() -> None:
    async def main() -> None:
        sock = _CountingReads(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((HOST, 0))
        seen: list[bytes] = []
        transport = UdpTransport(sock, lambda data, *_: seen.append(data), lambda _: None)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for n in range(6):
                sender.sendto(b"%d" % n, sock.getsockname())
                for _ in range(100):
                    if len(seen) == n + 1:
                        break
                    await asyncio.sleep(0.01)
        finally:
            sender.close()
            transport.close()
        assert seen == [b"%d" % n for n in range(6)]
        # Each was read within a millisecond of arriving, save perhaps one on a
        # busy machine; reading on after each would have found nothing six times.
        assert sock.empty_reads <= 1

    asyncio.run(main())


class _FullSendBuffer(socket.socket):
    """A socket whose first sends find the send buffer full."""

    refusals = 2

    def sendto(self, data: Any, *args: Any) -> int:
        if self.refusals:
            self.refusals -= 1
            raise BlockingIOError
        return super().sendto(data, *args)


def test_datagrams_are_held_while_the_send_buffer_is_full_then_sent_in_order() -> None:
    async def main() -> None:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind((HOST, 0))
        receiver.setblocking(False)
        sock = _FullSendBuffer(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((HOST, 0))
        failures: list[TransportAddress] = []
        transport = UdpTransport(sock, lambda *_: None, failures.append)
        destination = TransportAddress("UDP", HOST, receiver.getsockname()[1])
        loop = asyncio.get_running_loop()
        try:
            for n in range(5):
                transport.send(b"%d" % n, destination)
            got = [await asyncio.wait_for(loop.sock_recv(receiver, 100), 2) for _ in range(5)]
        finally:
            transport.close()
            receiver.close()
        assert got == [b"0", b"1", b"2", b"3", b"4"] and failures == []
        transport.send(b"late", destination)  # closed: reported, not raised
        assert failures == [destination]

    asyncio.run(main())
