"""The MC service server: partner role for visitors (PROFILE 2.2), primary for its users (2.4)."""

from __future__ import annotations

import secrets

from mcmig.mc.body import CONTENT_TYPE, BodyError, MigrationRequest, decode, encode, system_domain
from mcmig.mc.causes import Cause, failure_response, unsupported_media_type
from mcmig.mc.registry import MigrationStore, new_record
from mcmig.mc.tokens import TokenError, TokenVerifier
from mcmig.node.runtime import SipNode
from mcmig.nodes.b2bua import forward, next_max_forwards, too_many_hops
from mcmig.profiles.model import ServerProfile, SystemProfile
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, parse_sip_uri


class McServer:
    def __init__(
        self,
        node: SipNode,
        system: SystemProfile,
        profile: ServerProfile,
        store: MigrationStore,
        verifier: TokenVerifier,
    ) -> None:
        self.node = node
        self.system = system
        self.profile = profile
        self.store = store
        self.verifier = verifier
        self.psi = parse_sip_uri(system.migration_psi)
        # Visitors' bindings: temporary identity -> (MC service ID, contact).
        # Kept in memory for now; calls to visitors need them (see issue on calls).
        self.visitors: dict[str, tuple[str, str | None]] = {}
        node.handlers["MESSAGE"] = self.on_message

    @property
    def agent(self) -> str:
        return self.system.public_name

    def fail(self, request: Request, cause: Cause, text: str) -> Response:
        self.node.log.info("%s %s: %s", cause.status, cause.token, text)
        return failure_response(request, cause, text, self.agent)

    async def on_message(self, request: Request, source: TransportAddress) -> Response:
        if request.content_type != CONTENT_TYPE:
            return unsupported_media_type(request)
        try:
            body = decode(request.body)
        except BodyError as exc:
            return (
                failure_response(request, Cause.BAD_REQUEST, exc.reason, self.agent)
                if exc.status == 400
                else make_response(request, exc.status)
            )
        if not isinstance(body, MigrationRequest) or not isinstance(request.uri, SipUri):
            return self.fail(request, Cause.BAD_REQUEST, "expected a migration request")
        if request.uri.aor == self.psi.aor:
            return await self.partner_role(request, body)
        if request.uri.host.lower() == self.system.domain:
            return self.primary_role(request, body)
        return self.fail(request, Cause.BAD_REQUEST, "not addressed to this system")

    # -- partner role: PROFILE 2.2, steps 1 to 3 and 10 to 11 -----------------------------
    async def partner_role(self, request: Request, body: MigrationRequest) -> Response:
        user = body.mc_service_id
        if body.access_token is None:
            return self.fail(request, Cause.BAD_REQUEST, "missing access-token")
        try:
            claims = self.verifier.verify(body.access_token, user)
        except TokenError as exc:
            return self.fail(request, Cause.INVALID_CREDENTIALS, f"access token refused ({exc})")
        primary = system_domain(user)
        if not self.system.visitors.accepts_system(primary):
            return self.fail(
                request, Cause.PRIMARY_SYSTEM_NOT_PERMITTED, f"no migration from {primary}"
            )
        if not self.system.visitors.accepts_user(user):
            return self.fail(
                request, Cause.USER_NOT_PERMITTED_BY_PARTNER, f"{user} is not accepted"
            )
        temporary_id = claims.get("temporary_id") or self.allocate_temporary_id()
        destination = self.route_to(primary)
        if destination is None:
            return self.fail(request, Cause.UNKNOWN_MC_SYSTEM, f"no route to {primary}")
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        onward = make_request(
            "MESSAGE",
            parse_sip_uri(user),
            from_uri=self.system.migration_psi,
            to_uri=user,
            body=encode(
                MigrationRequest(
                    mc_service_id=user,
                    partner_system=self.system.domain,
                    partner_address=self.profile.listen.uri,
                    temporary_id=str(temporary_id),
                )
            ),
            content_type=CONTENT_TYPE,
            max_forwards=next_max_forwards(request),
        )
        response = await forward(
            self.node, request, onward, destination, self.system.timeouts.server, self.agent
        )
        if response.status == 200:
            contact = request.contacts[0].uri if request.contacts else None
            self.visitors[str(temporary_id)] = (user, None if contact is None else str(contact))
            self.node.log.info("%s authorized as %s", user, temporary_id)
        return response

    def allocate_temporary_id(self) -> str:
        return f"sip:t-{secrets.token_hex(4)}@{self.system.domain}"

    def route_to(self, domain: str) -> TransportAddress | None:
        """The next hop toward another MC system: our gateway, or the peer itself."""
        if self.system.gateway is not None:
            return self.system.gateway.internal.address()
        peer = self.system.peer(domain)
        return None if peer is None else peer.address.address()

    # -- primary role: PROFILE 2.4, steps 6 to 8 -------------------------------------------
    def primary_role(self, request: Request, body: MigrationRequest) -> Response:
        user = body.mc_service_id
        if body.partner_system is None or body.partner_address is None:
            return self.fail(
                request, Cause.BAD_REQUEST, "missing partner-system or partner-address"
            )
        uri = parse_sip_uri(user)
        if uri.host.lower() != self.system.domain or not self.system.users.is_user(uri.user or ""):
            return self.fail(request, Cause.UNKNOWN_USER, f"{user} is not a user here")
        if not self.system.users.may_migrate(uri.user or "", body.partner_system):
            return self.fail(
                request,
                Cause.MIGRATION_NOT_PERMITTED,
                f"{user} may not migrate to {body.partner_system}",
            )
        stored, previous = self.store.put(
            new_record(user, body.partner_system, body.partner_address, body.temporary_id)
        )
        if previous is not None and previous.partner_system != stored.partner_system:
            # PROFILE 2.4 step 4: the earlier partner is told with a release (calls issue).
            self.node.log.info(
                "%s moved from %s to %s", user, previous.partner_system, stored.partner_system
            )
        self.node.log.info("%s migrated to %s (%s)", user, body.partner_system, body.temporary_id)
        return make_response(request, 200)
