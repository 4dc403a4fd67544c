"""Trust at a system's border: who may send what, and which claims a sender may make.

Anything from outside a system is hostile, configured peers included. A peer
is known by the address it sends from (and, over TLS, by its certificate,
which the gateway checks); a claim in a migration body (partner-system,
partner-address, temporary-id) is accepted only when it stays inside the
system of the peer that made it.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property

from mcmig.mc.body import MigrationRelease, MigrationRequest, service_id_uri, system_domain
from mcmig.profiles.model import GatewayProfile, Peer, SystemProfile
from mcmig.sip.errors import SipParseError
from mcmig.sip.peer import TransportAddress
from mcmig.sip.uri import parse_sip_uri


def canonical_host(host: str) -> str:
    """An IP address in its one canonical text form (IPv6 compressed, lower case,
    IPv4-mapped as IPv4); a name lower-cased. Brackets are dropped."""
    bare = host[1:-1] if host.startswith("[") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return bare.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


def in_domain(host: str, domain: str) -> bool:
    """``host`` is the domain or a name under it."""
    host = host.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


class Border:
    """What one system knows of the addresses its peers and its own nodes send from.
    At a gateway, ``gateway`` narrows the peers to those it interfaces to."""

    def __init__(self, system: SystemProfile, gateway: GatewayProfile | None = None) -> None:
        self.system = system
        self.gateway = gateway

    @cached_property
    def _peers_by_address(self) -> dict[str, Peer]:
        by_address: dict[str, Peer] = {}
        for peer in self.system.peers:
            if self.gateway is not None and not self.gateway.interfaces(peer.domain):
                continue
            for address in peer.addresses:
                by_address.setdefault(canonical_host(address), peer)
        return by_address

    @cached_property
    def _gateway_hosts(self) -> frozenset[str]:
        return frozenset(canonical_host(g.internal.host) for g in self.system.gateways)

    @cached_property
    def _server_addresses(self) -> frozenset[tuple[str, int]]:
        # A pool's dispatcher relays from the pool's address; its instances send
        # from their own.
        addresses = [s.listen for s in self.system.servers]
        addresses += [a for s in self.system.servers for a in s.instances]
        return frozenset((canonical_host(a.host), a.port) for a in addresses)

    def from_own_server(self, source: TransportAddress) -> bool:
        """A server of this system sent it (over UDP it sends from the port it
        listens on; a stream's source port is the kernel's, so the host decides)."""
        host = canonical_host(source.host)
        if source.transport == "UDP":
            return (host, source.port) in self._server_addresses
        return any(h == host for h, _ in self._server_addresses)

    def peer_at(self, source: TransportAddress) -> Peer | None:
        """The configured peer system that sends from ``source``, if any."""
        return self._peers_by_address.get(canonical_host(source.host))

    def is_peer_host(self, host: str) -> bool:
        return canonical_host(host) in self._peers_by_address

    def from_own_gateway(self, source: TransportAddress) -> bool:
        return canonical_host(source.host) in self._gateway_hosts

    def cross_system_sender(self, source: TransportAddress) -> tuple[Peer | None, str | None]:
        """For a request that comes from another system (a migration request to a
        primary, a release, an end of stay): (the peer that sent it when known
        here, why it is refused or None).

        With gateways, only they may bring such requests in (they checked the
        peer and its claims); without, only a configured peer. Another server of
        the system may pass one on to the server of the user it names: the first
        server checked it."""
        if self.from_own_gateway(source) or self.from_own_server(source):
            return None, None
        if self.system.gateways:
            return None, f"{source.host} is not this system's gateway"
        peer = self.peer_at(source)
        if peer is None:
            return None, f"{source.host} is not a configured peer"
        return peer, None


def claim_refusal(body: MigrationRequest | MigrationRelease, peer: Peer) -> str | None:
    """Why ``peer`` may not make the claims in ``body``, or None.

    A partner speaks for itself only: partner-system is its own domain, and the
    temporary identity and partner address it gives lie inside its domain (or,
    for the address, at the address it is configured at). Otherwise a peer
    could route a user's calls into a third system."""
    if body.partner_system is not None and body.partner_system.lower() != peer.domain:
        return f"partner-system {body.partner_system} is not the peer {peer.domain}"
    if body.temporary_id is not None and not in_domain(
        service_id_uri(body.temporary_id, "temporary-id").host, peer.domain
    ):
        return f"temporary-id {body.temporary_id} is not in {peer.domain}"
    if isinstance(body, MigrationRequest) and body.partner_address is not None:
        try:
            host = parse_sip_uri(body.partner_address).host
        except SipParseError:
            return "partner-address is not a SIP URI"
        addresses = {canonical_host(a) for a in peer.addresses}
        if not in_domain(host, peer.domain) and canonical_host(host) not in addresses:
            return f"partner-address {body.partner_address} is not in {peer.domain}"
    return None


def claims_refusal(
    body: MigrationRequest | MigrationRelease,
    peer: Peer | None,
    own_domain: str,
    to_own_user: bool,
) -> str | None:
    """Why the claims in a request from another system are refused, or None, at a
    gateway (``peer``: the peer that sent it) or a server (``peer`` None when the
    request came through the system's own gateway, which checked the peer). A
    release to a visitor's temporary identity ends a stay here; anything else
    speaks for the sender's own system."""
    if isinstance(body, MigrationRelease) and not to_own_user:
        return release_refusal(body, peer, own_domain)
    return None if peer is None else claim_refusal(body, peer)


def release_refusal(body: MigrationRelease, peer: Peer | None, own_domain: str) -> str | None:
    """Why a partner must not act on a release from its primary side, or None: it must
    name this partner system, and come from the user's primary system when the peer is
    known here (with a gateway, the gateway checked that)."""
    if body.partner_system is not None and body.partner_system.lower() != own_domain:
        return f"release names {body.partner_system}, not {own_domain}"
    if peer is not None and system_domain(body.mc_service_id) != peer.domain:
        return f"{peer.domain} may not release users of {system_domain(body.mc_service_id)}"
    return None
