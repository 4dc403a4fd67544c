"""Loading and validating deployment YAML. Errors name the file, the key path and the fault."""

from __future__ import annotations

import base64
import ipaddress
import socket
from pathlib import Path

import yaml

from mcmig.mc.identities import TemporaryIdSealer
from mcmig.mc.policy import (
    PrimaryPolicy,
    UserRange,
    UserRule,
    UserSelector,
    VisitorPolicy,
    parse_pattern,
)
from mcmig.profiles.coverage import shared_user, unserved_user
from mcmig.profiles.idms_section import credential, idms_profile
from mcmig.profiles.model import (
    ClientProfile,
    Deployment,
    GatewayProfile,
    HostPort,
    Peer,
    RegistryProfile,
    ServerProfile,
    SystemProfile,
    TemporaryIdKeys,
    Timeouts,
    TokenRules,
)
from mcmig.profiles.node import ProfileError, ProfileNode
from mcmig.sip.errors import SipParseError
from mcmig.sip.uri import is_host, parse_sip_uri
from mcmig.transport.base import split_hostport
from mcmig.transport.tls import TlsProfile

_Node = ProfileNode


def _domain(text: str) -> bool:
    return is_host(text) and not text[0].isdigit()


def _sip_uri(text: str) -> bool:
    try:
        parse_sip_uri(text)
    except SipParseError:
        return False
    return True


def load_deployment(path: Path | str) -> Deployment:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    top = _Node(data, "", path)
    top.only("deployment", "systems", "clients")
    systems = tuple(_system(node, path.parent) for node in top.items("systems"))
    if not systems:
        top.fail("no systems", "systems")
    domains = {s.domain for s in systems}
    clients = tuple(_client(node, domains, path.parent) for node in top.items("clients", []))
    deployment = Deployment(top.get("deployment", str), path, systems, clients)
    _check_unique(top, deployment)
    return deployment


def _client(node: _Node, domains: set[str], base: Path) -> ClientProfile:
    node.only("name", "user", "listen", "migrate_to", "credentials")
    user = node.get("user", str)
    if not _sip_uri(user) or "@" not in user:
        node.fail(f"{user!r} is not an MC service ID", "user")
    target = node.data.get("migrate_to")
    if target is not None and (not isinstance(target, str) or target.lower() not in domains):
        node.fail(f"{target!r} is not a system of this deployment", "migrate_to")
    password = None
    if "credentials" in node.data:
        password = credential(node, base, user)
    return ClientProfile(
        node.get("name", str), user, node.hostport("listen"), target and target.lower(), password
    )


