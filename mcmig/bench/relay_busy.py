"""What the gateway's code costs per relayed MESSAGE when it is kept busy.

The SIPp figure of the relay benchmark is taken at a fixed rate, where the
gateway sleeps between messages; each wakeup then pays for cold caches, on
some machines several times the work itself, and that share moves with the
machine more than with our code. Here the same gateway (bench-relay.yaml)
runs in this process on the in-memory network, with a minimal far end that
answers 200 and a near end that keeps a fixed number of transactions in
flight, so the CPU measured is the code's own. It includes the in-memory
network's deliveries and the two ends (a few microseconds a transaction).
Use it to compare code changes; use the SIPp figure to compare with Kamailio.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from mcmig.bench import ROOT
from mcmig.node.service import tune_garbage_collector
from mcmig.nodes.deployment import start_deployment
from mcmig.profiles.loader import load_deployment
from mcmig.sip.peer import TransportAddress
from mcmig.transport.memory import MemoryNetwork

IN_FLIGHT = 32
CHUNK = 1000  # transactions per CPU reading; the best chunk is the least disturbed

_MESSAGE = (
    "MESSAGE sip:service{n}@far.example SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.40.4:5070;branch=z9hG4bK-busy-{n};rport\r\n"
    "From: <sip:sender@relay.example>;tag=busy{n}\r\n"
    "To: <sip:service{n}@far.example>\r\n"
    "Call-ID: busy-{n}@127.0.40.4\r\n"
    "CSeq: 1 MESSAGE\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: {length}\r\n\r\n{body}"
)
_ECHOED = (b"Via:", b"From", b"Call", b"CSeq")


def _answer(request: bytes) -> bytes:
    """The far end's 200: the request's Via, From, To (tagged), Call-ID and CSeq."""
    lines = [b"SIP/2.0 200 OK"]
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        if line.startswith(b"To:"):
            lines.append(line + b";tag=far")
        elif line[:4] in _ECHOED:
            lines.append(line)
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


async def _run(count: int) -> dict[str, Any]:
    deployment = load_deployment(ROOT / "sip_profiles/bench-relay.yaml")
    network = MemoryNetwork()
    with tempfile.TemporaryDirectory(prefix="mcmig-bench-busy-") as state:
        running = await start_deployment(
            deployment, Path(state), only={"relay-gw"}, network=network
        )
        pacer = tune_garbage_collector()
        try:
            body = "status report: all units in position"
            messages = [
                _MESSAGE.format(n=n, length=len(body), body=body).encode() for n in range(count)
            ]
            gateway = TransportAddress("UDP", "127.0.40.1", 5060)
            finished = asyncio.get_running_loop().create_future()
            chunks: list[float] = []
            outgoing = iter(messages)
            answered = failed = 0
            mark = time.process_time()

            def send_next() -> None:
                message = next(outgoing, None)
                if message is not None:
                    near.send(message, gateway)

            def near_end(data: bytes, source: TransportAddress, datagram: bool) -> None:
                nonlocal answered, failed, mark
                answered += 1
                if not data.startswith(b"SIP/2.0 200 "):
                    failed += 1
                if answered % CHUNK == 0:
                    now = time.process_time()
                    chunks.append(now - mark)
                    mark = now
                send_next()
                if answered == count and not finished.done():
                    finished.set_result(None)

            near = network.attach("127.0.40.4", 5070, near_end, lambda _: None)
            far = network.attach(
                "127.0.40.3",
                5060,
                lambda data, source, _: far.send(_answer(data), source),
                lambda _: None,
            )
            started = mark = time.process_time()
            for _ in range(IN_FLIGHT):
                send_next()
            await asyncio.wait_for(finished, timeout=max(60.0, count / 100))
            cpu = time.process_time() - started
        finally:
            pacer.stop()
            await running.stop()
    return {
        "transactions": count,
        "in_flight": IN_FLIGHT,
        "failed": failed,
        "cpu_us_per_transaction": cpu * 1e6 / count,
        "best_chunk_us_per_transaction": min(chunks) * 1e6 / CHUNK if chunks else None,
    }


def measure(count: int) -> dict[str, Any]:
    """Relay ``count`` MESSAGE transactions; the collector is tuned as in service, then restored."""
    thresholds = gc.get_threshold()
    try:
        return asyncio.run(_run(count))
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
