"""Where a request addressed to a user goes (PROFILE section 4), decided at an MC service server.

One decision for calls and data alike, from the registry (own users who
migrated), the visitor bindings (users who migrated here, and own users
at home) and the system's call mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcmig.mc.causes import Cause
from mcmig.profiles.model import SystemProfile
from mcmig.registry import MigrationStore, SqliteVisitorStore
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
        self, system: SystemProfile, store: MigrationStore, visitors: SqliteVisitorStore
    ) -> None:
        self.system = system
        self.store = store
        self.visitors = visitors

    def next_hop(self, domain: str, partner_address: str | None = None) -> TransportAddress | None:
        """Toward another MC system: our gateway, or the peer (or the address it gave)."""
        if self.system.gateway is not None:
            return self.system.gateway.internal.address()
        peer = self.system.peer(domain)
        if peer is not None:
            return peer.target
        return None if partner_address is None else contact_address(partner_address)

    def locate(self, uri: SipUri) -> Decision:
        if uri.host.lower() != self.system.domain or uri.user is None:
            return Refuse(Cause.UNKNOWN_USER, "not a user of this system")
        aor = f"sip:{uri.user}@{self.system.domain}"
        if self.system.users.is_user(uri.user):
            record = self.store.get(aor)
            if record is not None:
                if self.system.call_mode == "redirect" and record.temporary_id is not None:
                    return Redirect(record.temporary_id)
                target = parse_sip_uri(record.temporary_id or aor)
                hop = self.next_hop(record.partner_system, record.partner_address)
                if hop is None:
                    return Refuse(Cause.USER_NOT_REACHABLE, "no route to the partner system")
                return Forward(target, hop, leaves_system=True)
        binding = self.visitors.by_temporary_id(aor)
        if binding is not None and binding.contact is not None:
            contact = parse_sip_uri(binding.contact)
            return Forward(contact, contact_address(binding.contact), leaves_system=False)
        if binding is None and not self.system.users.is_user(uri.user):
            # Neither a user of ours nor a visitor's temporary identity (any more).
            return Refuse(Cause.UNKNOWN_USER, "not a user of this system")
        return Refuse(Cause.USER_NOT_REACHABLE, "not reachable now")
