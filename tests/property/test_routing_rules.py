"""Routing rules over generated deployments (hypothesis), on the in-memory network.

Deployments of 2 to 5 systems, all with gateways or all without, with
arbitrary user policies, visitor policies and peer lists; sequences of
migrate / release / data / call. Invariants, checked against an independent model:
  1. a migration is accepted by the user's primary server, or refused by
     exactly the node that owns the failing check, with the PROFILE cause;
  2. every response returns to the node that sent the request;
  3. the registry holds, for each user, exactly the last accepted migration
     not since released;
  4. data and calls to a migrated user go to its current partner system only;
  5. with gateways, nothing of a system's inside reaches another system.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcmig.capture.trace import Trace
from mcmig.mc.policy import PrimaryPolicy, UserRule, UserSelector, VisitorPolicy
from mcmig.node.runtime import SipNode
from mcmig.nodes.deployment import start_deployment
from mcmig.nodes.phone import place_call
from mcmig.nodes.ue import UserEquipment, send_data
from mcmig.profiles.model import (
    ClientProfile,
    Deployment,
    GatewayProfile,
    HostPort,
    IdmsProfile,
    Peer,
    ServerProfile,
    SystemProfile,
)
from mcmig.sip.message import Request, Response
from mcmig.transport.memory import MemoryNetwork
from tests.support.tools import ROOT

KEY = ROOT / "sip_profiles" / "keys" / "primary-idms.pem"
USERS = ["u1", "u2", "u3"]


def domain(i: int) -> str:
    return f"s{i}.example"


def inside(i: int) -> str:
    return f"127.0.{30 + i}."


@dataclass(frozen=True)
class Spec:
    systems: int
    gateways: bool
    migrate_to: dict[tuple[int, str], frozenset[str]]  # (system, user) -> partner domains or {"*"}
    accepts: dict[int, frozenset[int]]  # partner -> primary systems it accepts
    refused: dict[int, frozenset[tuple[int, str]]]  # partner -> visitors refused by name
    peers: dict[int, frozenset[int]]  # system -> systems it lists as peers


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(2, 5))
    ids = list(range(1, n + 1))
    others = {i: [j for j in ids if j != i] for i in ids}
    migrate_to = {}
    for i in ids:
        for u in USERS:
            if draw(st.booleans()) and draw(st.booleans()):
                migrate_to[(i, u)] = frozenset({"*"})
            else:
                migrate_to[(i, u)] = frozenset(
                    domain(j) for j in draw(st.sets(st.sampled_from(others[i])))
                )
    accepts = {i: frozenset(draw(st.sets(st.sampled_from(others[i])))) for i in ids}
    visitors = [(j, u) for j in ids for u in USERS]
    refused = {
        i: frozenset(draw(st.sets(st.sampled_from([v for v in visitors if v[0] != i]), max_size=2)))
        for i in ids
    }
    peers = {i: frozenset(draw(st.sets(st.sampled_from(others[i]), min_size=1))) for i in ids}
    return Spec(n, draw(st.booleans()), migrate_to, accepts, refused, peers)


def build(spec: Spec) -> Deployment:
    systems = []
    for i in range(1, spec.systems + 1):
        server = ServerProfile(f"s{i}-server", HostPort(f"{inside(i)}10", 5060))
        gateway = (
            GatewayProfile(
                f"s{i}-gw", HostPort(f"{inside(i)}1", 5060), HostPort(f"127.0.29.{i}", 5060)
            )
            if spec.gateways
            else None
        )
        peer_address = (
            (lambda j: HostPort(f"127.0.29.{j}", 5060))
            if spec.gateways
            else (lambda j: HostPort(f"{inside(j)}10", 5060))
        )
        rules = tuple(
            UserRule(UserSelector(frozenset({u})), spec.migrate_to[(i, u)]) for u in USERS
        )
        systems.append(
            SystemProfile(
                domain=domain(i),
                migration_psi=f"sip:migration@{domain(i)}",
                idms=IdmsProfile(f"https://idms.{domain(i)}", f"k{i}", KEY),
                servers=(server,),
                gateways=() if gateway is None else (gateway,),
                peers=tuple(Peer(domain(j), peer_address(j)) for j in sorted(spec.peers[i])),
                users=PrimaryPolicy(rules),
                visitors=VisitorPolicy(
                    default_accept=False,
                    accept_systems=frozenset(domain(j) for j in spec.accepts[i]),
                    refuse_users=frozenset(f"sip:{u}@{domain(j)}" for j, u in spec.refused[i]),
                ),
            )
        )
    clients = tuple(
        ClientProfile(
            f"ue-{i}-{u}", f"sip:{u}@{domain(i)}", HostPort(f"127.0.28.{10 * i + k}", 5062)
        )
        for i in range(1, spec.systems + 1)
        for k, u in enumerate(USERS)
    )
    return Deployment("generated", ROOT / "generated.yaml", tuple(systems), clients)


def expected_migration(
    spec: Spec, home: int, user: str, partner: int
) -> tuple[int, str | None, str]:
    """The model: (status, cause, node that answers) for a migration request."""
    if home not in spec.accepts[partner]:
        return 403, "primary-system-not-permitted", f"s{partner}-server"
    if (home, user) in spec.refused[partner]:
        return 403, "user-not-permitted-by-partner", f"s{partner}-server"
    if home not in spec.peers[partner]:
        return 404, "unknown-mc-system", f"s{partner}-server"
    if partner not in spec.peers[home]:
        # a gateway refuses non-peers; without one, the primary server does
        return 403, "peer-not-authorized", f"s{home}-gw" if spec.gateways else f"s{home}-server"
    allowed = spec.migrate_to[(home, user)]
    if "*" not in allowed and domain(partner) not in allowed:
        return 403, "migration-not-permitted", f"s{home}-server"
    return 200, None, f"s{home}-server"


operations = st.lists(
    st.tuples(
        st.sampled_from(["migrate", "release", "data"]),
        st.integers(1, 5),
        st.sampled_from(USERS),
        st.integers(1, 5),
    ),
    min_size=1,
    max_size=8,
)


# 25 generated deployments in ./scripts/test; HYPOTHESIS_PROFILE=long runs 500.
EXAMPLES = 500 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 25


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
    running = await start_deployment(deployment, state, network=network)
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
        for kind, home_raw, user, partner_raw in ops:
            home = (home_raw - 1) % spec.systems + 1
            partner = (partner_raw - 1) % spec.systems + 1
            ue: UserEquipment = running.clients[f"ue-{home}-{user}"]
            trace.clear()
            if kind == "migrate" and partner != home:
                outcome = await ue.migrate(domain(partner))
                status, cause, who = expected_migration(spec, home, user, partner)
                assert (outcome.status, outcome.cause) == (status, cause), (
                    spec,
                    kind,
                    home,
                    user,
                    partner,
                )
                assert trace.originator(status) == who
                if status == 200:
                    current[(home, user)] = partner
            elif kind == "release" and current.get((home, user)) is not None:
                response = await ue.release()
                assert response.status == 200
                current[(home, user)] = None
            elif kind == "data":
                before = len(ue.inbox)
                response = await send_data(
                    callers[home],
                    deployment,
                    "sip:caller@" + domain(home),
                    f"sip:{user}@{domain(home)}",
                    b"hi",
                    "text/plain",
                )
                where = current.get((home, user))
                if where is None:
                    assert response.status == 480
                else:
                    assert response.status == 200 and len(ue.inbox) == before + 1
                    servers = {e.node for e in trace.entries if e.node.endswith("-server")}
                    assert servers == {
                        f"s{home}-server",
                        f"s{where}-server",
                    }  # 4: only the current partner
            elif kind == "call":
                outcome = await place_call(
                    callers[home],
                    "sip:caller@" + domain(home),
                    f"sip:{user}@{domain(home)}",
                    deployment.system(domain(home)).servers[0].listen.address(),
                    hold=0.01,
                )  # type: ignore[union-attr]
                where = current.get((home, user))
                assert outcome.status == (480 if where is None else 200)
                if where is not None:
                    servers = {e.node for e in trace.entries if e.node.endswith("-server")}
                    assert servers == {f"s{home}-server", f"s{where}-server"}  # 4: calls too
            await asyncio.sleep(0.05)  # background releases to earlier partners
            _check_registry(running, spec, current)
            _check_responses_return(trace)
            if spec.gateways:
                _check_hiding(trace, spec)
    finally:
        for caller in callers.values():
            await caller.stop()
        await running.stop()


def _check_registry(
    running: object, spec: Spec, current: dict[tuple[int, str], int | None]
) -> None:
    for i in range(1, spec.systems + 1):
        records = {
            r.mc_service_id: r.partner_system for r in running.servers[f"s{i}-server"].store.all()
        }  # type: ignore[attr-defined]
        expected = {
            f"sip:{u}@{domain(i)}": domain(p)
            for (h, u), p in current.items()
            if h == i and p is not None
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
        if isinstance(m, Response):
            sent = requests.get((m.call_id, m.cseq.seq, m.cseq.method))
            if sent is not None:  # 2: back to where the request came from
                assert (entry.destination.host, entry.destination.port) == (
                    sent.source.host,
                    sent.source.port,
                )


def _check_hiding(trace: Trace, spec: Spec) -> None:
    for entry in trace.entries:
        if entry.source.host.startswith("127.0.29.") and entry.destination.host.startswith(
            "127.0.29."
        ):
            sender = int(entry.source.host.rsplit(".", 1)[1])
            wire = entry.wire
            assert inside(sender).encode() not in wire  # 5
            assert f"s{sender}-server".encode() not in wire
