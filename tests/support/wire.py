"""Raw UDP/TCP peers for integration tests: send bytes, read what comes back."""

from __future__ import annotations

import asyncio
import socket

from mcmig.sip.framing import StreamFramer
from mcmig.sip.message import Message
from mcmig.sip.parser import parse_message


class UdpPeer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    async def send(self, data: bytes, host: str, port: int) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, (host, port))

    async def receive(self, timeout: float = 2.0) -> Message:
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sock, 65536), timeout
        )
        return parse_message(data)

    async def nothing(self, wait: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


class TcpPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpPeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @property
    def port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, timeout: float = 2.0) -> Message:
        return parse_message(await self.receive_raw(timeout), datagram=False)

    async def receive_raw(self, timeout: float = 2.0) -> bytes:
        while True:
            frame = self.framer.next_message()
            if frame is not None:
                return frame
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise ConnectionError("closed by peer")
            self.framer.feed(chunk)

    async def closed_by_peer(self, timeout: float = 2.0) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(65536), timeout) == b""
        except (TimeoutError, ConnectionError):
            return False

    def close(self) -> None:
        self.writer.close()
