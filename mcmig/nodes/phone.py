"""Calls at the edges: answering as a UE, placing as a caller (UAC and UAS cores, RFC 3261 13).

Media is out of scope: offers and answers are signalling-only SDP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from mcmig.mc.causes import warning_cause
from mcmig.node.dialogs import Dialog, InviteServerHandle, dialog_path
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.responses import make_response
from mcmig.sip.uri import parse_sip_uri


def warning_text(response: Response) -> str | None:
    """The text of a response's 399 Warning, with its agent: "cause: text (from agent)"."""
    parsed = warning_cause(response.get("Warning"))
    if parsed is None:
        return None
    agent, text = parsed
    return f"{text} (from {agent})"


def sdp(host: str, session: str) -> bytes:
    """A signalling-only SDP body (port 9, discard: no media is sent)."""
    return (
        f"v=0\r\no=- {abs(hash(session)) % 10**9} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\n"
        "t=0 0\r\nm=audio 9 RTP/AVP 0\r\na=inactive\r\n"
    ).encode()


Tell = Callable[[str], None]


class Answerer:
    """A UE's UAS core for calls: ring, answer, take BYE and re-INVITE, hang up."""

    def __init__(self, node: SipNode, contact: str, tell: Tell, ring_time: float = 0.1) -> None:
        self.node = node
        self.contact = contact
        self.tell = tell
        self.ring_time = ring_time
        self.calls: dict[str, Dialog] = {}
        self.ended: list[tuple[str, str]] = []  # (call_id, who ended it)
        node.invite_handler = self.on_invite

    async def on_invite(self, handle: InviteServerHandle) -> None:
        request = handle.request
        self.tell(f"call from {request.from_.uri}: ringing")
        handle.respond(handle.response(180))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.cancelled.wait(), self.ring_time)
            self.tell(f"call from {request.from_.uri}: cancelled")
            return
        contact = request.contacts[0].uri if request.contacts else request.from_.uri
        route_set, first_hop = dialog_path(request.record_routes, contact, handle.source)
        dialog = Dialog(
            call_id=request.call_id,
            local_tag=handle.to_tag,
            remote_tag=request.from_.tag or "",
            local_uri=str(request.to.uri),
            remote_uri=str(request.from_.uri),
            remote_target=contact,
            destination=first_hop,
            route_set=route_set,
            local_contact=self.contact,
            local_cseq=0,
            handler=self.in_call,
            remote_cseq=request.cseq.seq,
        )
        self.node.dialogs[dialog.key] = dialog
        self.calls[dialog.call_id] = dialog
        body = sdp(self.node.host, dialog.call_id)
        handle.respond(
            handle.response(
                200, [("Contact", f"<{self.contact}>"), ("Content-Type", "application/sdp")], body
            )
        )
        self.tell(f"call from {request.from_.uri}: answered")

    async def in_call(
        self, request: Request, source: TransportAddress, invite: InviteServerHandle | None
    ) -> Response | None:
        if request.method == "ACK":
            return None
        if invite is not None:  # re-INVITE: same (empty) media, same answer
            sdp_body = sdp(self.node.host, request.call_id)
            headers = [("Contact", f"<{self.contact}>"), ("Content-Type", "application/sdp")]
            invite.respond(invite.response(200, headers, sdp_body))
            return None
        if request.method == "BYE":
            dialog = self.calls.pop(request.call_id, None)
            if dialog is not None:
                self.node.dialogs.pop(dialog.key, None)
                self.ended.append((request.call_id, "remote"))
            self.tell(f"call with {request.from_.uri}: ended by the other side")
        return make_response(request, 200)

    async def hang_up(self, call_id: str | None = None) -> Response | None:
        dialog = self.calls.pop(call_id or next(iter(self.calls), ""), None)
        if dialog is None:
            return None
        self.node.dialogs.pop(dialog.key, None)
        self.ended.append((dialog.call_id, "local"))
        try:
            response = await self.node.send_request(dialog.request("BYE"), dialog.destination)
        except (SipTimeoutError, SipTransportError):
            return None
        self.tell(f"hung up: {response.status} {response.reason}")
        return response


@dataclass
class CallOutcome:
    status: int
    reason: str
    ended_by: str | None = None  # "caller" or "callee" for an answered call
    contact: str | None = None  # a redirect's Contact
    provisional: tuple[int, ...] = ()
    warning: str | None = None  # a refusal's Warning text (PROFILE 2.5: "cause: text")

    def __str__(self) -> str:
        text = f"{self.status} {self.reason}"
        if self.warning:
            text += f": {self.warning}"
        if self.contact:
            text += f" Contact: {self.contact}"
        if self.ended_by:
            text += f"; call ended by the {self.ended_by}"
        return text


async def place_call(
    node: SipNode,
    caller: str,
    callee: str,
    server: TransportAddress,
    hold: float = 1.0,
    cancel_after: float | None = None,
    on_answer: Callable[[Dialog], None] | None = None,
) -> CallOutcome:
    """Call ``callee`` through its home server; hang up after ``hold`` s unless the callee does."""
    user = parse_sip_uri(caller).user
    contact = f"sip:{user}@{node.address}"
    invite = make_request(
        "INVITE",
        parse_sip_uri(callee),
        from_uri=caller,
        to_uri=callee,
        body=sdp(node.host, caller),
        content_type="application/sdp",
        contact=contact,
    )
    provisional: list[int] = []
    out = node.invite(invite, server, on_provisional=lambda r: provisional.append(r.status))
    if cancel_after is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(out.final), cancel_after)
        out.cancel()
    try:
        final = await out.final
    except (SipTimeoutError, SipTransportError) as exc:
        return CallOutcome(408, f"no answer ({exc})")
    if final.status // 100 != 2:
        redirect = (
            str(final.contacts[0].uri) if final.status // 100 == 3 and final.contacts else None
        )
        return CallOutcome(
            final.status,
            final.reason,
            contact=redirect,
            provisional=tuple(provisional),
            warning=warning_text(final),
        )
    remote = final.contacts[0].uri if final.contacts else invite.uri
    route_set, first_hop = dialog_path(final.record_routes[::-1], remote, server)
    ended = asyncio.Event()

    async def in_call(
        request: Request, source: TransportAddress, handle: InviteServerHandle | None
    ) -> Response | None:
        if handle is not None:
            handle.respond(handle.response(200, [("Contact", f"<{contact}>")]))
            return None
        if request.method == "BYE":
            ended.set()
        return None if request.method == "ACK" else make_response(request, 200)

    dialog = Dialog(
        call_id=invite.call_id,
        local_tag=invite.from_.tag or "",
        remote_tag=final.to.tag or "",
        local_uri=caller,
        remote_uri=callee,
        remote_target=remote,
        destination=first_hop,
        route_set=route_set,
        local_contact=contact,
        local_cseq=invite.cseq.seq,
        handler=in_call,
    )
    node.dialogs[dialog.key] = dialog
    node.send_ack(out, dialog.request("ACK", cseq=invite.cseq.seq), dialog.destination)
    if on_answer is not None:
        on_answer(dialog)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ended.wait(), hold)
    node.dialogs.pop(dialog.key, None)
    if ended.is_set():
        return CallOutcome(final.status, final.reason, "callee", provisional=tuple(provisional))
    with contextlib.suppress(SipTimeoutError, SipTransportError):
        await node.send_request(dialog.request("BYE"), dialog.destination)
    return CallOutcome(final.status, final.reason, "caller", provisional=tuple(provisional))
