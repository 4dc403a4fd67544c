"""The migration procedure end to end on loopback, with gateways and without (PROFILE 2)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcmig.commands.demo import forged_token
from mcmig.mc.body import CONTENT_TYPE, MigrationRequest, encode
from mcmig.mc.tokens import issue_token
from mcmig.profiles import Deployment
from mcmig.sip.message import Request
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.timers import TimerConfig
from mcmig.sip.uri import parse_sip_uri
from tests.support.lab import Lab

ALICE = "sip:alice@primary.example"


@pytest.fixture(
    params=["sip_profiles/demo.yaml", "sip_profiles/direct.yaml"], ids=["gateways", "direct"]
)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(request.param, tmp_path)
    lab.start()
    yield lab
    lab.close()


def _gateways(lab: Lab) -> bool:
    return any(s.gateways for s in lab.deployment.systems)


def test_alice_is_accepted_and_recorded(lab: Lab) -> None:
    outcome = lab.migrate(ALICE)
    assert (outcome.status, outcome.cause) == (200, None)
    (record,) = lab.registry()
    assert record.mc_service_id == ALICE and record.partner_system == "partner.example"
    expected_address = "sip:127.0.9.2:5060" if _gateways(lab) else "sip:127.0.2.10:5060"
    assert record.partner_address == expected_address
    assert record.temporary_id is not None and record.temporary_id.endswith("@partner.example")
    assert lab.trace.originator(200) == "primary-server"


def test_temporary_identity_from_the_token_is_used(lab: Lab) -> None:
    system = lab.deployment.system("partner.example")
    assert system is not None
    from mcmig.profiles.keys import idms_key

    token = issue_token(
        idms_key(system), "partner.example", ALICE, temporary_id="sip:t-fixed@partner.example"
    )
    assert lab.migrate(ALICE, token).status == 200
    assert lab.registry()[0].temporary_id == "sip:t-fixed@partner.example"


def test_repeat_is_idempotent(lab: Lab) -> None:
    system = lab.deployment.system("partner.example")
    assert system is not None
    from mcmig.profiles.keys import idms_key

    key = idms_key(system)
    token = issue_token(key, "partner.example", ALICE, temporary_id="sip:t-same@partner.example")
    assert lab.migrate(ALICE, token).status == 200
    first = lab.registry()
    # a repeat with the same token (a bearer token, good until it expires)
    assert lab.migrate(ALICE, token).status == 200
    assert lab.registry() == first  # same answer, one record, first 'since' kept


def _forged(lab: Lab, user: str) -> str:
    return forged_token(lab.deployment, user)


@pytest.mark.parametrize(
    ("user", "token", "status", "cause", "by_gw", "by_direct"),
    [
        (
            "sip:bob@primary.example",
            None,
            403,
            "migration-not-permitted",
            "primary-server",
            "primary-server",
        ),
        (
            "sip:carol@primary.example",
            None,
            403,
            "user-not-permitted-by-partner",
            "partner-server",
            "partner-server",
        ),
        ("sip:dave@primary.example", None, 404, "unknown-user", "primary-gw", "primary-server"),
        (
            "sip:zed@elsewhere.example",
            None,
            403,
            "primary-system-not-permitted",
            "partner-server",
            "partner-server",
        ),
        (
            "sip:erin@primary.example",
            "forged",
            403,
            "invalid-credentials",
            "partner-server",
            "partner-server",
        ),
        (
            "sip:erin@primary.example",
            "expired",
            403,
            "invalid-credentials",
            "partner-server",
            "partner-server",
        ),
        (
            "sip:erin@primary.example",
            "alice's",
            403,
            "invalid-credentials",
            "partner-server",
            "partner-server",
        ),
    ],
)
def test_refusals_carry_status_cause_warning_and_come_from_the_right_node(
    lab: Lab, user: str, token: str | None, status: int, cause: str, by_gw: str, by_direct: str
) -> None:
    if token == "forged":
        token = _forged(lab, user)
    elif token == "expired":
        from mcmig.profiles.keys import idms_key

        system = lab.deployment.system("partner.example")
        assert system is not None
        token = issue_token(idms_key(system), "partner.example", user, ttl=-120)
    elif token == "alice's":
        token = lab.token(ALICE)
    outcome = lab.migrate(user, token)
    assert (outcome.status, outcome.cause) == (status, cause)
    answering_system = (
        "primary.example"
        if (by_gw if _gateways(lab) else by_direct).startswith("primary")
        else "partner.example"
    )
    assert outcome.agent == answering_system  # Warning 399 <public name of the answering system>
    assert lab.trace.originator(status) == (by_gw if _gateways(lab) else by_direct)
    assert lab.registry() == []


def _send_raw(
    lab: Lab, request: Request, to: TransportAddress
) -> tuple[int, str | None, str | None]:
    response = lab.run(lab.client.send_request(request, to))
    return response.status, response.get("Warning"), response.get("Accept")


def _leg1(body: bytes, content_type: str = CONTENT_TYPE) -> Request:
    return make_request(
        "MESSAGE",
        parse_sip_uri("sip:migration@partner.example"),
        from_uri=ALICE,
        to_uri="sip:migration@partner.example",
        body=body,
        content_type=content_type,
    )


PARTNER_SERVER = TransportAddress("UDP", "127.0.2.10", 5060)


def test_bad_body_is_400_bad_request(lab: Lab) -> None:
    status, warning, _ = _send_raw(lab, _leg1(b"<migration>broken"), PARTNER_SERVER)
    assert status == 400 and warning is not None and '"bad-request:' in warning


def test_wrong_content_type_is_415_with_accept(lab: Lab) -> None:
    status, _, accept = _send_raw(lab, _leg1(b"hello", "text/plain"), PARTNER_SERVER)
    assert (status, accept) == (415, CONTENT_TYPE)


def test_missing_token_is_400(lab: Lab) -> None:
    status, warning, _ = _send_raw(lab, _leg1(encode(MigrationRequest(ALICE))), PARTNER_SERVER)
    assert status == 400 and warning is not None and "access-token" in warning


def test_max_forwards_exhausted_is_483(lab: Lab) -> None:
    request = _leg1(encode(MigrationRequest(ALICE, access_token=lab.token(ALICE))))
    request.set("Max-Forwards", "0")
    assert _send_raw(lab, request, PARTNER_SERVER)[0] == 483
    assert lab.registry() == []


def test_gateway_refuses_non_peers_with_403_peer_not_authorized(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path, client_host="127.0.7.7")
    lab.start()
    try:
        request = make_request(
            "MESSAGE",
            parse_sip_uri(ALICE),
            from_uri="sip:migration@partner.example",
            to_uri=ALICE,
            body=encode(
                MigrationRequest(
                    ALICE, partner_system="partner.example", partner_address="sip:127.0.7.7:5060"
                )
            ),
            content_type=CONTENT_TYPE,
        )
        status, warning, _ = _send_raw(lab, request, TransportAddress("UDP", "127.0.9.1", 5060))
        assert status == 403 and warning is not None and "peer-not-authorized" in warning
        assert lab.registry() == []
    finally:
        lab.close()


def _variant(lab_profile: str, **system_changes: object) -> Deployment:
    from mcmig.profiles import load_deployment
    from tests.support.tools import ROOT

    deployment = load_deployment(ROOT / lab_profile)
    systems = tuple(
        dataclasses.replace(s, **system_changes.get(s.domain, {})) for s in deployment.systems
    )  # type: ignore[arg-type]
    return dataclasses.replace(deployment, systems=systems)


@pytest.mark.parametrize("profile", ["sip_profiles/demo.yaml", "sip_profiles/direct.yaml"])
def test_no_route_to_the_primary_system_is_404_unknown_mc_system(
    tmp_path: Path, profile: str
) -> None:
    from mcmig.mc.policy import VisitorPolicy

    deployment = _variant(
        profile, **{"partner.example": {"visitors": VisitorPolicy(default_accept=True)}}
    )
    lab = Lab(deployment, tmp_path)
    lab.start()
    try:
        outcome = lab.migrate("sip:zed@elsewhere.example")
        assert (outcome.status, outcome.cause) == (404, "unknown-mc-system")
        # The server knows its system's peers: no gateway is asked about a stranger.
        assert lab.trace.originator(404) == "partner-server"
    finally:
        lab.close()


@pytest.mark.parametrize("profile", ["sip_profiles/demo.yaml", "sip_profiles/direct.yaml"])
def test_primary_server_down_gives_504_before_any_timeout(tmp_path: Path, profile: str) -> None:
    """Nothing listens at the primary server's UDP port: the kernel answers the
    nearest B2BUA's datagrams with ICMP port unreachable, which ends that leg
    once it has tried for the grace (2 s; the retransmission at 3.5 s brings the
    error that does it), before the B2BUA's own timeout (4 s with gateways,
    8 s without) and far before the client's Timer F (32 s)."""
    lab = Lab(profile, tmp_path)
    everything_but_primary = {n for n in lab.deployment.node_names() if n != "primary-server"}
    lab.start(only=everything_but_primary)
    try:
        started = time.monotonic()
        outcome = lab.migrate(ALICE)
        elapsed = time.monotonic() - started
        assert (outcome.status, outcome.cause) == (504, "timeout")
        assert outcome.text == "the next hop could not be reached"
        assert 2.0 <= elapsed < 3.9, elapsed
        assert lab.trace.originator(504) == (
            "primary-gw" if "demo" in profile else "partner-server"
        )
    finally:
        lab.close()


