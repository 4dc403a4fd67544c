"""Prometheus metrics of a running deployment, per node, served on /metrics.

Counts of what each node sends and receives, and migration outcomes and
latency, are kept by prometheus_client as they happen. What a node holds
(transactions, dialogs, registry rows) and what its own statistics count
already (retransmissions, shed requests) are read when Prometheus scrapes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from threading import Thread
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcmig.mc.causes import warning_cause
from mcmig.node.runtime import SipNode
from mcmig.nodes.server import McServer
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress

if TYPE_CHECKING:  # the IdMS (aiohttp, Authlib) is imported only where one runs
    from mcmig.idms.http import IdmsApp

# Migration latency buckets, seconds: a migration crosses up to four B2BUAs and
# commits a record; under a millisecond on loopback, seconds when a peer is slow.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class DeploymentMetrics:
    """The metrics of the nodes of one process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mcmig_sip_requests",
            "SIP requests sent or received, by method",
            ["node", "direction", "method"],
            registry=self.registry,
        )
        self.responses = Counter(
            "mcmig_sip_responses",
            "SIP responses sent or received, by status code",
            ["node", "direction", "status"],
            registry=self.registry,
        )
        self.migrations = Counter(
            "mcmig_migrations",
            "Migration requests answered, by role (partner, primary, home), outcome and cause",
            ["node", "role", "outcome", "cause"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mcmig_migration_duration_seconds",
            "Time from a migration request's arrival to its final response",
            ["node", "role"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.logins = Counter(
            "mcmig_idms_logins",
            "Logins posted to an IdMS's form, by outcome (accepted, refused, throttled, busy)",
            ["node", "outcome"],
            registry=self.registry,
        )
        self.token_requests = Counter(
            "mcmig_idms_token_requests",
            "Requests to an IdMS's token endpoint, by grant type and outcome "
            "(issued, or the OAuth error)",
            ["node", "grant", "outcome"],
            registry=self.registry,
        )
        self._state = _NodeState()
        self.registry.register(self._state)

    def watch(self, node: SipNode) -> None:
        """Count what ``node`` sends and receives (before it starts: nothing is missed)."""
        name = node.name
        self._state.nodes.append(node)

        def observe(
            direction: str,
            message: Request | Response,
            src: TransportAddress,
            dst: TransportAddress,
        ) -> None:
            if isinstance(message, Request):
                self.requests.labels(name, direction, message.method).inc()
            else:
                self.responses.labels(name, direction, str(message.status)).inc()

        node.observers.append(observe)

    def watch_server(self, name: str, server: McServer, registry_file: Path) -> None:
        """Migration outcomes and latency, and the size of the server's registry."""
        self._state.registries[name] = registry_file

        def answered(role: str, response: Response, seconds: float) -> None:
            parsed = warning_cause(response.get("Warning"))
            cause = "none" if parsed is None else parsed[1].split(":", 1)[0]
            outcome = "accepted" if response.status == 200 else "refused"
            self.migrations.labels(name, role, outcome, cause).inc()
            self.latency.labels(name, role).observe(seconds)

        server.on_migration = answered

    def watch_idms(self, name: str, idms: IdmsApp) -> None:
        """Logins and token requests at an IdMS."""
        idms.on_login = lambda outcome: self.logins.labels(name, outcome).inc()
        idms.on_token = lambda grant, outcome: self.token_requests.labels(
            name, grant, outcome
        ).inc()

    def serve(self, host: str, port: int) -> MetricsEndpoint:
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsEndpoint(server, thread)


class MetricsEndpoint:
    """The HTTP server of /metrics, in a thread of its own."""

    def __init__(self, server: WSGIServer, thread: Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}" if isinstance(host, str) else f"{host.decode()}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _NodeState(Collector):
    """What the nodes hold and count, read at scrape time (from the HTTP thread:
    only integers and lengths, which the event loop's thread changes atomically)."""

    def __init__(self) -> None:
        self.nodes: list[SipNode] = []
        self.registries: dict[str, Path] = {}

    def collect(self) -> Iterator[Metric]:
        transactions = GaugeMetricFamily(
            "mcmig_transactions", "SIP transactions in hand", labels=["node"]
        )
        dialogs = GaugeMetricFamily("mcmig_dialogs", "Dialogs in hand", labels=["node"])
        retransmissions = CounterMetricFamily(
            "mcmig_retransmissions",
            "Retransmissions of the node's own requests over UDP (Timer E)",
            labels=["node"],
        )
        shed = CounterMetricFamily(
            "mcmig_requests_shed", "Requests answered 503 overloaded", labels=["node"]
        )
        for node in list(self.nodes):
            transactions.add_metric([node.name], node.layer.active)
            dialogs.add_metric([node.name], len(node.dialogs))
            retransmissions.add_metric([node.name], node.stats.retransmissions)
            shed.add_metric([node.name], node.stats.shed)
        yield from (transactions, dialogs, retransmissions, shed)
        records = GaugeMetricFamily(
            "mcmig_registry_records",
            "Rows in a server's registry: migration records (primary) and visitor stays (partner)",
            labels=["node", "table"],
        )
        for name, path in self.registries.items():
            for table, count in _row_counts(path).items():
                records.add_metric([name, table], count)
        yield records


def _row_counts(path: Path) -> dict[str, int]:
    """Counted on a read-only connection of the scrape's own (SQLite connections
    belong to one thread each)."""
    counts: dict[str, int] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return counts
    try:
        for table in ("migrations", "visitors"):
            try:
                counts[table] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.Error:
                continue
    finally:
        db.close()
    return counts
