"""The typed form of a deployment profile. The core never sees YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from mcmig.mc.policy import PrimaryPolicy, UserSelector, VisitorPolicy
from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import format_hostport
from mcmig.transport.tls import TlsProfile


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def address(self, transport: str = "UDP") -> TransportAddress:
        return TransportAddress(transport, self.host, self.port)

    @property
    def uri(self) -> str:
        return f"sip:{format_hostport(self.host, self.port)}"

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


@dataclass(frozen=True)
class ServerProfile:
    """An MC service server: partner for visitors, primary for the system's own users."""

    name: str
    listen: HostPort
    # The system's users this server is the primary server of; None: all of them
    # (a system of one server).
    serves: UserSelector | None = None
    # A pool: the instances' own addresses, behind a dispatcher (Kamailio) that
    # listens on ``listen``; they share the system's PostgreSQL registry.
    instances: tuple[HostPort, ...] = ()

    def instance_names(self) -> list[str]:
        """The nodes that run this server: itself, or each instance of its pool."""
        if not self.instances:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, len(self.instances) + 1)]

    def nodes(self) -> list[tuple[str, HostPort]]:
        if not self.instances:
            return [(self.name, self.listen)]
        return list(zip(self.instance_names(), self.instances, strict=True))

    def serves_user(self, user: str) -> bool:
        return self.serves is None or self.serves.matches(user)


@dataclass(frozen=True)
class GatewayProfile:
    """An MC gateway server: ``internal`` faces its own system, ``external`` the others."""

    name: str
    internal: HostPort
    external: HostPort
    tls: TlsProfile | None = None  # SIP over TLS on the external side, mutual authentication
    # The peer systems it interfaces to (domains); None: every peer of the system.
    peers: frozenset[str] | None = None

    def interfaces(self, domain: str) -> bool:
        return self.peers is None or domain.lower() in self.peers


@dataclass(frozen=True)
class Peer:
    """Another MC system and the address its traffic is sent to and comes from."""

    domain: str
    address: HostPort
    transport: str = "UDP"  # UDP, TCP or TLS; with TLS, plaintext from this peer is refused
    # The IP addresses the peer sends from and is sent to: the address itself, or
    # what its host name resolved to when the profile was loaded.
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.addresses:
            object.__setattr__(self, "addresses", (self.address.host,))

    @property
    def target(self) -> TransportAddress:
        return TransportAddress(self.transport, self.addresses[0], self.address.port)


@dataclass(frozen=True)
class IdmsProfile:
    """The system's identity management server (mcmig.idms): an OpenID Connect
    provider at ``issuer``, which is also the HTTPS address it listens on."""

    issuer: str  # https://host:port
    key_files: tuple[Path, ...]  # PEM private keys; the first signs, all are published
    tls_cert: Path
    tls_key: Path
    tls_ca: Path  # the CA others check this IdMS's certificate against
    name: str
    # user name -> Argon2id hash (PHC string) of the password
    accounts: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    token_lifetime: float = 3600.0  # seconds an access token it issues is valid

    @property
    def listen(self) -> HostPort:
        host, _, port = self.issuer.removeprefix("https://").rpartition(":")
        return HostPort(host.strip("[]"), int(port))


@dataclass(frozen=True)
class TokenRules:
    """How a system's servers judge access tokens, seconds."""

    max_lifetime: float = 3600.0  # exp - iat above this is refused (invalid-credentials)
    clock_skew: float = 30.0  # allowance on exp, iat and nbf for unsynchronised clocks


@dataclass(frozen=True)
class RegistryProfile:
    """Where a system's servers keep their records and visitor stays."""

    engine: str = "sqlite"  # one file per server, in the state folder; or "postgresql"
    dsn: str | None = None  # postgresql: one database per system, shared by its servers


