"""The MC gateway server: a B2BUA at the system's border (PROFILE sections 2.3 and 5).

Requests from inside are routed by the Request-URI's domain to the peer
system; requests from a configured peer are routed by the MC service ID to
the server that serves it. Every leg is a new transaction with its own
Call-ID, tags, CSeq and a single Via of ours; only allow-listed headers
cross, and addresses inside migration bodies are replaced by our own.
"""

from __future__ import annotations

from collections.abc import Callable

from mcmig.mc.body import BodyError, claimed_partner_system, is_migration_request
from mcmig.mc.causes import Cause, failure_response
from mcmig.node.dialogs import InviteServerHandle
from mcmig.node.runtime import SipNode
from mcmig.nodes.b2bua import forward, next_max_forwards, shed_like_the_profile, too_many_hops
from mcmig.nodes.call_relay import relay_invite
from mcmig.nodes.hiding import (
    crossing_request,
    entering_response,
    leaving_response,
    outbound_body,
)
from mcmig.profiles.model import GatewayProfile, SystemProfile
from mcmig.sip.errors import SipParseError
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, is_ip_address, parse_sip_uri


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
        self._peer_hosts = {p.address.host: p.domain for p in system.peers}
        names = [s.name for s in system.servers] + [profile.name]
        self._inner_names = frozenset(names)
        internal.handlers["MESSAGE"] = self.outbound
        external.handlers["MESSAGE"] = self.inbound
        external.handlers["OPTIONS"] = self.options
        internal.invite_handler = self.outbound_invite
        external.invite_handler = self.inbound_invite
        for node in (internal, external):
            shed_like_the_profile(node, system.public_name)

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
        peer = self.system.peer(domain)
        if peer is None:
            return self.fail(
                self.internal, request, Cause.UNKNOWN_MC_SYSTEM, f"no peer for {domain}"
            )
        try:
            body = outbound_body(request, self.profile.external.uri)
        except BodyError as exc:
            return self.fail(self.internal, request, Cause.BAD_REQUEST, exc.reason)
        onward = crossing_request(request, body, self.system.domain, next_max_forwards(request))
        return await self._relay(
            self.external,
            request,
            onward,
            peer.target,
            self.system.timeouts.gateway_outbound,
            self.agent,
            relay=entering_response,
        )

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

    async def options(self, request: Request, source: TransportAddress) -> Response:
        """Health checks, for peers only: others learn nothing, not even the Allow list."""
        refusal = self._authenticate_peer(source)
        if refusal is not None:
            return self.fail(self.external, request, Cause.PEER_NOT_AUTHORIZED, refusal)
        return make_response(request, 200, headers=[("Allow", self.external.allow_header())])

    def _claimed_system(self, request: Request, source: TransportAddress) -> str | None:
        """A peer may speak only for itself: in a migration request or release for one of
        our users, partner-system must name that peer. (A release our primary sends to a
        partner names the partner itself, and is not checked here.)"""
        uri = request.uri
        if not isinstance(uri, SipUri) or not self.system.users.is_user(uri.user or ""):
            return None
        claimed = claimed_partner_system(request)
        peer = self._peer_hosts.get(source.host)
        if claimed is not None and claimed != peer:
            return f"partner-system {claimed} is not the peer {peer}"
        return None

    def _authenticate_peer(self, source: TransportAddress) -> str | None:
        """Why a request from ``source`` is refused, or None: by address, and by
        certificate identity when the peer is configured for TLS."""
        domain = self._peer_hosts.get(source.host)
        if domain is None:
            return "not a configured peer"
        peer = self.system.peer(domain)
        assert peer is not None
        if peer.transport == "TLS":
            if source.transport != "TLS":
                return f"{domain} must use TLS"
            if domain not in self.external.peer_names(source):
                return f"certificate does not name {domain}"
        return None

    # -- another system -> inside (PROFILE step 5) ----------------------------------------------
    async def inbound(self, request: Request, source: TransportAddress) -> Response:
        refusal = self._authenticate_peer(source) or self._claimed_system(request, source)
        if refusal is not None:
            return self.fail(self.external, request, Cause.PEER_NOT_AUTHORIZED, refusal)
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416)
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        uri = request.uri
        if uri.host.lower() != self.system.domain:
            return self.fail(
                self.external, request, Cause.UNKNOWN_USER, f"{uri.aor} is not of this system"
            )
        if is_migration_request(request) and not self.system.users.is_user(uri.user or ""):
            # PROFILE step 5: the primary gateway maps MC service IDs to their server.
            return self.fail(
                self.external, request, Cause.UNKNOWN_USER, f"{uri.aor} is not a user here"
            )
        server = self.system.servers[0]
        onward = crossing_request(
            request, request.body, uri.host.lower(), next_max_forwards(request)
        )
        return await self._relay(
            self.internal,
            request,
            onward,
            server.listen.address(),
            self.system.timeouts.gateway_inbound,
            self.agent,
            relay=lambda up, down, agent: leaving_response(up, down, agent, self._inner_names),
        )

    # -- calls (PROFILE 4): the same routing, two bridged dialogs ---------------------------
    async def outbound_invite(self, handle: InviteServerHandle) -> None:
        request = handle.request
        if not isinstance(request.uri, SipUri) or request.max_forwards == 0:
            handle.respond(handle.response(416 if not isinstance(request.uri, SipUri) else 483))
            return
        peer = self.system.peer(request.uri.host.lower())
        if peer is None:
            handle.respond(
                handle.response(404, [("Warning", f'399 {self.agent} "unknown-mc-system"')])
            )
            return
        leg_b = crossing_request(
            request, request.body, self.system.domain, next_max_forwards(request)
        )
        await relay_invite(self.internal, self.external, handle, leg_b, peer.target, _public)

    async def inbound_invite(self, handle: InviteServerHandle) -> None:
        request = handle.request
        refusal = self._authenticate_peer(handle.source)
        if refusal is not None:
            self.external.log.info("403 peer-not-authorized: %s", refusal)
            handle.respond(
                handle.response(
                    403, [("Warning", f'399 {self.agent} "peer-not-authorized: {refusal}"')]
                )
            )
            return
        if not isinstance(request.uri, SipUri) or request.max_forwards == 0:
            handle.respond(handle.response(416 if not isinstance(request.uri, SipUri) else 483))
            return
        leg_b = crossing_request(
            request, request.body, request.uri.host.lower(), next_max_forwards(request)
        )
        server = self.system.servers[0].listen.address()
        await relay_invite(self.external, self.internal, handle, leg_b, server, _public)


def _public(uri: str) -> bool:
    """Only a public identity may cross in a redirect's Contact, never an address."""
    try:
        parsed = parse_sip_uri(uri)
    except SipParseError:
        return False
    return parsed.user is not None and not is_ip_address(parsed.host) and "." in parsed.host
