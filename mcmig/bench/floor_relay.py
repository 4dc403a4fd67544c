"""The floor under any asyncio SIP node: datagrams passed through, nothing else.

The relay benchmark runs this as a third middle box beside the mcmig gateway
and Kamailio. It reads each datagram from one UDP socket with asyncio's own
datagram transport and sends it on unchanged: from the far end back to the
near end, from anybody else to the far end. No parsing, no transaction, no
Via. What it costs per relayed MESSAGE transaction (a request and a response,
each read once and sent once) is what the event loop and the socket calls
cost on this machine before any SIP work; the gateway's figure minus this one
is the price of being a B2BUA in Python.

    python -m mcmig.bench.floor_relay --listen 127.0.42.1:5060 --far 127.0.42.3:5060
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, cast

from mcmig.commands.common import until_signalled
from mcmig.node.service import EVENT_LOOPS, event_loop_factory
from mcmig.transport.base import split_hostport

Address = tuple[str, int]


class FloorRelay(asyncio.DatagramProtocol):
    def __init__(self, far: Address) -> None:
        self.far = far
        self.near: Address | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        source = (addr[0], addr[1])
        if source == self.far:
            if self.near is not None:
                self.transport.sendto(data, self.near)
            return
        self.near = source  # one near end at a time: the benchmark's SIPp UAC
        self.transport.sendto(data, self.far)


async def _serve(listen: Address, far: Address) -> None:
    transports: list[asyncio.BaseTransport] = []

    async def started() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: FloorRelay(far), local_addr=listen
        )
        transports.append(transport)
        print("ready", flush=True)

    try:
        await until_signalled(started)
    finally:
        for transport in transports:
            transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mcmig.bench.floor_relay",
        description="Pass UDP datagrams between a near end and a far end, unchanged "
        "(the relay benchmark's asyncio floor).",
    )
    parser.add_argument(
        "--listen", type=split_hostport, required=True, metavar="HOST:PORT", help="where to read"
    )
    parser.add_argument(
        "--far", type=split_hostport, required=True, metavar="HOST:PORT", help="the far end"
    )
    parser.add_argument("--loop", choices=EVENT_LOOPS, default="asyncio", help="event loop")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=event_loop_factory(args.loop)) as runner:
        runner.run(_serve(args.listen, args.far))
    return 0


if __name__ == "__main__":
    sys.exit(main())
