"""Routing rules over generated deployments (hypothesis), on the in-memory network.

Deployments of 2 to 5 systems, each with 1 to 3 servers (users spread over
them) and 0 to 2 gateways (peers spread over them), so that every pairing
occurs: gateways on both sides, on neither, on one side only. Arbitrary user
policies, visitor policies and peer lists; sequences of migrate / release /
data / originate. Invariants, checked against an independent model:
  1. a migration is accepted by the user's own server, or refused by exactly
     the node that owns the failing check, with the PROFILE cause;
  2. every response returns to the node that sent the request;
  3. each server's registry holds, for each of its users, exactly the last
     accepted migration not since released (the user's own server, no other);
  4. data to a migrated user reaches it through its primary system and its
     current partner system only;
  5. with gateways, nothing of a system's inside reaches another system;
  6. a gateway sends only to the peer systems it interfaces to;
  7. data a migrated user originates reaches its target in any system that
     routes from the partner, showing the identity PROFILE 4.2 names.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mcmig.capture.trace import Trace
from mcmig.commands.migrate import token_for
from mcmig.mc.policy import PrimaryPolicy, UserRule, UserSelector, VisitorPolicy
from mcmig.node.runtime import SipNode
from mcmig.nodes.deployment import RunningDeployment, start_deployment
from mcmig.nodes.topology import entry_server
from mcmig.nodes.ue import UserEquipment, send_data
from mcmig.profiles.keys import profile_keys
from mcmig.profiles.model import (
    ClientProfile,
    Deployment,
    GatewayProfile,
    HostPort,
    Peer,
    ServerProfile,
    SystemProfile,
    TemporaryIdKeys,
)
from mcmig.sip.message import Request
from mcmig.sip.uri import parse_sip_uri
from mcmig.transport.memory import MemoryNetwork
from tests.support.idms import idms_of
from tests.support.tools import ROOT

KEY = ROOT / "sip_profiles" / "keys" / "primary-idms.pem"
USERS = ["u1", "u2", "u3"]
HOME_USER = "h"  # in every system, authorized at home: a target for originated data


def domain(i: int) -> str:
    return f"s{i}.example"


def inside(i: int) -> str:
    return f"127.0.{30 + i}."


def server_name(i: int, k: int) -> str:
    return f"s{i}-srv{k}"


def gateway_name(i: int, g: int) -> str:
    return f"s{i}-gw{g}"


def external(i: int, g: int) -> HostPort:
    return HostPort(f"127.0.{29 - g}.{i}", 5060)


@dataclass(frozen=True)
class Spec:
    systems: int
    servers: dict[int, int]  # system -> number of servers
    home_server: dict[tuple[int, str], int]  # (system, user) -> the server that serves it
    gateway_of: dict[int, dict[int, int]]  # system -> peer -> gateway index ({} without gateways)
    migrate_to: dict[tuple[int, str], frozenset[str]]  # (system, user) -> partner domains or {"*"}
    accepts: dict[int, frozenset[int]]  # partner -> primary systems it accepts
    refused: dict[int, frozenset[tuple[int, str]]]  # partner -> visitors refused by name
    peers: dict[int, frozenset[int]]  # system -> systems it lists as peers

    def gateways(self, i: int) -> int:
        return len(set(self.gateway_of[i].values()))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(2, 5))
    ids = list(range(1, n + 1))
    others = {i: [j for j in ids if j != i] for i in ids}
    # Weighted toward what succeeds, so that most examples migrate and originate.
    likely = st.sampled_from([True, True, True, False])
    migrate_to = {}
    for i in ids:
        for u in USERS:
            if draw(st.booleans()):
                migrate_to[(i, u)] = frozenset({"*"})
            else:
                migrate_to[(i, u)] = frozenset(domain(j) for j in others[i] if draw(likely))
    accepts = {i: frozenset(j for j in others[i] if draw(likely)) for i in ids}
    visitors = [(j, u) for j in ids for u in USERS]
    refused = {
        i: frozenset(draw(st.sets(st.sampled_from([v for v in visitors if v[0] != i]), max_size=1)))
        for i in ids
    }
    links: dict[int, set[int]] = {i: set() for i in ids}
    for i in ids:
        for j in others[i]:
            if i < j:
                kind = draw(st.sampled_from(["both", "both", "both", "from", "to", "none"]))
                if kind in ("both", "from"):
                    links[i].add(j)
                if kind in ("both", "to"):
                    links[j].add(i)
    peers = {i: frozenset(links[i]) for i in ids}
    servers = {i: draw(st.integers(1, 3)) for i in ids}
    home_server = {
        (i, u): draw(st.integers(0, servers[i] - 1)) for i in ids for u in [*USERS, HOME_USER]
    }
    gateway_of: dict[int, dict[int, int]] = {}
    for i in ids:
        count = draw(st.integers(0, 2))
        # Gateway indices in order of first use, so that none interfaces to nothing.
        chosen = [draw(st.integers(0, count - 1)) if count else -1 for _ in sorted(peers[i])]
        order = {g: k for k, g in enumerate(dict.fromkeys(chosen))}
        gateway_of[i] = (
            {j: order[g] for j, g in zip(sorted(peers[i]), chosen, strict=True)} if count else {}
        )
    return Spec(n, servers, home_server, gateway_of, migrate_to, accepts, refused, peers)


def server_host(i: int, k: int) -> HostPort:
    return HostPort(f"{inside(i)}{10 + k}", 5060)


def address_of(spec: Spec, sender: int, target: int) -> Peer:
    """How ``sender`` reaches ``target``: the gateway there that interfaces to it (or
    gateway 0, which will refuse a stranger), or the target's first server."""
    gateways = spec.gateway_of[target]
    if gateways:
        return Peer(domain(target), external(target, gateways.get(sender, 0)))
    hosts = tuple(server_host(target, k).host for k in range(spec.servers[target]))
    return Peer(domain(target), server_host(target, 0), addresses=hosts)


