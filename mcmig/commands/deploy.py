"""``mcmig up``: run a deployment until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mcmig import compiled
from mcmig.capture.attach import Recording
from mcmig.capture.writer import PcapRecorder
from mcmig.commands.common import load, state_dir_of, until_signalled
from mcmig.errors import UsageError
from mcmig.node.gc_pacer import GarbageCollectorPacer
from mcmig.node.limits import bound_repeated_logs, raise_open_file_limit
from mcmig.node.runtime import SipNode
from mcmig.node.service import (
    EVENT_LOOPS,
    MAX_QUEUE_DELAY,
    event_loop_factory,
    shed_late_requests,
    tune_garbage_collector,
)
from mcmig.nodes.deployment import RunningDeployment, start_deployment
from mcmig.observe.hep import HepSender
from mcmig.observe.metrics import DeploymentMetrics, MetricsEndpoint
from mcmig.profiles import Deployment, ProfileError, load_deployment
from mcmig.transport.base import TransportConfig, split_hostport

log = logging.getLogger("mcmig.up")

_CONFIG = TransportConfig()


def _milliseconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of milliseconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="start every node of a deployment profile",
        description="Start every node of a deployment (servers and gateways, UDP and TCP on each "
        "address), print a line with 'ready' once all listen, and run until SIGINT or SIGTERM. "
        "SIGHUP makes each IdMS take the signing keys the profile names now (key rotation "
        "without a restart).",
        epilog=f"Connection caps, per node: {_CONFIG.max_connections} TCP/TLS connections in "
        f"all and {_CONFIG.max_connections_per_host} from one address; a connection idle "
        f"{_CONFIG.idle_timeout:g} s is closed, and a TLS handshake not finished in "
        f"{_CONFIG.tls_handshake_timeout:g} s. At a gateway's external side, connections "
        "from addresses that are not configured peers are closed at accept, so they never "
        "take a peer's place. The soft limit on open files is raised to the hard limit at "
        "start (the ready line says it).",
    )
    up.add_argument(
        "profile", metavar="FILE", help="deployment profile, e.g. sip_profiles/demo.yaml"
    )
    up.add_argument(
        "--state-dir", metavar="DIR", help="where registries are kept (default state/<deployment>)"
    )
    up.add_argument(
        "--only", metavar="NAME[,NAME]", help="start only these nodes (e.g. one node per process)"
    )
    up.add_argument(
        "--pcap",
        metavar="FILE|DIR",
        help="record every message sent and received, from before the first one is sent: "
        "into FILE, or into DIR/<deployment>.pcap when the name is a folder (an existing "
        "one, or one written with a trailing /)",
    )
    up.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=_hostport,
        help="serve Prometheus metrics of every node on http://HOST:PORT/metrics "
        "(requests, responses, migrations by outcome and cause, migration latency, "
        "transactions, dialogs, retransmissions, shed requests, registry rows)",
    )
    up.add_argument(
        "--hep",
        metavar="HOST:PORT",
        type=_hostport,
        help="send every SIP message each node sends or receives as HEPv3 over UDP to a "
        "capture server (Homer, heplify-server, Kamailio's sipcapture), with a capture "
        "agent id per node (2001, 2002, ... in the order the ready line lists the nodes) "
        "and the Call-ID as correlation id",
    )
    up.add_argument(
        "--max-queue-delay",
        metavar="MS",
        type=_milliseconds,
        default=round(MAX_QUEUE_DELAY * 1000),
        help="answer 503 overloaded (Retry-After) to a new UDP request read more than MS "
        f"after it arrived, measured from the kernel's arrival stamp on Linux "
        f"(default {round(MAX_QUEUE_DELAY * 1000)}; 0 turns it off). Nodes also shed past "
        "256 requests in hand.",
    )
    up.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default="asyncio",
        help="event loop (default asyncio). uvloop needs the optional uvloop package, "
        "cost 12-16%% less CPU per relayed transaction in our benchmark, and does not "
        "run profiles with TLS yet",
    )
    up.set_defaults(func=run_up)


def _each(watchers: list[Callable[[SipNode], None]], node: SipNode) -> None:
    for watch in watchers:
        watch(node)


def _hostport(text: str) -> tuple[str, int]:
    try:
        return split_hostport(text, default_port=9464)  # Prometheus' registry of ports
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve_metrics(metrics: DeploymentMetrics, where: tuple[str, int]) -> MetricsEndpoint:
    try:
        return metrics.serve(*where)
    except OSError as exc:
        host, port = where
        raise UsageError(f"{host}:{port} (metrics): {exc.strerror or exc}") from None


def capture_path(given: str, deployment: str) -> Path:
    """``--pcap``: a file, or a folder (existing, or named with a trailing slash)
    that gets <deployment>.pcap."""
    path = Path(given)
    if path.is_dir() or given.endswith(("/", os.sep)):
        return path / f"{deployment}.pcap"
    return path


def reload_idms_keys(running: RunningDeployment, profile: str) -> None:
    """SIGHUP: each running IdMS takes the key list the profile names now (a
    rotation: new key first, old one kept until its tokens expire, then
    removed), without a restart. A profile or key that cannot be used changes
    nothing and is logged."""
    try:
        deployment = load_deployment(profile)
    except ProfileError as exc:
        log.error("SIGHUP: profile not reloaded, IdMS keys unchanged: %s", exc)
        return
    for system in deployment.systems:
        server = running.idms.get(system.idms.name)
        if server is None:
            continue
        try:
            server.provider.keys.reload(system.idms.key_files)
        except (OSError, ValueError) as exc:
            log.error("SIGHUP: %s keys unchanged: %s", system.idms.name, exc)
            continue
        kids = ", ".join(k.kid for k in server.provider.keys.public())
        log.warning(
            "SIGHUP: %s signs with %s; publishes %s",
            system.idms.name,
            server.provider.keys.current.kid,
            kids,
        )


def redacted_dsn(dsn: str) -> str:
    """A DSN fit for a terminal: any password replaced by ***."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def pool_instructions(deployment: Deployment, state_dir: Path) -> list[str]:
    """For each server pool: its dispatcher list, written to the state folder, and
    the Kamailio command that puts the pool's address in front of its instances;
    for each registry on PostgreSQL, what it needs of the database."""
    lines = []
    for system in deployment.systems:
        if system.registry.engine == "postgresql":
            lines.append(
                f"registry of {system.domain}: PostgreSQL 15 or later at "
                f"{redacted_dsn(system.registry.dsn or '')}; the database must exist "
                "(createdb) and the user may create tables there; the schema is applied at start"
            )
        for server in system.servers:
            if not server.instances:
                continue
            folder = state_dir / f"{server.name}-kamailio"
            folder.mkdir(parents=True, exist_ok=True)
            listing = folder / "dispatcher.list"
            listing.write_text("".join(f"1 {a.uri}\n" for a in server.instances))
            lines.append(
                f"pool {server.name}: start its dispatcher with: kamailio -f "
                f"kamailio/server-pool.cfg -DD -E -Y {folder} "
                f"-A LISTEN=udp:{server.listen} -A LISTEN_TCP=tcp:{server.listen} "
                f"-A 'DISPATCHER_LIST=\"{listing}\"'"
            )
    return lines


