"""`mcmig ladder` on a session of many short CLI runs: one lifeline per node or
host, labels that fit IPv6 addresses, and filters."""

from __future__ import annotations

import re
from pathlib import Path

from mcmig.capture.writer import PcapRecorder
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import parse_sip_uri
from tests.support.tools import run_mcmig

SERVER = TransportAddress("UDP", "127.0.2.10", 5060)  # partner-server in demo.yaml
V6_CLIENT = "fd00:aaaa:bbbb:cccc:dddd:eeee:ffff:1234"


def _session(path: Path) -> None:
    """Twelve CLI runs from one host, each from a new port, and one over IPv6."""
    recorder = PcapRecorder(path)
    clients = [TransportAddress("UDP", "127.0.2.100", 40001 + i) for i in range(12)]
    clients.append(TransportAddress("UDP", V6_CLIENT, 5070))
    for i, client in enumerate(clients):
        user = "alice" if i % 2 == 0 else "bob"
        method = "MESSAGE" if i < 10 else "OPTIONS"
        request = make_request(
            method,
            parse_sip_uri("sip:migration@partner.example"),
            from_uri=f"sip:{user}@primary.example",
            to_uri="sip:migration@partner.example",
        )
        request.set("Via", f"SIP/2.0/UDP 127.0.2.100:{client.port};branch=z9hG4bKrun{i}")
        server = SERVER if client.host != V6_CLIENT else TransportAddress("UDP", "fd00::10", 5060)
        recorder.record(request.serialize(), client, server, when=1_700_000_000 + i)
        answer = make_response(request, 200 if user == "alice" else 403)
        recorder.record(answer.serialize(), server, client, when=1_700_000_000 + i + 0.01)
    recorder.close()


def _ladder(path: Path, *options: str) -> tuple[list[str], list[str]]:
    done = run_mcmig("ladder", str(path), "--profile", "sip_profiles/demo.yaml", *options)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return lines[0].split(), [line for line in lines if re.search(r"\(\d+\) ", line)]


def test_one_lifeline_per_node_or_host_and_ipv6_labels_whole(tmp_path: Path) -> None:
    path = tmp_path / "session.pcap"
    _session(path)
    lifelines, arrows = _ladder(path)
    assert lifelines == ["127.0.2.100", "partner-server", V6_CLIENT, "fd00::10"]
    assert len(arrows) == 26
    svg = tmp_path / "session.svg"
    run_mcmig("ladder", str(path), "--profile", "sip_profiles/demo.yaml", "--svg", str(svg))
    text = svg.read_text()
    assert f">{V6_CLIENT}</text>" in text
    assert int(text.split('width="', 1)[1].split('"', 1)[0]) < 2000  # 4 lifelines, not 26


def test_filters(tmp_path: Path) -> None:
    path = tmp_path / "session.pcap"
    _session(path)
    from mcmig.capture.reader import read_sip

    assert run_mcmig("ladder", str(path)).returncode == 0  # without a profile too
    first = read_sip(path)[0].message.call_id
    assert len(_ladder(path, "--call-id", first)[1]) == 2
    assert len(_ladder(path, "--user", "alice")[1]) == 14  # runs 0, 2, ..., 12
    assert len(_ladder(path, "--user", "sip:bob@primary.example")[1]) == 12
    assert len(_ladder(path, "--method", "OPTIONS")[1]) == 6  # requests and their answers
    assert len(_ladder(path, "--node", "fd00::10")[1]) == 2
    assert len(_ladder(path, "--from-time", "3", "--to-time", "4.5")[1]) == 4
    none = run_mcmig("ladder", str(path), "--method", "INVITE")
    assert none.returncode == 0 and "no SIP messages pass the filters" in none.stdout
