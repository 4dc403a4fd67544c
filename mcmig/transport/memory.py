"""An in-memory network for real nodes: messages go from node to node through the
event loop, as bytes, with no sockets. For tests that run many nodes at once."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import FailureSink, MessageSink


@dataclass
class Faults:
    """What the network does to each datagram: lose it, send it twice, delay it
    by up to ``max_delay`` seconds (which also reorders). Seeded: reproducible."""

    loss: float = 0.0
    duplicate: float = 0.0
    max_delay: float = 0.0
    seed: int = 1


class MemoryNetwork:
    def __init__(self, faults: Faults | None = None) -> None:
        self.endpoints: dict[tuple[str, int], MemoryTransport] = {}
        self.delivered = 0
        self.lost = 0
        self.duplicated = 0
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)

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
        network = self.network
        faults, rng = network.faults, network._rng
        datagram = destination.transport == "UDP"
        copies = 1
        if datagram and faults.loss and rng.random() < faults.loss:
            network.lost += 1
            return
        if datagram and faults.duplicate and rng.random() < faults.duplicate:
            network.duplicated += 1
            copies = 2
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            network.delivered += 1
            delay = rng.random() * faults.max_delay if datagram else 0.0
            loop.call_later(delay, target._on_message, data, source, datagram)

    def close(self) -> None:
        if self.network.endpoints.get((self.host, self.port)) is self:
            del self.network.endpoints[(self.host, self.port)]