def run_up(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    state_dir = state_dir_of(args, deployment)
    if args.loop == "uvloop" and any(
        g.tls is not None for s in deployment.systems for g in s.gateways
    ):
        # Our TLS accept path runs the handshake itself (to log refused peers);
        # under uvloop the ClientHello reaches the plain-TCP protocol first and
        # the handshake stalls. Refused rather than half working.
        raise UsageError(f"{args.profile} uses TLS, which mcmig does not run on uvloop yet")
    factory = event_loop_factory(args.loop)
    open_files, _ = raise_open_file_limit()
    # A fault that repeats (an accept failing for want of descriptors) is logged
    # at a bounded rate, not once per try.
    bound_repeated_logs("asyncio", "mcmig.transport")

    async def main() -> None:
        running: list[RunningDeployment] = []
        recorders: list[PcapRecorder] = []
        endpoints: list[MetricsEndpoint] = []
        senders: list[HepSender] = []
        pacers: list[GarbageCollectorPacer] = []

        async def started() -> None:
            only = set(args.only.split(",")) if args.only else None
            if only is not None and not only <= set(deployment.node_names()):
                unknown = ", ".join(sorted(only - set(deployment.node_names())))
                raise UsageError(f"no node {unknown} in {args.profile}")
            watchers: list[Callable[[SipNode], None]] = []
            if args.pcap:
                recorder = PcapRecorder(capture_path(args.pcap, deployment.name))
                recorders.append(recorder)
                watchers.append(Recording(recorder, deployment.node_hosts(only)).watch)
            if args.hep:
                hep = HepSender(*args.hep)
                senders.append(hep)
                watchers.append(hep.watch)
            metrics = DeploymentMetrics() if args.metrics else None
            if metrics is not None:
                watchers.append(metrics.watch)
                endpoints.append(_serve_metrics(metrics, args.metrics))
            running.append(
                await start_deployment(
                    deployment,
                    state_dir,
                    only=only,
                    watch=lambda node: _each(watchers, node),
                    watch_server=None if metrics is None else metrics.watch_server,
                    watch_idms=None if metrics is None else metrics.watch_idms,
                )
            )
            pacers.append(tune_garbage_collector())
            shed_late_requests(running[0].nodes, args.max_queue_delay / 1000)
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, reload_idms_keys, running[0], args.profile
            )
            nodes = ", ".join(
                [f"{n.name} {n.address}" for n in running[0].nodes]
                + [f"{name} https://{s.listen}" for name, s in running[0].idms.items()]
            )
            print(
                f"deployment {deployment.name} ready: {nodes}; state in {state_dir}; "
                f"event loop {args.loop}; SIP core {compiled.state()}; "
                f"open files up to {open_files}"
                + (f"; capture in {recorders[0].path}" if recorders else "")
                + (f"; metrics on http://{endpoints[0].address}/metrics" if endpoints else "")
                + (f"; HEP to {args.hep[0]}:{args.hep[1]}" if senders else ""),
                flush=True,
            )
            for line in pool_instructions(deployment, state_dir):
                print(line, flush=True)

        try:
            await until_signalled(started)
        finally:
            for pacer in pacers:
                pacer.stop()
            if running:
                await running[0].stop()
            for recorder in recorders:
                recorder.close()
            for endpoint in endpoints:
                endpoint.close()
            for sender in senders:
                sender.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    return 0
