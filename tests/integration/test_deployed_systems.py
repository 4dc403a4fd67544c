"""Systems as deployed (PROFILE 1.1) on loopback: several servers found by MC service
ID, several gateways each for its peers, a system without gateways beside two with,
and migrated users who send data and place calls to every system."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcmig.nodes.topology import SystemTopology
from mcmig.nodes.ue import UserEquipment
from mcmig.sip.uri import parse_sip_uri
from tests.support.lab import Lab

PROFILE = "sip_profiles/deployed.yaml"
ALICE, CAROL, ERIN = (f"sip:{u}@primary.example" for u in ("alice", "carol", "erin"))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(PROFILE, tmp_path, client_host="127.0.2.100")
    lab.start()
    try:
        yield lab
    finally:
        lab.close()


def ue(lab: Lab, name: str) -> UserEquipment:
    assert lab.running is not None
    return lab.running.clients[name]


def test_records_live_at_each_users_own_server(lab: Lab) -> None:
    """alice is primary-a's user, erin primary-b's: each record is at its server."""
    assert ue(lab, "alice-ue").serving == "partner.example"  # migrated when started
    assert lab.migrate(ERIN).status == 200
    assert lab.migrate("sip:u700001@primary.example", partner="partner2.example").status == 200
    assert {r.mc_service_id for r in lab.registry("primary-a")} == {ALICE}
    assert {r.mc_service_id for r in lab.registry("primary-b")} == {
        ERIN,
        "sip:u700001@primary.example",
    }


def test_each_gateway_carries_its_own_peers_only(lab: Lab) -> None:
    lab.migrate("sip:u000042@primary.example", partner="partner2.example")
    nodes = {e.node for e in lab.trace.entries}
    assert "primary-gw2" in nodes and "primary-gw1" not in nodes
    lab.migrate("sip:u000043@primary.example")  # to partner.example, which has no gateways
    nodes = {e.node for e in lab.trace.entries}
    assert "primary-gw1" in nodes and "primary-gw2" not in nodes


def test_a_gateway_refuses_a_peer_it_does_not_interface_to(lab: Lab) -> None:
    from mcmig.sip.requests import make_request

    request = make_request(
        "MESSAGE",
        parse_sip_uri("sip:gina@partner2.example"),
        from_uri="sip:bob@primary.example",
        to_uri="sip:gina@partner2.example",
        body=b"hi",
        content_type="text/plain",
    )
    gw1 = lab.deployment.system("primary.example").gateways[0]  # type: ignore[union-attr]
    response = lab.run(lab.client.send_request(request, gw1.internal.address()))
    assert response.status == 404
    assert "unknown-mc-system" in (response.get("Warning") or "")


def test_temporary_identity_names_the_server_of_the_stay(lab: Lab) -> None:
    """Visitors served by partner-a and partner-b each get an identity that opens to
    their server; data to it arrives, whichever server the sender reached."""
    assert lab.running is not None
    partner = lab.deployment.system("partner.example")
    assert partner is not None
    topology = SystemTopology(partner)
    holders = {}
    for server in ("partner-a", "partner-b"):
        for binding in lab.running.servers[server].visitors.all():
            if binding.temporary_id == binding.mc_service_id:
                continue  # a user of the partner, at home
            user = parse_sip_uri(binding.temporary_id).user or ""
            opened = topology.server_of_temporary_id(user)
            assert opened is not None and opened.name == server
            holders[binding.mc_service_id] = server
    assert holders[ALICE] in ("partner-a", "partner-b")
    # data to alice from bob at home: primary-a -> primary-gw1 -> partner entry ->
    # (the server holding the stay) -> alice
    bob = ue(lab, "bob-ue")
    alice = ue(lab, "alice-ue")
    before = len(alice.inbox)
    assert lab.run(bob.send(ALICE, b"to alice")).status == 200
    assert len(alice.inbox) == before + 1


@pytest.mark.parametrize(
    ("target", "receiver", "shown"),
    [
        ("sip:bob@primary.example", "bob-ue", "mc-service-id"),  # her own primary system
        ("sip:dave@partner.example", "dave-ue", "temporary-id"),  # the partner's own user
        ("sip:gina@partner2.example", "gina-ue", "temporary-id"),  # a third system
    ],
)
def test_a_migrated_user_sends_to_every_system(
    lab: Lab, target: str, receiver: str, shown: str
) -> None:
    alice, other = ue(lab, "alice-ue"), ue(lab, receiver)
    before = len(other.inbox)
    response = lab.run(alice.send(target, b"from abroad"))
    assert response.status == 200
    assert len(other.inbox) == before + 1
    sender = parse_sip_uri(str(other.inbox[-1].from_.uri))
    if shown == "mc-service-id":
        assert sender.aor == ALICE
    else:
        assert sender.host == "partner.example" and (sender.user or "").startswith("t-")
        # a reply to what the receiver saw finds alice
        before_reply = len(alice.inbox)
        assert lab.run(other.send(sender.aor, b"reply")).status == 200
        assert len(alice.inbox) == before_reply + 1


@pytest.mark.parametrize("target", ["sip:bob@primary.example", "sip:gina@partner2.example"])
def test_a_migrated_user_places_calls(lab: Lab, target: str) -> None:
    outcome = lab.run(ue(lab, "alice-ue").call(target, hold=0.2))
    assert outcome.status == 200 and outcome.ended_by == "caller"


def test_nobody_sends_in_a_visitors_name_from_elsewhere(lab: Lab) -> None:
    """The partner checks the sender against the contact that alice's migration bound."""
    from mcmig.nodes.ue import send_data

    assert lab.deployment is not None
    response = lab.run(
        send_data(
            lab.client,
            lab.deployment,
            ALICE,
            "sip:bob@primary.example",
            b"forged",
            "text/plain",
            through="partner.example",
        )
    )
    assert response.status == 404


