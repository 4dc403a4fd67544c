# ruff: noqa: E501 - the report table reads best unwrapped
"""Registry at scale: insert rate with service durability, lookup latency, file size, memory."""

from __future__ import annotations

import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from mcmig.registry import MigrationRecord, SqliteMigrationStore


def _record(n: int) -> MigrationRecord:
    return MigrationRecord(
        f"sip:u{n:07d}@primary.example",
        "partner.example",
        "sip:127.0.9.2:5060",
        f"sip:t-{n:08x}@partner.example",
        time.time(),
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(quick: bool = False) -> dict[str, Any]:
    total = 10_000 if quick else 1_000_000
    batch = 512  # what group commit gathers under load
    single = 200 if quick else 2_000
    with tempfile.TemporaryDirectory(prefix="mcmig-bench-registry-") as folder:
        path = Path(folder) / "primary-server.sqlite3"
        store = SqliteMigrationStore(path)
        start = time.perf_counter()
        for n in range(single):
            store.put(_record(n))
        single_rate = single / (time.perf_counter() - start)
        start = time.perf_counter()
        for first in range(single, total, batch):
            store.put_many([_record(n) for n in range(first, min(first + batch, total))])
        batch_rate = (total - single) / (time.perf_counter() - start)
        lookups: list[float] = []
        rng = random.Random(7)
        for _ in range(10_000):
            key = f"sip:u{rng.randrange(total):07d}@primary.example"
            t0 = time.perf_counter()
            assert store.get(key) is not None
            lookups.append((time.perf_counter() - t0) * 1e6)
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
        store.close()
    return {
        "records": total,
        "durability": "WAL, synchronous=FULL: committed to disk before put returns",
        "insert_one_commit_each_per_s": single_rate,
        "insert_group_commit_per_s": batch_rate,
        "group_commit_batch": batch,
        "lookup_p50_us": _percentile(lookups, 0.5),
        "lookup_p99_us": _percentile(lookups, 0.99),
        "file_bytes": size,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(results: dict[str, Any]) -> str:
    r = results
    return "\n".join(
        [
            f"registry: {r['records']:,} records ({r['durability']})",
            f"  insert, one commit each      {r['insert_one_commit_each_per_s']:>10,.0f} /s",
            f"  insert, group commit of {r['group_commit_batch']}  {r['insert_group_commit_per_s']:>10,.0f} /s",
            f"  lookup p50 / p99             {r['lookup_p50_us']:>6.1f} / {r['lookup_p99_us']:.1f} us",
            f"  file size                    {r['file_bytes'] / 1e6:>10.1f} MB",
            f"  peak RSS of this process     {r['process_peak_rss_mb']:>10.1f} MB",
        ]
    )
