"""Runs every fuzz target for a number of inputs and reports figures.

    ./scripts/fuzz                 1,000,000 inputs per target (the long run)
    ./scripts/fuzz --runs 5000     a short run (./scripts/test does this)

Seeds: the RFC 4475 messages, migration bodies of each kind, the profiles
under sip_profiles/. Prints a table and writes bench-results/fuzz/fuzz.json; exits
1 when a target found an input that raises anything but its documented error,
or that runs longer than --timeout (the crashing input is kept in the
output directory and its traceback printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from mcmig.compiled import PURE_VARIABLE
from mcmig.mc.body import MigrationFailure, MigrationRelease, MigrationRequest, encode

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("parser", "framer", "body", "profile")
MAX_LEN = {"parser": 4096, "framer": 8192, "body": 4096, "profile": 8192}


def seed(target: str, corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    messages = sorted((ROOT / "tests/data/rfc4475").glob("*.dat"))
    if target == "parser":
        for path in messages:
            (corpus / path.name).write_bytes(path.read_bytes())
    elif target == "framer":
        for n, path in enumerate(messages):
            (corpus / path.name).write_bytes(bytes([n]) + path.read_bytes() * 2)
    elif target == "body":
        bodies = [
            MigrationRequest("sip:alice@primary.example", access_token="a.b.c"),
            MigrationRequest("sip:alice@primary.example", partner_system="partner.example"),
            MigrationRelease("sip:alice@primary.example", "partner.example", "sip:t-1@p.example"),
            MigrationFailure("not-authorized", "refused"),
        ]
        for n, item in enumerate(bodies):
            (corpus / f"body{n}.xml").write_bytes(encode(item))
    else:
        for path in sorted((ROOT / "sip_profiles").glob("*.yaml")):
            (corpus / path.name).write_bytes(path.read_bytes())


def fuzz(target: str, runs: int, timeout: int, out: Path, seed_value: int) -> dict[str, object]:
    corpus = out / "corpus" / target
    seed(target, corpus)
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.targets",
        target,
        str(corpus),
        f"-runs={runs}",
        f"-timeout={timeout}",
        f"-max_len={MAX_LEN[target]}",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={out}/{target}-",
        "-print_final_stats=1",
        *([f"-seed={seed_value}"] if seed_value else []),
    ]
    started = time.monotonic()
    # Coverage guidance needs Python bytecode to instrument: the fuzzer runs the
    # pure Python build of the modules, whatever this process uses.
    env = {**os.environ, PURE_VARIABLE: "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - started
    log = done.stderr
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    coverage = re.findall(r"cov: (\d+)", log)
    peak = re.search(r"stat::peak_rss_mb:\s*(\d+)", log)
    result: dict[str, object] = {
        "target": target,
        "inputs": int(executed.group(1)) if executed else None,
        "seconds": round(elapsed, 1),
        "coverage": int(coverage[-1]) if coverage else None,
        "peak_rss_mb": int(peak.group(1)) if peak else None,
        "exit": done.returncode,
    }
    if done.returncode != 0:
        result["log_tail"] = log[-4000:]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--target", choices=TARGETS, action="append", help="only these")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "fuzz")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'target':<8} {'inputs':>10} {'seconds':>8} {'inputs/s':>9} {'coverage':>9}  outcome")
    for target in args.target or TARGETS:
        r = fuzz(target, args.runs, args.timeout, args.out, args.seed)
        results.append(r)
        inputs, seconds = r["inputs"], float(r["seconds"])  # type: ignore[arg-type]
        rate = f"{int(inputs) / seconds:,.0f}" if isinstance(inputs, int) and seconds else "-"
        outcome = "clean" if r["exit"] == 0 else f"FOUND A CRASH (exit {r['exit']})"
        shown = f"{inputs:,}" if isinstance(inputs, int) else "-"
        print(f"{target:<8} {shown:>10} {seconds:>8.1f} {rate:>9} {r['coverage']!s:>9}  {outcome}")
        if r["exit"] != 0:
            print(r["log_tail"], file=sys.stderr)
    (args.out / "fuzz.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
