"""The routing place itself (nodes/topology.py, profiles/coverage.py), by hypothesis.

- overlaps and gaps between servers' user sets are found exactly: checked
  against brute force over every user of small numbered ranges;
- each user routes to the one server that serves it;
- a temporary identity opens to the server it was made for, under any key of
  the system, and to nothing when altered or made by another system's key;
- a peer is reached through the gateway that interfaces to it, or directly.
"""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from mcmig.mc.identities import TemporaryIdSealer
from mcmig.mc.policy import PrimaryPolicy, UserRange, UserRule, UserSelector, VisitorPolicy
from mcmig.nodes.topology import SystemTopology, entry_server
from mcmig.profiles.coverage import shared_user, unserved_user
from mcmig.profiles.model import (
    GatewayProfile,
    HostPort,
    Peer,
    ServerProfile,
    SystemProfile,
    TemporaryIdKeys,
)
from mcmig.sip.uri import parse_sip_uri
from tests.support.idms import idms_of

PREFIXES = ["u", "ops-", "o"]
WIDTH = 2  # numbered users u00..u99: few enough to check every one


def every_user() -> list[str]:
    names = [f"{p}{n:0{WIDTH}d}" for p in PREFIXES for n in range(10**WIDTH)]
    return [*names, "alice", "bob", "ops-x", "ox"]


ALL = every_user()


@st.composite
def ranges(draw: st.DrawFn) -> UserRange:
    first = draw(st.integers(0, 10**WIDTH - 1))
    last = draw(st.integers(first, 10**WIDTH - 1))
    return UserRange(draw(st.sampled_from(PREFIXES)), first, last, WIDTH)


selectors = st.builds(
    UserSelector,
    st.frozensets(st.sampled_from(["alice", "bob", "ops-x", "ox", "u07", "o42"]), max_size=2),
    st.lists(ranges(), max_size=2).map(tuple),
    st.lists(
        st.sampled_from(["u", "u1", "u0", "ops-", "o", "ops-1", "al", "u99", "x"]), max_size=2
    ).map(tuple),
)


@given(selectors, selectors)
def test_shared_user_is_exact(a: UserSelector, b: UserSelector) -> None:
    both = [u for u in ALL if a.matches(u) and b.matches(u)]
    found = shared_user(a, b)
    if not both:
        # a pattern may still share users beyond the small world (ops-1* and ops-*)
        if found is not None and not found.endswith("*"):
            raise AssertionError(found)
    else:
        assert found is not None
        assert found.endswith("*") or (a.matches(found) and b.matches(found))


@given(st.lists(selectors, min_size=1, max_size=3), st.lists(ranges(), min_size=1, max_size=2))
def test_unserved_user_is_exact(servers: list[UserSelector], user_ranges: list[UserRange]) -> None:
    users = PrimaryPolicy(
        (UserRule(UserSelector(frozenset({"alice"}), tuple(user_ranges)), frozenset()),)
    )
    unserved = [u for u in ALL if users.is_user(u) and not any(s.matches(u) for s in servers)]
    found = unserved_user(users, servers)
    assert (found is None) == (not unserved)
    if found is not None:
        assert found in unserved


peer_domains = ["p1.example", "p2.example", "p3.example"]


def system(servers: int, gateways: dict[str, int], keys: int = 1) -> SystemProfile:
    names = [f"srv{k}" for k in range(servers)]
    peers = sorted(gateways) if gateways else [*peer_domains, "direct.example"]
    return SystemProfile(
        domain="home.example",
        migration_psi="sip:migration@home.example",
        idms=idms_of("home.example"),
        servers=tuple(
            ServerProfile(
                n,
                HostPort(f"127.0.40.{10 + k}", 5060),
                UserSelector(prefixes=(f"{string.ascii_lowercase[k]}",)) if servers > 1 else None,
            )
            for k, n in enumerate(names)
        ),
        gateways=tuple(
            GatewayProfile(
                f"gw{g}",
                HostPort(f"127.0.40.{1 + g}", 5060),
                HostPort(f"127.0.41.{1 + g}", 5060),
                peers=frozenset(d for d, h in gateways.items() if h == g),
            )
            for g in sorted(set(gateways.values()))
        ),
        peers=tuple(Peer(d, HostPort(f"127.0.42.{i + 1}", 5060)) for i, d in enumerate(peers)),
        users=PrimaryPolicy(
            (UserRule(UserSelector(prefixes=tuple(string.ascii_lowercase[:servers])), frozenset()),)
        ),
        visitors=VisitorPolicy(),
        temporary_ids=TemporaryIdKeys(tuple(bytes([k + 1]) * 32 for k in range(keys)))
        if servers > 1
        else None,
    )


layouts = st.tuples(
    st.integers(1, 3),
    st.dictionaries(st.sampled_from(peer_domains), st.integers(0, 1)),
    st.integers(1, 2),
)


@given(layouts, st.data())
def test_each_user_routes_to_its_server(
    layout: tuple[int, dict[str, int], int], data: st.DataObject
) -> None:
    s = system(*layout)
    user = data.draw(st.text(string.ascii_lowercase[: layout[0]], min_size=1, max_size=6))
    topology = SystemTopology(s)
    server = topology.server_for(parse_sip_uri(f"sip:{user}@home.example"))
    owners = [x for x in s.servers if x.serves_user(user)]
    assert len(owners) == 1 and server == owners[0]
    assert entry_server(s, parse_sip_uri(f"sip:{user}@home.example")) == owners[0]


@given(layouts, st.data())
def test_temporary_identities_open_to_their_server(
    layout: tuple[int, dict[str, int], int], data: st.DataObject
) -> None:
    s = system(*layout)
    topology = SystemTopology(s)
    server = data.draw(st.sampled_from(s.servers))
    identity = parse_sip_uri(topology.new_temporary_id(server.name))
    assert identity.host == "home.example" and (identity.user or "").startswith("t-")
    assert topology.server_for(identity) == server
    if len(s.servers) == 1:
        return
    user = identity.user or ""
    # altered in any one character: opens to nothing
    at = data.draw(st.integers(2, len(user) - 1))
    swapped = "a" if user[at] != "a" else "b"
    assert topology.server_of_temporary_id(user[:at] + swapped + user[at + 1 :]) is None
    # another system's keys: nothing
    stranger = TemporaryIdSealer([b"\x99" * 32])
    other = parse_sip_uri(stranger.new("home.example", server.name))
    assert topology.server_of_temporary_id(other.user or "") is None


@given(layouts, st.sampled_from([*peer_domains, "direct.example", "stranger.example"]))
def test_peers_are_reached_through_their_gateway(
    layout: tuple[int, dict[str, int], int], domain: str
) -> None:
    s = system(*layout)
    hop = SystemTopology(s).next_hop(domain)
    peer = s.peer(domain)
    if peer is None:
        assert hop is None
        return
    gateways = [g for g in s.gateways if g.interfaces(domain)]
    if s.gateways:
        assert len(gateways) == 1 and hop == gateways[0].internal.address()
    else:
        assert hop == peer.target
