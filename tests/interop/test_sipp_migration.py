"""SIPp plays the MC service client against `mcmig up sip_profiles/demo.yaml`."""

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