def test_primary_server_restart_keeps_its_records(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path)
    lab.start()
    try:
        assert lab.migrate(ALICE).status == 200
        before = lab.registry()
        lab.stop()
        lab.start()
        assert lab.registry() == before
        assert lab.migrate("sip:erin@primary.example").status == 200
        assert [r.mc_service_id for r in lab.registry()] == [ALICE, "sip:erin@primary.example"]
    finally:
        lab.close()


def test_many_users_from_the_numbered_range(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path)
    lab.start(timers=TimerConfig())
    try:
        users = [f"sip:u{n:06d}@primary.example" for n in (0, 1, 500000, 999999)]
        assert all(lab.migrate(u).status == 200 for u in users)
        assert lab.migrate("sip:u1000000@primary.example").cause == "unknown-user"
        assert len(lab.registry()) == 4
    finally:
        lab.close()


def test_nothing_internal_crosses_between_gateways(tmp_path: Path) -> None:
    """Every byte sent on the external link (127.0.9.x) is free of internal addresses,
    node names and Call-IDs; the full capture-based proof comes with TLS and tshark."""
    lab = Lab("sip_profiles/demo.yaml", tmp_path)
    lab.start()
    try:
        inner_call_ids: set[str] = set()
        external: list[bytes] = []
        for user, token in [
            (ALICE, None),
            ("sip:bob@primary.example", None),
            ("sip:dave@primary.example", None),
            ("sip:erin@primary.example", "forged"),
            ("sip:carol@primary.example", None),
        ]:
            lab.migrate(user, _forged(lab, user) if token else None)
            for entry in lab.trace.entries:
                if entry.source.host.startswith("127.0.9.") and entry.destination.host.startswith(
                    "127.0.9."
                ):
                    external.append(entry.wire)
                else:
                    inner_call_ids.add(entry.message.call_id)
        assert len(external) >= 6
        for wire in external:
            for secret in (
                b"127.0.1.",
                b"127.0.2.",
                b"primary-server",
                b"partner-server",
                b"access-token",
                b"eyJ",
            ):
                assert secret not in wire, (secret, wire)
            for call_id in inner_call_ids:
                assert call_id.encode() not in wire
    finally:
        lab.close()


