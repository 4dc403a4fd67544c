"""Trust boundaries on loopback: bearer tokens, claims bound to the peer that makes
them, requests that cross systems only through the gateway, host-name peers, and
strangers turned away without a transaction (docs/reliability.md, Trust boundaries)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from mcmig.mc.body import CONTENT_TYPE, MigrationRelease, MigrationRequest, encode
from mcmig.mc.tokens import issue_token
from mcmig.nodes.deployment import start_deployment
from mcmig.profiles import Deployment, load_deployment
from mcmig.profiles.keys import idms_key
from mcmig.profiles.model import HostPort, Peer
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import parse_sip_uri
from tests.support.lab import Lab
from tests.support.tools import ROOT

ALICE = "sip:alice@primary.example"
PRIMARY_SERVER = TransportAddress("UDP", "127.0.1.10", 5060)
PRIMARY_GW = TransportAddress("UDP", "127.0.9.1", 5060)
PARTNER_SERVER = TransportAddress("UDP", "127.0.2.10", 5060)
PARTNER_GW = TransportAddress("UDP", "127.0.9.2", 5060)


def _message(uri: str, body: MigrationRequest | MigrationRelease | bytes) -> Request:
    return make_request(
        "MESSAGE",
        parse_sip_uri(uri),
        from_uri="sip:migration@partner.example",
        to_uri=uri,
        body=body if isinstance(body, bytes) else encode(body),
        content_type=CONTENT_TYPE,
    )


def _send(lab: Lab, request: Request, to: TransportAddress) -> Response:
    return lab.run(lab.client.send_request(request, to))


def _stays(lab: Lab) -> list[str]:
    assert lab.running is not None
    return [b.mc_service_id for b in lab.running.servers["partner-server"].visitors.all()]


# -- bearer tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["sip_profiles/demo.yaml", "sip_profiles/direct.yaml"])
def test_a_retry_after_a_504_with_the_same_token_gets_200(tmp_path: Path, profile: str) -> None:
    lab = Lab(profile, tmp_path)
    lab.start(only={n for n in lab.deployment.node_names() if n != "primary-server"})
    token = lab.token(ALICE)
    primary = None
    try:
        assert lab.migrate(ALICE, token).status == 504
        primary = lab.run(start_deployment(lab.deployment, tmp_path, {"primary-server"}))
        outcome = lab.migrate(ALICE, token)
        assert (outcome.status, outcome.cause) == (200, None)
        records = primary.servers["primary-server"].store.all()
        assert [r.mc_service_id for r in records] == [ALICE]
    finally:
        if primary is not None:
            lab.run(primary.stop())
        lab.close()


def test_a_refused_token_tells_the_client_nothing_of_why(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/direct.yaml", tmp_path)
    lab.start()
    try:
        system = lab.deployment.system("partner.example")
        assert system is not None
        key = idms_key(system)
        for token in (
            issue_token(key, "partner.example", ALICE, ttl=-120),  # expired
            issue_token(key, "other.example", ALICE),  # wrong audience
            issue_token(key, "partner.example", ALICE, ttl=7200),  # over the 1 h cap
            issue_token(dataclasses.replace(key, kid="k9"), "partner.example", ALICE),
        ):
            outcome = lab.migrate(ALICE, token)
            assert (outcome.status, outcome.cause, outcome.text) == (
                403,
                "invalid-credentials",
                "access token refused",
            )
        assert lab.registry() == []
    finally:
        lab.close()


# -- claims bound to the peer --------------------------------------------------------------


def _with_peer(profile: str, system: str, peer: Peer) -> Deployment:
    deployment = load_deployment(ROOT / profile)
    systems = tuple(
        dataclasses.replace(s, peers=(*s.peers, peer)) if s.domain == system else s
        for s in deployment.systems
    )
    return dataclasses.replace(deployment, systems=systems)


@pytest.mark.parametrize(
    ("profile", "primary_host", "partner_at"),
    [
        ("sip_profiles/demo.yaml", "127.0.9.1", PARTNER_GW),
        ("sip_profiles/direct.yaml", "127.0.1.10", PARTNER_SERVER),
    ],
    ids=["gateways", "direct"],
)
def test_a_partner_acts_only_on_releases_that_name_it(
    tmp_path: Path, profile: str, primary_host: str, partner_at: TransportAddress
) -> None:
    # We stand at the primary peer's address (another port of the same host).
    lab = Lab(profile, tmp_path, client_host=primary_host)
    lab.start()
    try:
        assert lab.migrate(ALICE).status == 200
        (record,) = lab.registry()
        assert record.temporary_id is not None
        other = MigrationRelease(ALICE, "partner2.example", record.temporary_id)
        response = _send(lab, _message(record.temporary_id, other), partner_at)
        assert response.status == 403
        assert "peer-not-authorized" in (response.get("Warning") or "")
        assert _stays(lab) == [ALICE]
        own = MigrationRelease(ALICE, "partner.example", record.temporary_id)
        assert _send(lab, _message(record.temporary_id, own), partner_at).status == 200
        assert _stays(lab) == []
    finally:
        lab.close()


@pytest.mark.parametrize(
    ("profile", "partner_at"),
    [("sip_profiles/demo.yaml", PARTNER_GW), ("sip_profiles/direct.yaml", PARTNER_SERVER)],
    ids=["gateways", "direct"],
)
def test_a_peer_cannot_end_the_stays_of_another_systems_users(
    tmp_path: Path, profile: str, partner_at: TransportAddress
) -> None:
    # other.example is a configured peer of the partner, but not alice's primary system.
    deployment = _with_peer(
        profile, "partner.example", Peer("other.example", HostPort("127.0.9.7", 5060))
    )
    lab = Lab(deployment, tmp_path, client_host="127.0.9.7")
    lab.start()
    try:
        assert lab.migrate(ALICE).status == 200
        (record,) = lab.registry()
        assert record.temporary_id is not None
        release = MigrationRelease(ALICE, "partner.example", record.temporary_id)
        response = _send(lab, _message(record.temporary_id, release), partner_at)
        assert response.status == 403
        assert "peer-not-authorized" in (response.get("Warning") or "")
        assert _stays(lab) == [ALICE]
    finally:
        lab.close()


@pytest.mark.parametrize(
    ("profile", "partner_host", "primary_at"),
    [
        ("sip_profiles/demo.yaml", "127.0.9.2", PRIMARY_GW),
        ("sip_profiles/direct.yaml", "127.0.2.10", PRIMARY_SERVER),
    ],
    ids=["gateways", "direct"],
)
@pytest.mark.parametrize(
    "claim",
    [
        {"temporary_id": "sip:t-1@third.example"},
        {"partner_address": "sip:calls.third.example"},
        {"partner_address": "sip:127.0.9.9:5060"},
        {"partner_system": "third.example"},
    ],
    ids=["temporary-id", "address-by-name", "address-by-ip", "partner-system"],
)
def test_a_partner_cannot_route_a_users_calls_into_a_third_system(
    tmp_path: Path,
    profile: str,
    partner_host: str,
    primary_at: TransportAddress,
    claim: dict[str, str],
) -> None:
    lab = Lab(profile, tmp_path, client_host=partner_host)
    lab.start(only={"primary-gw", "primary-server"})
    try:
        fields = {
            "partner_system": "partner.example",
            "partner_address": f"sip:{partner_at(profile)}",
            "temporary_id": "sip:t-1@partner.example",
        }
        good = MigrationRequest(ALICE, **fields)
        bad = dataclasses.replace(good, **claim)
        response = _send(lab, _message(ALICE, bad), primary_at)
        assert response.status == 403
        assert "peer-not-authorized" in (response.get("Warning") or "")
        assert lab.registry() == []
        assert _send(lab, _message(ALICE, good), primary_at).status == 200
    finally:
        lab.close()


def partner_at(profile: str) -> str:
    return "127.0.9.2:5060" if "demo" in profile else "127.0.2.10:5060"


def test_with_a_gateway_the_server_takes_cross_system_requests_only_from_it(
    tmp_path: Path,
) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path, client_host="127.0.9.2")
    lab.start()
    try:
        request = MigrationRequest(
            ALICE, partner_system="partner.example", partner_address="sip:127.0.9.2:5060"
        )
        # Straight to the primary server, past its gateway: refused.
        response = _send(lab, _message(ALICE, request), PRIMARY_SERVER)
        assert response.status == 403 and lab.registry() == []
        release = MigrationRelease(ALICE, "partner.example")
        assert _send(lab, _message(ALICE, release), PRIMARY_SERVER).status == 403
        # Through the gateway, from the peer: accepted.
        assert _send(lab, _message(ALICE, request), PRIMARY_GW).status == 200
        assert [r.mc_service_id for r in lab.registry()] == [ALICE]
    finally:
        lab.close()


def test_a_prefixed_migration_body_is_known_as_one_at_the_gateway(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path, client_host="127.0.9.2")
    lab.start()
    try:
        body = (
            b'<?xml version="1.0"?>\n<m:migration xmlns:m="urn:mcmig:params:xml:ns:migration:1">'
            b"\n  <m:request >\n    <m:mc-service-id>sip:dave@primary.example</m:mc-service-id>"
            b"<m:partner-system>partner.example</m:partner-system>"
            b"<m:partner-address>sip:127.0.9.2:5060</m:partner-address>"
            b"</m:request>\n</m:migration>"
        )
        lab.trace.clear()
        response = _send(lab, _message("sip:dave@primary.example", body), PRIMARY_GW)
        assert response.status == 404 and "unknown-user" in (response.get("Warning") or "")
        assert lab.trace.originator(404) == "primary-gw"  # step 5, never reaching the server
    finally:
        lab.close()


def test_a_peer_written_by_host_name_is_known_by_its_address(tmp_path: Path) -> None:
    """direct.yaml with the partner server at 127.0.0.1 and named `localhost` in the
    primary's peers: its requests are accepted (resolved when the profile loads)."""
    text = (ROOT / "sip_profiles/direct.yaml").read_text()
    text = text.replace("127.0.2.10:5060", "127.0.0.1:5064").replace(
        "address: 127.0.0.1:5064", "address: localhost:5064"
    )
    text = text.replace("keys/", f"{ROOT}/sip_profiles/keys/")
    text = text.replace("certs/", f"{ROOT}/sip_profiles/certs/")
    path = tmp_path / "named.yaml"
    path.write_text(text)
    deployment = load_deployment(path)
    primary = deployment.system("primary.example")
    assert primary is not None and primary.peers[0].address.host == "localhost"
    assert primary.peers[0].addresses[0] == "127.0.0.1"
    lab = Lab(deployment, tmp_path / "state")
    lab.start()
    try:
        system = deployment.system("partner.example")
        assert system is not None
        from mcmig.nodes.client import McClient

        outcome = lab.run(
            McClient(lab.client, ALICE).migrate(
                system.migration_psi, TransportAddress("UDP", "127.0.0.1", 5064), lab.token(ALICE)
            )
        )
        assert (outcome.status, outcome.cause) == (200, None)
    finally:
        lab.close()


