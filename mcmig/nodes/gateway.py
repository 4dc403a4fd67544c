"""The MC gateway server: a B2BUA at the system's border (PROFILE sections 2.3 and 5).

Requests from inside are routed by the Request-URI's domain to the peer
system; requests from a configured peer are routed by the MC service ID to
the server that serves it. Every leg is a new transaction with its own
Call-ID, tags, CSeq and a single Via of ours; only allow-listed headers
cross, and addresses inside migration bodies are replaced by our own.
"""

from __future__ import annotations

from collections.abc import Callable

from mcmig.mc.body import (
    CONTENT_TYPE,
    BodyError,
    MigrationBody,
    MigrationRelease,
    MigrationRequest,
    decode,
)
from mcmig.mc.causes import Cause, failure_headers, failure_response
from mcmig.node.dialogs import InviteServerHandle
from mcmig.node.runtime import SipNode
from mcmig.nodes.b2bua import forward, next_max_forwards, shed_like_the_profile, too_many_hops
from mcmig.nodes.call_relay import CallBorder, relay_invite
from mcmig.nodes.hiding import (
    crossing_request,
    entering_response,
    leaving_response,
    outbound_body,
    system_hiding,
)
from mcmig.nodes.topology import SystemTopology
from mcmig.nodes.trust import Border, claims_refusal
from mcmig.profiles.model import GatewayProfile, Peer, ServerProfile, SystemProfile
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri


