"""What `mcmig up` tells an operator about a pool: Kamailio's command and the database."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mcmig.commands.deploy import pool_instructions, redacted_dsn
from mcmig.profiles import load_deployment
from mcmig.profiles.model import HostPort, RegistryProfile
from tests.support.tools import ROOT


def test_a_dsn_is_shown_without_its_password() -> None:
    assert redacted_dsn("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redacted_dsn("postgresql:///x?host=/run/pg") == "postgresql:///x?host=/run/pg"


def test_a_pool_gets_its_dispatcher_list_and_kamailio_command(tmp_path: Path) -> None:
    demo = load_deployment(ROOT / "sip_profiles" / "demo.yaml")
    primary = demo.systems[0]
    pool = dataclasses.replace(
        primary.servers[0], instances=(HostPort("127.0.1.11", 5060), HostPort("127.0.1.12", 5060))
    )
    registry = RegistryProfile("postgresql", "postgresql://mcmig:secret@127.0.0.1/primary")
    system = dataclasses.replace(primary, servers=(pool,), registry=registry)
    lines = pool_instructions(dataclasses.replace(demo, systems=(system,)), tmp_path)
    assert "postgresql://mcmig:***@127.0.0.1/primary" in lines[0] and "secret" not in lines[0]
    assert "kamailio -f kamailio/server-pool.cfg" in lines[1]
    assert "LISTEN=udp:127.0.1.10:5060" in lines[1]
    listing = tmp_path / "primary-server-kamailio" / "dispatcher.list"
    assert listing.read_text() == "1 sip:127.0.1.11:5060\n1 sip:127.0.1.12:5060\n"


def test_no_pool_no_instructions(tmp_path: Path) -> None:
    assert pool_instructions(load_deployment(ROOT / "sip_profiles" / "demo.yaml"), tmp_path) == []
