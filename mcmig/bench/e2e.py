# ruff: noqa: E501 - tables and SVG markup read best unwrapped
"""End to end: the demo deployment, one process per node, under a sweep of offered load.

Figures per offered rate: migrations/s achieved, failures, latency
p50/p90/p99/max, retransmissions, and per node the CPU seconds per 1,000
migrations and peak RSS. The knee is the highest rate with no failure and
p99 under 50 ms. Load comes from mcmig's own load client (mcmig.bench.loadclient),
two processes, open loop.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcmig.bench.procstat import cpu_seconds, peak_rss_mb, udp_receive_buffer_drops

NODES = ["primary-server", "primary-gw", "partner-gw", "partner-server"]
PROFILE = "sip_profiles/demo.yaml"
CLIENTS = ("127.0.2.101", "127.0.2.102")


def _start(name: str, state: Path, loop: str = "asyncio") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcmig.cli",
            "up",
            PROFILE,
            "--only",
            name,
            "--state-dir",
            str(state),
            "--loop",
            loop,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc


def start_load_client(
    host: str, first: int, count: int, rate: float, out: Path
) -> subprocess.Popen[bytes]:
    """A load-client process migrating users u<first>.. at ``rate``; figures to ``out``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcmig.bench.loadclient",
            "--profile",
            PROFILE,
            "--host",
            host,
            "--first",
            str(first),
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--out",
            str(out),
        ],
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _step(
    rate: float, duration: float, first: int, procs: dict[str, subprocess.Popen[str]], folder: Path
) -> dict[str, Any]:
    count = int(rate * duration / len(CLIENTS))
    cpu_before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    drops_before = udp_receive_buffer_drops()
    clients = []
    for i, host in enumerate(CLIENTS):
        out = folder / f"client-{first}-{i}.json"
        clients.append(
            (out, start_load_client(host, first + i * count, count, rate / len(CLIENTS), out))
        )
    for _, client in clients:
        client.wait(timeout=duration * 10 + 120)
    cpu_after = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    drops = udp_receive_buffer_drops() - drops_before
    results = [json.loads(out.read_text()) for out, _ in clients]
    latencies = [x for r in results for x in r["latencies_ms"]]
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    refused_by: dict[str, int] = {}
    for r in results:
        for k, v in r["refused_by"].items():
            refused_by[k] = refused_by.get(k, 0) + v
    ok = statuses.get("200", 0)
    elapsed = max(r["elapsed_s"] for r in results)
    return {
        "offered_per_s": rate,
        "sent": sum(r["sent"] for r in results),
        "accepted": ok,
        "failed": sum(v for k, v in statuses.items() if k != "200"),
        "statuses": statuses,
        "achieved_per_s": ok / elapsed if elapsed else 0.0,
        "latency_ms": {
            "p50": _percentile(latencies, 0.5),
            "p90": _percentile(latencies, 0.9),
            "p99": _percentile(latencies, 0.99),
            "max": max(latencies, default=0.0),
        },
        "refused_by": refused_by,
        "retransmissions": sum(r["retransmissions"] for r in results),
        "udp_receive_buffer_drops": drops,
        "load_client_cpu_s": sum(r["cpu_s"] for r in results),
        "cpu_s_per_1000": {n: (cpu_after[n] - cpu_before[n]) * 1000 / max(ok, 1) for n in procs},
    }


RECOVERY_PAUSE_S = 5.0


