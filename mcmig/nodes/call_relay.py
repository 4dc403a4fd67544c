"""Calls through a B2BUA (PROFILE section 4): two dialogs, one on each side, bridged.

Used by MC service servers (both legs on one node) and gateways (leg A on
one side, leg B on the other). Leg B is a new INVITE built by the caller of
``relay_invite``, so a gateway applies its hiding rules; in-dialog requests
are rebuilt from the other leg's dialog, so nothing of one leg's headers
reaches the other. SDP bodies pass unchanged (no media relay).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from mcmig.node.dialogs import Dialog, InviteServerHandle, target_address
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.nodes.hiding import RELAYED_HEADERS, Hiding, plain_reason
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response


@dataclass(frozen=True)
class CallBorder:
    """A gateway's call: answers sent out on ``external`` are hidden by ``hiding``."""

    external: SipNode
    hiding: Hiding

    def toward(self, node: SipNode) -> Hiding | None:
        return self.hiding if node is self.external else None


def _answer_headers(response: Response, hiding: Hiding | None) -> list[tuple[str, str]]:
    """The headers of a relayed answer: Warnings (rewritten when the answer leaves
    a system), the allow-listed few, and, for a redirect, public Contacts only."""
    headers = [
        (n, v if hiding is None or n != "Warning" else hiding.warning(v))
        for n in RELAYED_HEADERS
        for v in response.get_all(n)
    ]
    if response.status // 100 == 3:
        headers += [
            ("Contact", f"<{c.uri}>")
            for c in response.contacts
            if hiding is None or hiding.public_contact(str(c.uri))
        ]
    if response.body and response.get("Content-Type"):
        headers.append(("Content-Type", response.get("Content-Type") or ""))
    return headers


def _reason(response: Response, hiding: Hiding | None, default: str = "OK") -> str:
    if hiding is None:
        return plain_reason(response.reason, default)
    return hiding.reason(response.reason, default)


