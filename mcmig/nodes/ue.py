"""A user's MC service client as a running UA: migrates on command, stays reachable.

It answers data (MESSAGE of any content type) with 200 and keeps it in an
inbox; calls are answered by mcmig.nodes.calls when that is attached.
"""

from __future__ import annotations

from collections.abc import Callable

from mcmig.errors import UsageError
from mcmig.idms.errors import LoginError
from mcmig.mc.body import CONTENT_TYPE, MigrationRelease, encode
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient, MigrationOutcome
from mcmig.nodes.phone import Answerer, CallOutcome, place_call
from mcmig.nodes.topology import entry_server
from mcmig.profiles import Deployment
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, parse_sip_uri


class UserEquipment:
    def __init__(
        self, node: SipNode, user: str, deployment: Deployment, password: str | None = None
    ) -> None:
        self.node = node
        self._password = password
        self.user = user
        self.deployment = deployment
        self.home_domain = parse_sip_uri(user).host.lower()
        self.serving: str | None = None  # the system we are authorized in
        self.inbox: list[Request] = []
        self.listeners: list[Callable[[str], None]] = []
        node.handlers["MESSAGE"] = self.on_message
        self.phone = Answerer(node, self.contact, self.tell)

    def tell(self, line: str) -> None:
        """An event, once: to the listeners when there are any (a terminal), else the log."""
        if not self.listeners:
            self.node.log.info("%s", line)
        for listener in self.listeners:
            listener(line)

    @property
    def contact(self) -> str:
        return str(
            SipUri(host=self.node.uri.host, user=parse_sip_uri(self.user).user, port=self.node.port)
        )

    def _system(self, domain: str) -> tuple[str, TransportAddress]:
        system = self.deployment.system(domain)
        if system is None:
            raise UsageError(f"no system {domain} in the profile")
        server = entry_server(system, parse_sip_uri(self.user))
        return system.migration_psi, server.listen.address()

    async def authorize(self, domain: str) -> str:
        """An access token for ``domain``'s servers, from the IdMSs (log in at
        home; for a partner, exchange and the partner's grant)."""
        if self._password is None:
            raise UsageError(f"no password for {self.user}: give credentials, or a token")
        from mcmig.idms.login import access_token_for  # aiohttp: only when logging in

        try:
            return await access_token_for(self.deployment, self.user, self._password, domain)
        except LoginError as exc:
            self.tell(f"authorization for {domain}: {exc}")
            raise

    async def migrate(self, domain: str, token: str | None = None) -> MigrationOutcome:
        """Service authorization in ``domain``: a partner, or our own system (going home)."""
        system = self.deployment.system(domain)
        if system is None:
            raise UsageError(f"no system {domain} in the profile")
        token = token or await self.authorize(system.domain)
        psi, server = self._system(domain)
        outcome = await McClient(self.node, self.user).migrate(psi, server, token)
        if outcome.accepted:
            self.serving = domain.lower()
        self.tell(f"{'home' if domain == self.home_domain else 'migrate to ' + domain}: {outcome}")
        return outcome

    async def release(self) -> Response:
        """Leave the partner system we are in (PROFILE section 3)."""
        if self.serving is None or self.serving == self.home_domain:
            raise UsageError("not migrated: nothing to release")
        psi, server = self._system(self.serving)
        request = make_request(
            "MESSAGE",
            parse_sip_uri(psi),
            from_uri=self.user,
            to_uri=psi,
            body=encode(MigrationRelease(self.user)),
            content_type=CONTENT_TYPE,
            contact=self.contact,
        )
        response = await self.node.send_request(request, server)
        if response.status == 200:
            self.serving = None
        self.tell(f"release: {response.status} {response.reason}")
        return response

    def _serving_server(self) -> TransportAddress:
        """The server that serves us now: the partner's that holds our stay, or our
        own primary server at home."""
        return self._system(self.serving or self.home_domain)[1]

    async def send(self, target: str, body: bytes, content_type: str = "text/plain") -> Response:
        """Data to any MC service ID, through the system that serves us (PROFILE 4.2)."""
        request = make_request(
            "MESSAGE",
            parse_sip_uri(target),
            from_uri=self.user,
            to_uri=target,
            body=body,
            content_type=content_type,
            contact=self.contact,
        )
        response = await self.node.send_request(request, self._serving_server())
        self.tell(f"send: {response.status} {response.reason}")
        return response

    async def call(self, target: str, hold: float = 1.0) -> CallOutcome:
        """A private call to any MC service ID, through the system that serves us."""
        outcome = await place_call(self.node, self.user, target, self._serving_server(), hold)
        self.tell(f"call {target}: {outcome}")
        return outcome

    async def on_message(self, request: Request, source: TransportAddress) -> Response:
        self.inbox.append(request)
        text = request.body.decode("utf-8", "replace")[:200]
        self.tell(f"data from {request.from_.uri}: {request.content_type} {text!r}")
        return make_response(request, 200)


async def send_data(
    node: SipNode,
    deployment: Deployment,
    sender: str,
    target: str,
    body: bytes,
    content_type: str,
    through: str | None = None,
) -> Response:
    """Data from ``sender`` to an MC service ID: handed to the target's server, or,
    ``through`` a system, to the server there that serves the sender."""
    domain = through or parse_sip_uri(target).host.lower()
    system = deployment.system(domain)
    if system is None:
        raise UsageError(f"no system {domain} in the profile")
    request = make_request(
        "MESSAGE",
        parse_sip_uri(target),
        from_uri=sender,
        to_uri=target,
        body=body,
        content_type=content_type,
    )
    server = entry_server(system, parse_sip_uri(sender if through else target))
    return await node.send_request(request, server.listen.address())
