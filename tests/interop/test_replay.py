"""A tshark capture of a demo run, replayed against each node: the regression test of the captures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcmig.nodes.client import McClient
from mcmig.profiles import load_deployment
from tests.support.lab import PARTNER, Lab
from tests.support.tools import (
    ROOT,
    Capture,
    call_bob_to_alice_in_demo3,
    demo3_recording,
    demo_with_tcp_between_peers,
    run_mcmig,
    tshark_read,
)

# What each node sends in the run: partner-server forwards 4 requests (carol stops there)
# and answers 5; each gateway forwards and answers; dave stops at primary-gw.
COMPARED = {"partner-server": 9, "partner-gw": 8, "primary-gw": 7, "primary-server": 3}
USERS = [f"sip:{name}@primary.example" for name in ("alice", "bob", "carol", "dave", "erin")]


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
        outcomes = [lab.migrate(u).status for u in USERS]
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


def test_replay_over_tcp_with_the_kernels_ports(tmp_path: Path) -> None:
    """The client talks TCP to the partner server and the gateways TCP to each other.
    tshark records the kernel's ephemeral ports; replay stands in for the peers
    over TCP (answering on the connection a request came over) and finds no
    difference, and compares as many messages as over UDP."""
    with demo_with_tcp_between_peers(f"replay-{tmp_path.name}") as tcp_profile:
        lab = Lab(load_deployment(tcp_profile), tmp_path / "state")
        lab.start()
        try:
            capture = Capture(
                tmp_path / "tcp.pcapng",
                "(udp or tcp) and (net 127.0.1.0/24 or net 127.0.2.0/24 or net 127.0.9.0/24)",
                probe=("127.0.9.2", "127.0.9.1"),
            )
            system = lab.deployment.system(PARTNER)
            assert system is not None
            server = system.servers[0].listen.address("TCP")
            outcomes = []
            for user in USERS:
                client = McClient(lab.client, user)
                outcome = lab.run(client.migrate(system.migration_psi, server, lab.token(user)))
                outcomes.append(outcome.status)
            capture.stop()
        finally:
            lab.close()
        assert outcomes == [200, 403, 403, 404, 200]
        tcp = tshark_read(
            tmp_path / "tcp.pcapng",
            "-d",
            "tcp.port==5060,sip",
            "-Y",
            "sip and tcp",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
        )
        ports = {int(p) for p in tcp.stdout.split()}
        assert 5060 in ports and len(ports) >= 2, ports  # the kernel's ports are in there
        for node, expected in COMPARED.items():
            result = mcmig(
                "replay",
                str(tmp_path / "tcp.pcapng"),
                "--profile",
                str(tcp_profile),
                "--node",
                node,
            )
            assert result.returncode == 0, (node, result.stdout, result.stderr)
            assert f"{node}: {expected} messages compared, 0 differences" in result.stdout, (
                result.stdout
            )


def test_replay_of_a_call_follows_the_live_dialog(tmp_path: Path) -> None:
    """A recorded call (INVITE, 180, 200, ACK, BYE through both systems): the
    peers' ACK and BYE carry the Call-ID and tags the replayed node makes anew,
    so the node sees them in its live dialog and answers as it did."""
    up = demo3_recording(tmp_path)
    try:
        call = call_bob_to_alice_in_demo3()
        assert call.stdout.startswith("200 OK"), call.stdout + call.stderr
    finally:
        assert up.stop() == 0
    pcap = str(tmp_path / "demo3.pcap")
    for node in ("primary-server", "primary-gw", "partner-gw", "partner-server"):
        # The capture begins before any node sent: alice's migration at start-up is
        # in it, so each node is replayed from a fresh state.
        result = mcmig("replay", pcap, "--profile", "sip_profiles/demo3.yaml", "--node", node)
        assert result.returncode == 0, (node, result.stdout, result.stderr)
        compared = int(result.stdout.split(f"{node}: ")[1].split()[0])
        # alice's migration, then INVITE, 180, 200, ACK and BYE onward and the
        # BYE's 200 back (100s are not compared); without the dialog rewriting
        # the BYE gets a 481.
        assert compared >= 7 and ", 0 differences" in result.stdout, result.stdout


def test_replay_runs_on_the_captures_clock(tmp_path: Path) -> None:
    """A session captured two hours ago, with tokens that expired since: replayed on
    the capture's clock, every node answers as it did (a token valid then is valid
    in the replay), with no sleeping."""
    import time

    from mcmig.capture.attach import Recording
    from mcmig.capture.writer import PcapRecorder
    from mcmig.mc.tokens import TokenError, TokenVerifier, issue_token
    from mcmig.profiles.keys import idms_key
    from tests.support.lab import Lab

    def two_hours_ago() -> float:
        return time.time() - 7200

    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    pcap = tmp_path / "old.pcap"
    recorder = PcapRecorder(pcap, clock=two_hours_ago)
    recording = Recording(recorder, lab.deployment.node_hosts())
    lab.start(watch=recording.watch, clock=two_hours_ago)
    partner = lab.deployment.system("partner.example")
    assert partner is not None
    token = issue_token(
        idms_key(partner), "partner.example", "sip:alice@primary.example", now=two_hours_ago()
    )
    try:
        assert lab.migrate("sip:alice@primary.example", token).status == 200
        assert lab.migrate("sip:bob@primary.example").status == 403
    finally:
        lab.close()
        recorder.close()
    with pytest.raises(TokenError, match="expired"):  # by the wall clock, it has expired
        TokenVerifier("partner.example", [idms_key(partner)]).verify(
            token, "sip:alice@primary.example"
        )
    for node in ("partner-server", "partner-gw", "primary-gw", "primary-server"):
        result = mcmig("replay", str(pcap), "--profile", "sip_profiles/demo.yaml", "--node", node)
        assert result.returncode == 0, (node, result.stdout, result.stderr)
        assert ", 0 differences" in result.stdout, result.stdout
