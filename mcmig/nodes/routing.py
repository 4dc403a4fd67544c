"""Where a request addressed to a user goes (PROFILE section 4), decided at an MC service server.

One decision for calls and data alike, from the system's topology (which
server serves the user or holds the visitor), the registry (own users who
migrated), the visitor bindings (users who migrated here, and own users at
home) and the system's call mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcmig.mc.causes import Cause
from mcmig.nodes.topology import SystemTopology
from mcmig.nodes.trust import canonical_host
from mcmig.profiles.model import ServerProfile, SystemProfile
from mcmig.registry import Registry, VisitorBinding
from mcmig.sip.peer import TransportAddress
from mcmig.sip.uri import SipUri, parse_sip_uri


@dataclass(frozen=True)
class Forward:
    """Send the request on, to ``target`` as Request-URI, at ``destination``."""

    target: SipUri
    destination: TransportAddress
    leaves_system: bool


@dataclass(frozen=True)
class Redirect:
    contact: str  # 302 with this Contact (the temporary identity)


@dataclass(frozen=True)
class Refuse:
    cause: Cause  # unknown-user (404) or user-not-reachable (480)
    reason: str

    @property
    def status(self) -> int:
        return self.cause.status


Decision = Forward | Redirect | Refuse


def contact_address(contact: str) -> TransportAddress:
    uri = parse_sip_uri(contact)
    transport = (uri.transport or "udp").upper()
    return TransportAddress(transport, uri.host.strip("[]"), uri.port or 5060)


class UserLocator:
    def __init__(
        self,
        system: SystemProfile,
        registry: Registry,
        server: ServerProfile | None = None,
    ) -> None:
        self.system = system
        self.topology = SystemTopology(system)
        self.server = server or system.servers[0]
        self.registry = registry

    def next_hop(self, domain: str, partner_address: str | None = None) -> TransportAddress | None:
        """Toward another MC system: the gateway that interfaces to it, or the peer
        (or, without gateways, the address a partner gave)."""
        hop = self.topology.next_hop(domain)
        if hop is not None or self.system.gateways or partner_address is None:
            return hop
        return contact_address(partner_address)

    def sibling(self, uri: SipUri) -> ServerProfile | None:
        """The other server of this system that ``uri`` belongs to, if not this one."""
        owner = self.topology.server_for(uri)
        return None if owner is None or owner.name == self.server.name else owner

    async def originator(self, from_uri: SipUri, source: TransportAddress) -> VisitorBinding | None:
        """The user served here (a visitor, or an own user at home) who sent a request
        from ``source`` as ``from_uri``: the claim is checked against the contact its
        migration bound, so that nobody sends in a user's name from elsewhere."""
        binding = await self.registry.visitor(from_uri.aor)
        if binding is None or binding.contact is None:
            return None
        contact = contact_address(binding.contact)
        same_host = canonical_host(contact.host) == canonical_host(source.host)
        return binding if same_host and contact.port == source.port else None

    def originate(self, uri: SipUri) -> Decision:
        """Where a request from a user served here to another system goes (PROFILE
        4.2): to its next hop. (To this system's users, locate() decides.)"""
        hop = self.next_hop(uri.host.lower())
        if hop is None or uri.user is None:
            return Refuse(Cause.UNKNOWN_MC_SYSTEM, f"no route to {uri.host}")
        return Forward(uri, hop, leaves_system=True)

    async def locate(self, uri: SipUri) -> Decision:
        if uri.host.lower() != self.system.domain or uri.user is None:
            return Refuse(Cause.UNKNOWN_USER, "not a user of this system")
        owner = self.sibling(uri)
        if owner is not None:
            return Forward(uri, owner.listen.address(), leaves_system=False)
        aor = f"sip:{uri.user}@{self.system.domain}"
        if self.system.users.is_user(uri.user):
            record = await self.registry.record(aor)
            if record is not None:
                if self.system.call_mode == "redirect" and record.temporary_id is not None:
                    return Redirect(record.temporary_id)
                target = parse_sip_uri(record.temporary_id or aor)
                hop = self.next_hop(record.partner_system, record.partner_address)
                if hop is None:
                    return Refuse(Cause.USER_NOT_REACHABLE, "no route to the partner system")
                return Forward(target, hop, leaves_system=True)
        binding = await self.registry.visitor_by_temporary_id(aor)
        if binding is not None and binding.contact is not None:
            contact = parse_sip_uri(binding.contact)
            return Forward(contact, contact_address(binding.contact), leaves_system=False)
        if binding is None and not self.system.users.is_user(uri.user):
            # Neither a user of ours nor a visitor's temporary identity (any more).
            return Refuse(Cause.UNKNOWN_USER, "not a user of this system")
        return Refuse(Cause.USER_NOT_REACHABLE, "not reachable now")
