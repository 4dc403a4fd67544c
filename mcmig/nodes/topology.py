"""Which node of an MC system a request goes to: the one place routing is decided
from the profile (PROFILE 1.1), asked by servers, gateways and clients alike.

- a user of the system goes to the server that serves its MC service ID;
- a visitor's temporary identity goes to the server that holds the stay, which
  the identity itself says under an AEAD seal only this system can open;
- another system is reached through the gateway that interfaces to it, or
  straight at the peer's address in a system without gateways.
"""

from __future__ import annotations

import hashlib

from mcmig.mc.identities import TemporaryIdSealer, new_temporary_id
from mcmig.profiles.model import ServerProfile, SystemProfile
from mcmig.sip.peer import TransportAddress
from mcmig.sip.uri import SipUri


class SystemTopology:
    def __init__(self, system: SystemProfile) -> None:
        self.system = system
        keys = system.temporary_ids
        self.sealer = TemporaryIdSealer(keys.keys) if keys is not None else None
        self._by_tag = {TemporaryIdSealer.server_tag(s.name): s for s in system.servers}

    @property
    def single_server(self) -> ServerProfile | None:
        return self.system.servers[0] if len(self.system.servers) == 1 else None

    def server_of_user(self, user: str) -> ServerProfile | None:
        """The primary server of the user part ``user``, if it is a user here."""
        if not self.system.users.is_user(user):
            return None
        return self.system.server_for(user)

    def server_of_temporary_id(self, user: str) -> ServerProfile | None:
        """The server whose visitor has the temporary identity ``user@<domain>``."""
        if self.sealer is None:
            return self.single_server
        tag = self.sealer.server_tag_of(user, self.system.domain)
        return None if tag is None else self._by_tag.get(tag)

    def server_for(self, uri: SipUri) -> ServerProfile | None:
        """The server a request for ``uri`` (of this system's domain) belongs to: the
        user's, or the visitor's, or None when ``uri`` names neither."""
        if uri.host.lower() != self.system.domain or uri.user is None:
            return None
        return self.server_of_user(uri.user) or self.server_of_temporary_id(uri.user)

    def new_temporary_id(self, server: str) -> str:
        if self.sealer is None:
            return new_temporary_id(self.system.domain)
        return self.sealer.new(self.system.domain, server)

    def next_hop(self, domain: str) -> TransportAddress | None:
        """From inside the system toward the peer system ``domain``: the gateway that
        interfaces to it, or the peer itself; None when it is not a peer."""
        peer = self.system.peer(domain)
        if peer is None:
            return None
        gateway = self.system.gateway_for(domain)
        return gateway.internal.address() if gateway is not None else peer.target


def entry_server(system: SystemProfile, mc_service_id: SipUri) -> ServerProfile:
    """The server a client sends to in ``system``: its own primary server at home;
    as a visitor, one chosen by a hash of its MC service ID, the same each time,
    so that its refreshes and release find its stay."""
    if mc_service_id.host.lower() == system.domain and mc_service_id.user is not None:
        server = system.server_for(mc_service_id.user)
        if server is not None:
            return server
    digest = hashlib.sha256(mc_service_id.aor.encode()).digest()
    return system.servers[int.from_bytes(digest[:4], "big") % len(system.servers)]
