"""The MC service server: partner role for visitors (PROFILE 2.2), primary for its users (2.4),
the migration lifecycle (section 3) and traffic to users (section 4)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from mcmig.mc.body import (
    CONTENT_TYPE,
    BodyError,
    MigrationRelease,
    MigrationRequest,
    decode,
    encode,
    system_domain,
)
from mcmig.mc.causes import Cause, failure_headers, failure_response, unsupported_media_type
from mcmig.mc.tokens import TokenError, TokenVerifier
from mcmig.node.dialogs import InviteServerHandle
from mcmig.node.runtime import SipNode
from mcmig.nodes.b2bua import forward, next_max_forwards, shed_like_the_profile, too_many_hops
from mcmig.nodes.call_relay import relay_invite
from mcmig.nodes.releases import AttemptEnds, ReleaseSender
from mcmig.nodes.routing import Decision, Forward, Redirect, Refuse, UserLocator
from mcmig.nodes.trust import Border, claims_refusal
from mcmig.profiles.model import ServerProfile, SystemProfile
from mcmig.registry import (
    MigrationEnd,
    MigrationRecord,
    Registry,
    RegistryUnavailable,
    SqliteMigrationStore,
    SqliteRegistry,
    TemporaryIdTaken,
    VisitorBinding,
    VisitorRegister,
    new_record,
)
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, parse_sip_uri

# Seconds between two looks for stays whose lifetime ran out.
EXPIRY_INTERVAL = 1.0

# Seconds a client is told to wait while the registry cannot be reached.
REGISTRY_RETRY_AFTER = 5

# All that a client or peer learns of why its access token was refused (PROFILE 2.5).
TOKEN_REFUSED = "access token refused"


P = ParamSpec("P")
T = TypeVar("T")


def in_task(handler: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``handler``, each call run in an asyncio task of its own."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.ensure_future(handler(*args, **kwargs))

    return run


class McServer:
    def __init__(
        self,
        node: SipNode,
        system: SystemProfile,
        profile: ServerProfile,
        registry: Registry,
        verifier: TokenVerifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.clock = clock  # the wall clock stays are timed by (a replay's is the capture's)
        self.expiry_interval = EXPIRY_INTERVAL
        self.system = system
        self.profile = profile
        self.registry = registry
        self.verifier = verifier
        self.locator = UserLocator(system, registry, profile)
        self.border = Border(system)
        self.psi = parse_sip_uri(system.migration_psi)
        self._tasks: set[asyncio.Task[None]] = set()
        self.releases = ReleaseSender(node, system.migration_psi, system.timeouts.server)
        # Ends of attempts this partner answered 504, once every leg of them has
        # ended: the nested B2BUA timeouts of PROFILE 2.5, added up.
        timeouts = system.timeouts
        self.attempt_ends = AttemptEnds(
            self.end_at_primary,
            timeouts.server + timeouts.gateway_outbound + timeouts.gateway_inbound,
            self._spawn,
        )
        # Tests set this to a Counter to see that each migration request (by Call-ID)
        # is handled once however often it arrives; off in service (it would grow).
        self.processed: Counter[str] | None = None
        # Told of each migration request answered: (role, response, seconds taken).
        self.on_migration: Callable[[str, Response, float], None] | None = None
        self._spawn(self._end_expired_stays())
        if isinstance(registry, SqliteRegistry):
            node.handlers["MESSAGE"] = self.on_message
            node.invite_handler = self.on_invite
        else:
            # The node drives handlers inline, without a task, for speed; asyncpg's
            # timeouts need one, so each request gets a task of its own here.
            node.handlers["MESSAGE"] = in_task(self.on_message)
            node.invite_handler = in_task(self.on_invite)
        shed_like_the_profile(node, system.public_name)

    async def close(self) -> None:
        """Drop the releases not sent yet, let the commits in flight finish, then
        close the registry."""
        for task in list(self._tasks):
            task.cancel()
        await self.registry.close()

    @property
    def store(self) -> SqliteMigrationStore:
        """The SQLite engine's records, for tools and tests that read them directly."""
        assert isinstance(self.registry, SqliteRegistry)
        return self.registry.store

    @property
    def visitors(self) -> VisitorRegister:
        """The SQLite engine's visitor bindings, for tools and tests."""
        assert isinstance(self.registry, SqliteRegistry)
        return self.registry.visitor_register

    @property
    def agent(self) -> str:
        return self.system.public_name

    def fail(self, request: Request, cause: Cause, text: str) -> Response:
        self.node.log.info("%s %s: %s", cause.status, cause.token, text)
        return failure_response(request, cause, text, self.agent)

    def refuse_token(self, request: Request, user: str, exc: TokenError) -> Response:
        """The reason goes to the log; the peer learns the cause and a fixed text."""
        self.node.log.info("403 invalid-credentials for %s: %s", user, exc)
        return failure_response(request, Cause.INVALID_CREDENTIALS, TOKEN_REFUSED, self.agent)

    async def on_message(self, request: Request, source: TransportAddress) -> Response:
        try:
            return await self._on_message(request, source)
        except RegistryUnavailable as exc:
            return self.registry_unavailable(request, exc)

    def registry_unavailable(self, request: Request, exc: RegistryUnavailable) -> Response:
        """Never a 200 that was not recorded: 503 until the registry is back."""
        headers, body = self._unavailable(exc)
        return make_response(request, 503, headers=headers, body=body)

    def _unavailable(self, exc: RegistryUnavailable) -> tuple[list[tuple[str, str]], bytes]:
        """The headers and cause body of a 503 while the registry cannot be reached."""
        self.node.log.warning("registry unavailable: %s", exc)
        headers, body = failure_headers(Cause.OVERLOADED, "registry unavailable", self.agent)
        return [*headers, ("Retry-After", str(REGISTRY_RETRY_AFTER))], body

    async def _on_message(self, request: Request, source: TransportAddress) -> Response:
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416)
        if request.content_type != CONTENT_TYPE:
            if request.uri.aor == self.psi.aor:
                return unsupported_media_type(request)  # the PSI takes migration bodies only
            return await self.deliver(request, source)
        try:
            body = decode(request.body)
        except BodyError as exc:
            if exc.status != 400:
                return make_response(request, exc.status)
            return failure_response(request, Cause.BAD_REQUEST, exc.reason, self.agent)
        to_psi = request.uri.aor == self.psi.aor
        own_user = request.uri.host.lower() == self.system.domain and self.system.users.is_user(
            request.uri.user or ""
        )
        if isinstance(body, MigrationRequest | MigrationRelease):
            owner = self._owner(request.uri, body, to_psi)
            if owner is not None:
                return await self._pass_to(owner, request, body, source, to_psi, own_user)
        if isinstance(body, MigrationRequest) and (
            to_psi or request.uri.host.lower() == self.system.domain
        ):
            started = time.monotonic()
            role, response = await self._migration(request, body, to_psi, source)
            if self.on_migration is not None:
                self.on_migration(role, response, time.monotonic() - started)
            return response
        if isinstance(body, MigrationRelease):
            if to_psi:
                return await self.visitor_leaves(request, body)
            if request.uri.host.lower() == self.system.domain:
                refusal = self._cross_system_refusal(body, source, own_user)
                if refusal is not None:
                    return self.fail(request, Cause.PEER_NOT_AUTHORIZED, refusal)
                if own_user:
                    return await self.primary_release(request, body)
                return await self.partner_release(request, body)
        return self.fail(request, Cause.BAD_REQUEST, "not a migration request this server takes")

    async def _migration(
        self, request: Request, body: MigrationRequest, to_psi: bool, source: TransportAddress
    ) -> tuple[str, Response]:
        """A migration request in the role it puts us in: home, partner or primary."""
        if to_psi and system_domain(body.mc_service_id) == self.system.domain:
            return "home", await self.home_role(request, body)
        if to_psi:
            return "partner", await self.partner_role(request, body)
        refusal = self._cross_system_refusal(body, source, to_own_user=True)
        if refusal is not None:
            return "primary", self.fail(request, Cause.PEER_NOT_AUTHORIZED, refusal)
        return "primary", await self.primary_role(request, body)

    def _owner(
        self, uri: SipUri, body: MigrationRequest | MigrationRelease, to_psi: bool
    ) -> ServerProfile | None:
        """The other server of this system that a migration body belongs at: the
        user's own server (its record, its home binding), or the server that holds
        the stay a release names. None: this server takes it."""
        if to_psi:
            home = isinstance(body, MigrationRequest) and (
                system_domain(body.mc_service_id) == self.system.domain
            )
            return self.locator.sibling(parse_sip_uri(body.mc_service_id)) if home else None
        return self.locator.sibling(uri)

    async def _pass_to(
        self,
        owner: ServerProfile,
        request: Request,
        body: MigrationRequest | MigrationRelease,
        source: TransportAddress,
        to_psi: bool,
        own_user: bool,
    ) -> Response:
        """Hand a migration body to the server it belongs at (PROFILE 1.1), once the
        checks that only this server can make (who sent it) have passed."""
        if not to_psi:
            refusal = self._cross_system_refusal(body, source, own_user)
            if refusal is not None:
                return self.fail(request, Cause.PEER_NOT_AUTHORIZED, refusal)
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        assert isinstance(request.uri, SipUri)
        onward = self._onward(request, request.uri)
        # Answered by that server itself: the shortest of the system's timeouts.
        timeout = self.system.timeouts.gateway_inbound
        return await forward(
            self.node, request, onward, owner.listen.address(), timeout, self.agent
        )

    def _onward(self, request: Request, target: SipUri, from_uri: str | None = None) -> Request:
        return make_request(
            request.method,
            target,
            from_uri=from_uri or str(request.from_.uri),
            to_uri=str(request.to.uri),
            body=request.body,
            content_type=request.get("Content-Type") if request.body else None,
            max_forwards=next_max_forwards(request),
        )

    def _cross_system_refusal(
        self,
        body: MigrationRequest | MigrationRelease,
        source: TransportAddress,
        to_own_user: bool,
    ) -> str | None:
        """Why a request from another system is refused, or None (trust.Border).

        Through a gateway, the gateway checked the peer and its claims, and only it
        may bring such requests in; without one, the peer is known by its address
        here, and its claims are checked against it."""
        peer, refusal = self.border.cross_system_sender(source)
        if refusal is not None:
            return refusal
        return claims_refusal(body, peer, self.system.domain, to_own_user)

    # -- partner role: PROFILE 2.2, steps 1 to 3 and 10 to 11 -----------------------------
    async def partner_role(self, request: Request, body: MigrationRequest) -> Response:
        user = body.mc_service_id
        if body.access_token is None:
            return self.fail(request, Cause.BAD_REQUEST, "missing access-token")
        try:
            claims = await self.verifier.check(body.access_token, user)
        except TokenError as exc:
            return self.refuse_token(request, user, exc)
        primary = system_domain(user)
        if not self.system.visitors.accepts_system(primary):
            return self.fail(
                request, Cause.PRIMARY_SYSTEM_NOT_PERMITTED, f"no migration from {primary}"
            )
        if not self.system.visitors.accepts_user(user):
            return self.fail(
                request, Cause.USER_NOT_PERMITTED_BY_PARTNER, f"{user} is not accepted"
            )
        previous = await self.registry.visitor(user)
        # A retry after a 504 keeps the failed attempt's temporary identity: copies of
        # that attempt may still reach the primary after this one, and identical
        # requests are idempotent there, where another identity would replace ours.
        temporary_id = str(
            claims.get("temporary_id")
            or (previous.temporary_id if previous else None)
            or self.attempt_ends.pending_identity(user)
            or self.allocate_temporary_id()
        )
        holder = await self.registry.visitor_by_temporary_id(temporary_id)
        if holder is not None and holder.mc_service_id != user:
            # Only a token can name a temporary ID in use: the IdMS's fault, not a rebinding.
            self.node.log.warning("token gives %s, held by another visitor", temporary_id)
            return self.fail(
                request, Cause.INVALID_CREDENTIALS, "temporary identity held by another visitor"
            )
        destination = self.locator.next_hop(primary)
        if destination is None:
            return self.fail(request, Cause.UNKNOWN_MC_SYSTEM, f"no route to {primary}")
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        onward = self._to_primary(
            request,
            MigrationRequest(
                mc_service_id=user,
                partner_system=self.system.domain,
                partner_address=self.profile.listen.uri,
                temporary_id=temporary_id,
            ),
        )
        await self.attempt_ends.before_attempt(user, temporary_id)
        began = asyncio.get_running_loop().time()
        response = await forward(
            self.node, request, onward, destination, self.system.timeouts.server, self.agent
        )
        if response.status >= 500:
            # We answer a failure, but the primary may have recorded the migration
            # all the same: its 200 came back too late or was lost (504), or its
            # database committed and the connection broke before it said so (503).
            # That attempt's record is ended there, so both systems tell the same
            # outcome; a retry before then cancels it.
            self.attempt_ends.end_later(user, temporary_id, began)
        if response.status == 200:
            contact = (
                str(request.contacts[0].uri) if request.contacts else self._source_contact(request)
            )
            now = self.clock()
            expires = min(float(claims["exp"]), now + self.system.visitors.max_stay)
            try:
                await self.registry.bind(VisitorBinding(temporary_id, user, contact, now, expires))
            except TemporaryIdTaken as exc:
                # Taken between the check above and the commit: the primary recorded
                # a stay we cannot hold, so it is ended there, as a release does.
                self.node.log.warning("%s not bound: %s", user, exc)
                self._spawn(self.end_at_primary(user, temporary_id))
                return self.fail(request, Cause.INVALID_CREDENTIALS, "temporary identity in use")
            self.node.log.info("%s authorized as %s", user, temporary_id)
        return response

    def _source_contact(self, request: Request) -> str:
        via = request.top_via
        host = via.received or via.host
        return f"sip:{host}:{via.rport or via.port or 5060}"

    def _to_primary(self, request: Request, body: MigrationRequest | MigrationRelease) -> Request:
        user = body.mc_service_id
        return make_request(
            "MESSAGE",
            parse_sip_uri(user),
            from_uri=self.system.migration_psi,
            to_uri=user,
            body=encode(body),
            content_type=CONTENT_TYPE,
            max_forwards=next_max_forwards(request),
        )

    def allocate_temporary_id(self) -> str:
        return self.locator.topology.new_temporary_id(self.profile.name)

    async def visitor_leaves(self, request: Request, body: MigrationRelease) -> Response:
        """PROFILE 3: the client ends its stay; we drop it and tell its primary."""
        binding = await self.registry.release(body.mc_service_id)
        if binding is None:
            return make_response(request, 200)  # already gone: same answer
        self.node.log.info("%s left (was %s)", body.mc_service_id, binding.temporary_id)
        primary = system_domain(body.mc_service_id)
        destination = self.locator.next_hop(primary)
        if destination is None:
            return self.fail(request, Cause.UNKNOWN_MC_SYSTEM, f"no route to {primary}")
        onward = self._to_primary(
            request, MigrationRelease(body.mc_service_id, self.system.domain, binding.temporary_id)
        )
        return await forward(
            self.node, request, onward, destination, self.system.timeouts.server, self.agent
        )

    async def partner_release(self, request: Request, body: MigrationRelease) -> Response:
        """The primary ended a stay here (the user moved on or went home)."""
        assert isinstance(request.uri, SipUri)
        binding = await self.registry.release(body.mc_service_id, request.uri.aor)
        if binding is not None:
            self.node.log.info("released %s (%s)", binding.mc_service_id, binding.temporary_id)
        return make_response(request, 200)

    # -- primary role: PROFILE 2.4, steps 6 to 8, and section 3 -------------------------------
    async def primary_role(self, request: Request, body: MigrationRequest) -> Response:
        if self.processed is not None:
            self.processed[request.call_id] += 1
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
        record = new_record(user, body.partner_system, body.partner_address, body.temporary_id)
        # committed before the 200 (PROFILE 2.4), in a group commit under load
        stored, previous = await self.registry.migrated(record)  # and no longer at home
        if previous is not None and not previous.same_migration(stored):
            self.node.log.info(
                "%s moved from %s to %s", user, previous.partner_system, stored.partner_system
            )
            self.release_later(previous)
        self.node.log.info("%s migrated to %s (%s)", user, body.partner_system, body.temporary_id)
        return make_response(request, 200)

    async def end_stay(self, end: MigrationEnd) -> MigrationRecord | None:
        """Delete the user's record if it still names that stay; durable on return,
        in order with the records."""
        deleted = await self.registry.change(end)
        assert not isinstance(deleted, tuple)
        return deleted

    async def primary_release(self, request: Request, body: MigrationRelease) -> Response:
        if body.partner_system is None:
            return self.fail(request, Cause.BAD_REQUEST, "missing partner-system")
        deleted = await self.end_stay(
            MigrationEnd(body.mc_service_id, body.partner_system, body.temporary_id)
        )
        if deleted is not None:
            self.node.log.info("%s released by %s", body.mc_service_id, body.partner_system)
        return make_response(request, 200)  # a stale release changes nothing and says so by 200

    async def home_role(self, request: Request, body: MigrationRequest) -> Response:
        """Service authorization at home: the record is cleared and the partner released."""
        user = body.mc_service_id
        if body.access_token is None:
            return self.fail(request, Cause.BAD_REQUEST, "missing access-token")
        try:
            await self.verifier.check(body.access_token, user)
        except TokenError as exc:
            return self.refuse_token(request, user, exc)
        uri = parse_sip_uri(user)
        if not self.system.users.is_user(uri.user or ""):
            return self.fail(request, Cause.UNKNOWN_USER, f"{user} is not a user here")
        previous = await self.registry.record(user)
        if previous is not None and await self.end_stay(
            MigrationEnd(user, previous.partner_system, previous.temporary_id)
        ):
            self.release_later(previous)  # unless a newer stay replaced it (and released it)
        contact = (
            str(request.contacts[0].uri) if request.contacts else self._source_contact(request)
        )
        await self.registry.bind(VisitorBinding(user, user, contact, time.time()))
        self.node.log.info("%s is home", user)
        return make_response(request, 200)

    def release_later(self, record: MigrationRecord) -> None:
        """Primary role: tell the partner system of ``record`` that its stay ended."""
        target = parse_sip_uri(record.temporary_id or f"sip:migration@{record.partner_system}")
        hop = self.locator.next_hop(record.partner_system, record.partner_address)
        release = MigrationRelease(record.mc_service_id, record.partner_system, record.temporary_id)
        self._spawn_release(target, hop, release, record.partner_system)

    async def end_at_primary(self, user: str, temporary_id: str) -> None:
        """Partner role: end at the user's primary the record of an attempt this
        partner holds no stay for (the release names its temporary identity)."""
        primary = system_domain(user)
        release = MigrationRelease(user, self.system.domain, temporary_id)
        await self.releases.send(
            parse_sip_uri(user), self.locator.next_hop(primary), release, primary, attempts=3
        )

    async def _end_expired_stays(self) -> None:
        """Partner role: a stay whose lifetime ran out ends here and, by a release
        naming its temporary identity, at the user's primary (PROFILE 3)."""
        while True:
            await asyncio.sleep(self.expiry_interval)
            try:
                await self._end_stays_expired_by(self.clock())
            except RegistryUnavailable as exc:
                self.node.log.warning("ending expired stays later: registry unavailable: %s", exc)
            except Exception:  # our bug: log it, keep looking
                self.node.log.exception("ending expired stays failed")

    async def _end_stays_expired_by(self, now: float) -> None:
        for binding in await self.registry.expired(now):
            user, temporary_id = binding.mc_service_id, binding.temporary_id
            # Only the stay with this lifetime: a refresh made meanwhile stays.
            if await self.registry.release(user, temporary_id, binding.expires) is None:
                continue
            self.node.log.info("stay of %s (%s) expired", user, temporary_id)
            self._spawn(self.end_at_primary(user, temporary_id))

    def _spawn_release(
        self, target: SipUri, hop: TransportAddress | None, release: MigrationRelease, where: str
    ) -> None:
        self._spawn(self.releases.send(target, hop, release, where))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- traffic to users: PROFILE section 4 -------------------------------------------------
    async def route(self, request: Request, source: TransportAddress) -> tuple[Decision, str]:
        """Where a call or data goes: to a user of this system (PROFILE 4), or, from a
        user served here, to any system (4.2); and the From it goes on with (4.2)."""
        assert isinstance(request.uri, SipUri)
        from_uri = request.from_.uri
        target_here = request.uri.host.lower() == self.system.domain
        # Who sent it matters only when it may be a visitor of ours (a From of another
        # domain), or when it goes to another system: one registry lookup, if any.
        origin = None
        if isinstance(from_uri, SipUri) and (
            not target_here or from_uri.host.lower() != self.system.domain
        ):
            origin = await self.locator.originator(from_uri, source)
        shown = self._shown_as(request.uri, origin, str(from_uri))
        if target_here:
            return await self.locator.locate(request.uri), shown
        if origin is None:
            return Refuse(Cause.UNKNOWN_USER, "not a user of this system"), shown
        return self.locator.originate(request.uri), shown

    @staticmethod
    def _shown_as(target: SipUri, origin: VisitorBinding | None, sender: str) -> str:
        """PROFILE 4.2: a visitor shows its MC service ID to its own primary system
        and its temporary identity to everyone else; anyone else shows its From."""
        if origin is None or origin.temporary_id == origin.mc_service_id:
            return sender
        if target.host.lower() == system_domain(origin.mc_service_id):
            return origin.mc_service_id
        return origin.temporary_id

    async def deliver(self, request: Request, source: TransportAddress) -> Response:
        """Data (a MESSAGE of any other content type): on, redirected or refused."""
        decision, shown = await self.route(request, source)
        if isinstance(decision, Redirect):
            return make_response(request, 302, headers=[("Contact", f"<{decision.contact}>")])
        if not isinstance(decision, Forward):
            return self.fail(request, decision.cause, decision.reason)
        hops = too_many_hops(request)
        if hops is not None:
            return hops
        onward = self._onward(request, decision.target, shown)
        return await forward(
            self.node,
            request,
            onward,
            decision.destination,
            self.system.timeouts.server,
            self.agent,
        )

    async def on_invite(self, handle: InviteServerHandle) -> None:
        """A call for a user (PROFILE 4): bridged on, redirected, or refused."""
        request = handle.request
        if not isinstance(request.uri, SipUri):
            handle.respond(handle.response(416))
            return
        try:
            decision, shown = await self.route(request, handle.source)
        except RegistryUnavailable as exc:
            handle.respond(handle.response(503, *self._unavailable(exc)))
            return
        if isinstance(decision, Redirect):
            handle.respond(handle.response(302, [("Contact", f"<{decision.contact}>")]))
            return
        if not isinstance(decision, Forward):
            headers, body = failure_headers(decision.cause, decision.reason, self.agent)
            handle.respond(handle.response(decision.status, headers, body))
            return
        if request.max_forwards == 0:
            handle.respond(handle.response(483))
            return
        leg_b = self._onward(request, decision.target, shown)
        await relay_invite(
            self.node,
            self.node,
            handle,
            leg_b,
            decision.destination,
            max_duration=self.system.call_max_duration,
        )
