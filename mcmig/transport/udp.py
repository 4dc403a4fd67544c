"""SIP over UDP: one datagram is one message (RFC 3261 section 18.3)."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import FailureSink, MessageSink

log = logging.getLogger("mcmig.transport")


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, on_message: MessageSink, on_failure: FailureSink) -> None:
        self._on_message = on_message
        self._on_failure = on_failure
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(
        cls, host: str, port: int, on_message: MessageSink, on_failure: FailureSink
    ) -> UdpTransport:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(on_message, on_failure), local_addr=(host, port)
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if data.strip(b"\r\n") == b"":
            return  # keep-alive (RFC 5626 3.5.1 style CRLF ping)
        self._on_message(data, TransportAddress("UDP", str(addr[0]), int(addr[1])), True)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors arrive here without the destination; transactions time out instead.
        log.debug("UDP error: %s", exc)

    def send(self, data: bytes, destination: TransportAddress) -> None:
        if self._transport is None or self._transport.is_closing():
            self._on_failure(destination)
            return
        try:
            self._transport.sendto(data, (destination.host, destination.port))
        except OSError as exc:
            log.warning("UDP send to %s failed: %s", destination, exc)
            self._on_failure(destination)

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
