"""Strict SIP message parser (RFC 3261 sections 7 and 25, RFC 4475).

``parse_message`` takes one whole message: a UDP datagram, or one message cut
from a TCP stream by :class:`mcmig.sip.framing.StreamFramer`. It returns a
:class:`Request` or :class:`Response` or raises :class:`SipParseError`, and
nothing else, whatever the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from mcmig.sip.address import NameAddress, parse_name_address, parse_name_address_list
from mcmig.sip.cseq import check_date, parse_bounded_int, parse_cseq
from mcmig.sip.errors import SipParseError
from mcmig.sip.grammar import FULL_TOKEN_RE, TOKEN, check_controls, split_comma_list
from mcmig.sip.headers import CANONICAL, SINGLE_VALUED
from mcmig.sip.message import CALL_ID_RE, Message, Request, Response
from mcmig.sip.uri import AbsoluteUri, SipUri, parse_uri
from mcmig.sip.via import Via, parse_via


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
# One header line (already unfolded): token, HCOLON, value without edge whitespace.
# Anchored at line starts, so a line it cannot read is skipped, never resynchronised
# mid-line; the caller compares the match count with the line count.
# The value is greedy up to its last non-blank: a lazy match costs four times more.
_HEADER_LINE_RE = re.compile(
    rf"^({TOKEN})[ \t]*:[ \t]*((?:[^\r\n]*[^\r\n \t])?)[ \t]*(?:\r\n|\Z)", re.M
)


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
    crlf = head_bytes.count(b"\r\n")
    if head_bytes.count(b"\r") != crlf or head_bytes.count(b"\n") != crlf:
        raise SipParseError("bare CR or LF in the header section")
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("header section is not UTF-8") from None
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    start_line, _, rest = head.partition("\r\n")
    lines = rest.count("\r\n") + 1 if rest else 0
    if lines > limits.max_headers:
        raise SipParseError("too many header fields")
    headers = _known_header_lines(rest) if rest else []
    if len(headers) != lines:
        names = _NAMES
        pairs = _HEADER_LINE_RE.findall(rest)
        if len(pairs) != lines:
            _explain_bad_header_line(rest)
        headers = [(names.get(n) or _name(n), v) for n, v in pairs]
    if len(rest) > limits.max_line_length and any(
        len(v) > limits.max_line_length for _, v in headers
    ):
        raise SipParseError("header line too long")
    message, problem = _parse_start_line(start_line)
    if _HEAD_CTL_RE.search(head) is not None:
        for name, value in headers:
            check_controls(value, name)
    # Content-Length is computed on output: it leaves the list. Nearly always it is
    # the last header, which saves a pass over the others.
    content_lengths: list[str] = []
    if headers and headers[-1][0] == "Content-Length":
        content_lengths.append(headers.pop()[1])
    if "Content-Length" in map(_FIRST, headers):
        content_lengths += [v for n, v in headers if n == "Content-Length"]
        headers = [(n, v) for n, v in headers if n != "Content-Length"]
    message.headers = headers
    body = data[end + 4 :]
    message.body = body
    if problem is not None:
        raise SipParseError(problem.reason, problem.status, message)
    _frame_body(message, content_lengths, datagram)
    _validate(message)
    return message


# Header names as spelled on the wire -> canonical. Starts with every canonical and
# compact spelling, so that these stay on the shortcut however many odd spellings
# peers send (the additions are capped).
_NAMES: dict[str, str] = {name: name for name in CANONICAL.values()}
_NAMES.update({raw: name for raw, name in CANONICAL.items() if len(raw) == 1})
_NAMES_CAP = len(_NAMES) + 4096
_FIRST = itemgetter(0)


def _known_header_lines(rest: str) -> list[tuple[str, str]]:
    """The header lines, when every name is one seen before exactly as spelled and
    directly followed by the colon: the common case, read without the grammar.
    Otherwise (a new spelling, space before the colon, a line without one) a
    shorter list, and the caller takes the full path."""
    parts = [line.partition(":") for line in rest.split("\r\n")]
    names = _NAMES
    try:
        return [(names[n], v.strip(" \t")) for n, colon, v in parts if colon]
    except KeyError:
        return []


def _name(raw: str) -> str:
    """The canonical form of a header name as spelled on the wire (cached: spellings repeat)."""
    name = CANONICAL.get(raw.lower(), raw)
    if len(_NAMES) < _NAMES_CAP:
        _NAMES[raw] = name
    return name


def _explain_bad_header_line(rest: str) -> None:
    """The fast path found a line it could not read: say which, and how."""
    for line in rest.split("\r\n"):
        name, colon, _ = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without a colon: {line[:40]!r}")
        if FULL_TOKEN_RE.match(name.rstrip(" \t")) is None:
            raise SipParseError(f"malformed header name {name[:40]!r}")
    raise SipParseError("malformed header section")


def _parse_start_line(line: str) -> tuple[Request | Response, SipParseError | None]:
    """The message the start line begins, and any fault found in it.

    A faulty request line still yields a Request when its method can be read,
    so that the headers can be used to answer 400 (or 505).
    """
    if line.startswith("SIP/"):
        m = _STATUS_LINE_RE.match(line)
        if m is None:
            raise SipParseError("malformed status line")
        check_controls(m.group(3), "reason phrase")
        if m.group(1) != "2.0":
            raise SipParseError(f"SIP version {m.group(1)} not supported")
        return Response(int(m.group(2)), m.group(3)), None
    parsed = _request_line(line)
    if parsed is not None:
        method, uri = parsed
        request = Request(method, uri)
        request.start = line  # serialize reuses it while the URI is unchanged
        return request, None
    m = _REQUEST_LINE_RE.match(line)
    if m is None:
        return _lenient_request(line), SipParseError("malformed request line")
    method, uri_text, version = m.groups()
    try:
        uri = parse_uri(uri_text)
    except SipParseError as exc:
        return Request(method, AbsoluteUri(uri_text)), exc
    if isinstance(uri, SipUri) and uri.headers is not None:
        return Request(method, uri), SipParseError(
            "header fields in a Request-URI (RFC 3261 19.1.1)"
        )
    if version != "2.0":
        return Request(method, uri), SipParseError(f"SIP version {version} not supported", 505)
    return Request(method, uri), None


@lru_cache(maxsize=4096)
def _request_line(line: str) -> tuple[str, SipUri | AbsoluteUri] | None:
    """A well-formed SIP/2.0 request line, or None to take the path that explains faults."""
    m = _REQUEST_LINE_RE.match(line)
    if m is None or m.group(3) != "2.0":
        return None
    try:
        uri = parse_uri(m.group(2))
    except SipParseError:
        return None
    if isinstance(uri, SipUri) and uri.headers is not None:
        return None
    return m.group(1), uri


def _lenient_request(line: str) -> Request:
    parts = line.split()
    if len(parts) < 2 or FULL_TOKEN_RE.match(parts[0]) is None:
        raise SipParseError("malformed request line")
    return Request(parts[0], AbsoluteUri(" ".join(parts[1:-1]) or parts[-1]))


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
    """Parse every header the core relies on, in one pass, filling the typed cache."""
    typed = message._typed
    vias: list[Via] = []
    single: dict[str, str] = {}
    contacts: list[NameAddress] = []
    routes: dict[str, list[NameAddress]] = {"Route": [], "Record-Route": []}
    try:
        for name, value in message.headers:
            if name == "Via":
                vias.extend(parse_via(v) for v in split_comma_list(value))
            elif name in SINGLE_VALUED:
                if name in single:
                    raise SipParseError(f"more than one {name} header field")
                single[name] = value
            elif name == "Contact":
                if value != "*":
                    contacts.extend(parse_name_address_list(value, "Contact"))
            elif name in routes:
                routes[name].extend(parse_name_address_list(value, name, True))
            elif name == "Date":
                check_date(value)
        if not vias:
            raise SipParseError("missing Via header")
        for name in ("From", "To", "Call-ID", "CSeq"):
            if name not in single:
                raise SipParseError(f"missing {name} header")
        typed["Via"] = vias
        typed["Contact"] = contacts
        typed.update(routes)
        typed["From"] = parse_name_address(single["From"], "From")
        typed["To"] = parse_name_address(single["To"], "To")
        if CALL_ID_RE.match(single["Call-ID"]) is None:
            raise SipParseError("malformed Call-ID")
        typed["Call-ID"] = single["Call-ID"]
        cseq = typed["CSeq"] = parse_cseq(single["CSeq"])
        if isinstance(message, Request):
            if cseq.method != message.method:
                raise SipParseError("CSeq method does not match the request method")
            mf = single.get("Max-Forwards")
            typed["Max-Forwards"] = (
                None if mf is None else parse_bounded_int(mf, "Max-Forwards", 255)
            )
    except SipParseError as exc:
        message._typed.clear()
        raise SipParseError(exc.reason, exc.status, message) from None
