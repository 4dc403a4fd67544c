"""SIP requests and responses: ordered raw headers with cached typed views.

Headers are stored as (canonical name, raw value) pairs so that what a peer
sent is kept as sent; typed views (Via, From, CSeq, ...) are parsed on first
use and cached until that header is changed. Content-Length is not stored: it
is always computed from the body when serializing, so it can never be stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial
from operator import itemgetter
from typing import Any, TypeVar

from mcmig.sip.address import NameAddress, parse_name_address, parse_name_address_list
from mcmig.sip.cseq import CSeq, parse_bounded_int, parse_cseq
from mcmig.sip.errors import SipParseError
from mcmig.sip.grammar import split_comma_list
from mcmig.sip.headers import canonical_name
from mcmig.sip.uri import Uri
from mcmig.sip.via import Via, parse_via

_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
CALL_ID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")

T = TypeVar("T")
_NAME = itemgetter(0)
HeaderList = list[tuple[str, str]]


class Message:
    """Common part of requests and responses."""

    __slots__ = ("_typed", "body", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.headers: HeaderList = [(canonical_name(n), v) for n, v in headers]
        self.body = body
        self._typed: dict[str, Any] = {}

    # -- raw header access -------------------------------------------------
    def get(self, name: str) -> str | None:
        name = canonical_name(name)
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        name = canonical_name(name)
        return [v for n, v in self.headers if n == name]

    def values(self, name: str) -> list[str]:
        """Every comma-separated element of every instance of a list header."""
        out: list[str] = []
        for line in self.get_all(name):
            out.extend(split_comma_list(line))
        return out

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    def set(self, name: str, value: str) -> None:
        """Replace every instance of ``name`` with one, where the first one stood."""
        name = canonical_name(name)
        self._typed.pop(name, None)
        for i, (n, _) in enumerate(self.headers):
            if n == name:
                self.headers[i] = (name, value)
                self.headers[i + 1 :] = [(n2, v2) for n2, v2 in self.headers[i + 1 :] if n2 != name]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        name = canonical_name(name)
        self._typed.pop(name, None)
        if first:
            self.headers.insert(0, (name, value))
        else:
            self.headers.append((name, value))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self._typed.pop(name, None)
        self.headers = [(n, v) for n, v in self.headers if n != name]

    # -- typed views ---------------------------------------------------------
    # Read many times per message (a parsed one has them all cached already), so a
    # hit is one dict lookup, and the parsers below are plain functions: a closure
    # made on every read cost more than the lookup.
    def _cached(self, name: str, compute: Callable[[Message], T]) -> T:
        try:
            return self._typed[name]  # type: ignore[no-any-return]
        except KeyError:
            value = compute(self)
            self._typed[name] = value
            return value

    def drop_views(self) -> None:
        """Forget the typed views; any read later parses its header again.

        For a message kept only to be sent again: the views are most of the
        objects it holds, and every one held a while is walked by the cyclic
        garbage collector each time it runs."""
        self._typed.clear()

    def _single(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header", partial=self)
        return value

    @property
    def vias(self) -> list[Via]:
        return self._cached("Via", _parse_vias)

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via header", partial=self)
        return vias[0]

    def push_via(self, via: Via) -> None:
        """Put ``via`` on top; the Vias below it stay parsed if they were."""
        below = self._typed.get("Via")
        if below is None and "Via" in map(_NAME, self.headers):
            self._typed.pop("Via", None)  # parsed again, whole, when first read
        else:
            self._typed["Via"] = [via, *(below or ())]
        self.headers.insert(0, ("Via", str(via)))

    def wire_size(self) -> int:
        """The length of serialize(), without building it."""
        start = self.start_line()
        headers = self.headers
        values = "".join([v for _, v in headers])
        size = len(start.encode()) + len(self.body) + 22 + len(str(len(self.body)))
        size += sum(map(len, map(_NAME, headers))) + 4 * len(headers)  # names are tokens: ASCII
        return size + (len(values) if values.isascii() else len(values.encode()))

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the first Via element (RFC 3261 18.2.1 received/rport)."""
        for i, (n, v) in enumerate(self.headers):
            if n == "Via":
                rest = split_comma_list(v)[1:]
                self.headers[i] = ("Via", ", ".join([str(via), *rest]))
                break
        else:
            self.headers.insert(0, ("Via", str(via)))
        vias = list(self._typed.get("Via") or self.vias)
        self._typed["Via"] = [via, *vias[1:]]

    @property
    def from_(self) -> NameAddress:
        return self._cached("From", _parse_from)

    @property
    def to(self) -> NameAddress:
        return self._cached("To", _parse_to)

    @property
    def call_id(self) -> str:
        return self._cached("Call-ID", _parse_call_id)

    @property
    def cseq(self) -> CSeq:
        return self._cached("CSeq", _parse_cseq)

    @property
    def max_forwards(self) -> int | None:
        return self._cached("Max-Forwards", _parse_max_forwards)

    @property
    def contacts(self) -> list[NameAddress]:
        """Contact values; ``Contact: *`` (REGISTER only) gives an empty list."""
        return self._cached("Contact", _parse_contacts)

    @property
    def routes(self) -> list[NameAddress]:
        return self._cached("Route", _parse_routes)

    @property
    def record_routes(self) -> list[NameAddress]:
        return self._cached("Record-Route", _parse_record_routes)

    @property
    def content_type(self) -> str | None:
        """The media type, lowercased, parameters dropped."""
        value = self.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip(" \t").lower()

    # -- serialization -------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        lines = [self.start_line()]
        lines.extend([f"{n}: {v}" for n, v in self.headers])
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode() + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.start_line() == other.start_line()
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]


