"""SIPp standing in for the other system at each gateway's external side."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from mcmig.sip.message import Request
from tests.support.lab import Lab
from tests.support.tools import run_sipp


def _successful(stdout: str) -> int:
    m = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", stdout)
    return int(m.group(1)) if m else -1


def test_foreign_gateway_into_primary_gw(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    lab.start(only={"primary-server", "primary-gw"})
    try:
        csv = tmp_path / "users.csv"
        csv.write_text("SEQUENTIAL\nalice;t-0001\nerin;t-0002\n")
        result = lab.run(
            asyncio.to_thread(
                run_sipp,
                "foreign_gateway_uac.xml",
                "-inf",
                str(csv),
                "-m",
                "2",
                "-p",
                "5060",
                "-timeout",
                "20s",
                "-timeout_error",
                local_ip="127.0.9.2",
                target="127.0.9.1:5060",
                cwd=tmp_path,
            )
        )
        assert result.returncode == 0 and _successful(result.stdout) == 2, result.stdout[-2000:]
        records = {r.mc_service_id: r for r in lab.registry()}
        assert records["sip:alice@primary.example"].temporary_id == "sip:t-0001@partner.example"
        assert records["sip:alice@primary.example"].partner_address == "sip:127.0.9.2:5060"
        assert set(records) == {"sip:alice@primary.example", "sip:erin@primary.example"}
    finally:
        lab.close()


def test_partner_gw_toward_a_sipp_primary_system(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    lab.start(only={"partner-server", "partner-idms", "partner-gw"})
    assert lab.running is not None
    sent: list[Request] = []
    gw_out = next(n for n in lab.running.nodes if n.name == "partner-gw/external")
    gw_out.observers.append(
        lambda d, m, s, t: sent.append(m) if d == "sent" and isinstance(m, Request) else None
    )
    try:
        future = lab.loop.run_in_executor(
            None,
            lambda: run_sipp(
                "primary_system_uas.xml",
                "-m",
                "1",
                "-p",
                "5060",
                "-timeout",
                "20s",
                "-timeout_error",
                local_ip="127.0.9.1",
                cwd=tmp_path,
            ),
        )
        lab.run(asyncio.sleep(0.5))
        outcome = lab.migrate("sip:alice@primary.example")
        result = lab.run(future)
        assert result.returncode == 0, result.stdout[-2000:]
        assert (outcome.status, outcome.cause) == (200, None)
        (request,) = sent
        assert request.body.count(b"<partner-address>sip:127.0.9.2:5060</partner-address>") == 1
        assert b"127.0.2." not in request.serialize()
    finally:
        lab.close()
