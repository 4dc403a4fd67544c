"""Dialogs (RFC 3261 section 12) and the handles a node gives INVITE handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mcmig.sip.address import NameAddress
from mcmig.sip.ids import new_tag
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response
from mcmig.sip.uri import SipUri, Uri


class InviteServerHandle:
    """What an INVITE handler holds: respond (1xx, then one final) and learn of a CANCEL."""

    def __init__(
        self, request: Request, source: TransportAddress, respond: Callable[[Response], None]
    ) -> None:
        self.request = request
        self.source = source
        self._respond = respond
        self.cancelled = asyncio.Event()
        self.final: Response | None = None
        self.to_tag = request.to.tag or new_tag()  # one tag for every response to this INVITE

    def response(
        self,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        reason: str | None = None,
    ) -> Response:
        headers = headers or []
        if 100 < status < 300:
            # RFC 3261 12.1.1: a response that makes a dialog copies the request's
            # Record-Route, so that the caller learns the route set too.
            recorded = self.request.get_all("Record-Route")
            if recorded:
                headers = [("Record-Route", value) for value in recorded] + headers
        return make_response(
            self.request, status, reason, to_tag=self.to_tag, headers=headers, body=body
        )

    def respond(self, response: Response) -> None:
        if self.final is not None:
            return  # a CANCEL or a timeout already ended it
        if response.status >= 200:
            self.final = response
        self._respond(response)


@dataclass
class OutgoingInvite:
    """An INVITE we sent: its provisionals, its final response, and the means to CANCEL it."""

    request: Request
    destination: TransportAddress
    final: asyncio.Future[Response]
    on_provisional: Callable[[Response], None] | None = None
    ack: Request | None = None  # the ACK we sent for a 2xx, re-sent on its retransmissions
    ack_destination: TransportAddress | None = None
    cancel: Callable[[], None] = field(default=lambda: None)
    # RFC 3261 9.1: no CANCEL before a provisional response; one asked for earlier
    # waits for the first provisional (and is dropped if a final comes first).
    provisional_seen: bool = False
    cancel_waiting: bool = False


DialogHandler = Callable[
    [Request, TransportAddress, InviteServerHandle | None], Awaitable[Response | None]
]


@dataclass
class Dialog:
    """One dialog at this node. Requests we send in it come from here."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: Uri
    destination: TransportAddress
    local_contact: str
    local_cseq: int
    handler: DialogHandler
    remote_cseq: int = 0
    pending_invite: bool = False  # a re-INVITE of ours is in progress (glare: 491)
    # The route set (RFC 3261 12.1.1, 12.1.2): Route values for every request we
    # send in the dialog; ``destination`` is then its first hop (see dialog_path).
    route_set: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.local_tag)

    def request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        headers = [("Max-Forwards", "70")]
        headers += [("Route", route) for route in self.route_set]
        headers += [
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<{self.local_contact}>"),
        ]
        if content_type is not None and body:
            headers.append(("Content-Type", content_type))
        return Request(method, self.remote_target, headers, body)


def dialog_path(
    record_routes: Sequence[NameAddress], remote_target: Uri, fallback: TransportAddress
) -> tuple[tuple[str, ...], TransportAddress]:
    """The route set and the first hop of a dialog (RFC 3261 12.2.1.1).

    ``record_routes`` in the order the route set takes: as the INVITE carried
    them at the callee (12.1.1), reversed from the 2xx at the caller (12.1.2).
    With a route set, requests go to its first URI (loose routing: the
    Request-URI stays the remote target); without one, to the remote target.
    A strict router (no ``lr``) is treated as a loose one."""
    routes = tuple(f"<{r.uri}>" for r in record_routes)
    if routes:
        return routes, target_address(record_routes[0].uri, fallback)
    return routes, target_address(remote_target, fallback)


def target_address(uri: Uri, fallback: TransportAddress) -> TransportAddress:
    """Where to send in-dialog requests: the remote target's host and port."""
    if not isinstance(uri, SipUri):
        return fallback
    transport = (uri.transport or fallback.transport.lower()).upper()
    return TransportAddress(transport, uri.host.strip("[]"), uri.port or 5060)
