"""The INVITE side of a node: server handles, CANCEL, ACK, dialogs, outgoing INVITEs.

The base class of Refusals and so of SipNode (one chain, not mixins: the
compiled core's classes have one base each), kept apart so that each module
has one job: runtime.py moves messages between transports, transactions and
handlers; this module adds what calls need on top (RFC 3261 sections 9, 12,
13 and 17.1.1/17.2.1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from mcmig.node.dialogs import Dialog, InviteServerHandle, OutgoingInvite
from mcmig.node.errors import SipTimeoutError, SipTransportError
from mcmig.sip.invite_client_transaction import InviteClientTransaction
from mcmig.sip.invite_server_transaction import InviteServerTransaction
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response

if TYPE_CHECKING:
    from mcmig.node.runtime import NodeStats
    from mcmig.sip.transaction_layer import ServerTransaction, TransactionLayer

InviteHandler = Callable[[InviteServerHandle], Awaitable[None]]


class InviteUsage:
    # Set and provided by SipNode.
    layer: TransactionLayer
    dialogs: dict[tuple[str, str], Dialog]
    stats: NodeStats
    log: logging.Logger
    _loop: asyncio.AbstractEventLoop | None
    _invites: dict[int, OutgoingInvite]
    _invite_handles: dict[int, InviteServerHandle]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    def _respond(self, txn: ServerTransaction, response: Response) -> None:
        raise NotImplementedError

    def _prepare(self, request: Request, destination: TransportAddress) -> TransportAddress:
        raise NotImplementedError

    def _send(self, message: Request | Response, destination: TransportAddress) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    async def send_request(
        self,
        request: Request,
        destination: TransportAddress,
        timeout: float | None = None,
        add_via: bool = True,
    ) -> Response:
        raise NotImplementedError

    # -- INVITE, CANCEL, ACK and dialogs ----------------------------------------------
    def _invite_handle(
        self, txn: InviteServerTransaction, source: TransportAddress
    ) -> InviteServerHandle:
        def respond(response: Response) -> None:
            if response.status >= 200:
                self._invite_handles.pop(id(txn), None)
            if not txn.terminated:
                self._respond(txn, response)

        handle = InviteServerHandle(txn.request, source, respond)
        self._invite_handles[id(txn)] = handle
        return handle

    async def _run_invite_handler(self, handler: InviteHandler, handle: InviteServerHandle) -> None:
        try:
            await handler(handle)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.handler_errors += 1
            self.log.exception("INVITE handler failed")
            handle.respond(handle.response(500))

    def _on_cancel(self, cancel: Request, txn: ServerTransaction) -> None:
        """9.2: 200 to the CANCEL, 487 to the INVITE if it has no final answer yet."""
        invite = self.layer.invite_for_cancel(cancel)
        if invite is None:
            self._respond(txn, make_response(cancel, 481))
            return
        self._respond(txn, make_response(cancel, 200))
        handle = self._invite_handles.get(id(invite))
        if handle is not None and handle.final is None:
            handle.respond(handle.response(487))
            handle.cancelled.set()  # the handler stops, a B2BUA cancels its other leg

    def _in_dialog(
        self, request: Request, source: TransportAddress, txn: ServerTransaction
    ) -> None:
        dialog = self.dialogs.get((request.call_id, request.to.tag or ""))
        if dialog is None:
            self._respond(txn, make_response(request, 481))
            return
        if request.cseq.seq < dialog.remote_cseq:
            self._respond(txn, make_response(request, 500, "CSeq out of order"))
            return
        dialog.remote_cseq = request.cseq.seq
        if isinstance(txn, InviteServerTransaction):
            handle = self._invite_handle(txn, source)
            self._spawn(self._run_invite_handler(lambda h: self._dialog_invite(dialog, h), handle))
            return

        async def run() -> None:
            try:
                response = await dialog.handler(request, source, None)
            except Exception:
                self.log.exception("dialog handler failed")
                response = make_response(request, 500)
            if response is not None and not txn.terminated:
                self._respond(txn, response)

        self._spawn(run())

    async def _dialog_invite(self, dialog: Dialog, handle: InviteServerHandle) -> None:
        await dialog.handler(handle.request, handle.source, handle)

    def _on_ack(self, ack: Request, source: TransportAddress) -> None:
        dialog = self.dialogs.get((ack.call_id, ack.to.tag or ""))
        if dialog is not None:
            self._spawn(self._ack_to_dialog(dialog, ack, source))

    async def _ack_to_dialog(self, dialog: Dialog, ack: Request, source: TransportAddress) -> None:
        await dialog.handler(ack, source, None)

    def invite(
        self,
        request: Request,
        destination: TransportAddress,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> OutgoingInvite:
        """Send an INVITE; the result's ``final`` resolves with the final response."""
        assert self._loop is not None, "node not started"
        destination = self._prepare(request, destination)
        out = OutgoingInvite(request, destination, self._loop.create_future(), on_provisional)
        txn = self.layer.send_request(request, destination, self._loop.time())
        out.cancel = lambda: self._cancel(out)
        self._invites[id(txn)] = out
        self._flush()
        return out

    def send_ack(self, out: OutgoingInvite, ack: Request, destination: TransportAddress) -> None:
        """The ACK of a 2xx: end to end, outside any transaction (13.2.2.4)."""
        self._prepare(ack, destination)
        out.ack, out.ack_destination = ack, destination
        self._send(ack, destination)

    def _cancel(self, out: OutgoingInvite) -> None:
        if out.final.done():
            return
        if not out.provisional_seen:
            out.cancel_waiting = True  # sent when the first provisional arrives (9.1)
            return
        invite = out.request
        headers = [("Via", invite.get("Via") or "")]
        headers += [(n, v) for n, v in invite.headers if n == "Route"]
        headers += [
            ("Max-Forwards", "70"),
            ("From", invite.get("From") or ""),
            ("To", invite.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
        ]
        cancel = Request("CANCEL", invite.uri, headers)

        async def run() -> None:
            try:
                await self.send_request(cancel, out.destination, add_via=False)
            except (SipTimeoutError, SipTransportError) as exc:
                self.log.info("CANCEL got no answer: %s", exc)

        self._spawn(run())

    def _on_invite_response(self, txn: InviteClientTransaction, response: Response) -> None:
        out = self._invites.get(id(txn))
        if out is None:
            return
        if response.status < 200:
            out.provisional_seen = True
            if out.cancel_waiting:
                out.cancel_waiting = False
                self._cancel(out)
            if out.on_provisional is not None:
                out.on_provisional(response)
            return
        if not out.final.done():
            out.final.set_result(response)
            assert self._loop is not None
            self._loop.call_later(64 * self.layer.timers.t1 + 1, self._invites.pop, id(txn), None)
        elif response.status < 300 and out.ack is not None and out.ack_destination is not None:
            self._send(out.ack, out.ack_destination)  # RFC 6026: our ACK was lost