def test_visitors_of_a_partner_with_a_gateway_and_two_servers_survive_its_restart(
    tmp_path: Path,
) -> None:
    """partner2.example with two servers behind its gateway: data to each visitor's
    temporary identity reaches the server holding the stay, before and after every
    node (the gateway included) restarts, with nothing but the profile's key to go by."""
    import dataclasses

    from mcmig.mc.policy import UserSelector
    from mcmig.nodes.topology import entry_server
    from mcmig.profiles import load_deployment
    from mcmig.profiles.model import HostPort, ServerProfile, TemporaryIdKeys
    from mcmig.sip.message import Request
    from mcmig.sip.peer import TransportAddress
    from mcmig.sip.responses import make_response
    from tests.support.tools import ROOT

    deployment = load_deployment(ROOT / PROFILE)
    partner2 = deployment.system("partner2.example")
    assert partner2 is not None
    servers = (
        ServerProfile(
            "partner2-a", HostPort("127.0.3.10", 5060), UserSelector(frozenset({"gina"}))
        ),
        ServerProfile("partner2-b", HostPort("127.0.3.11", 5060), UserSelector(prefixes=("h",))),
    )
    partner2 = dataclasses.replace(
        partner2, servers=servers, temporary_ids=TemporaryIdKeys((b"\x07" * 32,))
    )
    systems = tuple(partner2 if s.domain == partner2.domain else s for s in deployment.systems)
    deployment = dataclasses.replace(deployment, systems=systems)
    # users whose clients pick each of the two servers
    users: dict[str, str] = {}
    for n in range(100):
        user = f"sip:u{n:06d}@primary.example"
        users.setdefault(entry_server(partner2, parse_sip_uri(user)).name, user)
    assert set(users) == {"partner2-a", "partner2-b"}

    lab = Lab(deployment, tmp_path, client_host="127.0.3.200")
    got: list[str] = []

    async def take(request: Request, source: TransportAddress) -> object:
        got.append(str(request.uri))
        return make_response(request, 200)

    lab.client.handlers["MESSAGE"] = take  # type: ignore[assignment]
    lab.start()
    try:
        for user in users.values():
            assert lab.migrate(user, partner="partner2.example").status == 200
        for restarted in (False, True):
            if restarted:
                lab.stop()
                lab.start()
            bob = ue(lab, "bob-ue")
            for user in users.values():
                before = len(got)
                assert lab.run(bob.send(user, b"after" if restarted else b"before")).status == 200
                assert len(got) == before + 1
        assert lab.running is not None
        for name, user in users.items():
            held = {b.mc_service_id for b in lab.running.servers[name].visitors.all()}
            assert user in held
    finally:
        lab.close()


def test_a_user_of_the_system_without_gateways_migrates_to_one_with(tmp_path: Path) -> None:
    """The other way round: dave's primary (partner.example) has no gateways, his
    partner (partner2.example) has one. Migration, then data and a call to him."""
    import dataclasses

    from mcmig.mc.policy import PrimaryPolicy, UserRule, UserSelector, VisitorPolicy
    from mcmig.profiles import load_deployment
    from tests.support.tools import ROOT

    deployment = load_deployment(ROOT / PROFILE)
    systems = []
    for s in deployment.systems:
        if s.domain == "partner.example":
            rule = UserRule(UserSelector(frozenset({"dave", "frank"})), frozenset({"*"}))
            s = dataclasses.replace(s, users=PrimaryPolicy((rule,)))
        if s.domain == "partner2.example":
            accepts = frozenset({"primary.example", "partner.example"})
            s = dataclasses.replace(s, visitors=VisitorPolicy(accept_systems=accepts))
        systems.append(s)
    lab = Lab(dataclasses.replace(deployment, systems=tuple(systems)), tmp_path)
    lab.start()
    try:
        dave, alice = ue(lab, "dave-ue"), ue(lab, "alice-ue")
        outcome = lab.run(dave.migrate("partner2.example"))
        assert outcome.status == 200
        assert lab.trace.originator(200) == "partner-a"  # dave's own server
        record = lab.registry("partner-a")
        assert [r.partner_system for r in record] == ["partner2.example"]
        before = len(dave.inbox)
        assert lab.run(alice.send("sip:dave@partner.example", b"hello")).status == 200
        assert len(dave.inbox) == before + 1
        assert lab.run(alice.call("sip:dave@partner.example", hold=0.1)).status == 200
        # and dave, abroad, sends home through partner2's gateway
        assert lab.run(dave.send("sip:frank@partner.example", b"hi")).status == 480
    finally:
        lab.close()
