# ruff: noqa: E501 - command lines and tables read best unwrapped
"""Relay cost side by side: SIPp UAC -> middle box -> SIPp UAS, MESSAGE at fixed rates.

The middle box is (a) the mcmig gateway (sip_profiles/bench-relay.yaml) and
(b) Kamailio 5.6 with a stateful t_relay() (kamailio/bench-relay.cfg), both
started once; at each rate, one after the other. Figure: CPU microseconds
per relayed transaction of each middle box (all its processes), from /proc,
and their ratio, at each rate. A third box, the asyncio floor (floor_relay.py:
datagrams passed through unchanged, no SIP), shows what any asyncio node pays
for the same reads and sends before SIP work. Then the gateway's code alone,
kept busy in this process (relay_busy.py): a figure for comparing our own
changes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcmig.bench import ROOT, relay_busy
from mcmig.bench.procstat import cpu_seconds, group_pids, pss_mb


def start_sipp(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """A SIPp process (no keyboard), its screen on stdout."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp is not installed (./scripts/setup installs sip-tester)")
    return subprocess.Popen(
        [sipp, "-nostdin", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sipp_calls(screen: str, kind: str) -> int | None:
    """The cumulative count of ``kind`` ("Successful", "Failed") calls on SIPp's last screen."""
    found = re.search(kind + r" call\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    return int(found.group(1)) if found else None


def _run_through(
    box: str,
    entry: str,
    uas_ip: str,
    uac_ip: str,
    pids: list[int],
    rate: int,
    count: int,
    folder: Path,
    ctrl: int,
    scenario: str = "relay_uac.xml",
) -> dict[str, Any]:
    uas = start_sipp(
        [
            "-sf",
            str(ROOT / "sipp/message_uas.xml"),
            "-i",
            uas_ip,
            "-p",
            "5060",
            "-cp",
            str(ctrl),
            "-trace_err",
        ],
        folder,
    )
    time.sleep(0.5)
    before = sum(cpu_seconds(p) for p in pids)
    uac = start_sipp(
        [
            "-sf",
            str(ROOT / "sipp" / scenario),
            "-i",
            uac_ip,
            "-p",
            "5070",
            "-cp",
            str(ctrl + 1),
            "-m",
            str(count),
            "-r",
            str(rate),
            "-s",
            "u",
            "-timeout",
            "120s",
            "-timeout_error",
            entry,
        ],
        folder,
    )
    out, _ = uac.communicate(timeout=count / rate * 5 + 120)
    after = sum(cpu_seconds(p) for p in pids)
    memory = sum(pss_mb(p) for p in pids)
    uas.send_signal(signal.SIGINT)
    try:
        uas.wait(timeout=10)
    except subprocess.TimeoutExpired:
        uas.kill()
    successful = sipp_calls(out, "Successful") or 0
    failed = sipp_calls(out, "Failed")
    return {
        "middle_box": box,
        "transactions": successful,
        "failed": count if failed is None else failed,
        "cpu_s": after - before,
        "cpu_us_per_transaction": (after - before) * 1e6 / max(successful, 1),
        "pss_mb": memory,  # at the end of the run, over every process of the box
    }


KAMAILIO_SHM_MB = "256"
# (rate per second, transactions): the first is the headline figure; the others
# show how the cost per transaction falls as each wakeup handles more (docs/performance.md).
RATES = ((400, 8000), (1000, 8000), (2000, 8000))
QUICK_RATES = ((200, 300),)
# The migration request body (sipp/relay_migration_uac.xml), which the gateway
# decodes, rewrites and encodes again: at one rate, mcmig and Kamailio.
MIGRATION_RATE = (1000, 8000)
QUICK_MIGRATION_RATE = (200, 300)


def start_python(*args: str) -> subprocess.Popen[str]:
    """``python -m ARGS`` from the repository root, once it has printed "ready"
    (a node or a relay); killed, and an error raised, if it prints anything else."""
    (process,) = start_pythons([args])
    return process


def start_pythons(commands: list[tuple[str, ...]]) -> list[subprocess.Popen[str]]:
    """Several ``python -m ARGS`` at once (each spends most of a second importing),
    returned once every one has printed "ready"; all killed if one does not."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for args in commands
    ]
    for process, args in zip(processes, commands, strict=True):
        assert process.stdout is not None
        line = process.stdout.readline()
        if "ready" not in line:
            for started in processes:
                started.kill()
            raise RuntimeError(f"python -m {' '.join(args)} did not start: {line!r}")
    return processes


def _start_gateway(folder: Path, loop: str) -> subprocess.Popen[str]:
    return start_python(
        *("mcmig.cli", "up", "sip_profiles/bench-relay.yaml", "--only", "relay-gw"),
        *("--state-dir", str(folder / "state"), "--loop", loop),
    )


def _start_floor(loop: str) -> subprocess.Popen[str]:
    return start_python(
        *("mcmig.bench.floor_relay", "--listen", "127.0.42.1:5060"),
        *("--far", "127.0.42.3:5060", "--loop", loop),
    )


def _start_kamailio(folder: Path) -> subprocess.Popen[bytes]:
    kamailio = shutil.which("kamailio")
    if kamailio is None:
        raise RuntimeError("kamailio is not installed (./scripts/setup installs it)")
    (folder / "k").mkdir()
    kam = subprocess.Popen(
        [
            kamailio,
            # Shared memory for the transactions held after their answer (the
            # wait timer): the default 64 MB runs out near 1,000/s and Kamailio
            # then answers 500. Sized as an operator would for that rate.
            "-m",
            KAMAILIO_SHM_MB,
            "-f",
            str(ROOT / "kamailio/bench-relay.cfg"),
            "-DD",
            "-E",
            "-Y",
            str(folder / "k"),
            "-P",
            str(folder / "k" / "pid"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(1.5)
    return kam


def measure(quick: bool = False, loop: str = "asyncio") -> dict[str, Any]:
    """Both middle boxes run side by side; at each rate, ours and then Kamailio."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mcmig-bench-relay-") as name:
        folder = Path(name)
        gw = _start_gateway(folder, loop)
        floor = _start_floor(loop)
        try:
            kam = _start_kamailio(folder)
            try:
                for rate, count in QUICK_RATES if quick else RATES:
                    ours = _run_through(
                        f"mcmig gateway ({loop})",
                        "127.0.40.1:5060",
                        "127.0.40.3",
                        "127.0.40.4",
                        [gw.pid],
                        rate,
                        count,
                        folder,
                        8600,
                    )
                    theirs = _run_through(
                        "Kamailio 5.6 t_relay",
                        "127.0.41.1:5060",
                        "127.0.41.3",
                        "127.0.41.4",
                        group_pids(kam.pid),
                        rate,
                        count,
                        folder,
                        8700,
                    )
                    bare = _run_through(
                        f"asyncio floor ({loop})",
                        "127.0.42.1:5060",
                        "127.0.42.3",
                        "127.0.42.4",
                        [floor.pid],
                        rate,
                        count,
                        folder,
                        8800,
                    )
                    runs.append(
                        {
                            "rate_per_s": rate,
                            "transactions_each": count,
                            "mcmig": ours,
                            "kamailio": theirs,
                            "floor": bare,
                            "ratio": ours["cpu_us_per_transaction"]
                            / max(theirs["cpu_us_per_transaction"], 1e-9),
                            "floor_ratio": bare["cpu_us_per_transaction"]
                            / max(theirs["cpu_us_per_transaction"], 1e-9),
                        }
                    )
                migration = _migration_bodies(
                    gw.pid, kam.pid, loop, folder, QUICK_MIGRATION_RATE if quick else MIGRATION_RATE
                )
            finally:
                os.killpg(kam.pid, signal.SIGTERM)
                kam.wait(timeout=20)
        finally:
            for process in (gw, floor):
                process.send_signal(signal.SIGTERM)
            for process in (gw, floor):
                process.wait(timeout=20)
    # The first rate's figures stay at the top level, where earlier results had them.
    return {
        **runs[0],
        "by_rate": runs,
        "migration_body": migration,
        "mcmig_busy": relay_busy.measure(2000 if quick else 20000),
    }


def _migration_bodies(
    gw: int, kam: int, loop: str, folder: Path, rate_count: tuple[int, int]
) -> dict[str, Any]:
    """The same relay with the migration request as body, mcmig then Kamailio."""
    rate, count = rate_count
    ours = _run_through(
        f"mcmig gateway ({loop})",
        "127.0.40.1:5060",
        "127.0.40.3",
        "127.0.40.4",
        [gw],
        rate,
        count,
        folder,
        8600,
        "relay_migration_uac.xml",
    )
    theirs = _run_through(
        "Kamailio 5.6 t_relay",
        "127.0.41.1:5060",
        "127.0.41.3",
        "127.0.41.4",
        group_pids(kam),
        rate,
        count,
        folder,
        8700,
        "relay_migration_uac.xml",
    )
    return {
        "rate_per_s": rate,
        "transactions_each": count,
        "mcmig": ours,
        "kamailio": theirs,
        "ratio": ours["cpu_us_per_transaction"] / max(theirs["cpu_us_per_transaction"], 1e-9),
    }


def report(results: dict[str, Any]) -> str:
    lines = ["relay cost: SIPp UAC -> middle box -> SIPp UAS, MESSAGE transactions"]
    for run in results["by_rate"]:
        lines.append(f"  at {run['rate_per_s']}/s, {run['transactions_each']} each:")
        for key in ("mcmig", "kamailio", "floor"):
            r = run[key]
            lines.append(
                f"    {r['middle_box']:<24} {r['transactions']:>6} ok {r['failed']:>4} failed  {r['cpu_us_per_transaction']:>8.0f} us CPU per transaction  memory {r['pss_mb']:.0f} MB (PSS)"
            )
        above = run["mcmig"]["cpu_us_per_transaction"] - run["floor"]["cpu_us_per_transaction"]
        lines.append(
            f"    ratio mcmig / Kamailio: {run['ratio']:.2f} (the asyncio floor alone: {run['floor_ratio']:.2f}; mcmig's SIP work above it: {above:.0f} us)"
        )
    body = results["migration_body"]
    lines.append(
        f"  with the migration request as body (the gateway rewrites partner-address), "
        f"at {body['rate_per_s']}/s, {body['transactions_each']} each:"
    )
    for key in ("mcmig", "kamailio"):
        r = body[key]
        lines.append(
            f"    {r['middle_box']:<24} {r['transactions']:>6} ok {r['failed']:>4} failed  {r['cpu_us_per_transaction']:>8.0f} us CPU per transaction"
        )
    lines.append(f"    ratio mcmig / Kamailio: {body['ratio']:.2f}")
    busy = results["mcmig_busy"]
    best = busy["best_chunk_us_per_transaction"]
    lines.append(
        f"  mcmig gateway code kept busy, in one process, {busy['in_flight']} in flight (not comparable with the above: no sockets, no sleeping between messages): "
        f"{busy['cpu_us_per_transaction']:.0f} us CPU per transaction, best 1,000 {best:.0f} us, {busy['failed']} failed"
    )
    return "\n".join(lines)