def _system(node: _Node, base: Path) -> SystemProfile:
    node.only(
        "calls",
        "domain",
        "migration_psi",
        "idms",
        "servers",
        "gateway",
        "gateways",
        "peers",
        "temporary_ids",
        "registry",
        "users",
        "visitors",
        "timeouts",
        "tokens",
    )
    domain = node.get("domain", str).lower()
    if not _domain(domain):
        node.fail(f"{domain!r} is not a domain name", "domain")
    psi = node.get("migration_psi", str, f"sip:migration@{domain}")
    if not _sip_uri(psi):
        node.fail(f"{psi!r} is not a SIP URI", "migration_psi")
    idms = idms_profile(node.child("idms"), base, domain)
    servers = _servers(node)
    gateways = _gateways(node, base)
    peers = []
    for p in node.items("peers", []):
        p.only("domain", "address", "transport", "sources")
        peer_domain = p.get("domain", str).lower()
        if not _domain(peer_domain):
            p.fail(f"{peer_domain!r} is not a domain name", "domain")
        transport = p.get("transport", str, "UDP").upper()
        if transport not in ("UDP", "TCP", "TLS"):
            p.fail("must be UDP, TCP or TLS", "transport")
        gateway = next((g for g in gateways if g.interfaces(peer_domain)), None)
        if gateways and gateway is None:
            # Straight from a server, the peer would see the system's inside.
            p.fail(f"no gateway interfaces to {peer_domain}", "domain")
        if transport == "TLS" and (gateway is None or gateway.tls is None):
            p.fail("TLS to a peer needs tls on the gateway that interfaces to it", "transport")
        address = p.hostport("address")
        addresses = list(_resolve(p, address.host))
        for i, source in enumerate(p.strings("sources")):
            addresses += [a for a in _resolve(p, source, f"sources[{i}]") if a not in addresses]
        peers.append(Peer(peer_domain, address, transport, tuple(addresses)))
    _check_gateway_peers(node, gateways, {p.domain for p in peers})
    timeouts = Timeouts()
    if "timeouts" in node.data:
        t = node.child("timeouts")
        t.only("server", "gateway_outbound", "gateway_inbound")
        timeouts = Timeouts(
            t.get("server", float, timeouts.server),
            t.get("gateway_outbound", float, timeouts.gateway_outbound),
            t.get("gateway_inbound", float, timeouts.gateway_inbound),
        )
        if not timeouts.server > timeouts.gateway_outbound > timeouts.gateway_inbound > 0:
            t.fail(
                "need server > gateway_outbound > gateway_inbound > 0, "
                "so that each 504 arrives upstream in time"
            )
    call_mode = "forward"
    call_max_duration = SystemProfile.call_max_duration
    if "calls" in node.data:
        c = node.child("calls")
        c.only("mode", "max_duration")
        call_mode = c.get("mode", str, "forward")
        if call_mode not in ("forward", "redirect"):
            c.fail("must be forward or redirect", "mode")
        call_max_duration = c.get("max_duration", float, call_max_duration)
        if not call_max_duration > 0:
            c.fail("must be more than 0 seconds", "max_duration")
    users, visitors = _users(node), _visitors(node)
    _check_served(node, servers, users)
    registry = _registry(node)
    for i, server in enumerate(servers):
        if server.instances and registry.engine != "postgresql":
            node.fail(
                "a pool's instances share the system's registry: needs registry.engine postgresql",
                f"servers[{i}].instances",
            )
    return SystemProfile(
        tokens=_tokens(node),
        call_mode=call_mode,
        call_max_duration=call_max_duration,
        domain=domain,
        migration_psi=psi,
        idms=idms,
        servers=servers,
        gateways=gateways,
        peers=tuple(peers),
        users=users,
        visitors=visitors,
        timeouts=timeouts,
        temporary_ids=_temporary_ids(node, base, servers, visitors),
        registry=registry,
    )


