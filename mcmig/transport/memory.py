"""An in-memory network for real nodes: messages go from node to node through the
event loop, as bytes, with no sockets. For tests that run many nodes at once."""

from __future__ import annotations

import asyncio

from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import FailureSink, MessageSink


class MemoryNetwork:
    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, int], MemoryTransport] = {}
        self.delivered = 0

    def attach(
        self, host: str, port: int, on_message: MessageSink, on_failure: FailureSink
    ) -> MemoryTransport:
        if (host, port) in self.endpoints:
            raise OSError(f"address {host}:{port} already in use on the memory network")
        endpoint = MemoryTransport(self, host, port, on_message, on_failure)
        self.endpoints[(host, port)] = endpoint
        return endpoint


class MemoryTransport:
    def __init__(
        self,
        network: MemoryNetwork,
        host: str,
        port: int,
        on_message: MessageSink,
        on_failure: FailureSink,
    ) -> None:
        self.network = network
        self.host = host
        self.port = port
        self._on_message = on_message
        self._on_failure = on_failure

    def send(self, data: bytes, destination: TransportAddress) -> None:
        target = self.network.endpoints.get((destination.host, destination.port))
        if target is None:
            return  # like UDP to nobody: the transaction will time out
        source = TransportAddress(destination.transport, self.host, self.port)
        self.network.delivered += 1
        asyncio.get_running_loop().call_soon(
            target._on_message, data, source, destination.transport == "UDP"
        )

    def close(self) -> None:
        if self.network.endpoints.get((self.host, self.port)) is self:
            del self.network.endpoints[(self.host, self.port)]