def test_gateway_sheds_load_with_503_overloaded_when_its_leg_table_is_full(tmp_path: Path) -> None:
    lab = Lab("sip_profiles/demo.yaml", tmp_path)
    lab.start()
    try:
        assert lab.running is not None
        lab.running.gateways["partner-gw"].MAX_IN_FLIGHT = 0  # type: ignore[misc]
        outcome = lab.migrate(ALICE)
        assert (outcome.status, outcome.cause) == (503, "overloaded")
        assert lab.trace.originator(503) == "partner-gw"
        lab.running.gateways["partner-gw"].MAX_IN_FLIGHT = 10  # type: ignore[misc]
        assert lab.migrate(ALICE).status == 200
        assert lab.running.gateways["partner-gw"].in_flight == 0
    finally:
        lab.close()


def test_a_bearer_token_may_be_presented_again(lab: Lab) -> None:
    # RFC 6750 / TS 33.180: the same token in two transactions gets the same outcome.
    token = lab.token("sip:erin@primary.example")
    assert lab.migrate("sip:erin@primary.example", token).status == 200
    before = lab.registry()
    outcome = lab.migrate("sip:erin@primary.example", token)
    assert (outcome.status, outcome.cause) == (200, None)
    assert lab.registry() == before


def _claim(
    lab: Lab, partner_system: str, to: TransportAddress
) -> tuple[int, str | None, str | None]:
    request = make_request(
        "MESSAGE",
        parse_sip_uri(ALICE),
        from_uri=f"sip:migration@{partner_system}",
        to_uri=ALICE,
        body=encode(
            MigrationRequest(
                ALICE, partner_system=partner_system, partner_address="sip:127.0.9.2:5060"
            )
        ),
        content_type=CONTENT_TYPE,
    )
    return _send_raw(lab, request, to)


def test_a_peer_cannot_speak_for_another_system(tmp_path: Path) -> None:

    deployment = _variant("sip_profiles/demo.yaml")
    lab = Lab(deployment, tmp_path, client_host="127.0.9.2")  # we stand where partner-gw stands
    lab.start(only={"primary-gw", "primary-server"})
    try:
        status, warning, _ = _claim(
            lab, "other.example", TransportAddress("UDP", "127.0.9.1", 5060)
        )
        assert status == 403 and warning is not None and "peer-not-authorized" in warning
        assert lab.registry() == []
        assert _claim(lab, "partner.example", TransportAddress("UDP", "127.0.9.1", 5060))[0] == 200
    finally:
        lab.close()
    direct = Lab("sip_profiles/direct.yaml", tmp_path / "direct", client_host="127.0.7.8")
    direct.start(only={"primary-server"})
    try:
        # without gateways the primary checks that the claim comes from that partner's address
        status, warning, _ = _claim(
            direct, "partner.example", TransportAddress("UDP", "127.0.1.10", 5060)
        )
        assert status == 403 and warning is not None and "peer-not-authorized" in warning
        assert direct.registry() == []
    finally:
        direct.close()
