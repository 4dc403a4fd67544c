"""A lossy UDP link between two parties, for fault tests across processes: each
datagram is dropped, doubled or delayed (so reordered) at random, both ways.

It stands where a party expects its peer: ``front`` takes the datagrams of
the near party (which sends to ``front``) and passes them to ``target`` from
``back``; what arrives at ``back`` goes out of ``front`` to the near party.
A SIP node answers a request at the Via's received address and sent-by
port, so ``back`` listens on the same port as the near party sends from.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass
from typing import cast


@dataclass
class Faults:
    loss: float = 0.0
    duplicate: float = 0.0
    max_delay: float = 0.0  # seconds; a random delay up to this reorders


class _Side(asyncio.DatagramProtocol):
    def __init__(self, link: LossyLink, outward: bool) -> None:
        self.link = link
        self.outward = outward
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.link.carry(data, addr, self.outward)


class LossyLink:
    def __init__(
        self,
        front: tuple[str, int],
        back: tuple[str, int],
        target: tuple[str, int],
        faults: Faults,
        seed: int = 1,
    ) -> None:
        self.front, self.back, self.target = front, back, target
        self.faults = faults
        self._random = random.Random(seed)
        self._near: tuple[str, int] | None = None
        self._sides: dict[bool, _Side] = {}
        self.dropped = self.carried = 0

    def carry(self, data: bytes, source: tuple[str, int], outward: bool) -> None:
        if outward:
            self._near = source
            destination: tuple[str, int] | None = self.target
        else:
            destination = self._near
        if destination is None:
            return
        copies = 0 if self._random.random() < self.faults.loss else 1
        if copies and self._random.random() < self.faults.duplicate:
            copies = 2
        self.dropped += copies == 0
        # arrived at front: out of back, to the target; arrived at back: out of front
        side = self._sides[not outward]
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            self.carried += 1
            delay = self._random.random() * self.faults.max_delay
            loop.call_later(delay, self._send, side, data, destination)

    @staticmethod
    def _send(side: _Side, data: bytes, destination: tuple[str, int]) -> None:
        if side.transport is not None:
            side.transport.sendto(data, destination)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        # outward: datagrams arriving at front go out of back; inward the other way
        await loop.create_datagram_endpoint(lambda: self._side(True), local_addr=self.front)
        await loop.create_datagram_endpoint(lambda: self._side(False), local_addr=self.back)

    def _side(self, outward: bool) -> _Side:
        self._sides[outward] = _Side(self, outward)
        return self._sides[outward]

    def close(self) -> None:
        for side in self._sides.values():
            if side.transport is not None:
                side.transport.close()


class LinksThread:
    """Lossy links run on an event loop of their own, beside the test's."""

    def __init__(self, links: list[LossyLink]) -> None:
        self.links = links
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=5)

    async def _open(self) -> None:
        for link in self.links:
            await link.open()

    def set_faults(self, faults: Faults) -> None:
        def apply() -> None:
            for link in self.links:
                link.faults = faults

        self._loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        def stop() -> None:
            for link in self.links:
                link.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)
