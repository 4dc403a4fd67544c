"""HEPv3 from mcmig, received by a HEP collector nobody here wrote: Kamailio's
sipcapture module (kamailio/hep-collector.cfg) must take every packet and parse
the SIP inside each one, as many as the messages the nodes exchanged."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from mcmig.observe.hep import HepSender
from mcmig.sip.peer import TransportAddress
from tests.support.lab import Lab
from tests.support.tools import ROOT, Mcmig, migrate_in_demo, require

COLLECTOR = ("127.0.3.99", 9060)


class Collector:
    def __init__(self, run_dir: Path) -> None:
        (run_dir / "db").mkdir(parents=True)
        self.proc = subprocess.Popen(
            [
                require("kamailio"),
                "-f",
                str(ROOT / "kamailio/hep-collector.cfg"),
                "-DD",
                "-E",
                "-Y",
                str(run_dir),
                "-A",
                f"LISTEN=udp:{COLLECTOR[0]}:{COLLECTOR[1]}",
                "-A",
                f'DB_URL="text://{run_dir / "db"}"',
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        time.sleep(1.0)  # its UDP socket is bound before the children fork
        assert self.proc.poll() is None, self.proc.communicate()[0]

    def stop(self) -> str:
        time.sleep(0.5)  # the last datagrams are read
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        return out


def _parsed(log: str) -> list[str]:
    return re.findall(r"HEP-SIP (?:request|reply) .*call-id=(\S+)", log)


def test_kamailio_sipcapture_takes_every_message_the_nodes_exchanged(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "kamailio")
    log = ""
    try:
        lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
        lab.start()
        try:
            assert lab.running is not None
            hep = HepSender(*COLLECTOR)
            seen: list[str] = []
            for node in lab.running.nodes:
                hep.watch(node)
                node.observers.append(lambda d, m, s, t: seen.append(m.call_id))
            assert lab.migrate("sip:alice@primary.example").status == 200
            assert lab.migrate("sip:bob@primary.example").status == 403
            lab.run(asyncio.sleep(0.2))
            hep.close()
        finally:
            lab.close()
    finally:
        log = collector.stop()
    # (sipcapture's mod_init says one ERROR about database insert retries, unused here)
    errors = [line for line in log.splitlines() if "ERROR" in line and "insert_retr" not in line]
    assert errors == [], errors
    parsed = _parsed(log)
    assert hep.dropped == 0 and hep.sent == len(seen) > 10
    assert sorted(parsed) == sorted(seen)  # every packet taken, its SIP parsed, once


def test_up_sends_hep(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "kamailio")
    try:
        up = Mcmig(
            "up",
            "sip_profiles/demo.yaml",
            "--state-dir",
            str(tmp_path / "state"),
            "--hep",
            f"{COLLECTOR[0]}:{COLLECTOR[1]}",
        )
        try:
            assert up.ready_line is not None and "HEP to 127.0.3.99:9060" in up.ready_line
            assert migrate_in_demo().stdout.startswith("200")
        finally:
            assert up.stop() == 0
    finally:
        log = collector.stop()
    # the client is not a node of the deployment: the 4 legs, each seen at both
    # ends, but leg 1 at the partner server only: 7 requests and 7 responses
    assert len(_parsed(log)) == 14, log[-3000:]


def test_a_message_is_encoded_as_the_specification_lays_it_out() -> None:
    from mcmig.observe.hep import encode

    packet = encode(
        b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        TransportAddress("UDP", "127.0.1.10", 5060),
        TransportAddress("UDP", "::ffff:127.0.9.1", 5061),
        1_700_000_000.25,
        2001,
        "call-1",
    )
    assert packet[:4] == b"HEP3" and int.from_bytes(packet[4:6], "big") == len(packet)
    chunks = {}
    at = 6
    while at < len(packet):
        vendor, kind, length = (
            int.from_bytes(packet[at + i : at + i + 2], "big") for i in (0, 2, 4)
        )
        assert vendor == 0 and length >= 6
        chunks[kind] = packet[at + 6 : at + length]
        at += length
    assert at == len(packet)
    assert chunks[1] == bytes([10]) and len(chunks[5]) == 16  # mixed families: both as IPv6
    assert chunks[7] == (5060).to_bytes(2, "big") and chunks[8] == (5061).to_bytes(2, "big")
    assert int.from_bytes(chunks[9], "big") == 1_700_000_000
    assert int.from_bytes(chunks[10], "big") == 250_000
    assert chunks[11] == b"\x01" and int.from_bytes(chunks[12], "big") == 2001
    assert chunks[17] == b"call-1" and chunks[15].startswith(b"OPTIONS")
