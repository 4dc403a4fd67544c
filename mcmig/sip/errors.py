"""Errors of the sans-I/O SIP core: the peer's mistakes and our own."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcmig.sip.message import Message


class SipParseError(Exception):
    """A peer sent bytes that are not an acceptable SIP message.

    ``status`` is the response code to answer with when the message was a
    request and enough of it survived to build a response (h11's
    ``error_status_hint``). ``partial`` is that surviving message, if any.
    """

    def __init__(self, reason: str, status: int = 400, partial: Message | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial


class LocalProtocolError(Exception):
    """Our own code misused the SIP core (a bug here, never the peer's fault)."""
