"""The atheris fuzzing harness runs every target (a short, seeded run; the long
run of 1,000,000 inputs per target is ./scripts/fuzz)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.tools import ROOT

RUNS = 3000


def test_every_fuzz_target_runs_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            "--runs",
            str(RUNS),
            "--seed",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    figures = {r["target"]: r for r in json.loads((tmp_path / "fuzz.json").read_text())}
    assert set(figures) == {"parser", "framer", "body", "profile"}
    for target, r in figures.items():
        assert r["exit"] == 0 and r["inputs"] == RUNS, (target, r)
        assert r["coverage"] > 0, (target, r)
