"""Strict SIP message parser (RFC 3261 sections 7 and 25, RFC 4475).

``parse_message`` takes one whole message: a UDP datagram, or one message cut
from a TCP stream by :class:`mcmig.sip.framing.StreamFramer`. It returns a
:class:`Request` or :class:`Response` or raises :class:`SipParseError`, and
nothing else, whatever the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcmig.sip.cseq import check_date, parse_bounded_int
from mcmig.sip.errors import SipParseError
from mcmig.sip.grammar import FULL_TOKEN_RE, TOKEN, check_controls
from mcmig.sip.headers import SINGLE_VALUED, canonical_name
from mcmig.sip.message import Message, Request, Response
from mcmig.sip.uri import SipUri, parse_uri


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Caps that keep a hostile peer from costing us unbounded memory or time."""

    max_message_size: int = 65536  # bytes, headers and body together
    max_headers: int = 256  # header lines after unfolding
    max_line_length: int = 8192  # characters in one unfolded header line


DEFAULT_LIMITS = ParserLimits()

_REQUEST_LINE_RE = re.compile(rf"({TOKEN}) ([^ ]+) SIP/(\d+\.\d+)\Z")
_STATUS_LINE_RE = re.compile(r"SIP/(\d+\.\d+) ([1-6]\d\d) (.*)\Z", re.DOTALL)
_FOLD_RE = re.compile(r"\r\n[ \t]+")
# Control characters other than HTAB, CR and LF (bare CR/LF are checked apart).
_HEAD_CTL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTENT_LENGTH_MAX = 2**31 - 1


def parse_message(
    data: bytes, *, datagram: bool = True, limits: ParserLimits = DEFAULT_LIMITS
) -> Request | Response:
    """Parse one SIP message. Over a datagram, bytes beyond Content-Length are ignored."""
    if len(data) > limits.max_message_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the cap", status=413)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no empty line after the header fields")
    head_bytes = data[:end]
    if head_bytes.count(b"\n") != head_bytes.count(b"\r\n") or head_bytes.count(
        b"\r"
    ) != head_bytes.count(b"\r\n"):
        raise SipParseError("bare CR or LF in the header section")
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("header section is not UTF-8") from None
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n")
    if len(lines) - 1 > limits.max_headers:
        raise SipParseError("too many header fields")
    controls = _HEAD_CTL_RE.search(head) is not None
    message, bad_version = _parse_start_line(lines[0])
    headers = message.headers
    content_lengths: list[str] = []
    for line in lines[1:]:
        if len(line) > limits.max_line_length:
            raise SipParseError("header line too long")
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without a colon: {line[:40]!r}")
        name = name.rstrip(" \t")
        if FULL_TOKEN_RE.match(name) is None:
            raise SipParseError(f"malformed header name {name[:40]!r}")
        value = value.strip(" \t")
        if controls:
            check_controls(value, name)
        name = canonical_name(name)
        if name == "Content-Length":
            content_lengths.append(value)
        else:
            headers.append((name, value))
    body = data[end + 4 :]
    message.body = body
    if bad_version is not None:
        raise SipParseError(f"SIP version {bad_version} not supported", 505, message)
    _frame_body(message, content_lengths, datagram)
    _validate(message)
    return message


def _parse_start_line(line: str) -> tuple[Request | Response, str | None]:
    if line.startswith("SIP/"):
        m = _STATUS_LINE_RE.match(line)
        if m is None:
            raise SipParseError("malformed status line")
        check_controls(m.group(3), "reason phrase")
        if m.group(1) != "2.0":
            raise SipParseError(f"SIP version {m.group(1)} not supported")
        return Response(int(m.group(2)), m.group(3)), None
    m = _REQUEST_LINE_RE.match(line)
    if m is None:
        raise SipParseError("malformed request line")
    method, uri_text, version = m.groups()
    uri = parse_uri(uri_text)
    if isinstance(uri, SipUri) and uri.headers is not None:
        raise SipParseError("header fields in a Request-URI (RFC 3261 19.1.1)")
    return Request(method, uri), (None if version == "2.0" else version)


def _frame_body(message: Message, content_lengths: list[str], datagram: bool) -> None:
    body = message.body
    if len(content_lengths) > 1:
        raise SipParseError("more than one Content-Length", partial=message)
    if not content_lengths:
        if not datagram:
            raise SipParseError("Content-Length is mandatory over a stream", partial=message)
        return
    try:
        length = parse_bounded_int(content_lengths[0], "Content-Length", _CONTENT_LENGTH_MAX)
    except SipParseError as exc:
        raise SipParseError(exc.reason, partial=message) from None
    if length > len(body):
        raise SipParseError("Content-Length larger than the body received", partial=message)
    # RFC 3261 18.3: octets past Content-Length in a datagram are discarded.
    message.body = body[:length]


def _validate(message: Message) -> None:
    """Parse every header the core relies on, so that later code meets no surprise."""
    counts: dict[str, int] = {}
    for name, _ in message.headers:
        if name in SINGLE_VALUED:
            counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        if count > 1:
            raise SipParseError(f"{count} {name} header fields", partial=message)
    try:
        if not message.vias:
            raise SipParseError("missing Via header")
        message.from_  # noqa: B018 - parsing is the check
        message.to  # noqa: B018
        message.call_id  # noqa: B018
        cseq = message.cseq
        if isinstance(message, Request):
            if cseq.method != message.method:
                raise SipParseError("CSeq method does not match the request method")
            message.max_forwards  # noqa: B018
        message.contacts  # noqa: B018
        message.routes  # noqa: B018
        message.record_routes  # noqa: B018
        date = message.get("Date")
        if date is not None:
            check_date(date)
    except SipParseError as exc:
        raise SipParseError(exc.reason, exc.status, message) from None
