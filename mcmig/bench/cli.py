"""``mcmig bench``: run benchmarks, print figures, write JSON under bench-results/."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcmig import compiled
from mcmig.bench import e2e as e2e_bench
from mcmig.bench import parser as parser_bench
from mcmig.bench import pool as pool_bench
from mcmig.bench import registry as registry_bench
from mcmig.bench import relay as relay_bench
from mcmig.bench import soak as soak_bench
from mcmig.errors import UsageError
from mcmig.node.service import EVENT_LOOPS

# Suites that start mcmig nodes (and so take --loop).
NODE_SUITES = ("e2e", "relay", "soak")
SUITES: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "parser": (parser_bench.measure, parser_bench.report),
    "registry": (registry_bench.measure, registry_bench.report),
    "e2e": (e2e_bench.measure, e2e_bench.report),
    "relay": (relay_bench.measure, relay_bench.report),
    "soak": (soak_bench.measure, soak_bench.report),
    "pool": (pool_bench.measure, pool_bench.report),
}


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench",
        help="run benchmarks and print figures",
        description="Run benchmarks, print their figures and write them as JSON. "
        "Figures are measurements, not pass/fail checks.",
        epilog="suites: parser (parse and serialize rates, beside aiosipua); "
        "registry (1,000,000 migration records: inserts, lookups, size, memory); "
        "e2e (the demo deployment, one process per node, under a sweep of offered "
        "load: throughput, latency, CPU and RSS per node); relay (CPU per relayed "
        "MESSAGE: the mcmig gateway, Kamailio 5.6 and a do-nothing asyncio relay, "
        "side by side); soak (150 migrations/s for 10 minutes: memory over time); "
        "pool (the primary's registry on SQLite, on PostgreSQL, and pools of 1 and 2 "
        "instances behind Kamailio's dispatcher, in one run; lookups at 1,000,000 "
        "records on PostgreSQL). "
        "docs/performance.md has the latest figures.",
    )
    bench.add_argument(
        "suite", nargs="?", default="parser", choices=sorted(SUITES), help="default parser"
    )
    bench.add_argument(
        "--quick", action="store_true", help="a short run that only checks the harness"
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="folder for JSON results (default bench-results)",
    )
    bench.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        help=f"event loop of the nodes ({', '.join(sorted(NODE_SUITES))}; default asyncio)",
    )
    bench.add_argument(
        "--client",
        choices=("mcmig", "sipp"),
        help="e2e only: the load processes, SIPp (default) or mcmig's own load client",
    )
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    measure, report = SUITES[args.suite]
    if args.loop is not None and args.suite not in NODE_SUITES:
        raise UsageError(f"--loop is for the suites that start nodes: {', '.join(NODE_SUITES)}")
    options: dict[str, str] = {"loop": args.loop} if args.loop is not None else {}
    if args.client is not None:
        if args.suite != "e2e":
            raise UsageError("--client is for the e2e suite")
        options["client"] = args.client
    results = measure(quick=args.quick, **options)
    results["machine"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "node": "local",
        # the nodes' subprocesses inherit this process's environment and build
        "sip_core": compiled.state(),
    }
    results["quick"] = args.quick
    results["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"SIP core: {compiled.state()}")
    print(report(results))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.suite}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {path}")
    if args.suite == "e2e":
        plot = args.out / f"e2e{'-quick' if args.quick else ''}-latency.svg"
        plot.write_text(e2e_bench.plot_svg(results))
        print(f"written {plot}")
    return 0