async def relay_invite(
    node_in: SipNode,
    node_out: SipNode,
    handle: InviteServerHandle,
    leg_b: Request,
    destination: TransportAddress,
    border: CallBorder | None = None,
) -> None:
    """Place ``leg_b`` and answer ``handle`` with what comes back; bridge the call on 2xx.

    With a ``border``, every answer that leaves through its external node,
    provisional ones included, has its Warning agents, reason phrase and free
    text hidden, as a gateway does for MESSAGE."""
    hiding = None if border is None else border.toward(node_in)
    leg_b.set("Contact", f"<{node_out.uri}>")
    out = node_out.invite(
        leg_b,
        destination,
        on_provisional=lambda r: (
            handle.respond(handle.response(r.status, reason=_reason(r, hiding, "Progress")))
            if r.status != 100
            else None
        ),
    )
    cancelled: asyncio.Future[object] = asyncio.ensure_future(handle.cancelled.wait())
    final_or_error: asyncio.Future[object] = out.final  # type: ignore[assignment]
    try:
        await asyncio.wait({final_or_error, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled.cancel()
    if handle.cancelled.is_set() and not out.final.done():
        out.cancel()  # upstream CANCEL: the node already answered 487 there
        with contextlib.suppress(SipTimeoutError, SipTransportError, asyncio.TimeoutError):
            late = await asyncio.wait_for(asyncio.shield(out.final), 64 * node_out.layer.timers.t1)
            if late.status // 100 == 2:  # the callee answered as the CANCEL crossed it
                dialog = _leg_b_dialog(node_out, leg_b, late, destination)
                node_out.send_ack(
                    out, dialog.request("ACK", cseq=leg_b.cseq.seq), dialog.destination
                )
                await _send_in_dialog(node_out, dialog, dialog.request("BYE"))
        return
    try:
        final = out.final.result()
    except (SipTimeoutError, SipTransportError):
        handle.respond(handle.response(504, [_timeout_warning(node_in)]))
        return
    if final.status // 100 != 2:
        handle.respond(
            handle.response(
                final.status, _answer_headers(final, hiding), final.body, _reason(final, hiding)
            )
        )
        return
    leg_b_dialog = _leg_b_dialog(node_out, leg_b, final, destination)
    node_out.send_ack(
        out, leg_b_dialog.request("ACK", cseq=leg_b.cseq.seq), leg_b_dialog.destination
    )
    request = handle.request
    contact = request.contacts[0].uri if request.contacts else None
    fallback = handle.source
    leg_a_dialog = Dialog(
        call_id=request.call_id,
        local_tag=handle.to_tag,
        remote_tag=request.from_.tag or "",
        local_uri=str(request.to.uri),
        remote_uri=str(request.from_.uri),
        remote_target=contact if contact is not None else request.from_.uri,
        destination=target_address(contact, fallback) if contact is not None else fallback,
        local_contact=str(node_in.uri),
        local_cseq=0,
        handler=lambda r, s, h: _no_handler(r),
        remote_cseq=request.cseq.seq,
    )
    bridge(node_in, leg_a_dialog, node_out, leg_b_dialog, border)
    headers = [("Contact", f"<{node_in.uri}>"), *_answer_headers(final, hiding)]
    handle.respond(handle.response(final.status, headers, final.body, _reason(final, hiding)))


def _timeout_warning(node: SipNode) -> tuple[str, str]:
    """PROFILE 2.5: the answering system's public name, never a node's."""
    return ("Warning", f'399 {node.public_name} "timeout: no answer from the next hop"')


async def _no_handler(request: Request) -> Response | None:
    return None


def _leg_b_dialog(
    node: SipNode, leg_b: Request, final: Response, destination: TransportAddress
) -> Dialog:
    contact = final.contacts[0].uri if final.contacts else None
    return Dialog(
        call_id=leg_b.call_id,
        local_tag=leg_b.from_.tag or "",
        remote_tag=final.to.tag or "",
        local_uri=str(leg_b.from_.uri),
        remote_uri=str(leg_b.to.uri),
        remote_target=contact if contact is not None else leg_b.uri,
        destination=target_address(contact, destination) if contact is not None else destination,
        local_contact=str(node.uri),
        local_cseq=leg_b.cseq.seq,
        handler=lambda r, s, h: _no_handler(r),
    )


async def _send_in_dialog(node: SipNode, dialog: Dialog, request: Request) -> Response | None:
    try:
        return await node.send_request(request, dialog.destination)
    except (SipTimeoutError, SipTransportError):
        return None


def bridge(
    node_a: SipNode, a: Dialog, node_b: SipNode, b: Dialog, border: CallBorder | None = None
) -> None:
    """Connect two dialogs: what arrives on one is sent on the other."""
    a.handler = _relay_handler(node_a, a, node_b, b, border)
    b.handler = _relay_handler(node_b, b, node_a, a, border)
    node_a.dialogs[a.key] = a
    node_b.dialogs[b.key] = b


def _relay_handler(
    node_x: SipNode, x: Dialog, node_y: SipNode, y: Dialog, border: CallBorder | None
) -> Callable[
    [Request, TransportAddress, InviteServerHandle | None], asyncio.Future[Response | None]
]:
    # Answers to what arrives on leg X go out on node X: hidden if that is the border.
    hiding = None if border is None else border.toward(node_x)

    async def handle(
        request: Request, source: TransportAddress, invite: InviteServerHandle | None
    ) -> Response | None:
        if request.method == "ACK":
            return None  # ACKs end at each leg: we ACK the other leg ourselves
        if invite is not None:
            await _relay_reinvite(node_y, y, x, invite, hiding)
            return None
        if request.method == "BYE":
            node_x.dialogs.pop(x.key, None)
            node_y.dialogs.pop(y.key, None)
            response = await _send_in_dialog(node_y, y, y.request("BYE"))
            node_x.log.info(
                "call %s ended (%s)", x.call_id, "BYE answered" if response else "other leg gone"
            )
            return make_response(request, 200)
        onward = y.request(request.method, request.body, request.get("Content-Type"))
        response = await _send_in_dialog(node_y, y, onward)
        if response is None:
            return make_response(request, 504, headers=[_timeout_warning(node_x)])
        headers = _answer_headers(response, hiding)
        return make_response(
            request,
            response.status,
            _reason(response, hiding),
            headers=headers,
            body=response.body if response.get("Content-Type") else b"",
        )

    return handle  # type: ignore[return-value]


async def _relay_reinvite(
    node_y: SipNode, y: Dialog, x: Dialog, invite: InviteServerHandle, hiding: Hiding | None
) -> None:
    """A re-INVITE on leg X goes on as a re-INVITE on leg Y; glare gives 491 (14.1)."""
    if x.pending_invite or y.pending_invite:
        invite.respond(invite.response(491))
        return
    request = invite.request
    onward = y.request("INVITE", request.body, request.get("Content-Type"))
    y.pending_invite = True
    try:
        out = node_y.invite(onward, y.destination)
        try:
            final = await out.final
        except (SipTimeoutError, SipTransportError):
            invite.respond(invite.response(504))
            return
    finally:
        y.pending_invite = False
    if final.status // 100 == 2:
        node_y.send_ack(out, y.request("ACK", cseq=onward.cseq.seq), y.destination)
    headers = [("Contact", f"<{x.local_contact}>"), *_answer_headers(final, hiding)]
    invite.respond(invite.response(final.status, headers, final.body, _reason(final, hiding)))