def measure(quick: bool = False, loop: str = "asyncio") -> dict[str, Any]:
    rates, duration = ([60.0], 1.0) if quick else ([250.0, 500.0, 750.0, 1000.0, 1250.0], 6.0)
    steps = []
    with tempfile.TemporaryDirectory(prefix="mcmig-bench-e2e-") as folder:
        state = Path(folder) / "state"
        procs = {n: _start(n, state, loop) for n in NODES}
        try:
            first = 0
            for rate in rates:
                steps.append(_step(rate, duration, first, procs, Path(folder)))
                first += int(rate * duration) + 10
                time.sleep(0.5)
            # Load drops: after a pause, the first rate again shows whether the
            # nodes recovered from the overload of the last steps.
            time.sleep(0.5 if quick else RECOVERY_PAUSE_S)
            recovery = _step(rates[0], duration, first, procs, Path(folder))
            rss = {n: peak_rss_mb(p.pid) for n, p in procs.items()}
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(timeout=20)
    good = [s for s in steps if s["failed"] == 0 and s["latency_ms"]["p99"] < 50]
    return {
        "deployment": PROFILE,
        "processes": "one per node; 2 load-client processes (mcmig.bench.loadclient, open loop)",
        "event_loop": loop,
        "step_duration_s": duration,
        "steps": steps,
        "knee_per_s": max((s["achieved_per_s"] for s in good), default=0.0),
        "recovery": recovery,
        "peak_rss_mb": rss,
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        f"end to end: {results['deployment']}, {results['processes']}; nodes on {results['event_loop']}",
        f"{'offered/s':>10}{'achieved/s':>12}{'failed':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'retx':>7}  CPU s per 1000 migrations",
    ]
    for s in results["steps"]:
        lat = s["latency_ms"]
        cpu = ", ".join(f"{n} {v:.2f}" for n, v in s["cpu_s_per_1000"].items())
        lines.append(
            f"{s['offered_per_s']:>10.0f}{s['achieved_per_s']:>12.0f}{s['failed']:>8}{lat['p50']:>9.1f}"
            f"{lat['p90']:>9.1f}{lat['p99']:>9.1f}{lat['max']:>9.1f}{s['retransmissions']:>7}  {cpu}"
        )
    for s in results["steps"]:
        refused = ", ".join(f"{n} {v}" for n, v in sorted(s["refused_by"].items())) or "none"
        lines.append(
            f"{s['offered_per_s']:>10.0f}/s: refused by {refused}; kernel UDP drops "
            f"{s['udp_receive_buffer_drops']}; load clients' CPU {s['load_client_cpu_s']:.1f} s"
        )
    lines.append(f"knee (no failure, p99 < 50 ms): {results['knee_per_s']:.0f} migrations/s")
    r = results["recovery"]
    lines.append(
        f"recovery, {r['offered_per_s']:.0f}/s again after the sweep: {r['achieved_per_s']:.0f}/s "
        f"achieved, {r['failed']} failed, p99 {r['latency_ms']['p99']:.1f} ms"
    )
    lines.append(
        "peak RSS MB: " + ", ".join(f"{n} {v:.1f}" for n, v in results["peak_rss_mb"].items())
    )
    return "\n".join(lines)


def plot_svg(results: dict[str, Any]) -> str:
    """Latency (p50, p99) against offered load."""
    steps = results["steps"]
    width, height, pad = 640, 400, 60
    max_x = max(s["offered_per_s"] for s in steps) * 1.1
    max_y = max(max(s["latency_ms"]["p99"] for s in steps) * 1.2, 1.0)

    def point(x: float, y: float) -> str:
        return f"{pad + x / max_x * (width - 2 * pad):.1f},{height - pad - y / max_y * (height - 2 * pad):.1f}"

    def line(key: str, colour: str) -> str:
        pts = " ".join(point(s["offered_per_s"], s["latency_ms"][key]) for s in steps)
        return f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>'

    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>'
    )
    labels = (
        f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">offered migrations/s (max {max_x / 1.1:.0f})</text>'
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">latency ms (max {max_y / 1.2:.1f})</text>'
        f'<text x="{width - pad}" y="{pad - 20}" text-anchor="end" fill="#1f4e79">p50</text>'
        f'<text x="{width - pad}" y="{pad - 5}" text-anchor="end" fill="#b22222">p99</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">'
        f'<rect width="{width}" height="{height}" fill="white"/>{axis}{line("p50", "#1f4e79")}{line("p99", "#b22222")}{labels}</svg>\n'
    )
