"""Topology hiding proven on the wire: tshark captures the link between the gateways."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mcmig.commands.demo import forged_token
from mcmig.sip.message import Request
from tests.support.lab import Lab
from tests.support.tools import Capture, tshark_read

EXTERNAL = "host 127.0.9.1 and host 127.0.9.2"
INNER_NAMES = [
    b"primary-server",
    b"partner-server",
    b"primary-gw",
    b"partner-gw",
    b"127.0.1.",
    b"127.0.2.",
]


def _collect(lab: Lab, inner_call_ids: set[str]) -> int:
    """Count what crossed the external link; remember the Call-IDs used inside."""
    crossed = 0
    for entry in lab.trace.entries:
        if entry.source.host.startswith("127.0.9.") and entry.destination.host.startswith(
            "127.0.9."
        ):
            crossed += 1
        elif isinstance(entry.message, Request):
            inner_call_ids.add(entry.message.call_id)
    return crossed


def _forged(lab: Lab, user: str) -> str:
    return forged_token(lab.deployment, user)


def test_no_inner_byte_on_the_external_link(tmp_path: Path) -> None:
    pcap = tmp_path / "external.pcap"
    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    lab.start()
    from mcmig.nodes.phone import Answerer

    Answerer(lab.client, f"sip:ue@{lab.client.address}", lambda line: None, ring_time=0.01)
    tokens: list[str] = []
    inner_call_ids: set[str] = set()
    crossed = 0
    outcomes: dict[tuple[int, str | None], int] = {}
    try:
        capture = Capture(pcap, EXTERNAL, probe=("127.0.9.2", "127.0.9.1"))
        cases: list[tuple[str, str | None]] = [
            (f"sip:u{n:06d}@primary.example", None) for n in range(150)
        ]
        cases += [("sip:bob@primary.example", None)] * 15  # refused by the primary server
        cases += [
            ("sip:dave@primary.example", None)
        ] * 15  # unknown: refused by the primary gateway
        cases += [("sip:carol@primary.example", None)] * 8  # refused by the partner
        cases += [("sip:zed@elsewhere.example", None)] * 6  # unknown system
        cases += [("sip:erin@primary.example", "forged")] * 6  # forged token
        for user, kind in cases:
            token = _forged(lab, user) if kind else lab.token(user)
            tokens.append(token)
            outcome = lab.migrate(user, token)
            outcomes[(outcome.status, outcome.cause)] = (
                outcomes.get((outcome.status, outcome.cause), 0) + 1
            )
            crossed += _collect(lab, inner_call_ids)
        # Data to migrated users crosses the other way (PROFILE 4): primary -> partner.
        from mcmig.nodes.ue import send_data

        for n in range(20):
            lab.trace.clear()
            response = lab.run(
                send_data(
                    lab.client,
                    lab.deployment,
                    "sip:bob@primary.example",
                    f"sip:u{n:06d}@primary.example",
                    b"status update",
                    "text/plain",
                )
            )
            assert (
                response.status == 405
            )  # delivered to the test's client node, which takes no data
            crossed += _collect(lab, inner_call_ids)
        # Calls to migrated users: INVITE, 180, 200, ACK, BYE, 200 across every B2BUA.
        from mcmig.node.runtime import SipNode
        from mcmig.nodes.phone import place_call
        from mcmig.sip.peer import TransportAddress

        caller = SipNode("bob-phone", "127.0.1.60", 0)
        lab.run(caller.start())
        lab.trace.watch(caller, "bob-phone")
        calls = 0
        for n in range(10):
            lab.trace.clear()
            outcome = lab.run(
                place_call(
                    caller,
                    "sip:bob@primary.example",
                    f"sip:u{n:06d}@primary.example",
                    TransportAddress("UDP", "127.0.1.10", 5060),
                    hold=0.05,
                )
            )
            calls += outcome.status == 200
            lab.run(asyncio.sleep(0.05))
            crossed += _collect(lab, inner_call_ids)
        lab.run(caller.stop())
        assert calls == 10
        data = capture.stop()
    finally:
        lab.close()

    assert len(cases) >= 200
    assert outcomes == {
        (200, None): 150,
        (403, "migration-not-permitted"): 15,
        (404, "unknown-user"): 15,
        (403, "user-not-permitted-by-partner"): 8,
        (403, "primary-system-not-permitted"): 6,
        (403, "invalid-credentials"): 6,
    }
    # Frames were in fact captured: every message that crossed is in the file.
    frames = tshark_read(pcap, "-Y", "not udp.port == 9", "-T", "fields", "-e", "frame.number")
    assert frames.returncode == 0
    assert len(frames.stdout.split()) == crossed >= 2 * (150 + 15 + 15)
    # No inner address, node name, Call-ID or access token in any captured byte;
    # SDP media addresses are set aside: this profile has no media relay.
    data = data.replace(b"IN IP4 127.0.1.60", b"").replace(b"IN IP4 127.0.2.100", b"")
    for secret in INNER_NAMES:
        assert secret not in data, secret
    for call_id in inner_call_ids:
        assert call_id.encode() not in data
    for token in tokens:
        assert token.encode() not in data and token.split(".")[1].encode() not in data
    # tshark decodes every frame as SIP, with no malformed or error expert flag.
    sip = tshark_read(
        pcap, "-d", "udp.port==5060,sip", "-Y", "sip", "-T", "fields", "-e", "frame.number"
    )
    assert len(sip.stdout.split()) == crossed
    bad = tshark_read(
        pcap,
        "-d",
        "udp.port==5060,sip",
        "-Y",
        "(_ws.malformed || _ws.expert.severity >= error) && not udp.port == 9",
    )
    assert bad.returncode == 0 and bad.stdout.strip() == "", bad.stdout[:2000]


def test_no_inner_byte_leaves_any_gateway_of_the_deployed_profile(tmp_path: Path) -> None:
    """sip_profiles/deployed.yaml: what the gateways of primary.example (two) and
    partner2.example send to other systems, captured by tshark, while migrations,
    data and calls cross every pairing, migrated users originating included. The
    partner system has no gateways and hides nothing, as the seed's NOTE allows."""
    pcap = tmp_path / "gateways.pcap"
    lab = Lab("sip_profiles/deployed.yaml", tmp_path / "state")
    lab.start()
    assert lab.running is not None
    clients = lab.running.clients
    alice, bob, dave, gina = (clients[n] for n in ("alice-ue", "bob-ue", "dave-ue", "gina-ue"))
    try:
        capture = Capture(
            pcap,
            "src host 127.0.9.1 or src host 127.0.9.11 or src host 127.0.9.3",
            probe=("127.0.9.1", "127.0.9.3"),
        )
        for n in range(10):
            assert lab.migrate(f"sip:u{n:06d}@primary.example").status == 200
            assert (
                lab.migrate(
                    f"sip:u{500000 + n:06d}@primary.example", partner="partner2.example"
                ).status
                == 200
            )
        assert lab.migrate("sip:dave@primary.example").cause == "unknown-user"
        for target in (
            "sip:bob@primary.example",
            "sip:gina@partner2.example",
            "sip:dave@partner.example",
        ):
            assert lab.run(alice.send(target, b"from abroad")).status == 200
            assert lab.run(alice.call(target, hold=0.05)).status == 200
        for sender in (bob, gina, dave):
            assert lab.run(sender.send("sip:alice@primary.example", b"to alice")).status == 200
        assert lab.run(gina.call("sip:alice@primary.example", hold=0.05)).status == 200
        lab.run(asyncio.sleep(0.1))
        data = capture.stop()
    finally:
        lab.close()
    assert data.count(b"SIP/2.0") > 60
    # SDP media addresses are set aside: this profile has no media relay.
    for host in (b"127.0.1.100", b"127.0.2.101", b"127.0.3.100", b"127.0.2.102"):
        data = data.replace(b"IN IP4 " + host, b"")
    for secret in (
        b"127.0.1.",
        b"127.0.3.",
        b"primary-a",
        b"primary-b",
        b"primary-gw",
        b"partner2-",
    ):
        assert secret not in data, secret
