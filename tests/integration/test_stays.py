"""Stays that end by themselves (PROFILE 3): a stay lasts until its access token
expires or the partner's maximum passes, whichever is first; migrating again
refreshes it; when it ends, the primary's record ends too, by a release."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from mcmig.mc.policy import VisitorPolicy
from mcmig.profiles import load_deployment
from mcmig.registry import SqliteVisitorStore, VisitorBinding, VisitorRelease
from tests.support.lab import Lab
from tests.support.tools import ROOT

ALICE = "sip:alice@primary.example"


def _short_stays(profile: str, seconds: float, state: Path) -> Lab:
    deployment = load_deployment(ROOT / profile)
    systems = tuple(
        dataclasses.replace(s, visitors=dataclasses.replace(s.visitors, max_stay=seconds))
        if s.domain == "partner.example"
        else s
        for s in deployment.systems
    )
    return Lab(dataclasses.replace(deployment, systems=systems), state)


def test_the_store_finds_expired_stays_and_a_release_spares_a_refresh(tmp_path: Path) -> None:
    store = SqliteVisitorStore(tmp_path / "partner.sqlite3")
    store.change_many(
        [
            VisitorBinding("sip:t-1@p", "sip:a@x", None, 0.0, 10.0),
            VisitorBinding("sip:t-2@p", "sip:b@x", None, 0.0, 20.0),
            VisitorBinding("sip:b@x", "sip:home@x", None, 0.0, None),  # at home: no end
        ]
    )
    assert [b.temporary_id for b in store.expired(5.0)] == []
    assert [b.temporary_id for b in store.expired(15.0)] == ["sip:t-1@p"]
    assert [b.temporary_id for b in store.expired(1e12)] == ["sip:t-1@p", "sip:t-2@p"]
    # a: refreshed (same identity, a new lifetime) before the end of the old one
    store.change_many([VisitorBinding("sip:t-1@p", "sip:a@x", None, 9.0, 40.0)])
    assert store.change_many([VisitorRelease("sip:a@x", "sip:t-1@p", 10.0)]) == [None]
    assert [b.expires for b in store.all() if b.mc_service_id == "sip:a@x"] == [40.0]
    store.close()


def test_a_registry_file_from_before_lifetimes_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE visitors (temporary_id TEXT PRIMARY KEY, mc_service_id TEXT NOT NULL, "
        "contact TEXT, since REAL NOT NULL)"
    )
    db.execute("INSERT INTO visitors VALUES ('sip:t-0@p', 'sip:old@x', NULL, 1.0)")
    db.commit()
    db.close()
    store = SqliteVisitorStore(path)
    assert store.all() == [VisitorBinding("sip:t-0@p", "sip:old@x", None, 1.0, None)]
    assert store.expired(1e12) == []  # a stay from before has no end: not ended by surprise
    store.close()


@pytest.mark.parametrize("profile", ["sip_profiles/demo.yaml", "sip_profiles/direct.yaml"])
def test_a_stay_ends_at_both_systems_unless_refreshed(tmp_path: Path, profile: str) -> None:
    lab = _short_stays(profile, 1.0, tmp_path)
    lab.start()
    try:
        assert lab.running is not None
        partner = lab.running.servers["partner-server"]
        partner.expiry_interval = 0.05
        assert lab.migrate(ALICE).status == 200
        lab.run(asyncio.sleep(0.6))
        assert lab.migrate(ALICE).status == 200  # refreshed: a second from now
        lab.run(asyncio.sleep(0.7))  # past the first lifetime, inside the second
        assert [b.mc_service_id for b in partner.visitors.all()] == [ALICE]
        assert [r.mc_service_id for r in lab.registry()] == [ALICE]
        lab.run(asyncio.sleep(0.8))  # past the second
        assert partner.visitors.all() == []
        assert lab.registry() == []  # ended at the primary too, by the partner's release
    finally:
        lab.close()


def test_the_access_tokens_expiry_ends_a_stay_before_the_maximum(tmp_path: Path) -> None:
    from mcmig.mc.tokens import issue_token
    from mcmig.profiles.keys import idms_key

    lab = Lab("sip_profiles/direct.yaml", tmp_path)  # max_stay: the default, a day
    lab.start()
    try:
        assert lab.running is not None
        partner = lab.running.servers["partner-server"]
        partner.expiry_interval = 0.05
        system = lab.deployment.system("partner.example")
        assert system is not None and system.visitors.max_stay == VisitorPolicy.max_stay
        token = issue_token(idms_key(system), "partner.example", ALICE, ttl=1)
        assert lab.migrate(ALICE, token).status == 200
        (binding,) = partner.visitors.all()
        assert binding.expires is not None and binding.expires - binding.since <= 1.0
        lab.run(asyncio.sleep(1.5))
        assert partner.visitors.all() == [] and lab.registry() == []
    finally:
        lab.close()
