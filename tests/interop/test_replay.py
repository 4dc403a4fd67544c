"""A tshark capture of a demo run, replayed against each node: the regression test of the captures."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.lab import Lab
from tests.support.tools import ROOT, Capture, run_mcmig

# What each node sends in the run: partner-server forwards 4 requests (carol stops there)
# and answers 5; each gateway forwards and answers; dave stops at primary-gw.
COMPARED = {"partner-server": 9, "partner-gw": 8, "primary-gw": 7, "primary-server": 3}


mcmig = run_mcmig


def test_replay_each_node_of_a_captured_demo_run(tmp_path: Path) -> None:
    pcap = tmp_path / "demo.pcapng"
    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    lab.start()
    try:
        capture = Capture(
            pcap,
            "udp and (net 127.0.1.0/24 or net 127.0.2.0/24 or net 127.0.9.0/24)",
            probe=("127.0.9.2", "127.0.9.1"),
        )
        outcomes = [
            lab.migrate(u).status
            for u in (
                "sip:alice@primary.example",
                "sip:bob@primary.example",
                "sip:carol@primary.example",
                "sip:dave@primary.example",
                "sip:erin@primary.example",
            )
        ]
        capture.stop()
    finally:
        lab.close()
    assert outcomes == [200, 403, 403, 404, 200]
    for node, expected in COMPARED.items():
        result = mcmig("replay", str(pcap), "--profile", "sip_profiles/demo.yaml", "--node", node)
        assert result.returncode == 0, (node, result.stdout, result.stderr)
        assert ", 0 differences" in result.stdout and "messages compared" in result.stdout
        assert f"{node}: {expected} messages compared, 0 differences" in result.stdout, (
            result.stdout
        )

    # The partner now refuses alice by name: replaying its part shows the difference.
    profile = yaml.safe_load((ROOT / "sip_profiles/demo.yaml").read_text())
    profile["systems"][1]["visitors"]["refuse_users"].append("sip:alice@primary.example")
    changed = (
        ROOT / "sip_profiles" / f".replay-test-{tmp_path.name}.yaml"
    )  # beside keys/, which it names
    changed.write_text(yaml.safe_dump(profile))
    try:
        result = mcmig("replay", str(pcap), "--profile", str(changed), "--node", "partner-server")
    finally:
        changed.unlink()
    assert result.returncode == 1
    assert (
        "method/status: captured 'MESSAGE', live '403'" in result.stdout
        or "captured '200', live '403'" in result.stdout
    )
    assert "frame " in result.stdout
