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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcmig.node.dialogs import Dialog, InviteServerHandle, dialog_path
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


# A call whose BYE was lost would otherwise hold its two dialogs for ever.
MAX_CALL_DURATION = 4 * 3600.0


async def relay_invite(
    node_in: SipNode,
    node_out: SipNode,
    handle: InviteServerHandle,
    leg_b: Request,
    destination: TransportAddress,
    border: CallBorder | None = None,
    max_duration: float = MAX_CALL_DURATION,
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
    remote_target = contact if contact is not None else request.from_.uri
    route_set, first_hop = dialog_path(request.record_routes, remote_target, handle.source)
    if contact is None and not route_set:
        first_hop = handle.source  # no Contact: answer where the INVITE came from
    leg_a_dialog = Dialog(
        call_id=request.call_id,
        local_tag=handle.to_tag,
        remote_tag=request.from_.tag or "",
        local_uri=str(request.to.uri),
        remote_uri=str(request.from_.uri),
        remote_target=remote_target,
        destination=first_hop,
        local_contact=str(node_in.uri),
        local_cseq=0,
        handler=lambda r, s, h: _no_handler(r),
        remote_cseq=request.cseq.seq,
        route_set=route_set,
    )
    bridge(node_in, leg_a_dialog, node_out, leg_b_dialog, border, max_duration)
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
    remote_target = contact if contact is not None else leg_b.uri
    route_set, first_hop = dialog_path(final.record_routes[::-1], remote_target, destination)
    if contact is None and not route_set:
        first_hop = destination
    return Dialog(
        call_id=leg_b.call_id,
        local_tag=leg_b.from_.tag or "",
        remote_tag=final.to.tag or "",
        local_uri=str(leg_b.from_.uri),
        remote_uri=str(leg_b.to.uri),
        remote_target=remote_target,
        destination=first_hop,
        local_contact=str(node.uri),
        local_cseq=leg_b.cseq.seq,
        handler=lambda r, s, h: _no_handler(r),
        route_set=route_set,
    )


async def _send_in_dialog(node: SipNode, dialog: Dialog, request: Request) -> Response | None:
    try:
        return await node.send_request(request, dialog.destination)
    except (SipTimeoutError, SipTransportError):
        return None


@dataclass
class BridgedCall:
    """Two dialogs bridged by a B2BUA, and the timer that ends them if no BYE does."""

    node_a: SipNode
    a: Dialog
    node_b: SipNode
    b: Dialog
    limit: asyncio.TimerHandle | None = None

    def forget(self) -> None:
        self.node_a.dialogs.pop(self.a.key, None)
        self.node_b.dialogs.pop(self.b.key, None)
        if self.limit is not None:
            self.limit.cancel()
            self.limit = None

    async def end_at_limit(self, max_duration: float) -> None:
        """The maximum duration passed (a BYE was lost): BYE on each leg."""
        self.limit = None
        self.forget()
        self.node_a.stats.calls_ended_at_limit += 1
        self.node_a.log.warning(
            "call %s ended after %g s, the maximum duration: BYE on both legs",
            self.a.call_id,
            max_duration,
        )
        await asyncio.gather(
            _send_in_dialog(self.node_a, self.a, self.a.request("BYE")),
            _send_in_dialog(self.node_b, self.b, self.b.request("BYE")),
        )


def bridge(
    node_a: SipNode,
    a: Dialog,
    node_b: SipNode,
    b: Dialog,
    border: CallBorder | None = None,
    max_duration: float = MAX_CALL_DURATION,
) -> BridgedCall:
    """Connect two dialogs: what arrives on one is sent on the other, until a BYE
    or the maximum duration ends both."""
    call = BridgedCall(node_a, a, node_b, b)
    a.handler = _relay_handler(node_a, a, node_b, b, border, call)
    b.handler = _relay_handler(node_b, b, node_a, a, border, call)
    node_a.dialogs[a.key] = a
    node_b.dialogs[b.key] = b
    node_a.stats.calls_bridged += 1
    call.limit = asyncio.get_running_loop().call_later(
        max_duration, lambda: node_a._spawn(call.end_at_limit(max_duration))
    )
    return call


async def end_calls(nodes: Iterable[SipNode], grace: float) -> int:
    """BYE on every dialog of these nodes, waiting ``grace`` s at most for the
    answers: a node that stops with calls up lets each party know. The number
    of dialogs ended."""
    byes = []
    for node in nodes:
        for dialog in list(node.dialogs.values()):
            node.dialogs.pop(dialog.key, None)
            byes.append(asyncio.ensure_future(_send_in_dialog(node, dialog, dialog.request("BYE"))))
    if byes:
        await asyncio.wait(byes, timeout=grace)
        for bye in byes:
            bye.cancel()
    return len(byes)


def _relay_handler(
    node_x: SipNode,
    x: Dialog,
    node_y: SipNode,
    y: Dialog,
    border: CallBorder | None,
    call: BridgedCall,
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
            call.forget()
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
            invite.respond(invite.response(504, [_timeout_warning(node_y)]))
            return
    finally:
        y.pending_invite = False
    if final.status // 100 == 2:
        node_y.send_ack(out, y.request("ACK", cseq=onward.cseq.seq), y.destination)
    headers = [("Contact", f"<{x.local_contact}>"), *_answer_headers(final, hiding)]
    invite.respond(invite.response(final.status, headers, final.body, _reason(final, hiding)))
