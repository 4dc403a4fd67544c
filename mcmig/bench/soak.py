# ruff: noqa: E501 - the report reads best unwrapped
"""Soak: the demo deployment, one process per node, at a steady rate for minutes;
node memory (RSS) sampled as it goes, to see whether it stays flat."""

from __future__ import annotations

import json
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from mcmig.bench.e2e import NODES, _start, start_load_client
from mcmig.bench.procstat import cpu_seconds, rss_mb


def measure(quick: bool = False, loop: str = "asyncio") -> dict[str, Any]:
    rate, duration, every = (50.0, 4.0, 1.0) if quick else (150.0, 600.0, 30.0)
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mcmig-bench-soak-") as name:
        folder = Path(name)
        procs = _start(NODES, folder / "state", loop)
        out = folder / "client.json"
        try:
            cpu0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
            client = start_load_client("127.0.2.101", 0, int(rate * duration), rate, out)
            start = time.monotonic()
            while client.poll() is None:
                samples.append(
                    {
                        "t_s": round(time.monotonic() - start, 1),
                        **{n: rss_mb(p.pid) for n, p in procs.items()},
                    }
                )
                time.sleep(every)
            cpu = {n: cpu_seconds(p.pid) - cpu0[n] for n, p in procs.items()}
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(timeout=30)
        result = json.loads(out.read_text())
    statuses: dict[str, int] = result["statuses"]
    # Growth is counted from the end of a warm-up (a tenth of the run): until then
    # the nodes fill what is meant to fill (Timer J's transactions, caches).
    warm = duration / 10
    first = next((x for x in samples if x["t_s"] >= warm), samples[-1])
    last = samples[-1]
    return {
        "rate_per_s": rate,
        "duration_s": duration,
        "sent": result["sent"],
        "statuses": statuses,
        "retransmissions": result["retransmissions"],
        "rss_samples_mb": samples,
        "rss_growth_mb": {n: last[n] - first[n] for n in NODES},
        "growth_from_s": first["t_s"],
        "cpu_s": cpu,
    }


def report(results: dict[str, Any]) -> str:
    growth = ", ".join(f"{n} {v:+.1f}" for n, v in results["rss_growth_mb"].items())
    last = results["rss_samples_mb"][-1]
    return "\n".join(
        [
            f"soak: {results['rate_per_s']:.0f} migrations/s for {results['duration_s']:.0f} s, {results['sent']} sent, "
            f"outcomes {results['statuses']}, {results['retransmissions']} retransmissions",
            "  RSS at the end (MB): " + ", ".join(f"{n} {last[n]:.1f}" for n in NODES),
            f"  RSS growth from {results['growth_from_s']:.0f} s (after warm-up) to the end (MB): {growth}",
        ]
    )