# -- strangers at a gateway ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS", "INVITE", "SUBSCRIBE", "MESSAGE"])
def test_strangers_learn_nothing_and_cost_no_transaction(tmp_path: Path, method: str) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path, client_host="127.0.7.7")
    lab.start(only={"primary-gw"})
    try:
        assert lab.running is not None
        external = lab.running.nodes[1]
        assert external.name == "primary-gw/external"
        request = make_request(
            method,
            parse_sip_uri(ALICE),
            from_uri="sip:mallory@evil.example",
            to_uri=ALICE,
            body=b"v=0\r\n" if method == "INVITE" else b"",
            content_type="application/sdp" if method == "INVITE" else None,
        )
        if method == "INVITE":
            out = lab.client.invite(request, PRIMARY_GW)
            response = lab.run(asyncio.wait_for(out.final, 5))
        else:
            response = _send(lab, request, PRIMARY_GW)
        assert response.status == 403
        assert response.get("Allow") is None
        assert response.get("Warning") == (
            '399 primary.example "peer-not-authorized: not a configured peer"'
        )
        # Stateless: nothing held, so nothing retransmitted (an INVITE's 403 would
        # otherwise go out eleven times over 32 s).
        assert external.resources()["transactions"] == 0
        assert external.stats.turned_away >= 1  # the INVITE, and its ACK if it came yet
    finally:
        lab.close()
