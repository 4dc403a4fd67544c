"""The benchmark harness runs and writes figures (quick mode; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.tools import ROOT


def test_parser_bench_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcmig.cli", "bench", "parser", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "round_trip_per_s" in result.stdout
    figures = json.loads((tmp_path / "parser-quick.json").read_text())
    assert figures["mcmig"]["round_trip_per_s"] > 0
    assert figures["aiosipua"] is not None, "the bench extra (aiosipua) is not installed"
    assert figures["aiosipua"]["round_trip_per_s"] > 0
