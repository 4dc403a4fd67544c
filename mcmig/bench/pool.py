# ruff: noqa: E501 - tables read best unwrapped
"""Scale-out, measured in one run:

- the demo deployment (one process per node, SIPp clients) with the primary
  server's registry on SQLite, then on PostgreSQL, swept over offered load;
- the primary server as a pool of 1, then of 2 instances behind Kamailio's
  dispatcher on PostgreSQL, loaded directly: SIPp plays the primary's gateway
  (sipp/foreign_gateway_uac.xml from its internal address), so that the pool,
  not the rest of the deployment sharing the machine's cores, is what is
  measured;
- registry lookups at 1,000,000 records on PostgreSQL.

CPU per migration counts PostgreSQL's and Kamailio's process trees too. The
machine's speed drifts from day to day, so the figures to compare are the
ratios taken in the same run: PostgreSQL's knee against SQLite's, two
instances against one.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mcmig.bench import ROOT
from mcmig.bench.cpuquota import CpuQuota, QuotaUnavailable
from mcmig.bench.e2e import _start, _step, knee
from mcmig.bench.postgres import PostgresCluster, tree_cpu_seconds
from mcmig.registry import MigrationRecord
from mcmig.registry.postgresql import PostgresRegistry

DEMO = ROOT / "sip_profiles/demo.yaml"
POOL_ADDRESS = "127.0.1.10:5060"  # the primary server's address: the dispatcher's, in a pool
INSTANCES = ["127.0.1.11:5060", "127.0.1.12:5060"]
GATEWAY_HOST = "127.0.1.1"  # primary-gw's internal side, where SIPp sends from for the pools
OTHER_NODES = ["primary-gw", "partner-gw", "partner-server"]
# (name, registry engine, instances behind the dispatcher; 0: no dispatcher and
# the whole deployment; otherwise the pool alone, with SIPp as its gateway)
VARIANTS = [
    ("sqlite", "sqlite", 0),
    ("postgresql", "postgresql", 0),
    ("pool of 1", "postgresql", 1),
    ("pool of 2", "postgresql", 2),
]
# On a small machine the machine, not an instance, is what fills up first. These
# hold each instance to a share of a core (a cgroup quota), as if each had a
# host of its own of that size, so that what an instance adds can be seen.
INSTANCE_CORES = 0.3
HELD_VARIANTS = [
    ("pool of 1, held", "postgresql", 1),
    ("pool of 2, held", "postgresql", 2),
]


def start_dispatcher(folder: Path, listen: str, instances: list[str]) -> subprocess.Popen[str]:
    """kamailio/server-pool.cfg at ``listen`` in front of ``instances``; its output to a file."""
    kamailio = shutil.which("kamailio")
    if kamailio is None:
        raise RuntimeError("kamailio is not installed (./scripts/setup installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "dispatcher.list"
    listing.write_text("".join(f"1 sip:{a}\n" for a in instances))
    with (folder / "kamailio.log").open("w") as log:
        return subprocess.Popen(
            [
                kamailio,
                *("-f", str(ROOT / "kamailio/server-pool.cfg"), "-DD", "-E", "-Y", str(folder)),
                *("-A", f"LISTEN=udp:{listen}", "-A", f"LISTEN_TCP=tcp:{listen}"),
                *("-A", f'DISPATCHER_LIST="{listing}"'),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def wait_until_answering(listen: str, timeout: float = 10.0) -> None:
    """Until the SIP element at ``listen`` (host:port, UDP) answers an OPTIONS to
    itself: Kamailio, started after the instances, is then routing to them
    (the dispatcher's destinations start active and its probes find them up)."""
    host, port = listen.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.settimeout(0.1)
        local = f"127.0.0.1:{probe.getsockname()[1]}"
        n = 0
        while time.monotonic() < deadline:
            n += 1
            probe.sendto(
                (
                    f"OPTIONS sip:{listen} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{n};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:bench@{local}>;tag=ready\r\n"
                    f"To: <sip:{listen}>\r\n"
                    f"Call-ID: ready-{local}\r\n"
                    f"CSeq: {n} OPTIONS\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode(),
                (host, int(port)),
            )
            try:
                if probe.recv(4096).startswith(b"SIP/2.0 200"):
                    return
            except OSError:  # nothing yet (a timeout), or refused (not bound yet)
                pass
    raise RuntimeError(f"nothing answered OPTIONS at {listen} within {timeout:g} s")


def pool_profile(folder: Path, engine: str, dsn: str | None, instances: int) -> Path:
    """The demo with the primary's registry on ``engine`` and its server a pool
    of ``instances`` (0: no pool), written in ``folder`` with the demo keys."""
    data = yaml.safe_load(DEMO.read_text())
    primary = data["systems"][0]
    if engine == "postgresql":
        primary["registry"] = {"engine": "postgresql", "dsn": dsn}
    if instances:
        primary["servers"][0]["instances"] = INSTANCES[:instances]
    for material in ("keys", "certs"):
        if not (folder / material).exists():
            shutil.copytree(ROOT / "sip_profiles" / material, folder / material)
    path = folder / f"{engine}-{instances}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _variant(
    name: str,
    engine: str,
    instances: int,
    cluster: PostgresCluster,
    folder: Path,
    rates: list[float],
    duration: float,
    first: int,
    instance_cores: float | None = None,
) -> dict[str, Any]:
    dsn = cluster.createdb(name.replace(" ", "_")) if engine == "postgresql" else None
    profile = str(pool_profile(folder, engine, dsn, instances))
    servers = [f"primary-server-{i}" for i in range(1, instances + 1)] or ["primary-server"]
    state = folder / f"state-{name.replace(' ', '_')}"
    nodes = servers if instances else [*servers, *OTHER_NODES]
    procs = _start(nodes, state, profile=profile)
    others: dict[str, Callable[[], float]] = {}
    if engine == "postgresql":
        others["postgresql"] = lambda: tree_cpu_seconds(cluster.postmaster)
    dispatcher = None
    if instances:
        dispatcher = start_dispatcher(
            folder / f"kamailio-{instances}", POOL_ADDRESS, INSTANCES[:instances]
        )
        others["kamailio"] = lambda: tree_cpu_seconds(dispatcher.pid)
        wait_until_answering(POOL_ADDRESS)
    steps = []
    quota = None
    try:
        if instance_cores is not None:
            quota = CpuQuota("mcmig-bench", instance_cores)
            for server in servers:
                quota.limit(procs[server].pid)
        for rate in rates:
            direct = ([GATEWAY_HOST], POOL_ADDRESS) if instances else None
            steps.append(
                _step(rate, duration, first, procs, folder, "sipp", profile, others, direct)
            )
            first += int(rate * duration) + 10
            time.sleep(0.5)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=20)
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGTERM)
            dispatcher.wait(timeout=20)
        if quota is not None:
            quota.close()
    best = knee(steps)
    at_knee = next((s for s in steps if s["achieved_per_s"] == best), steps[0])
    return {
        "variant": name,
        "steps": steps,
        "knee_per_s": best,
        "cpu_ms_per_migration_at_knee": sum(at_knee["cpu_s_per_1000"].values()),
        "cpu_ms_per_migration_by_process": at_knee["cpu_s_per_1000"],
    }


