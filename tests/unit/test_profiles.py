"""Profiles load into typed values; a wrong file names the file, the key path and the fault."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcmig.profiles import ProfileError, load_deployment
from tests.support.tools import ROOT

PROFILES = ROOT / "sip_profiles"


def test_demo_profile_has_the_documented_nodes() -> None:
    d = load_deployment(PROFILES / "demo.yaml")
    primary, partner = d.system("primary.example"), d.system("partner.example")
    assert primary is not None and partner is not None
    assert str(primary.servers[0].listen) == "127.0.1.10:5060"
    (primary_gw,), (partner_gw,) = primary.gateways, partner.gateways
    assert (str(primary_gw.internal), str(primary_gw.external)) == (
        "127.0.1.1:5060",
        "127.0.9.1:5060",
    )
    assert (str(partner_gw.external), str(partner_gw.internal)) == (
        "127.0.9.2:5060",
        "127.0.2.1:5060",
    )
    assert str(partner.servers[0].listen) == "127.0.2.10:5060"
    users = primary.users
    assert users.may_migrate("alice", "partner.example") and users.may_migrate(
        "erin", "partner.example"
    )
    assert users.is_user("bob") and not users.may_migrate("bob", "partner.example")
    assert users.may_migrate("u000000", "partner.example") and users.may_migrate(
        "u999999", "partner.example"
    )
    assert not users.is_user("dave")
    assert partner.visitors.accepts_system(
        "primary.example"
    ) and not partner.visitors.accepts_system("x.example")
    assert not partner.visitors.accepts_user("sip:carol@primary.example")
    assert primary.migration_psi == "sip:migration@primary.example"


def test_direct_profile_has_no_gateways() -> None:
    d = load_deployment(PROFILES / "direct.yaml")
    assert all(not s.gateways for s in d.systems)


def _write(tmp_path: Path, mutate, profile: str = "demo.yaml") -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((PROFILES / profile).read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    for folder in ("keys", "certs"):
        (tmp_path / folder).mkdir(exist_ok=True)
        for key in (PROFILES / folder).glob("*"):
            (tmp_path / folder / key.name).write_bytes(key.read_bytes())
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [
        (
            lambda d: d["systems"][0]["servers"][0].update(listen="127.0.1.10:99999"),
            "systems[0].servers[0].listen",
            "port",
        ),
        (lambda d: d["systems"][0].update(domian="x"), "systems[0]", "unknown key 'domian'"),
        (
            lambda d: d["systems"][1]["visitors"].update(default="maybe"),
            "systems[1].visitors.default",
            "accept or refuse",
        ),
        (
            lambda d: d["systems"][0]["users"][2].update(range="u9-u1"),
            "systems[0].users[2].range",
            "backwards",
        ),
        (
            lambda d: d["systems"][0]["idms"].update(keys=["keys/missing.pem"]),
            "systems[0].idms.keys[0]",
            "no such file",
        ),
        (
            lambda d: d["systems"][0]["idms"].update(issuer="https://idms.primary.example"),
            "systems[0].idms.issuer",
            "https://<IP address>:<port>",
        ),
        (
            lambda d: d["systems"][0]["idms"].update(issuer="http://127.0.1.20:8443"),
            "systems[0].idms.issuer",
            "https://<IP address>:<port>",
        ),
        (
            lambda d: d["systems"][0]["idms"].update(keys=[]),
            "systems[0].idms.keys",
            "at least one signing key",
        ),
        (
            lambda d: d["systems"][0]["idms"].update(accounts={"alice": "plaintext"}),
            "systems[0].idms.accounts",
            "Argon2",
        ),
        (
            lambda d: d["systems"][0]["idms"].update(kid="primary-idms-demo"),
            "systems[0].idms",
            "unknown key 'kid'",
        ),
        (
            lambda d: d["systems"][1]["servers"][0].update(listen="127.0.1.10:5060"),
            "systems",
            "both listen",
        ),
        (
            lambda d: d["systems"][0].update(
                timeouts={"server": 1, "gateway_outbound": 2, "gateway_inbound": 3}
            ),
            "systems[0].timeouts",
            "504",
        ),
        (
            lambda d: d["systems"][0]["users"][0].update(migrate_to=["not a domain"]),
            "systems[0].users[0].migrate_to[0]",
            "domain",
        ),
        (lambda d: d.pop("deployment"), "deployment", "missing"),
    ],
)
def test_errors_name_file_key_path_and_fault(tmp_path: Path, mutate, where: str, what: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate)
    with pytest.raises(ProfileError) as info:
        load_deployment(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {where}:"), message
    assert what in message


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("systems: [unclosed")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_deployment(bad)
    with pytest.raises(ProfileError, match="cannot read"):
        load_deployment(tmp_path / "nope.yaml")


KEYS = st.sampled_from(
    [
        "deployment",
        "systems",
        "clients",
        "domain",
        "idms",
        "servers",
        "gateway",
        "peers",
        "users",
        "visitors",
        "name",
        "listen",
        "internal",
        "external",
        "address",
        "names",
        "range",
        "migrate_to",
        "default",
        "key",
        "tls",
        "calls",
    ]
)
yaml_leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=20))
yaml_trees = st.recursive(
    yaml_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        # YAML keys may be numbers too (found by the atheris run: was a TypeError)
        st.dictionaries(KEYS | st.text(max_size=8) | st.integers(0, 9), children, max_size=6),
    ),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(yaml_trees)
def test_any_document_gives_a_deployment_or_a_profile_error(
    tmp_path_factory: pytest.TempPathFactory, tree: object
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text(yaml.safe_dump(tree))
    with contextlib.suppress(ProfileError):
        load_deployment(path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_give_a_deployment_or_a_profile_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_bytes(data)
    with contextlib.suppress(ProfileError):
        load_deployment(path)


def test_a_key_that_is_not_a_name_is_a_profile_error(tmp_path: Path) -> None:
    text = (PROFILES / "demo.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(
        text.replace(
            "keys: [keys/primary-idms.pem]", "keys: [keys/primary-idms.pem]\n      5060: x"
        )
    )
    with pytest.raises(ProfileError, match="key 5060 is not a name"):
        load_deployment(path)


def _serves(system: int, server: int, **serves: object):  # type: ignore[no-untyped-def]
    return lambda d: d["systems"][system]["servers"][server].update(serves=serves)


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [
        (_serves(0, 1, names=["alice"]), "systems[0].servers", "both serve alice"),
        (
            _serves(0, 1, names=["carol", "erin"], ranges=["u400000-u999999"]),
            "systems[0].servers",
            "both serve u400000",
        ),
        (
            _serves(0, 1, names=["carol", "erin"], ranges=["u500001-u999999"]),
            "systems[0].servers",
            "no server serves the user u500000",
        ),
        (_serves(0, 1, names=["carol"], patterns=["u*"]), "systems[0].servers", "both serve u"),
        (_serves(0, 1, patterns=["e*r"]), "systems[0].servers[1].serves.patterns[0]", "prefix"),
        (
            lambda d: d["systems"][0]["servers"][1].pop("serves"),
            "systems[0].servers[1]",
            "each says which users it serves",
        ),
        (
            lambda d: d["systems"][0]["gateways"][1].update(
                peers=["partner.example", "partner2.example"]
            ),
            "systems[0].gateways",
            "both interface to partner.example",
        ),
        (
            lambda d: d["systems"][0]["gateways"][1].update(peers=["elsewhere.example"]),
            "systems[0].peers[1].domain",
            "no gateway interfaces to partner2.example",
        ),
        (
            lambda d: d["systems"][0]["gateways"][0]["peers"].append("elsewhere.example"),
            "systems[0].gateways",
            "elsewhere.example, which is not in peers",
        ),
        (
            lambda d: d["systems"][0].update(gateway=d["systems"][0]["gateways"][0]),
            "systems[0]",
            "give gateway (one, for every peer) or gateways",
        ),
        (
            lambda d: d["systems"][1].pop("temporary_ids"),
            "systems[1]",
            "needs temporary_ids.keys",
        ),
        (
            lambda d: d["systems"][1].update(temporary_ids={"keys": ["keys/primary-idms.pem"]}),
            "systems[1].temporary_ids.keys[0]",
            "base64",
        ),
        (
            lambda d: d["systems"][0]["peers"][0].update(sources=["no-such-host.invalid"]),
            "systems[0].peers[0].sources[0]",
            "cannot resolve",
        ),
    ],
)
def test_deployed_systems_errors(tmp_path: Path, mutate, where: str, what: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate, "deployed.yaml")
    with pytest.raises(ProfileError) as info:
        load_deployment(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {where}:"), message
    assert what in message


def test_deployed_profile_loads_servers_gateways_and_sources() -> None:
    d = load_deployment(PROFILES / "deployed.yaml")
    primary, partner = d.system("primary.example"), d.system("partner.example")
    assert primary is not None and partner is not None
    assert [s.name for s in primary.servers] == ["primary-a", "primary-b"]
    assert primary.server_for("u499999").name == "primary-a"  # type: ignore[union-attr]
    assert primary.server_for("u500000").name == "primary-b"  # type: ignore[union-attr]
    assert primary.gateway_for("partner2.example").name == "primary-gw2"  # type: ignore[union-attr]
    peer = primary.peer("partner.example")
    assert peer is not None and peer.addresses == ("127.0.2.10", "127.0.2.11")
    assert not partner.gateways and partner.temporary_ids is not None