@dataclass(frozen=True)
class TemporaryIdKeys:
    """AEAD keys that seal, inside each temporary identity, which server holds the
    visitor's stay (PROFILE 1). The first key seals; every key opens, so a key can
    be rotated in before the old one is dropped."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True)
class Timeouts:
    """Downstream timeouts of each B2BUA, seconds. Each is shorter than the one
    upstream of it, so that the client hears a 504 before its own Timer F."""

    server: float = 8.0  # partner server -> primary system
    gateway_outbound: float = 6.0  # gateway internal -> peer system
    gateway_inbound: float = 4.0  # gateway external -> own server


@dataclass(frozen=True)
class SystemProfile:
    domain: str
    migration_psi: str
    idms: IdmsProfile
    servers: tuple[ServerProfile, ...]
    gateways: tuple[GatewayProfile, ...]
    peers: tuple[Peer, ...]
    users: PrimaryPolicy
    visitors: VisitorPolicy
    timeouts: Timeouts = field(default_factory=Timeouts)
    # How calls and data reach a migrated user (PROFILE 4): "forward" to the
    # temporary identity, or "redirect" with 302.
    call_mode: str = "forward"
    # Seconds after which a bridged call is ended with a BYE on each leg (a lost
    # BYE must not hold a dialog for ever).
    call_max_duration: float = 4 * 3600.0
    tokens: TokenRules = field(default_factory=TokenRules)
    temporary_ids: TemporaryIdKeys | None = None
    registry: RegistryProfile = field(default_factory=RegistryProfile)

    def gateway_for(self, domain: str) -> GatewayProfile | None:
        """The gateway that interfaces to the peer system ``domain``, if any."""
        return next((g for g in self.gateways if g.interfaces(domain)), None)

    def server_for(self, user: str) -> ServerProfile | None:
        """The server whose users include the user part ``user``."""
        return next((s for s in self.servers if s.serves_user(user)), None)

    def peer(self, domain: str) -> Peer | None:
        return self._peers_by_domain.get(domain.lower())

    @cached_property
    def _peers_by_domain(self) -> dict[str, Peer]:
        # Looked up for every relayed request; the first peer of a domain wins.
        by_domain: dict[str, Peer] = {}
        for p in self.peers:
            by_domain.setdefault(p.domain, p)
        return by_domain

    @property
    def public_name(self) -> str:
        """How the system names itself to others (Warning agents)."""
        return self.domain


@dataclass(frozen=True)
class ClientProfile:
    """A user's MC service client run as part of the deployment (by mcmig up)."""

    name: str
    user: str  # MC service ID
    listen: HostPort
    migrate_to: str | None = None  # partner system to migrate to once started
    # for the IdMS login (from the credentials file the profile names)
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Deployment:
    name: str
    path: Path
    systems: tuple[SystemProfile, ...]
    clients: tuple[ClientProfile, ...] = ()

    def system(self, domain: str) -> SystemProfile | None:
        return next((s for s in self.systems if s.domain == domain.lower()), None)

    def node_names(self) -> list[str]:
        names: list[str] = [c.name for c in self.clients]
        for system in self.systems:
            names += [n for s in system.servers for n in s.instance_names()]
            names += [g.name for g in system.gateways]
            names.append(system.idms.name)
        return names

    def node_hosts(self, only: set[str] | None = None) -> set[str]:
        """The hosts the named nodes (every node by default) listen on."""

        def wanted(name: str) -> bool:
            return only is None or name in only

        hosts = {c.listen.host for c in self.clients if wanted(c.name)}
        for system in self.systems:
            for server in system.servers:
                hosts |= {a.host for n, a in server.nodes() if wanted(n) or wanted(server.name)}
            for gateway in system.gateways:
                if wanted(gateway.name):
                    hosts |= {gateway.internal.host, gateway.external.host}
            if wanted(system.idms.name):
                hosts.add(system.idms.listen.host)
        return hosts

    def find_server(self, name: str) -> tuple[SystemProfile, ServerProfile] | None:
        for system in self.systems:
            for server in system.servers:
                if name == server.name or name in server.instance_names():
                    return system, server
        return None
