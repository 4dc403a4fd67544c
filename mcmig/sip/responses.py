"""Building responses to requests (RFC 3261 section 8.2.6) and reason phrases."""

from __future__ import annotations

from collections.abc import Iterable

from mcmig.sip.errors import SipParseError
from mcmig.sip.ids import new_tag
from mcmig.sip.message import Request, Response

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
}


_COPIED = frozenset({"From", "To", "Call-ID", "CSeq"})


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status, "Unknown")


def _has_tag(request: Request, raw_to: str) -> bool:
    try:
        return request.to.tag is not None
    except SipParseError:
        return ";tag=" in raw_to.replace(" ", "").lower()


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response that copies Via, From, To, Call-ID and CSeq from the request.

    A To tag is added to every response but 100 when the request had none
    (8.2.6.2); pass ``to_tag`` to keep one tag across retransmissions.
    """
    copied: list[tuple[str, str]] = []
    found: dict[str, str] = {}
    for n, v in request.headers:  # one pass: this runs for every response we send
        if n == "Via":
            copied.append((n, v))
        elif n in _COPIED and n not in found:
            found[n] = v
    copied.append(("From", found.get("From", "")))
    # To is copied as the peer wrote it, even when malformed (a 400 must still
    # reach it); the tag goes at the end, where header parameters stand.
    to = found.get("To", "")
    if status > 100 and not _has_tag(request, to):
        to = f"{to};tag={to_tag or new_tag()}"
    copied.append(("To", to))
    copied.append(("Call-ID", found.get("Call-ID", "")))
    copied.append(("CSeq", found.get("CSeq", "")))
    copied.extend(headers)
    return Response(status, reason or reason_phrase(status), copied, body)
