"""`mcmig up --metrics`: Prometheus metrics scraped over HTTP and read with
prometheus_client's own parser."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.tools import Mcmig, free_port, migrate_in_demo


def _migrate(user: str) -> str:
    # hand-made tokens: bob's own IdMS would refuse him before any SIP
    return migrate_in_demo(user, hand_made=True).stdout.split("\n", 1)[0]


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (n, have), value in samples.items()
        if n == name and set(labels.items()) <= set(have)
    )


def test_up_serves_prometheus_metrics_per_node(tmp_path: Path) -> None:
    port = free_port("127.0.0.1", udp=False)
    up = Mcmig(
        "up",
        "sip_profiles/demo.yaml",
        "--state-dir",
        str(tmp_path),
        "--metrics",
        f"127.0.0.1:{port}",
    )
    try:
        assert (
            up.ready_line is not None
            and f"metrics on http://127.0.0.1:{port}/metrics" in up.ready_line
        )
        assert _migrate("sip:alice@primary.example").startswith("200")
        assert _migrate("sip:bob@primary.example").startswith("403")
        samples = _scrape(port)
    finally:
        assert up.stop() == 0
    assert _value(samples, "mcmig_migrations_total", node="partner-server", role="partner") == 2
    assert (
        _value(
            samples,
            "mcmig_migrations_total",
            node="primary-server",
            outcome="refused",
            cause="migration-not-permitted",
        )
        == 1
    )
    assert _value(samples, "mcmig_migrations_total", node="primary-server", outcome="accepted") == 1
    assert _value(samples, "mcmig_migration_duration_seconds_count", node="partner-server") == 2
    assert _value(samples, "mcmig_migration_duration_seconds_sum", node="partner-server") > 0
    # each leg counted at both of its ends
    assert (
        _value(
            samples,
            "mcmig_sip_requests_total",
            node="partner-gw/external",
            direction="sent",
            method="MESSAGE",
        )
        == 2
    )
    assert (
        _value(
            samples,
            "mcmig_sip_requests_total",
            node="primary-gw/external",
            direction="received",
            method="MESSAGE",
        )
        == 2
    )
    assert (
        _value(
            samples,
            "mcmig_sip_responses_total",
            node="primary-server",
            direction="sent",
            status="403",
        )
        == 1
    )
    assert _value(samples, "mcmig_registry_records", node="primary-server", table="migrations") == 1
    assert _value(samples, "mcmig_registry_records", node="partner-server", table="visitors") == 1
    for name in (
        "mcmig_transactions",
        "mcmig_dialogs",
        "mcmig_retransmissions_total",
        "mcmig_requests_shed_total",
    ):
        assert any(n == name and ("node", "partner-server") in labels for n, labels in samples), (
            name
        )