def build(spec: Spec) -> Deployment:
    systems = []
    for i in range(1, spec.systems + 1):
        servers = tuple(
            ServerProfile(
                server_name(i, k),
                server_host(i, k),
                None
                if spec.servers[i] == 1
                else UserSelector(
                    frozenset(u for u in [*USERS, HOME_USER] if spec.home_server[(i, u)] == k)
                ),
            )
            for k in range(spec.servers[i])
        )
        gateways = tuple(
            GatewayProfile(
                gateway_name(i, g),
                HostPort(f"{inside(i)}{1 + g}", 5060),
                external(i, g),
                peers=frozenset(domain(j) for j, h in spec.gateway_of[i].items() if h == g),
            )
            for g in range(spec.gateways(i))
        )
        rules = (
            *(UserRule(UserSelector(frozenset({u})), spec.migrate_to[(i, u)]) for u in USERS),
            UserRule(UserSelector(frozenset({HOME_USER})), frozenset()),
        )
        systems.append(
            SystemProfile(
                domain=domain(i),
                migration_psi=f"sip:migration@{domain(i)}",
                idms=idms_of(domain(i), KEY, 8443 + i),
                servers=servers,
                gateways=gateways,
                peers=tuple(address_of(spec, i, j) for j in sorted(spec.peers[i])),
                users=PrimaryPolicy(rules),
                visitors=VisitorPolicy(
                    default_accept=False,
                    accept_systems=frozenset(domain(j) for j in spec.accepts[i]),
                    refuse_users=frozenset(f"sip:{u}@{domain(j)}" for j, u in spec.refused[i]),
                ),
                temporary_ids=TemporaryIdKeys((bytes([i]) * 32,)) if spec.servers[i] > 1 else None,
            )
        )
    clients = tuple(
        ClientProfile(
            f"ue-{i}-{u}",
            f"sip:{u}@{domain(i)}",
            HostPort(f"127.0.26.{10 * i + k}", 5062),
        )
        for i in range(1, spec.systems + 1)
        for k, u in enumerate([*USERS, HOME_USER])
    )
    return Deployment("generated", ROOT / "generated.yaml", tuple(systems), clients)


def user_server(spec: Spec, i: int, user: str) -> str:
    return server_name(i, spec.home_server[(i, user)])


def border_node(spec: Spec, target: int, sender: int) -> str:
    """The node of ``target`` that first hears from ``sender``."""
    if spec.gateway_of[target]:
        return gateway_name(target, spec.gateway_of[target].get(sender, 0))
    return server_name(target, 0)


def expected_migration(
    spec: Spec, deployment: Deployment, home: int, user: str, partner: int
) -> tuple[int, str | None, str]:
    """The model: (status, cause, node that answers) for a migration request."""
    system = deployment.system(domain(partner))
    assert system is not None
    entry = entry_server(system, parse_sip_uri(f"sip:{user}@{domain(home)}")).name
    if home not in spec.accepts[partner]:
        return 403, "primary-system-not-permitted", entry
    if (home, user) in spec.refused[partner]:
        return 403, "user-not-permitted-by-partner", entry
    if home not in spec.peers[partner]:
        return 404, "unknown-mc-system", entry
    if partner not in spec.peers[home]:
        # a gateway refuses strangers; without one, the server they reach does
        return 403, "peer-not-authorized", border_node(spec, home, partner)
    allowed = spec.migrate_to[(home, user)]
    if "*" not in allowed and domain(partner) not in allowed:
        return 403, "migration-not-permitted", user_server(spec, home, user)
    return 200, None, user_server(spec, home, user)


