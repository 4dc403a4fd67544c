"""SIPp plays the MC service client against `mcmig up` of the demo profiles."""

from __future__ import annotations

import re
from pathlib import Path

from mcmig.mc.tokens import issue_token
from mcmig.profiles import load_deployment
from mcmig.profiles.keys import idms_key
from tests.support.tools import ROOT, Mcmig, free_port, registry_records, run_sipp


def test_sipp_client_migrates_users_with_tokens_from_a_csv(tmp_path: Path) -> None:
    state = tmp_path / "state"
    deployment = load_deployment(ROOT / "sip_profiles/demo.yaml")
    partner = deployment.system("partner.example")
    assert partner is not None
    key = idms_key(partner)
    users = [f"sip:u{n:06d}@primary.example" for n in range(1, 51)]
    csv = tmp_path / "users.csv"
    csv.write_text(
        "SEQUENTIAL\n" + "".join(f"{u};{issue_token(key, 'partner.example', u)}\n" for u in users)
    )

    up = Mcmig("up", "sip_profiles/demo.yaml", "--state-dir", str(state))
    try:
        result = run_sipp(
            "migration_client.xml",
            "-inf",
            str(csv),
            "-m",
            str(len(users)),
            "-r",
            "50",
            "-s",
            "migration",
            "-p",
            str(free_port("127.0.2.100")),
            "-timeout",
            "60s",
            "-timeout_error",
            local_ip="127.0.2.100",
            target="127.0.2.10:5060",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        successful = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
        assert successful is not None and int(successful.group(1)) == len(users)
        records = registry_records(state)
        assert sorted(r["mc_service_id"] for r in records) == users
        assert {r["partner_address"] for r in records} == {"sip:127.0.9.2:5060"}
        assert set(records[0]) == {
            "mc_service_id",
            "partner_system",
            "partner_address",
            "temporary_id",
            "since",
        }
    finally:
        assert up.stop() == 0
    assert "Traceback" not in up.stderr


def test_sipp_client_against_systems_as_deployed(tmp_path: Path) -> None:
    """sip_profiles/deployed.yaml: SIPp migrates users of both primary servers to the
    partner without gateways (at partner-b); each record lands at the user's own
    server, through primary-gw1, the gateway for partner.example."""
    state = tmp_path / "state"
    deployment = load_deployment(ROOT / "sip_profiles/deployed.yaml")
    partner = deployment.system("partner.example")
    assert partner is not None
    key = idms_key(partner)
    low = [f"sip:u{n:06d}@primary.example" for n in range(1, 21)]
    high = [f"sip:u{n:06d}@primary.example" for n in range(500001, 500021)]
    csv = tmp_path / "users.csv"
    csv.write_text(
        "SEQUENTIAL\n"
        + "".join(f"{u};{issue_token(key, 'partner.example', u)}\n" for u in low + high)
    )
    up = Mcmig("up", "sip_profiles/deployed.yaml", "--state-dir", str(state))
    try:
        result = run_sipp(
            "migration_client.xml",
            *("-inf", str(csv), "-m", str(len(low + high)), "-r", "40", "-s", "migration"),
            *("-p", str(free_port("127.0.2.100")), "-timeout", "60s", "-timeout_error"),
            local_ip="127.0.2.100",
            target="127.0.2.11:5060",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        successful = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
        assert successful is not None and int(successful.group(1)) == len(low + high)
        profile = "sip_profiles/deployed.yaml"
        for node, users in (("primary-a", low), ("primary-b", high)):
            records = registry_records(state, profile, node)
            migrated = sorted(str(r["mc_service_id"]) for r in records)
            assert [u for u in migrated if u.startswith("sip:u")] == users
            assert {r["partner_address"] for r in records} == {"sip:127.0.2.11:5060"}
    finally:
        assert up.stop() == 0
    assert "Traceback" not in up.stderr
