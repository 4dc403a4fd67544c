"""The responder: a UAS that answers every MESSAGE and OPTIONS with 200.

The simplest node, and a peer for testing other SIP software: it logs one
line per request (method, sender, body size).
"""

from __future__ import annotations

from mcmig.node.runtime import SipNode
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress
from mcmig.sip.responses import make_response


class Responder:
    def __init__(self, node: SipNode) -> None:
        self.node = node
        node.handlers["MESSAGE"] = self.on_request
        node.handlers["OPTIONS"] = self.on_request

    async def on_request(self, request: Request, source: TransportAddress) -> Response:
        self.node.log.info(
            "%s from %s via %s, %d body bytes",
            request.method,
            request.from_.uri,
            source,
            len(request.body),
        )
        headers = [("Allow", self.node.allow_header())] if request.method == "OPTIONS" else []
        return make_response(request, 200, headers=headers)