class McGateway:
    # What a leg needs to map its answer back lives in the awaiting coroutine, for
    # at most the leg's timeout; this caps how many may wait at once.
    MAX_IN_FLIGHT = 10000

    def __init__(
        self, internal: SipNode, external: SipNode, system: SystemProfile, profile: GatewayProfile
    ) -> None:
        self.in_flight = 0
        self.internal = internal
        self.external = external
        self.system = system
        self.profile = profile
        self.border = Border(system, profile)
        self.topology = SystemTopology(system)
        names = [s.name for s in system.servers] + [g.name for g in system.gateways]
        self.hiding = system_hiding(system.domain, [p.domain for p in system.peers], names)
        internal.handlers["MESSAGE"] = self.outbound
        external.handlers["MESSAGE"] = self.inbound
        internal.invite_handler = self.outbound_invite
        external.invite_handler = self.inbound_invite
        for node in (internal, external):
            shed_like_the_profile(node, system.public_name)
        external.gatekeeper = self._gatekeeper
        # Strangers' connections are closed at accept: a flood of them never takes
        # a place under the connection caps that a peer needs.
        external.connection_gate = self.border.is_peer_host

    def _gatekeeper(self, request: Request, source: TransportAddress) -> Response | None:
        """Strangers at the external side learn nothing (no Allow list, whatever the
        method, OPTIONS included) and cost nothing (no transaction): PROFILE 5. A
        configured peer that breaks its TLS rules is told which. Every request at
        the external side passes here first, so the handlers there need not ask again."""
        peer, refusal = self._authenticate_peer(source)
        if refusal is None:
            return None
        self.external.log.debug("turned away %s from %s: %s", request.method, source, refusal)
        text = refusal if peer is not None else "not a configured peer"
        return failure_response(request, Cause.PEER_NOT_AUTHORIZED, text, self.agent)

    @property
    def agent(self) -> str:
        return self.system.public_name

    def fail(self, node: SipNode, request: Request, cause: Cause, text: str) -> Response:
        node.log.info("%s %s: %s", cause.status, cause.token, text)
        return failure_response(request, cause, text, self.agent)

    # -- inside -> another system (PROFILE step 4) ----------------------------------------------
    async def outbound(self, request: Request, source: TransportAddress) -> Response:
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416)
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        domain = request.uri.host.lower()
        peer = self._peer(domain)
        if peer is None:
            return self.fail(
                self.internal, request, Cause.UNKNOWN_MC_SYSTEM, f"no peer {domain} at this gateway"
            )
        try:
            body = outbound_body(request, self.profile.external.uri)
        except BodyError as exc:
            return self.fail(self.internal, request, Cause.BAD_REQUEST, exc.reason)
        onward = crossing_request(request, body, self.hiding, next_max_forwards(request))
        return await self._relay(
            self.external,
            request,
            onward,
            peer.target,
            self.system.timeouts.gateway_outbound,
            self.agent,
            relay=entering_response,
        )

    def _peer(self, domain: str) -> Peer | None:
        """The peer system ``domain``, when this gateway interfaces to it."""
        peer = self.system.peer(domain)
        return peer if peer is not None and self.profile.interfaces(domain) else None

    def _server(self, uri: SipUri, body: MigrationBody | None) -> ServerProfile | None:
        """PROFILE step 5: the server of the user the request names (by MC service
        ID), or of the visitor (by the seal in its temporary identity)."""
        if isinstance(body, MigrationRequest) and not self.system.users.is_user(uri.user or ""):
            return None  # a migration request names one of our users, nothing else
        return self.topology.server_for(uri)

    async def _relay(
        self,
        node: SipNode,
        request: Request,
        onward: Request,
        destination: TransportAddress,
        timeout: float,
        agent: str,
        relay: Callable[[Request, Response, str], Response],
    ) -> Response:
        if self.in_flight >= self.MAX_IN_FLIGHT:
            return failure_response(
                request,
                Cause.OVERLOADED,
                "too many requests in progress",
                agent,
                [("Retry-After", "5")],
            )
        self.in_flight += 1
        try:
            return await forward(node, request, onward, destination, timeout, agent, relay=relay)
        finally:
            self.in_flight -= 1

    def _authenticate_peer(self, source: TransportAddress) -> tuple[Peer | None, str | None]:
        """The peer that sent from ``source``, and why it is refused (or None): by
        address, and by certificate identity when the peer is configured for TLS."""
        peer = self.border.peer_at(source)
        if peer is None:
            return None, "not a configured peer"
        if peer.transport == "TLS":
            if source.transport != "TLS":
                return peer, f"{peer.domain} must use TLS"
            if peer.domain not in self.external.peer_names(source):
                return peer, f"certificate does not name {peer.domain}"
        return peer, None

    # -- another system -> inside (PROFILE step 5) ----------------------------------------------
    async def inbound(self, request: Request, source: TransportAddress) -> Response:
        peer = self.border.peer_at(source)
        assert peer is not None  # the gatekeeper let only peers in
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416)
        body: MigrationBody | None = None
        if request.content_type == CONTENT_TYPE:
            try:
                body = decode(request.body)  # parsed, never matched as text
            except BodyError as exc:
                return self.fail(self.external, request, Cause.BAD_REQUEST, exc.reason)
        # A peer may speak only for itself, to our users and to the temporary
        # identities of our visitors alike.
        to_own_user = self.system.users.is_user(request.uri.user or "")
        refusal = (
            claims_refusal(body, peer, self.system.domain, to_own_user)
            if isinstance(body, MigrationRequest | MigrationRelease)
            else None
        )
        if refusal is not None:
            return self.fail(self.external, request, Cause.PEER_NOT_AUTHORIZED, refusal)
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        uri = request.uri
        if uri.host.lower() != self.system.domain:
            return self.fail(
                self.external, request, Cause.UNKNOWN_USER, f"{uri.aor} is not of this system"
            )
        server = self._server(uri, body)
        if server is None:
            return self.fail(
                self.external, request, Cause.UNKNOWN_USER, f"{uri.aor} is not a user here"
            )
        onward = crossing_request(request, request.body, self.hiding, next_max_forwards(request))
        return await self._relay(
            self.internal,
            request,
            onward,
            server.listen.address(),
            self.system.timeouts.gateway_inbound,
            self.agent,
            relay=lambda up, down, agent: leaving_response(up, down, self.hiding),
        )

    # -- calls (PROFILE 4): the same routing, two bridged dialogs ---------------------------
    async def outbound_invite(self, handle: InviteServerHandle) -> None:
        request = handle.request
        if not isinstance(request.uri, SipUri) or request.max_forwards == 0:
            handle.respond(handle.response(416 if not isinstance(request.uri, SipUri) else 483))
            return
        peer = self._peer(request.uri.host.lower())
        if peer is None:
            self._refuse_call(
                handle, Cause.UNKNOWN_MC_SYSTEM, f"no peer {request.uri.host} at this gateway"
            )
            return
        leg_b = crossing_request(request, request.body, self.hiding, next_max_forwards(request))
        await relay_invite(
            self.internal,
            self.external,
            handle,
            leg_b,
            peer.target,
            self._border_of_calls(),
            self.system.call_max_duration,
        )

    async def inbound_invite(self, handle: InviteServerHandle) -> None:
        request = handle.request  # from a peer: the gatekeeper refused everyone else
        if not isinstance(request.uri, SipUri) or request.max_forwards == 0:
            handle.respond(handle.response(416 if not isinstance(request.uri, SipUri) else 483))
            return
        server = self._server(request.uri, None)
        if server is None or request.uri.host.lower() != self.system.domain:
            self._refuse_call(handle, Cause.UNKNOWN_USER, f"{request.uri.aor} is not a user here")
            return
        leg_b = crossing_request(request, request.body, self.hiding, next_max_forwards(request))
        await relay_invite(
            self.external,
            self.internal,
            handle,
            leg_b,
            server.listen.address(),
            self._border_of_calls(),
            self.system.call_max_duration,
        )

    def _refuse_call(self, handle: InviteServerHandle, cause: Cause, text: str) -> None:
        headers, body = failure_headers(cause, text, self.agent)
        handle.respond(handle.response(cause.status, headers, body))

    def _border_of_calls(self) -> CallBorder:
        """What a call's answers and in-dialog traffic hide on their way out."""
        return CallBorder(self.external, self.hiding)