async def _lookups(dsn: str, total: int, lookups: int) -> dict[str, float]:
    registry = await PostgresRegistry.open(dsn)
    try:
        rows = [
            (
                f"sip:u{n:07d}@primary.example",
                "partner.example",
                "sip:127.0.9.2:5060",
                f"sip:t-{n:08x}@partner.example",
                1.0,
            )
            for n in range(total)
        ]
        start = time.perf_counter()
        async with registry.pool.acquire() as c:
            await c.copy_records_to_table("migration_records", records=rows)
            await c.execute("ANALYZE migration_records")
        loaded = time.perf_counter() - start
        rng = random.Random(7)
        times: list[float] = []
        for _ in range(lookups):
            key = f"sip:u{rng.randrange(total):07d}@primary.example"
            t0 = time.perf_counter()
            record = await registry.record(key)
            times.append((time.perf_counter() - t0) * 1000)
            assert isinstance(record, MigrationRecord)
        times.sort()
        return {
            "records": total,
            "load_s": loaded,
            "lookup_p50_ms": times[len(times) // 2],
            "lookup_p99_ms": times[int(0.99 * len(times))],
        }
    finally:
        await registry.close()


def measure(quick: bool = False) -> dict[str, Any]:
    duration = 1.0 if quick else 5.0
    deployment_rates = [60.0] if quick else [100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0]
    pool_rates = [60.0] if quick else [200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0]
    # The machine's speed drifts within minutes: every variant runs in each round,
    # and the ratios are taken round by round.
    rounds = 1 if quick else 2
    # the held pools: a quick run only checks the harness, which they share
    held = [] if quick else HELD_VARIANTS
    held_rates = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0]
    held_unavailable: str | None = None
    cluster = PostgresCluster()
    try:
        with tempfile.TemporaryDirectory(prefix="mcmig-bench-pool-") as tmp:
            folder = Path(tmp)
            variants: list[dict[str, Any]] = []
            for n in range(1, rounds + 1):
                for name, engine, instances in [*VARIANTS, *held]:
                    is_held = (name, engine, instances) in held
                    if is_held and held_unavailable is not None:
                        continue
                    try:
                        variant = _variant(
                            f"{name} {n}",
                            engine,
                            instances,
                            cluster,
                            folder,
                            held_rates
                            if is_held
                            else pool_rates
                            if instances
                            else deployment_rates,
                            duration,
                            50_000 * len(variants),  # users u000000-u999999 of the demo
                            INSTANCE_CORES if is_held else None,
                        )
                    except QuotaUnavailable as exc:
                        held_unavailable = str(exc)
                        continue
                    variants.append({**variant, "variant": name, "round": n})
        lookups = asyncio.run(
            _lookups(
                cluster.createdb("lookups"),
                10_000 if quick else 1_000_000,
                1_000 if quick else 10_000,
            )
        )
    finally:
        cluster.close()

    def ratios(a: str, b: str) -> list[float]:
        knees = {(v["variant"], v["round"]): v["knee_per_s"] for v in variants}
        return [
            float(knees[a, n] / knees[b, n]) if knees.get((b, n)) else 0.0
            for n in range(1, rounds + 1)
            if (a, n) in knees
        ]

    return {
        "deployment": "sip_profiles/demo.yaml, one process per node, SIPp clients (open loop); the pools alone, SIPp as their gateway",
        "step_duration_s": duration,
        "rounds": rounds,
        "variants": variants,
        "postgresql_over_sqlite": ratios("postgresql", "sqlite"),
        "two_instances_over_one": ratios("pool of 2", "pool of 1"),
        "instance_cores": INSTANCE_CORES,
        "two_instances_over_one_held": ratios("pool of 2, held", "pool of 1, held"),
        "held_not_measured": held_unavailable if held else "quick run",
        "lookups": lookups,
    }