def _resolve(node: _Node, host: str, key: str = "address") -> tuple[str, ...]:
    """A peer's addresses, canonical: a request from it is matched by its source
    address, so a host name is resolved once, here, and said to fail here."""
    bare = host[1:-1] if host.startswith("[") else host
    try:
        return (str(ipaddress.ip_address(bare)),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        node.fail(f"cannot resolve {bare!r}: {getattr(exc, 'strerror', None) or exc}", key)
    found: list[str] = []
    for info in infos:
        address = str(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        if address not in found:
            found.append(address)
    # IPv4 first: every node here listens on one address, and names like
    # localhost resolve to both families.
    return tuple(sorted(found, key=lambda a: ":" in a))


def _servers(node: _Node) -> tuple[ServerProfile, ...]:
    servers = []
    for s in node.items("servers"):
        s.only("name", "listen", "serves", "instances")
        serves = _selector(s.child("serves")) if "serves" in s.data else None
        instances = tuple(
            _hostport(s, "instances", i, v) for i, v in enumerate(s.strings("instances"))
        )
        servers.append(ServerProfile(s.get("name", str), s.hostport("listen"), serves, instances))
    if not servers:
        node.fail("a system needs at least one server", "servers")
    if len(servers) > 1:
        for i, server in enumerate(servers):
            if server.serves is None:
                node.fail("with several servers, each says which users it serves", f"servers[{i}]")
    return tuple(servers)


def _hostport(node: _Node, key: str, i: int, text: str) -> HostPort:
    try:
        host, port = split_hostport(text)
    except ValueError as exc:
        node.fail(str(exc), f"{key}[{i}]")
    return HostPort(host, port)


def _selector(node: _Node) -> UserSelector:
    node.only("names", "ranges", "patterns")
    ranges, prefixes = [], []
    for i, text in enumerate(node.strings("ranges")):
        try:
            ranges.append(UserRange.parse(text))
        except ValueError as exc:
            node.fail(str(exc), f"ranges[{i}]")
    for i, text in enumerate(node.strings("patterns")):
        try:
            prefixes.append(parse_pattern(text))
        except ValueError as exc:
            node.fail(str(exc), f"patterns[{i}]")
    selector = UserSelector(frozenset(node.strings("names")), tuple(ranges), tuple(prefixes))
    if selector == UserSelector():
        node.fail("names no users (give names, ranges or patterns)")
    return selector


def _check_served(node: _Node, servers: tuple[ServerProfile, ...], users: PrimaryPolicy) -> None:
    """Every user of the system is served by exactly one server."""
    selectors = [s.serves for s in servers if s.serves is not None]
    if len(selectors) < len(servers):
        return  # one server, serving every user
    for i, a in enumerate(servers):
        for b in servers[i + 1 :]:
            assert a.serves is not None and b.serves is not None
            user = shared_user(a.serves, b.serves)
            if user is not None:
                node.fail(f"{a.name} and {b.name} both serve {user}", "servers")
    user = unserved_user(users, selectors)
    if user is not None:
        node.fail(f"no server serves the user {user}", "servers")


def _gateways(node: _Node, base: Path) -> tuple[GatewayProfile, ...]:
    if "gateway" in node.data and "gateways" in node.data:
        node.fail("give gateway (one, for every peer) or gateways (each with its peers)")
    if "gateway" in node.data:
        g = node.child("gateway")
        g.only("name", "internal", "external", "tls")
        return (
            GatewayProfile(
                g.get("name", str), g.hostport("internal"), g.hostport("external"), _tls(g, base)
            ),
        )
    gateways = []
    for g in node.items("gateways", []):
        g.only("name", "internal", "external", "tls", "peers")
        peers = frozenset(d.lower() for d in g.strings("peers", _domain, "a domain"))
        if not peers:
            g.fail("lists no peers it interfaces to", "peers")
        gateways.append(
            GatewayProfile(
                g.get("name", str),
                g.hostport("internal"),
                g.hostport("external"),
                _tls(g, base),
                peers,
            )
        )
    return tuple(gateways)


def _check_gateway_peers(
    node: _Node, gateways: tuple[GatewayProfile, ...], peers: set[str]
) -> None:
    """Each peer a gateway names is a peer of the system, and has one gateway."""
    seen: dict[str, str] = {}
    for gateway in gateways:
        for domain in sorted(gateway.peers or ()):
            if domain not in peers:
                node.fail(
                    f"{gateway.name} interfaces to {domain}, which is not in peers", "gateways"
                )
            if domain in seen:
                node.fail(
                    f"{seen[domain]} and {gateway.name} both interface to {domain}", "gateways"
                )
            seen[domain] = gateway.name


def _temporary_ids(
    node: _Node, base: Path, servers: tuple[ServerProfile, ...], visitors: VisitorPolicy
) -> TemporaryIdKeys | None:
    if "temporary_ids" not in node.data:
        takes_visitors = visitors.default_accept or bool(visitors.accept_systems)
        if len(servers) > 1 and takes_visitors:
            node.fail(
                "a system of several servers that takes visitors needs temporary_ids.keys "
                "(traffic to a visitor finds the server that holds the stay by them)"
            )
        return None
    t = node.child("temporary_ids")
    t.only("keys")
    keys = []
    for i, name in enumerate(t.strings("keys")):
        path = (base / name).resolve()
        try:
            key = base64.b64decode(path.read_text().strip(), validate=True)
        except OSError as exc:
            t.fail(f"cannot read {path}: {exc.strerror}", f"keys[{i}]")
        except (ValueError, UnicodeDecodeError):
            t.fail(f"{path} is not base64 text", f"keys[{i}]")
        if len(key) not in (16, 24, 32):
            t.fail(f"{path}: an AES key is 16, 24 or 32 bytes, not {len(key)}", f"keys[{i}]")
        keys.append(key)
    if not keys:
        t.fail("no keys", "keys")
    ids = [TemporaryIdSealer.key_id(k) for k in keys]
    if len(set(ids)) != len(ids):
        t.fail("two keys share a key id; make a new key", "keys")
    return TemporaryIdKeys(tuple(keys))


def _registry(node: _Node) -> RegistryProfile:
    if "registry" not in node.data:
        return RegistryProfile()
    r = node.child("registry")
    r.only("engine", "dsn")
    engine = r.get("engine", str, "sqlite")
    if engine not in ("sqlite", "postgresql"):
        r.fail("must be sqlite or postgresql", "engine")
    if engine == "sqlite":
        if "dsn" in r.data:
            r.fail("sqlite keeps a file per server in the state folder: no dsn", "dsn")
        return RegistryProfile()
    dsn = r.get("dsn", str)
    if not dsn.startswith(("postgresql://", "postgres://")):
        r.fail("a PostgreSQL URI: postgresql://user@host:port/database", "dsn")
    return RegistryProfile(engine, dsn)


def _tokens(node: _Node) -> TokenRules:
    if "tokens" not in node.data:
        return TokenRules()
    t = node.child("tokens")
    t.only("max_lifetime", "clock_skew")
    rules = TokenRules(
        t.get("max_lifetime", float, TokenRules.max_lifetime),
        t.get("clock_skew", float, TokenRules.clock_skew),
    )
    if not rules.max_lifetime > 0:
        t.fail("must be more than 0 seconds", "max_lifetime")
    if not 0 <= rules.clock_skew <= 300:
        t.fail("must be 0 to 300 seconds", "clock_skew")
    return rules


def _tls(gateway: _Node, base: Path) -> TlsProfile | None:
    if "tls" not in gateway.data:
        return None
    t = gateway.child("tls")
    t.only("cert", "key", "ca", "port")
    files = {}
    for key in ("cert", "key", "ca"):
        path = (base / t.get(key, str)).resolve()
        if not path.is_file():
            t.fail(f"no such file {path}", key)
        files[key] = path
    port = t.get("port", int, 5061)
    if not 0 < port < 65536:
        t.fail("port out of range", "port")
    return TlsProfile(files["cert"], files["key"], files["ca"], port)


def _users(node: _Node) -> PrimaryPolicy:
    rules = []
    for rule in node.items("users", []):
        rule.only("names", "range", "migrate_to")
        names = frozenset(rule.strings("names"))
        ranges: tuple[UserRange, ...] = ()
        if "range" in rule.data:
            try:
                ranges = (UserRange.parse(rule.get("range", str)),)
            except ValueError as exc:
                rule.fail(str(exc), "range")
        if not names and not ranges:
            rule.fail("a rule needs names or a range")
        targets = rule.strings("migrate_to", lambda v: v == "*" or _domain(v), "a domain or '*'")
        rules.append(UserRule(UserSelector(names, ranges), frozenset(t.lower() for t in targets)))
    return PrimaryPolicy(tuple(rules))


def _visitors(node: _Node) -> VisitorPolicy:
    if "visitors" not in node.data:
        return VisitorPolicy()
    v = node.child("visitors")
    v.only("default", "accept_systems", "refuse_systems", "refuse_users", "max_stay")
    max_stay = v.get("max_stay", float, VisitorPolicy.max_stay)
    if not max_stay > 0:
        v.fail("must be more than 0 seconds", "max_stay")
    default = v.get("default", str, "refuse")
    if default not in ("accept", "refuse"):
        v.fail("must be accept or refuse", "default")
    return VisitorPolicy(
        default_accept=default == "accept",
        accept_systems=frozenset(
            s.lower() for s in v.strings("accept_systems", _domain, "a domain")
        ),
        refuse_systems=frozenset(
            s.lower() for s in v.strings("refuse_systems", _domain, "a domain")
        ),
        refuse_users=frozenset(v.strings("refuse_users", _sip_uri, "a SIP URI")),
        max_stay=max_stay,
    )


def _check_unique(top: _Node, deployment: Deployment) -> None:
    names = deployment.node_names()
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        top.fail(f"node name {dup!r} used twice", "systems")
    domains = [s.domain for s in deployment.systems]
    if len(set(domains)) != len(domains):
        top.fail("a system domain is used twice", "systems")
    seen: dict[HostPort, str] = {c.listen: c.name for c in deployment.clients}
    for system in deployment.systems:
        addresses = [(s.name, s.listen) for s in system.servers]
        addresses += [a for s in system.servers if s.instances for a in s.nodes()]
        for gateway in system.gateways:
            addresses += [(gateway.name, gateway.internal), (gateway.name, gateway.external)]
        for name, address in addresses:
            if address in seen:
                top.fail(f"{name} and {seen[address]} both listen on {address}", "systems")
            seen[address] = name
