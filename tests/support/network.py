"""An in-memory network for sans-I/O transaction layers, with a fake clock.

Like pjsip's loop transport: it can drop, duplicate and reorder datagrams,
deterministically (a seeded RNG or explicit drop counts), and time only moves
when the test says so.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from mcmig.sip.message import Message, Request
from mcmig.sip.parser import parse_message
from mcmig.sip.peer import TransportAddress, stamp_received
from mcmig.sip.transaction_layer import Event, TransactionLayer


@dataclass
class Faults:
    loss: float = 0.0
    duplicate: float = 0.0
    max_delay: float = 0.0  # uniform extra delay, which also reorders
    drop_first: dict[str, int] = field(default_factory=dict)  # start line prefix -> copies to drop


class FakeNetwork:
    """Connects TransactionLayers by address; delivers serialized bytes after a delay."""

    def __init__(self, faults: Faults | None = None, seed: int = 1, latency: float = 0.001) -> None:
        self.now = 0.0
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.latency = latency
        self.layers: dict[TransportAddress, TransactionLayer] = {}
        self.events: dict[TransportAddress, list[Event]] = {}
        self.sent: list[tuple[float, TransportAddress, TransportAddress, bytes]] = []
        self._queue: list[tuple[float, int, TransportAddress, TransportAddress, bytes]] = []
        self._seq = itertools.count()
        self.on_event: Callable[[TransportAddress, Event], None] | None = None

    def attach(self, address: TransportAddress, layer: TransactionLayer) -> None:
        self.layers[address] = layer
        self.events[address] = []

    def flush(self, source: TransportAddress) -> None:
        for transmit in self.layers[source].take_outgoing():
            self._transmit(source, transmit.destination, transmit.message.serialize())

    def _transmit(
        self, source: TransportAddress, destination: TransportAddress, data: bytes
    ) -> None:
        self.sent.append((self.now, source, destination, data))
        start_line = data.split(b"\r\n", 1)[0].decode()
        for prefix, count in self.faults.drop_first.items():
            if start_line.startswith(prefix) and count > 0:
                self.faults.drop_first[prefix] = count - 1
                return
        if self.rng.random() < self.faults.loss:
            return
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        for _ in range(copies):
            delay = self.latency + self.rng.random() * self.faults.max_delay
            heapq.heappush(
                self._queue, (self.now + delay, next(self._seq), source, destination, data)
            )

    def next_time(self) -> float | None:
        times = [t for layer in self.layers.values() if (t := layer.next_deadline()) is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next packet or timer; False when nothing is left."""
        when = self.next_time()
        if when is None:
            return False
        self.now = max(self.now, when)
        while self._queue and self._queue[0][0] <= self.now:
            _, _, source, destination, data = heapq.heappop(self._queue)
            self._deliver(source, destination, data)
        for address, layer in self.layers.items():
            self._record(address, layer.handle_timer(self.now))
            self.flush(address)
        return True

    def run(self, until: float) -> None:
        while (t := self.next_time()) is not None and t <= until:
            self.step()
        self.now = max(self.now, until)

    def _deliver(
        self, source: TransportAddress, destination: TransportAddress, data: bytes
    ) -> None:
        layer = self.layers.get(destination)
        if layer is None:
            return
        message: Message = parse_message(data)
        if isinstance(message, Request):
            stamp_received(message, source)
            events = layer.receive_request(message, source, self.now)
        else:
            events = layer.receive_response(message, self.now)  # type: ignore[arg-type]
        self._record(destination, events)
        self.flush(destination)

    def _record(self, address: TransportAddress, events: list[Event]) -> None:
        for event in events:
            self.events[address].append(event)
            if self.on_event is not None:
                self.on_event(address, event)
                self.flush(address)