def report(results: dict[str, Any]) -> str:
    lines = [f"pools: {results['deployment']}; {results['step_duration_s']:g} s per step"]
    lines.append(
        f"{'variant':<14}{'offered/s':>10}{'achieved/s':>12}{'failed':>8}{'p99 ms':>9}  CPU ms per migration"
    )
    for v in results["variants"]:
        for s in v["steps"]:
            cpu = ", ".join(f"{n} {x:.2f}" for n, x in s["cpu_s_per_1000"].items())
            lines.append(
                f"{v['variant'] + ' ' + str(v['round']):<14}{s['offered_per_s']:>10.0f}{s['achieved_per_s']:>12.0f}{s['failed']:>8}{s['latency_ms']['p99']:>9.1f}  {cpu}"
            )
    for v in results["variants"]:
        lines.append(
            f"{v['variant'] + ' ' + str(v['round']):<14} knee (no failure, p99 < 50 ms) {v['knee_per_s']:.0f}/s; CPU {v['cpu_ms_per_migration_at_knee']:.2f} ms per migration in all"
        )

    def each(ratios: list[float]) -> str:
        return ", ".join(f"{r:.2f}" for r in ratios)

    lines.append(
        f"knee ratios, round by round: PostgreSQL / SQLite {each(results['postgresql_over_sqlite'])} (target >= 0.80); 2 instances / 1 {each(results['two_instances_over_one'])} (target > 1)"
    )
    if results["held_not_measured"] is None:
        lines.append(
            f"each instance held to {results['instance_cores']:g} of a core: 2 instances / 1 {each(results['two_instances_over_one_held'])}"
        )
    else:
        lines.append(
            f"pools held to a share of a core: not measured ({results['held_not_measured']})"
        )
    lk = results["lookups"]
    lines.append(
        f"PostgreSQL lookups at {lk['records']:,} records: p50 {lk['lookup_p50_ms']:.3f} ms, p99 {lk['lookup_p99_ms']:.3f} ms (target p99 < 2 ms); loaded in {lk['load_s']:.1f} s"
    )
    return "\n".join(lines)
