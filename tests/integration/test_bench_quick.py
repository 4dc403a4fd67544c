"""The benchmark harnesses run and write figures (quick modes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import ROOT, require


def bench(suite: str, out: Path, *options: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "mcmig.cli", "bench", suite, "--quick", "--out", str(out), *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / f"{suite}-quick.json").read_text())  # type: ignore[no-any-return]


def test_parser_bench_quick(tmp_path: Path) -> None:
    figures = bench("parser", tmp_path)
    assert figures["mcmig"]["round_trip_per_s"] > 0  # type: ignore[index]
    assert figures["aiosipua"] is not None, "the bench extra (aiosipua) is not installed"


def test_registry_bench_quick(tmp_path: Path) -> None:
    figures = bench("registry", tmp_path)
    assert figures["records"] == 10_000 and figures["lookup_p99_us"] > 0  # type: ignore[operator]


@pytest.mark.interop
@pytest.mark.parametrize("client", ["sipp", "mcmig"])
def test_e2e_bench_quick(tmp_path: Path, client: str) -> None:
    require("sipp")  # the default load, and the relay suite's
    figures = bench("e2e", tmp_path, "--client", client)
    assert client in figures["processes"]  # type: ignore[operator]
    (step,) = figures["steps"]  # type: ignore[misc]
    assert step["sent"] > 0 and step["accepted"] + step["failed"] == step["sent"]
    assert set(step["cpu_s_per_1000"]) == {
        "primary-server",
        "primary-gw",
        "partner-gw",
        "partner-server",
    }
    assert (tmp_path / "e2e-quick-latency.svg").read_text().startswith("<svg")
    recovery = figures["recovery"]  # the first rate again, after the sweep
    assert recovery["offered_per_s"] == step["offered_per_s"] and recovery["sent"] > 0  # type: ignore[index]


def test_soak_bench_quick(tmp_path: Path) -> None:
    figures = bench("soak", tmp_path)
    assert figures["sent"] == 200 and figures["rss_samples_mb"]  # type: ignore[comparison-overlap]


@pytest.mark.interop
def test_relay_bench_quick(tmp_path: Path) -> None:
    require("sipp")
    require("kamailio")
    figures = bench("relay", tmp_path)
    for box in ("mcmig", "kamailio", "floor"):
        assert figures[box]["transactions"] == 300 and figures[box]["cpu_us_per_transaction"] > 0  # type: ignore[index]
        assert figures[box]["pss_mb"] > 1  # type: ignore[index]
    busy = figures["mcmig_busy"]  # the gateway in one process, kept busy
    assert busy["transactions"] == 2000 and busy["failed"] == 0  # type: ignore[index]
    assert busy["cpu_us_per_transaction"] > 0  # type: ignore[index]


@pytest.mark.interop
def test_pool_bench_quick(tmp_path: Path) -> None:
    require("sipp")
    require("kamailio")
    figures = bench("pool", tmp_path)
    variants = {v["variant"]: v for v in figures["variants"]}  # type: ignore[attr-defined]
    assert set(variants) == {"sqlite", "postgresql", "pool of 1", "pool of 2"}
    for v in variants.values():
        (step,) = v["steps"]
        assert step["sent"] > 0 and step["accepted"] + step["failed"] == step["sent"]
    # PostgreSQL's and Kamailio's processes are counted in the CPU per migration
    assert "postgresql" in variants["postgresql"]["steps"][0]["cpu_s_per_1000"]
    assert {"postgresql", "kamailio", "primary-server-2"} <= set(
        variants["pool of 2"]["steps"][0]["cpu_s_per_1000"]
    )
    assert figures["lookups"]["records"] == 10_000  # type: ignore[index]
