"""The migration lifecycle (PROFILE 3) and data to migrated users (PROFILE 4), on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from mcmig.mc.body import CONTENT_TYPE, MigrationRelease, encode
from mcmig.nodes.ue import UserEquipment, send_data
from mcmig.profiles import Deployment, load_deployment
from mcmig.sip.message import Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import parse_sip_uri
from tests.support.lab import Lab
from tests.support.tools import ROOT

ALICE = "sip:alice@primary.example"
OTHER_SYSTEMS = {
    "127.0.9.1",
    "127.0.9.2",
    "127.0.9.3",
    "127.0.2.1",
    "127.0.2.10",
    "127.0.3.1",
    "127.0.3.10",
}
BOB = "sip:bob@primary.example"


def redirecting(deployment: Deployment) -> Deployment:
    systems = tuple(
        dataclasses.replace(s, call_mode="redirect") if s.domain == "primary.example" else s
        for s in deployment.systems
    )
    return dataclasses.replace(deployment, systems=systems)


@pytest.fixture
def lab(demo3: Lab) -> Lab:
    return demo3


def _ue(lab: Lab) -> UserEquipment:
    assert lab.running is not None
    return lab.running.clients["alice-ue"]


def _send(lab: Lab, text: str, to: str = ALICE) -> Response:
    lab.trace.clear()
    return lab.run(send_data(lab.client, lab.deployment, BOB, to, text.encode(), "text/plain"))


def _visitors(lab: Lab, server: str) -> list[str]:
    assert lab.running is not None
    return [b.mc_service_id for b in lab.running.servers[server].visitors.all()]


def _gateways(lab: Lab) -> bool:
    return any(s.gateways for s in lab.deployment.systems)


def test_data_reaches_the_migrated_user(lab: Lab) -> None:
    assert _send(lab, "hello alice").status == 200
    assert [m.body for m in _ue(lab).inbox] == [b"hello alice"]
    (record,) = lab.registry()
    assert record.partner_system == "partner.example"
    hops = [
        lab.trace.name_of(e.destination)
        for e in lab.trace.entries
        if e.message.__class__.__name__ == "Request"
    ]
    expected = ["primary-server", "primary-gw", "partner-gw", "partner-server", "alice-ue"]
    assert hops == (
        expected if _gateways(lab) else ["primary-server", "partner-server", "alice-ue"]
    )
    # the request that reached alice's client is addressed to her Contact, sent by her partner server
    delivered = _ue(lab).inbox[0]
    assert delivered.from_.sip_uri.aor == BOB


def test_release_then_480(lab: Lab) -> None:
    assert lab.run(_ue(lab).release()).status == 200
    lab.run(asyncio.sleep(0.2))
    assert lab.registry() == []
    assert _visitors(lab, "partner-server") == []
    response = _send(lab, "anyone there?")
    assert response.status == 480
    assert lab.run(_ue(lab).migrate("partner.example")).accepted  # and back again
    assert _send(lab, "welcome back").status == 200


def test_moving_on_releases_the_first_partner(lab: Lab) -> None:
    assert lab.run(_ue(lab).migrate("partner2.example")).accepted
    lab.run(asyncio.sleep(0.3))
    (record,) = lab.registry()
    assert record.partner_system == "partner2.example"
    assert _visitors(lab, "partner-server") == []
    assert _visitors(lab, "partner2-server") == [ALICE]
    assert _send(lab, "where are you now").status == 200
    names = {lab.trace.name_of(e.destination) for e in lab.trace.entries}
    assert "partner2-server" in names and "partner-server" not in names


def test_returning_home_keeps_traffic_inside_the_primary_system(lab: Lab) -> None:
    assert lab.run(_ue(lab).migrate("primary.example")).accepted
    lab.run(asyncio.sleep(0.3))
    assert lab.registry() == []
    assert _visitors(lab, "partner-server") == []
    assert _send(lab, "home sweet home").status == 200
    assert _ue(lab).inbox[-1].body == b"home sweet home"
    for entry in lab.trace.entries:
        assert entry.destination.host not in OTHER_SYSTEMS
        assert lab.trace.name_of(entry.destination) in {"primary-server", "alice-ue", "client"}


def _release_at_primary(lab: Lab, partner: str, temporary_id: str | None) -> int:
    request = make_request(
        "MESSAGE",
        parse_sip_uri(ALICE),
        from_uri="sip:migration@partner.example",
        to_uri=ALICE,
        body=encode(MigrationRelease(ALICE, partner, temporary_id)),
        content_type=CONTENT_TYPE,
    )
    # sent by that partner's server itself, the way it sends: through its gateway
    # when it has one (only the primary's gateway may bring it in), else straight
    assert lab.running is not None
    server = lab.running.servers[partner.split(".")[0] + "-server"].node
    system = lab.deployment.system(partner)
    assert system is not None
    hop = (
        TransportAddress("UDP", "127.0.1.10", 5060)
        if not system.gateways
        else system.gateways[0].internal.address()
    )
    response = lab.run(server.send_request(request, hop))
    return response.status


def test_a_late_release_never_deletes_a_newer_migration(lab: Lab) -> None:
    old = lab.registry()[0]
    assert lab.run(_ue(lab).migrate("partner2.example")).accepted
    newer = lab.registry()
    # partner1's release of the old stay arrives after the move: nothing changes
    assert _release_at_primary(lab, "partner.example", old.temporary_id) == 200
    assert lab.registry() == newer
    # a release naming the right partner but an older stay changes nothing either
    assert _release_at_primary(lab, "partner2.example", "sip:t-old@partner2.example") == 200
    assert lab.registry() == newer
    # repeated: same answer, same state
    assert _release_at_primary(lab, "partner.example", None) == 200
    assert lab.registry() == newer


def test_redirect_mode_answers_302_with_the_temporary_identity(tmp_path: Path) -> None:
    lab = Lab(
        redirecting(load_deployment(ROOT / "sip_profiles/demo3.yaml")),
        tmp_path,
        client_host="127.0.1.50",
    )
    lab.start()
    try:
        response = _send(lab, "hi")
        (record,) = lab.registry()
        assert response.status == 302
        assert response.get("Contact") == f"<{record.temporary_id}>"
        assert _ue(lab).inbox == []
    finally:
        lab.close()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo3.yaml", tmp_path, client_host="127.0.1.50")
    lab.start()
    try:
        before = lab.registry(), _visitors(lab, "partner-server")
        lab.stop()
        lab.start(only={n for n in lab.deployment.node_names() if n != "alice-ue"})
        assert (lab.registry(), _visitors(lab, "partner-server")) == before
    finally:
        lab.close()