# The typed views' parsers, run once per message and view (Message._cached).
def _parse_vias(message: Message) -> list[Via]:
    return [parse_via(v) for v in message.values("Via")]


def _parse_from(message: Message) -> NameAddress:
    return parse_name_address(message._single("From"), "From")


def _parse_to(message: Message) -> NameAddress:
    return parse_name_address(message._single("To"), "To")


def _parse_call_id(message: Message) -> str:
    value = message._single("Call-ID")
    if CALL_ID_RE.match(value) is None:
        raise SipParseError("malformed Call-ID", partial=message)
    return value


def _parse_cseq(message: Message) -> CSeq:
    return parse_cseq(message._single("CSeq"))


def _parse_max_forwards(message: Message) -> int | None:
    value = message.get("Max-Forwards")
    return None if value is None else parse_bounded_int(value, "Max-Forwards", 255)


def _parse_contacts(message: Message) -> list[NameAddress]:
    out: list[NameAddress] = []
    for line in message.get_all("Contact"):
        if line.strip() == "*":
            continue
        out.extend(parse_name_address_list(line, "Contact"))
    return out


def _parse_route_set(name: str, message: Message) -> list[NameAddress]:
    return [a for v in message.get_all(name) for a in parse_name_address_list(v, name, True)]


# Bound once, here: a partial made on every read is what the plain functions avoid.
_parse_routes = partial(_parse_route_set, "Route")
_parse_record_routes = partial(_parse_route_set, "Record-Route")


class Request(Message):
    __slots__ = ("_start", "_start_uri", "method", "uri")

    def __init__(
        self,
        method: str,
        uri: Uri,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self._start: str | None = None
        self._start_uri: Uri | None = None

    @property
    def start(self) -> str | None:
        return self._start

    @start.setter
    def start(self, line: str) -> None:
        """The request line as parsed, reused while method and URI stay the same objects."""
        self._start, self._start_uri = line, self.uri

    def start_line(self) -> str:
        start = self._start
        if start is None or self.uri is not self._start_uri:
            return f"{self.method} {self.uri} SIP/2.0"
        if not start.startswith(self.method + " "):
            return f"{self.method} {self.uri} SIP/2.0"
        return start

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
