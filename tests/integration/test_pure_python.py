"""The pure Python build of the core passes the unit and property tests too.

The suite runs the compiled core (tests/unit/test_compiled_core.py); a
machine without a C compiler runs the same sources as Python, so those stay
tested here, in a process of their own with MCMIG_PURE=1, with fewer
hypothesis examples (the "quick" profile) than the compiled run, which runs
the same properties on the same sources in full.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mcmig.compiled import PURE_VARIABLE

ROOT = Path(__file__).resolve().parents[2]


def test_unit_and_property_tests_pass_on_pure_python() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-o",
            "addopts=",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit",
            "tests/property",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            PURE_VARIABLE: "1",
            "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "quick"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
