# ruff: noqa: E501 - tables and SVG markup read best unwrapped
"""End to end: the demo deployment, one process per node, under a sweep of offered load.

Figures per offered rate: migrations/s achieved, failures, latency
p50/p90/p99/max, retransmissions, and per node the CPU seconds per 1,000
migrations and peak RSS. The knee is the highest rate with no failure and
p99 under 50 ms. Load comes from two open-loop processes: SIPp by default
(sipp/migration_client.xml), which leaves the two cores to the nodes (about a
quarter of the CPU of a Python client at 1,000/s); or mcmig's own load client
(mcmig.bench.loadclient), which times each migration to the microsecond where
SIPp counts whole milliseconds, and tells who refused a failed one.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcmig.bench import ROOT
from mcmig.bench.procstat import cpu_seconds, peak_rss_mb, udp_receive_buffer_drops
from mcmig.bench.relay import sipp_calls, start_pythons, start_sipp
from mcmig.mc.tokens import issue_token
from mcmig.profiles import load_deployment
from mcmig.profiles.keys import idms_key

NODES = ["primary-server", "primary-gw", "partner-gw", "partner-server"]
PROFILE = "sip_profiles/demo.yaml"
CLIENTS = ("127.0.2.101", "127.0.2.102")


def _start(
    names: list[str], state: Path, loop: str = "asyncio", profile: str = PROFILE
) -> dict[str, subprocess.Popen[str]]:
    """A process for each node named, started together."""

    def only(name: str) -> str:
        # partner-server's IdMS beside it: the server learns the keys of the tokens
        # it verifies there
        return name + ",partner-idms" if name == "partner-server" else name

    options = ("--state-dir", str(state), "--loop", loop)
    processes = start_pythons(
        [("mcmig.cli", "up", profile, "--only", only(name), *options) for name in names]
    )
    return dict(zip(names, processes, strict=True))


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


class _SippClient:
    """A SIPp process playing MC service clients (sipp/migration_client.xml, tokens
    from an injection file), its figures read back into the load client's shape.
    SIPp costs far less CPU per request than a Python client, so less of the two
    cores goes to the load."""

    def __init__(
        self,
        index: int,
        host: str,
        first: int,
        count: int,
        rate: float,
        folder: Path,
        profile: str = PROFILE,
        scenario: str = "migration_client.xml",
        target: str | None = None,
    ) -> None:
        """``scenario`` with ``count`` users from u<first> (migration_client.xml:
        with tokens, to the partner server; foreign_gateway_uac.xml: with
        temporary identities, to ``target``)."""
        self.folder = folder / f"sipp-{first}-{index}"
        self.folder.mkdir()
        self.count = count
        deployment = load_deployment(ROOT / profile)
        partner = deployment.system("partner.example")
        assert partner is not None
        numbers = range(first, first + count)
        if scenario == "migration_client.xml":
            key = idms_key(partner)
            users = [f"sip:u{n:06d}@primary.example" for n in numbers]
            rows = [f"{u};{issue_token(key, partner.domain, u)}" for u in users]
        else:
            rows = [f"u{n:06d};t-{n:08x}" for n in numbers]
        csv = self.folder / "users.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(f"{row}\n" for row in rows))
        server = partner.servers[0].listen
        self.proc = start_sipp(
            [
                *("-sf", str(ROOT / "sipp" / scenario), "-inf", str(csv)),
                *("-i", host, "-p", "5062", "-cp", str(8810 + index)),
                *("-s", "migration", "-m", str(count), "-r", f"{rate:.0f}", "-l", "1000000"),
                *("-trace_rtt", "-rtt_freq", "1", "-timeout", f"{count / rate * 10 + 60:.0f}s"),
                target or f"{server.host}:{server.port}",
            ],
            self.folder,
        )

    def result(self, timeout: float) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=timeout)
        # e.g. "MESSAGE ---------->  B-RTD1 5000   12   0": sent, retransmitted, ...
        retrans = re.search(r"MESSAGE\s+-+>\s+(?:[A-Z]-RTD\d+\s+)?\d+\s+(\d+)", out)
        successful = sipp_calls(out, "Successful") or 0
        # One line per answered call: ms since SIPp started; response time in
        # whole ms (SIPp's clock ticks in milliseconds, so short times are coarse).
        latencies: list[float] = []
        elapsed = 0.0
        for rtt in self.folder.glob("*_rtt.csv"):
            for line in rtt.read_text().splitlines()[1:]:
                fields = line.split(";")
                if len(fields) >= 2:
                    elapsed = max(elapsed, float(fields[0]) / 1000)
                    latencies.append(float(fields[1]))
        statuses = {"200": successful}
        if self.count - successful:
            statuses["failed (SIPp: 503, timeout or other)"] = self.count - successful
        return {
            "sent": self.count,
            "elapsed_s": elapsed,
            "statuses": statuses,
            "refused_by": None,  # SIPp does not say who answered a failure
            "latencies_ms": latencies,
            "retransmissions": int(retrans.group(1)) if retrans else 0,
        }


def _step(
    rate: float,
    duration: float,
    first: int,
    procs: dict[str, subprocess.Popen[str]],
    folder: Path,
    client: str = "sipp",
    profile: str = PROFILE,
    others: dict[str, Callable[[], float]] | None = None,
    direct: tuple[list[str], str] | None = None,
) -> dict[str, Any]:
    """One step of offered load. ``others``: CPU readers of processes that are not
    nodes (PostgreSQL, Kamailio), counted in the CPU per migration too."""
    count = int(rate * duration / len(CLIENTS))
    readers = {n: (lambda p=p: cpu_seconds(p.pid)) for n, p in procs.items()} | (others or {})
    cpu_before = {n: read() for n, read in readers.items()}
    drops_before = udp_receive_buffer_drops()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timeout = duration * 10 + 120
    if client == "sipp":
        # ``direct``: (the hosts SIPp sends from, the address it sends to) when it
        # plays a gateway into the primary server itself
        hosts, target = direct or (list(CLIENTS), None)
        scenario = "foreign_gateway_uac.xml" if direct else "migration_client.xml"
        count = int(rate * duration / len(hosts))
        sipps = [
            _SippClient(
                i,
                host,
                first + i * count,
                count,
                rate / len(hosts),
                folder,
                profile,
                scenario,
                target,
            )
            for i, host in enumerate(hosts)
        ]
        results = [c.result(timeout) for c in sipps]
    else:
        clients = []
        for i, host in enumerate(CLIENTS):
            out = folder / f"client-{first}-{i}.json"
            clients.append(
                (out, start_load_client(host, first + i * count, count, rate / len(CLIENTS), out))
            )
        for _, process in clients:
            process.wait(timeout=timeout)
        results = [json.loads(out.read_text()) for out, _ in clients]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = {n: read() for n, read in readers.items()}
    drops = udp_receive_buffer_drops() - drops_before
    latencies = [x for r in results for x in r["latencies_ms"]]
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    refused_by: dict[str, int] | None = {} if client == "mcmig" else None
    for r in results:
        for k, v in (r["refused_by"] or {}).items():
            assert refused_by is not None
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
        # CPU the load processes used while sending, token issuing left out:
        # mcmig's client counts its own after issuing; SIPp's tokens come from
        # this process, so its children's usage is all sending.
        "load_client_cpu_s": (
            sum(r["cpu_s"] for r in results)
            if client == "mcmig"
            else children.ru_utime
            + children.ru_stime
            - children_before.ru_utime
            - children_before.ru_stime
        ),
        "cpu_s_per_1000": {n: (cpu_after[n] - cpu_before[n]) * 1000 / max(ok, 1) for n in readers},
    }


RECOVERY_PAUSE_S = 5.0


def knee(steps: list[dict[str, Any]]) -> float:
    """The highest rate carried with no failure and p99 under 50 ms."""
    good = [s for s in steps if s["failed"] == 0 and s["latency_ms"]["p99"] < 50]
    return float(max((s["achieved_per_s"] for s in good), default=0.0))


def measure(quick: bool = False, loop: str = "asyncio", client: str = "sipp") -> dict[str, Any]:
    rates, duration = (
        ([60.0], 1.0) if quick else ([250.0, 500.0, 750.0, 1000.0, 1100.0, 1250.0], 6.0)
    )
    steps = []
    with tempfile.TemporaryDirectory(prefix="mcmig-bench-e2e-") as folder:
        state = Path(folder) / "state"
        procs = _start(NODES, state, loop)
        try:
            first = 0
            for rate in rates:
                steps.append(_step(rate, duration, first, procs, Path(folder), client))
                first += int(rate * duration) + 10
                time.sleep(0.5)
            # Load drops: after a pause, the first rate again shows whether the
            # nodes recovered from the overload of the last steps.
            time.sleep(0.5 if quick else RECOVERY_PAUSE_S)
            recovery = _step(rates[0], duration, first, procs, Path(folder), client)
            rss = {n: peak_rss_mb(p.pid) for n, p in procs.items()}
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(timeout=20)
    return {
        "deployment": PROFILE,
        "processes": "one per node; 2 load-client processes, open loop: "
        + ("SIPp (sipp/migration_client.xml)" if client == "sipp" else "mcmig.bench.loadclient"),
        "event_loop": loop,
        "step_duration_s": duration,
        "steps": steps,
        "knee_per_s": knee(steps),
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
        if s["refused_by"] is None:
            refused = "not known (SIPp)" if s["failed"] else "none"
        else:
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
