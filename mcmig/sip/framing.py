"""Cutting a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 18.3)."""

from __future__ import annotations

import re

from mcmig.sip.errors import SipParseError
from mcmig.sip.parser import DEFAULT_LIMITS, ParserLimits

_CONTENT_LENGTH_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*\r\n", re.I)


class StreamFramer:
    """Buffers stream bytes and yields whole messages.

    Keep-alive CRLFs between messages (RFC 5626 section 3.5.1) are skipped.
    A framing error is fatal for the connection: once Content-Length cannot
    be trusted, no later byte boundary can be either.
    """

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits
        self.keepalives = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_message(self) -> bytes | None:
        """The next whole message, or None until more bytes arrive."""
        buf = self._buffer
        start = 0
        while buf.startswith(b"\r\n", start):
            start += 2
            self.keepalives += 1
        if start:
            del buf[:start]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._limits.max_message_size:
                raise SipParseError("header section exceeds the message cap", status=413)
            return None
        match = _CONTENT_LENGTH_RE.search(buf, 0, end + 2)
        if match is None:
            raise SipParseError("Content-Length is mandatory over a stream")
        total = end + 4 + int(match.group(1))
        if total > self._limits.max_message_size:
            raise SipParseError(f"message of {total} bytes exceeds the cap", status=413)
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        return message
