"""Dialogs (RFC 3261 section 12) and the handles a node gives INVITE handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
        return make_response(
            self.request, status, reason, to_tag=self.to_tag, headers=headers or [], body=body
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
        headers = [
            ("Max-Forwards", "70"),
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<{self.local_contact}>"),
        ]
        if content_type is not None and body:
            headers.append(("Content-Type", content_type))
        return Request(method, self.remote_target, headers, body)


def target_address(uri: Uri, fallback: TransportAddress) -> TransportAddress:
    """Where to send in-dialog requests: the remote target's host and port."""
    if not isinstance(uri, SipUri):
        return fallback
    transport = (uri.transport or fallback.transport.lower()).upper()
    return TransportAddress(transport, uri.host.strip("[]"), uri.port or 5060)
