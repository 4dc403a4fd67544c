"""SIPp, a real SIP peer, against mcmig: UAC against the responder, UAS against our client."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from mcmig.node.runtime import SipNode
from mcmig.sip.message import Request
from mcmig.sip.peer import TransportAddress
from mcmig.sip.uri import parse_uri
from tests.support.tools import Mcmig, free_port, run_sipp

HOST = "127.0.6.1"
SIPP_HOST = "127.0.6.2"


@pytest.fixture(scope="module")
def responder() -> object:
    port = free_port(HOST)
    node = Mcmig("responder", "--listen", f"{HOST}:{port}")
    yield f"{HOST}:{port}"
    assert node.stop() == 0  # exits cleanly on SIGTERM
    assert "Traceback" not in node.stderr


@pytest.mark.parametrize("scenario", ["options_uac.xml", "message_uac.xml"])
@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_uac_against_responder(responder: str, scenario: str, transport: str) -> None:
    result = run_sipp(
        scenario,
        "-m",
        "100",
        "-r",
        "200",
        "-t",
        transport,
        "-timeout",
        "30s",
        "-timeout_error",
        "-p",
        str(free_port(SIPP_HOST)),
        "-s",
        "responder",
        local_ip=SIPP_HOST,
        target=responder,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    successful = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
    failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
    assert successful is not None and failed is not None
    assert (int(successful.group(1)), int(failed.group(1))) == (100, 0)


def test_client_transaction_retransmits_to_a_sipp_uas_that_answers_late(tmp_path: Path) -> None:
    """SIPp lets the first two copies go unanswered; our Timer E gets the third through."""
    sipp_port = free_port(SIPP_HOST)

    async def main() -> tuple[int, int, list[float]]:
        loop = asyncio.get_running_loop()
        sipp = loop.run_in_executor(
            None,
            lambda: run_sipp(
                "message_uas_late.xml",
                "-m",
                "1",
                "-p",
                str(sipp_port),
                "-trace_msg",
                "-timeout",
                "20s",
                "-timeout_error",
                local_ip=SIPP_HOST,
                cwd=tmp_path,
            ),
        )
        await asyncio.sleep(0.5)  # let SIPp bind
        client = SipNode("client", HOST, 0)
        await client.start()
        sends: list[float] = []

        def spy(direction, message, local, remote):  # type: ignore[no-untyped-def]
            if direction == "sent" and isinstance(message, Request):
                sends.append(time.monotonic())

        client.observers.append(spy)
        uri = parse_uri(f"sip:uas@{SIPP_HOST}:{sipp_port}")
        request = Request(
            "MESSAGE",
            uri,
            [
                ("From", "<sip:c@example.com>;tag=1"),
                ("To", f"<{uri}>"),
                ("Call-ID", "late-1"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", "text/plain"),
            ],
            b"hello",
        )
        try:
            response = await client.send_request(
                request, TransportAddress("UDP", SIPP_HOST, sipp_port)
            )
        finally:
            await client.stop()
        result = await sipp
        assert result.returncode == 0, result.stdout[-2000:]
        return response.status, len(sends), [t - sends[0] for t in sends]

    status, copies, offsets = asyncio.run(main())
    assert status == 200
    assert copies == 3
    # Timer E: first retransmission after T1 (0.5 s), the second 2*T1 later.
    assert offsets[1] == pytest.approx(0.5, abs=0.15)
    assert offsets[2] == pytest.approx(1.5, abs=0.2)
    # SIPp's own trace saw the three copies arrive.
    trace = next(tmp_path.glob("*_messages.log")).read_text()
    assert trace.count("MESSAGE sip:uas@") == 3
