"""`mcmig up --metrics`: Prometheus metrics scraped over HTTP and read with
prometheus_client's own parser."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.tools import ROOT, Mcmig, free_port, migrate_in_demo


def _migrate(user: str, hand_made: bool = True) -> str:
    # hand-made tokens: bob's own IdMS would refuse him before any SIP
    outcome = migrate_in_demo(user, hand_made=hand_made)
    return (outcome.stdout or outcome.stderr).split("\n", 1)[0]


def _wrong_password(user: str) -> str:
    where = ("--profile", "sip_profiles/demo.yaml", "--partner", "partner.example")
    outcome = subprocess.run(
        [sys.executable, "-m", "mcmig.cli", "migrate", *where, "--user", user],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "MCMIG_PASSWORD": "not-the-password"},
    )
    return outcome.stdout + outcome.stderr


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
        # alice logs in at her IdMS, which exchanges her token for the partner's
        assert _migrate("sip:alice@primary.example", hand_made=False).startswith("200")
        assert _migrate("sip:bob@primary.example").startswith("403")
        assert "login refused" in _wrong_password("sip:alice@primary.example")
        samples = _scrape(port)
    finally:
        assert up.stop() == 0
    # the IdMSs: one login accepted and one refused at alice's; her code redeemed and
    # exchanged there, and the exchanged token's JWT bearer grant at the partner's
    assert _value(samples, "mcmig_idms_logins_total", node="primary-idms", outcome="accepted") == 1
    assert _value(samples, "mcmig_idms_logins_total", node="primary-idms", outcome="refused") == 1
    for node, grant in (
        ("primary-idms", "authorization_code"),
        ("primary-idms", "token-exchange"),
        ("partner-idms", "jwt-bearer"),
    ):
        assert (
            _value(samples, "mcmig_idms_token_requests_total", node=node, grant=grant)
            == _value(
                samples,
                "mcmig_idms_token_requests_total",
                node=node,
                grant=grant,
                outcome="issued",
            )
            == 1
        ), (node, grant)
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
