"""Captures written by `mcmig up --pcap`, decoded by tshark, drawn by `mcmig ladder` (text and SVG)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.lab import Lab
from tests.support.png import pixels
from tests.support.tools import (
    Capture,
    bob_to_alice_in_demo3,
    call_bob_to_alice_in_demo3,
    demo3_recording,
    require,
    run_mcmig,
    tshark_read,
)

mcmig = run_mcmig


def test_up_records_a_pcap_that_tshark_decodes_and_ladder_draws(tmp_path: Path) -> None:
    up = demo3_recording(tmp_path)
    try:
        big = bob_to_alice_in_demo3("send", "--text", "x" * 1500)
        assert big.stdout.strip() == "200 OK"  # over 1300 bytes: TCP on every leg
        call = call_bob_to_alice_in_demo3()
        assert call.stdout.startswith("200 OK")
    finally:
        assert up.stop() == 0
    pcap = tmp_path / "demo3.pcap"
    decode = ["-d", "udp.port==5060,sip", "-d", "tcp.port==5060,sip", "-d", "udp.port==5062,sip"]
    frames = tshark_read(pcap, *decode, "-T", "fields", "-e", "frame.number")
    sip = tshark_read(pcap, *decode, "-Y", "sip", "-T", "fields", "-e", "frame.number")
    tcp_sip = tshark_read(pcap, *decode, "-Y", "sip and tcp", "-T", "fields", "-e", "frame.number")
    bad = tshark_read(pcap, *decode, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert len(frames.stdout.split()) == len(sip.stdout.split()) > 30
    assert len(tcp_sip.stdout.split()) >= 8  # the large MESSAGE and its answers over TCP
    assert bad.stdout.strip() == ""
    # the header's snapshot length covers the largest frame, which is whole
    snaplen = int.from_bytes(pcap.read_bytes()[16:20], "little")
    lengths = tshark_read(pcap, "-T", "fields", "-e", "frame.len", "-e", "frame.cap_len")
    sizes = [tuple(map(int, line.split())) for line in lengths.stdout.splitlines()]
    assert max(length for length, _ in sizes) > 1500  # the large MESSAGE, over TCP
    assert snaplen >= max(length for length, _ in sizes)
    assert all(length == captured for length, captured in sizes)
    # recording began before any node sent: alice-ue's migration at start is there
    from mcmig.capture.reader import read_sip

    first = read_sip(pcap)[0]
    assert first.label == "MESSAGE" and first.message.uri.user == "migration"  # type: ignore[union-attr]
    # the migration at start (alice-ue), the data and the call are all in the ladder
    svg = tmp_path / "flow.svg"
    drawn = mcmig("ladder", str(pcap), "--profile", "sip_profiles/demo3.yaml", "--svg", str(svg))
    assert drawn.returncode == 0, drawn.stderr
    for text in (
        "alice-ue",
        "primary-server",
        "primary-gw (int)",
        "partner-gw (ext)",
        "INVITE",
        "ACK",
        "BYE",
        "180 Ringing",
        "MESSAGE",
    ):
        assert text in drawn.stdout, text
    png = tmp_path / "flow.png"
    subprocess.run([require("rsvg-convert"), "-o", str(png), str(svg)], check=True, timeout=60)
    width, height, rows = pixels(png.read_bytes())
    assert width > 500 and height > 500
    colours = {row[i : i + 3] for row in rows[::7] for i in range(0, len(row), 12)}
    assert len(colours) > 5  # lines, arrows and text were drawn, not a blank page


def test_ladder_reads_a_tshark_pcapng_capture(tmp_path: Path) -> None:
    pcapng = tmp_path / "lo.pcapng"
    lab = Lab("sip_profiles/demo.yaml", tmp_path / "state")
    lab.start()
    try:
        capture = Capture(
            pcapng, "host 127.0.9.1 and host 127.0.9.2", probe=("127.0.9.2", "127.0.9.1")
        )
        assert lab.migrate("sip:alice@primary.example").status == 200
        capture.stop()
    finally:
        lab.close()
    assert pcapng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # tshark writes pcapng
    drawn = mcmig("ladder", str(pcapng), "--profile", "sip_profiles/demo.yaml")
    assert drawn.returncode == 0, drawn.stderr
    assert "(1) MESSAGE" in drawn.stdout and "(2) 200 OK" in drawn.stdout
    assert "partner-gw (ext)" in drawn.stdout and "primary-gw (ext)" in drawn.stdout
    no_profile = mcmig("ladder", str(pcapng))
    assert "127.0.9.2:5060" in no_profile.stdout


def test_ladder_refuses_what_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "x.pcap"
    bogus.write_bytes(b"not a capture at all")
    result = mcmig("ladder", str(bogus))
    assert (
        result.returncode == 2
        and result.stderr.startswith("mcmig: ")
        and "Traceback" not in result.stderr
    )


def test_pcap_takes_a_file_name_and_the_ready_line_says_where(tmp_path: Path) -> None:
    from tests.support.tools import Mcmig

    target = tmp_path / "runs" / "mine.pcap"
    up = Mcmig("up", "sip_profiles/demo.yaml", "--state-dir", str(tmp_path), "--pcap", str(target))
    try:
        assert up.ready_line is not None and f"capture in {target}" in up.ready_line
    finally:
        assert up.stop() == 0
    assert target.is_file() and not (target / "demo.pcap").exists()