def expected_origination(spec: Spec, home: int, where: int, target: int) -> tuple[int, str]:
    """(status, identity shown) for data from a user of ``home`` migrated to ``where``
    to the home user of ``target``."""
    if target in (where, home):
        return 200, "mc-service-id" if target == home else "temporary-id"
    if target not in spec.peers[where]:
        return 404, ""
    if where not in spec.peers[target] and spec.gateway_of[target]:
        return 403, ""  # a stranger at the gateway; servers without one take data from anyone
    return 200, "temporary-id"


def _operations(kinds: list[str], least: int, most: int) -> st.SearchStrategy[list[Op]]:
    return st.lists(
        st.tuples(
            st.sampled_from(kinds), st.integers(1, 5), st.sampled_from(USERS), st.integers(1, 5)
        ),
        min_size=least,
        max_size=most,
    )


Op = tuple[str, int, str, int]
# Two migrations first, so that most examples have migrated users to route to and from.
operations = st.builds(
    lambda first, rest: first + rest,
    _operations(["migrate"], 2, 2),
    _operations(["migrate", "migrate", "originate", "originate", "data", "release"], 1, 8),
)


# 40 generated deployments in ./scripts/test (6 in its pure-Python rerun, the
# "quick" profile); HYPOTHESIS_PROFILE=long runs 500.
EXAMPLES = {"long": 500, "quick": 6}.get(os.environ.get("HYPOTHESIS_PROFILE", ""), 40)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), operations)
def test_routing_rules(spec: Spec, ops: list[tuple[str, int, str, int]]) -> None:
    deployment = build(spec)
    with tempfile.TemporaryDirectory() as state:
        asyncio.run(_run(spec, deployment, Path(state), ops))


async def _run(
    spec: Spec, deployment: Deployment, state: Path, ops: list[tuple[str, int, str, int]]
) -> None:
    network = MemoryNetwork()
    running = await start_deployment(
        deployment, state, network=network, token_keys=profile_keys, run_idms=False
    )
    for i in range(1, spec.systems + 1):
        # the home user binds its Contact at home, with a token of its own IdMS
        ue = running.clients[f"ue-{i}-{HOME_USER}"]
        await ue.migrate(domain(i), token_for(deployment, domain(i), ue.user))
    trace = Trace()
    callers = {
        i: SipNode(f"caller-{i}", f"{inside(i)}50", 5070, network=network)
        for i in range(1, spec.systems + 1)
    }
    for caller in callers.values():
        await caller.start()
        trace.watch(caller)
    for node in running.nodes:
        trace.watch(node, node.name.split("/")[0])
    current: dict[tuple[int, str], int | None] = {}
    try:
        for kind, home_raw, user, other_raw in ops:
            home = (home_raw - 1) % spec.systems + 1
            other = (other_raw - 1) % spec.systems + 1
            ue: UserEquipment = running.clients[f"ue-{home}-{user}"]
            trace.clear()
            where = current.get((home, user))
            if kind == "migrate" and other != home:
                token = token_for(deployment, domain(other), ue.user)
                outcome = await ue.migrate(domain(other), token)
                status, cause, who = expected_migration(spec, deployment, home, user, other)
                assert (outcome.status, outcome.cause) == (status, cause), (home, user, other)
                assert trace.originator(status) == who
                event(f"migration {status} {cause or ''}")
                if status == 200:
                    current[(home, user)] = other
            elif kind == "release" and where is not None:
                response = await ue.release()
                assert response.status == 200
                current[(home, user)] = None
            elif kind == "data":
                migrated = sorted(k for k, p in current.items() if p is not None)
                if migrated and other_raw % 2 == 0:  # half the time, to a migrated user
                    home, user = migrated[home_raw % len(migrated)]
                    ue, where = running.clients[f"ue-{home}-{user}"], current[(home, user)]
                await _data_to_user(spec, deployment, trace, callers[home], ue, home, user, where)
            elif kind == "originate":
                # from one of the users migrated now, chosen by the drawn numbers
                migrated = sorted((h, u, p) for (h, u), p in current.items() if p is not None)
                if migrated:
                    h, u, p = migrated[(home_raw + other_raw) % len(migrated)]
                    sender = running.clients[f"ue-{h}-{u}"]
                    await _originate(spec, running, sender, h, p, other)
            await asyncio.sleep(0.05)  # background releases to earlier partners
            _check_registry(running, spec, current)
            _check_responses_return(trace)
            _check_hiding(trace, spec)
            _check_gateways_carry_their_peers(trace, spec)
    finally:
        for caller in callers.values():
            await caller.stop()
        await running.stop()


