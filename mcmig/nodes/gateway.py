"""The MC gateway server: a B2BUA at the system's border (PROFILE sections 2.3 and 5).

Requests from inside are routed by the Request-URI's domain to the peer
system; requests from a configured peer are routed by the MC service ID to
the server that serves it. Every leg is a new transaction with its own
Call-ID, tags, CSeq and a single Via of ours; only allow-listed headers
cross, and addresses inside migration bodies are replaced by our own.
"""

from __future__ import annotations

from dataclasses import replace

from mcmig.mc.body import CONTENT_TYPE, BodyError, MigrationRequest, decode, encode
from mcmig.mc.causes import Cause, failure_response
from mcmig.node.runtime import SipNode
from mcmig.nodes.b2bua import forward, next_max_forwards, too_many_hops
from mcmig.profiles.model import GatewayProfile, SystemProfile
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri


class McGateway:
    def __init__(
        self, internal: SipNode, external: SipNode, system: SystemProfile, profile: GatewayProfile
    ) -> None:
        self.internal = internal
        self.external = external
        self.system = system
        self.profile = profile
        self._peer_hosts = {p.address.host: p.domain for p in system.peers}
        internal.handlers["MESSAGE"] = self.outbound
        external.handlers["MESSAGE"] = self.inbound

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
        body = self._hide_body(request)
        if isinstance(body, Response):
            return body
        onward = self._onward(request, body)
        return await forward(
            self.external,
            request,
            onward,
            peer.address.address(),
            self.system.timeouts.gateway_outbound,
            self.agent,
        )

    # -- another system -> inside (PROFILE step 5) ----------------------------------------------
    async def inbound(self, request: Request, source: TransportAddress) -> Response:
        if source.host not in self._peer_hosts:
            return self.fail(
                self.external, request, Cause.PEER_NOT_AUTHORIZED, "not a configured peer"
            )
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416)
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        uri = request.uri
        if uri.host.lower() != self.system.domain or not self.system.users.is_user(uri.user or ""):
            return self.fail(
                self.external, request, Cause.UNKNOWN_USER, f"{uri.aor} is not a user here"
            )
        server = self.system.servers[0]
        onward = self._onward(request, request.body)
        return await forward(
            self.internal,
            request,
            onward,
            server.listen.address(),
            self.system.timeouts.gateway_inbound,
            self.agent,
            rewrite_agent=True,
        )

    # -- building the other leg -------------------------------------------------------------
    def _hide_body(self, request: Request) -> bytes | Response:
        """Replace our servers' addresses in a migration body with our external URI."""
        if request.content_type != CONTENT_TYPE:
            return request.body
        try:
            body = decode(request.body)
        except BodyError as exc:
            return self.fail(self.internal, request, Cause.BAD_REQUEST, exc.reason)
        if isinstance(body, MigrationRequest) and body.partner_address is not None:
            body = replace(body, partner_address=self.profile.external.uri)
        return encode(body)

    def _onward(self, request: Request, body: bytes) -> Request:
        """A new request: fresh Call-ID, tags, CSeq and Via; From/To URIs and body only."""
        assert isinstance(request.uri, SipUri)
        return make_request(
            request.method,
            request.uri,
            from_uri=str(request.from_.uri),
            to_uri=str(request.to.uri),
            body=body,
            content_type=request.get("Content-Type") if body else None,
            max_forwards=next_max_forwards(request),
        )
