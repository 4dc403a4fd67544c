"""Running real third-party tools from tests. A missing tool fails the test."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcmig.commands.migrate import token_for
from mcmig.profiles import load_deployment

ROOT = Path(__file__).resolve().parents[2]
SIPP_DIR = ROOT / "sipp"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed: ./scripts/setup installs it (a skipped interop test hides a broken product)"
        )
    return path


def terminate(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port(host: str = "127.0.0.1", *, udp: bool = True, tcp: bool = True) -> int:
    """A port free on ``host`` for each protocol asked for: one asked for only
    one protocol must still be checked in that one (a TCP listener on a port
    free only in UDP fails with "Address already in use")."""
    for _ in range(50):
        kinds = [k for k, wanted in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if wanted]
        with socket.socket(socket.AF_INET, kinds[0]) as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            if len(kinds) == 1:
                return port
            with socket.socket(socket.AF_INET, kinds[1]) as second:
                try:
                    second.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def run_sipp(
    scenario: str,
    *args: str,
    local_ip: str,
    target: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    command = [
        require("sipp"),
        "-sf",
        str(SIPP_DIR / scenario),
        "-i",
        local_ip,
        "-cp",
        str(free_port(local_ip, tcp=False)),
        "-nostdin",
        *args,
    ]
    if target:
        command.append(target)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)


class Mcmig:
    """An ``mcmig`` subcommand running as a child process until stopped."""

    def __init__(self, *args: str, ready: str = "ready", timeout: float = 15) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcmig.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        self.ready_line: str | None = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if ready in line:
                self.ready_line = line
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"mcmig {' '.join(args)} did not get ready: {self.stderr}")

    stderr = ""

    def stop(self) -> int:
        terminate(self.proc)
        _, self.stderr = self.proc.communicate()
        return int(self.proc.returncode)


class Capture:
    """tshark capturing on the loopback interface into a pcap file, with a capture filter.

    With ``probe`` (two hosts the filter passes), it sends a marker datagram from
    one to the other until the marker is in the file: the capture is then live.
    Markers go to UDP port 9 (discard) and are not SIP.
    """

    MARKER = b"mcmig-capture-marker"

    def __init__(
        self, path: Path, capture_filter: str, probe: tuple[str, str] | None = None
    ) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [require("tshark"), "-i", "lo", "-f", capture_filter, "-w", str(path), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "Capturing on" in line:
                if probe is None or self._probe(*probe, deadline):
                    return
                break
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError(f"tshark did not start capturing: {self.proc.stderr.read()}")

    def _probe(self, source: str, destination: str, deadline: float) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            while time.monotonic() < deadline:
                sock.sendto(self.MARKER, (destination, 9))
                time.sleep(0.2)
                if self.path.exists() and self.MARKER in self.path.read_bytes():
                    return True
        return False

    def stop(self) -> bytes:
        time.sleep(0.5)  # let the last packets reach the capture
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.path.read_bytes()


def tshark_read(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("tshark"), "-r", str(path), *args], capture_output=True, text=True, timeout=120
    )


def run_mcmig(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the mcmig command line from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "mcmig.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def demo3_recording(folder: Path) -> Mcmig:
    """`mcmig up sip_profiles/demo3.yaml` recording into folder/demo3.pcap, state in folder/state."""
    return Mcmig(
        "up",
        "sip_profiles/demo3.yaml",
        "--state-dir",
        str(folder / "state"),
        "--pcap",
        str(folder),
    )


@contextlib.contextmanager
def demo_with_tcp_between_peers(tag: str) -> Iterator[Path]:
    """demo.yaml with every peer reached over TCP, written beside it (its key and
    certificate paths are relative) and removed afterwards."""
    profile = yaml.safe_load((ROOT / "sip_profiles/demo.yaml").read_text())
    for system in profile["systems"]:
        for peer in system["peers"]:
            peer["transport"] = "TCP"
    path = ROOT / "sip_profiles" / f".tcp-{tag}.yaml"
    path.write_text(yaml.safe_dump(profile))
    try:
        yield path
    finally:
        path.unlink()


def migrate_in_demo(
    user: str = "sip:alice@primary.example", listen: str = "127.0.2.100:0", hand_made: bool = False
) -> subprocess.CompletedProcess[str]:
    """`mcmig migrate` of ``user`` to partner.example in a running demo.yaml deployment:
    logged in at the IdMS with the demo credentials, or with a hand-made token
    (``hand_made``: to reach the SIP checks behind the IdMS's)."""
    if hand_made:
        demo = load_deployment(ROOT / "sip_profiles" / "demo.yaml")
        login = ("--token", token_for(demo, "partner.example", user))
    else:
        login = ("--credentials", "sip_profiles/keys/demo-credentials.yaml")
    return run_mcmig(
        "migrate",
        "--profile",
        "sip_profiles/demo.yaml",
        "--user",
        user,
        "--partner",
        "partner.example",
        "--listen",
        listen,
        *login,
    )


def bob_to_alice_in_demo3(command: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`mcmig send` or `mcmig call` from bob (home) to alice in a running demo3 deployment."""
    return run_mcmig(
        command,
        "--profile",
        "sip_profiles/demo3.yaml",
        "--from",
        "sip:bob@primary.example",
        "--to",
        "sip:alice@primary.example",
        *options,
        "--listen",
        "127.0.1.50:0",
    )


def call_bob_to_alice_in_demo3(hold: str = "0.2") -> subprocess.CompletedProcess[str]:
    return bob_to_alice_in_demo3("call", "--hold", hold)


def registry_records(
    state: Path, profile: str = "sip_profiles/demo.yaml", node: str = "primary-server"
) -> list[dict[str, object]]:
    """What `mcmig registry show --json` lists for a node."""
    shown = run_mcmig(
        "registry",
        "show",
        "--profile",
        profile,
        "--node",
        node,
        "--state-dir",
        str(state),
        "--json",
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]
