"""RFC 4475 messages sent to a running node: the status it answers with.

Sent over TCP so that answers return on the connection: the corpus's Via
headers name 192.0.2.x hosts, which must never receive traffic from a test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcmig.node.runtime import SipNode
from mcmig.nodes.responder import Responder
from tests.support.wire import TcpPeer

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rfc4475"
HOST = "127.0.5.9"

# name -> status the node answers (None: no answer, the message is dropped).
# The responder is a UAS for MESSAGE and OPTIONS only: INVITE and REGISTER get
# 405 until calls arrive; invut (415) and sdp01 (406) are INVITE-level checks.
NODE_VERDICT: dict[str, int | None] = {
    "unkscm": 416,  # 3.3.2 unknown Request-URI scheme
    "novelsc": 416,  # 3.3.3 known but unsupported scheme
    "bext01": 420,  # 3.3.5 Require: unknown option tag
    "zeromf": 200,  # 3.3.12 a UAS processes Max-Forwards: 0
    "badbranch": 200,  # 3.2.1 bare magic cookie: RFC 2543 matching, processed
    "mpart01": 200,  # 3.1.1.11 multipart MESSAGE body
    "semiuri": 200,
    "transports": 200,
    "lwsdisp": 200,
    "esc02": 405,  # method RE%47IST%45R is a token, not REGISTER
    "intmeth": 405,
    "mismatch01": 400,  # 3.1.2.17
    "mismatch02": 400,  # 3.1.2.18
    "badvers": 505,  # 3.1.2.16
    "mcl01": 400,  # 3.3.11 two Content-Length values
    "multi01": 400,  # 3.3.10 repeated single-valued headers
    "badaspec": 400,
    "baddn": 400,
    "escruri": 400,
    "trws": 400,
    "insuf": None,  # 3.3.1 no From/To/Call-ID: nothing to answer on
    "bcast": None,  # a response matching no transaction
    "scalarlg": None,  # a bad response is dropped
    "regaut01": 405,
    "unksm2": 405,
}


@pytest.fixture(scope="module")
def node_port() -> object:
    loop = asyncio.new_event_loop()
    node = SipNode("torture", HOST, 0)
    Responder(node)
    loop.run_until_complete(node.start())
    yield loop, node
    loop.run_until_complete(node.stop())
    loop.close()


@pytest.mark.parametrize("name", sorted(NODE_VERDICT))
def test_node_answers(node_port: tuple[asyncio.AbstractEventLoop, SipNode], name: str) -> None:
    loop, node = node_port
    data = (CORPUS / f"{name}.dat").read_bytes()

    async def main() -> int | None:
        peer = await TcpPeer.connect(HOST, node.port)
        try:
            await peer.send(data)
            try:
                frame = await peer.receive_raw(timeout=0.7)
            except TimeoutError:
                return None
            # Only the status line: a 400 echoes the peer's malformed From/To.
            status_line = frame.split(b"\r\n", 1)[0].decode()
            assert status_line.startswith("SIP/2.0 ")
            return int(status_line.split()[1])
        finally:
            peer.close()

    assert loop.run_until_complete(main()) == NODE_VERDICT[name]