async def _data_to_user(
    spec: Spec,
    deployment: Deployment,
    trace: Trace,
    caller: SipNode,
    ue: UserEquipment,
    home: int,
    user: str,
    where: int | None,
) -> None:
    before = len(ue.inbox)
    response = await send_data(
        caller, deployment, f"sip:caller@{domain(home)}", ue.user, b"hi", "text/plain"
    )
    if where is None:
        assert response.status == 480
        return
    assert response.status == 200 and len(ue.inbox) == before + 1
    event("data to a migrated user")
    servers = {e.node for e in trace.entries if "-srv" in e.node}
    assert user_server(spec, home, user) in servers
    assert {s.split("-")[0] for s in servers} == {f"s{home}", f"s{where}"}  # 4


async def _originate(
    spec: Spec, running: RunningDeployment, ue: UserEquipment, home: int, where: int, target: int
) -> None:
    receiver = running.clients[f"ue-{target}-{HOME_USER}"]
    before = len(receiver.inbox)
    response = await ue.send(f"sip:{HOME_USER}@{domain(target)}", b"from abroad")
    status, shown = expected_origination(spec, home, where, target)
    assert response.status == status, (home, where, target)
    event(f"originated {status} {shown}")
    if status != 200:
        return
    assert len(receiver.inbox) == before + 1  # 7
    sender = parse_sip_uri(str(receiver.inbox[-1].from_.uri))
    if shown == "mc-service-id":
        assert sender.aor == ue.user
    else:
        assert sender.host == domain(where) and (sender.user or "").startswith("t-")


def _check_registry(
    running: RunningDeployment, spec: Spec, current: dict[tuple[int, str], int | None]
) -> None:
    for i in range(1, spec.systems + 1):
        for k in range(spec.servers[i]):
            store = running.servers[server_name(i, k)].store
            records = {r.mc_service_id: r.partner_system for r in store.all()}
            expected = {
                f"sip:{u}@{domain(i)}": domain(p)
                for (h, u), p in current.items()
                if h == i and p is not None and spec.home_server[(h, u)] == k
            }
            assert records == expected  # 3


def _check_responses_return(trace: Trace) -> None:
    requests = {}
    for entry in trace.entries:
        if isinstance(entry.message, Request):
            requests[(entry.message.call_id, entry.message.cseq.seq, entry.message.cseq.method)] = (
                entry
            )
    for entry in trace.entries:
        m = entry.message
        if not isinstance(m, Request):
            sent = requests.get((m.call_id, m.cseq.seq, m.cseq.method))
            if sent is not None:  # 2: back to where the request came from
                assert (entry.destination.host, entry.destination.port) == (
                    sent.source.host,
                    sent.source.port,
                )


def _system_of(host: str) -> int | None:
    """The system an address belongs to: its inside range or its gateways' externals."""
    _, _, c, d = (int(x) for x in host.split("."))
    if 31 <= c <= 35:
        return c - 30
    if c in (28, 29):
        return d
    return None


def _check_hiding(trace: Trace, spec: Spec) -> None:
    for entry in trace.entries:
        sender = _system_of(entry.source.host)
        receiver = _system_of(entry.destination.host)
        if sender is None or receiver in (None, sender) or not spec.gateway_of[sender]:
            continue  # inside a system, or to a client
        assert entry.source.host.startswith(("127.0.28.", "127.0.29.")), entry  # 5
        assert inside(sender).encode() not in entry.wire
        assert f"s{sender}-srv".encode() not in entry.wire
        assert f"s{sender}-gw".encode() not in entry.wire


def _check_gateways_carry_their_peers(trace: Trace, spec: Spec) -> None:
    for entry in trace.entries:
        if "-gw" not in entry.node or not isinstance(entry.message, Request):
            continue
        i, g = int(entry.node[1 : entry.node.index("-")]), int(entry.node.rsplit("gw", 1)[1])
        receiver = _system_of(entry.destination.host)
        if receiver is not None and receiver != i:
            assert spec.gateway_of[i].get(receiver) == g, entry  # 6
