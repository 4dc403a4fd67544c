"""The border's rules on their own: who a source is, which claims a peer may make,
and temporary identities no one can guess or collide with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcmig.mc.body import MigrationRelease, MigrationRequest
from mcmig.mc.identities import new_temporary_id
from mcmig.mc.policy import PrimaryPolicy, VisitorPolicy
from mcmig.nodes.trust import Border, canonical_host, claim_refusal, release_refusal
from mcmig.profiles.loader import ProfileError, load_deployment
from mcmig.profiles.model import GatewayProfile, HostPort, Peer, SystemProfile
from mcmig.sip.peer import TransportAddress
from tests.support.idms import idms_of

PARTNER = Peer("partner.example", HostPort("127.0.9.2", 5060))
ALICE = "sip:alice@primary.example"


def _system(peers: tuple[Peer, ...], gateway: GatewayProfile | None = None) -> SystemProfile:
    return SystemProfile(
        domain="primary.example",
        migration_psi="sip:migration@primary.example",
        idms=idms_of("primary.example"),
        servers=(),
        gateways=() if gateway is None else (gateway,),
        peers=peers,
        users=PrimaryPolicy(()),
        visitors=VisitorPolicy(),
    )


@pytest.mark.parametrize(
    ("written", "seen"),
    [
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("2001:DB8:0:0:0:0:0:5", "2001:db8::5"),
        ("::ffff:127.0.9.2", "127.0.9.2"),
        ("127.0.9.2", "127.0.9.2"),
        ("Partner.Example", "partner.example"),
    ],
)
def test_addresses_compare_in_canonical_form(written: str, seen: str) -> None:
    assert canonical_host(written) == canonical_host(seen)
    peer = Peer("partner.example", HostPort(written, 5060))
    border = Border(_system((peer,)))
    assert border.peer_at(TransportAddress("UDP", seen, 40000)) == peer


def test_without_a_gateway_only_peers_cross_and_with_one_only_the_gateway() -> None:
    direct = Border(_system((PARTNER,)))
    assert direct.cross_system_sender(TransportAddress("UDP", "127.0.9.2", 1)) == (PARTNER, None)
    assert direct.cross_system_sender(TransportAddress("UDP", "127.0.9.3", 1))[1] is not None
    gateway = GatewayProfile("gw", HostPort("127.0.1.1", 5060), HostPort("127.0.9.1", 5060))
    bordered = Border(_system((PARTNER,), gateway))
    assert bordered.cross_system_sender(TransportAddress("TCP", "127.0.1.1", 40001)) == (
        None,
        None,
    )
    # the peer itself, straight to the server past the gateway, is refused
    assert bordered.cross_system_sender(TransportAddress("UDP", "127.0.9.2", 5060))[1]


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (MigrationRequest(ALICE, partner_system="partner.example"), False),
        (MigrationRequest(ALICE, partner_system="PARTNER.example"), False),
        (MigrationRequest(ALICE, partner_system="other.example"), True),
        (MigrationRequest(ALICE, temporary_id="sip:t-1@partner.example"), False),
        (MigrationRequest(ALICE, temporary_id="sip:t-1@east.partner.example"), False),
        (MigrationRequest(ALICE, temporary_id="sip:t-1@other.example"), True),
        (MigrationRequest(ALICE, temporary_id="sip:t-1@evilpartner.example"), True),
        (MigrationRequest(ALICE, partner_address="sip:127.0.9.2:5060"), False),
        (MigrationRequest(ALICE, partner_address="sip:gw.partner.example"), False),
        (MigrationRequest(ALICE, partner_address="sip:127.0.9.9:5060"), True),
        (MigrationRequest(ALICE, partner_address="sip:gw.other.example"), True),
        (MigrationRelease(ALICE, "other.example"), True),
        (MigrationRelease(ALICE, "partner.example", "sip:t-9@other.example"), True),
    ],
)
def test_a_peer_speaks_only_for_itself(
    body: MigrationRequest | MigrationRelease, refused: bool
) -> None:
    assert (claim_refusal(body, PARTNER) is not None) == refused


def test_a_release_must_name_this_partner_and_come_from_the_users_primary() -> None:
    primary = Peer("primary.example", HostPort("127.0.9.1", 5060))
    other = Peer("other.example", HostPort("127.0.9.7", 5060))
    ok = MigrationRelease(ALICE, "partner.example", "sip:t-1@partner.example")
    assert release_refusal(ok, primary, "partner.example") is None
    assert release_refusal(ok, None, "partner.example") is None  # through our gateway
    assert release_refusal(ok, other, "partner.example") is not None
    elsewhere = MigrationRelease(ALICE, "partner2.example", "sip:t-1@partner.example")
    assert release_refusal(elsewhere, primary, "partner.example") is not None


def test_temporary_identities_carry_128_random_bits() -> None:
    ids = {new_temporary_id("partner.example") for _ in range(2000)}
    assert len(ids) == 2000
    for temporary_id in ids:
        match = re.fullmatch(r"sip:t-([a-z2-7]{26})@partner\.example", temporary_id)
        assert match is not None  # 26 base32 characters: 130 bits of room, 128 used


@given(st.ip_addresses())
def test_any_address_is_found_however_it_is_written(address: object) -> None:
    text = str(address)
    exploded = getattr(address, "exploded", text)
    peer = Peer("partner.example", HostPort(exploded, 5060))
    assert Border(_system((peer,))).peer_at(TransportAddress("UDP", text, 5060)) == peer


def test_a_host_name_peer_is_resolved_when_the_profile_loads(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "sip_profiles"
    text = (
        (root / "direct.yaml")
        .read_text()
        .replace("keys/", f"{root}/keys/")
        .replace("certs/", f"{root}/certs/")
    )
    named = tmp_path / "named.yaml"
    named.write_text(text.replace("address: 127.0.2.10:5060", "address: localhost:5060"))
    primary = load_deployment(named).system("primary.example")
    assert primary is not None
    assert primary.peers[0].addresses[0] == "127.0.0.1"
    assert primary.peers[0].target == TransportAddress("UDP", "127.0.0.1", 5060)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(text.replace("address: 127.0.2.10:5060", "address: nowhere.invalid:5060"))
    with pytest.raises(
        ProfileError, match=r"peers\[0\]\.address: cannot resolve 'nowhere\.invalid'"
    ):
        load_deployment(unknown)
