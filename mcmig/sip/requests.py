"""Building new out-of-dialog requests (RFC 3261 section 8.1.1)."""

from __future__ import annotations

from collections.abc import Iterable

from mcmig.sip.ids import new_call_id, new_tag
from mcmig.sip.message import Request
from mcmig.sip.uri import Uri


def make_request(
    method: str,
    uri: Uri,
    *,
    from_uri: str,
    to_uri: str,
    body: bytes = b"",
    content_type: str | None = None,
    contact: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    max_forwards: int = 70,
) -> Request:
    """A request with a fresh Call-ID and From tag; the node adds the Via."""
    fields = [
        ("Max-Forwards", str(max_forwards)),
        ("From", f"<{from_uri}>;tag={new_tag()}"),
        ("To", f"<{to_uri}>"),
        ("Call-ID", new_call_id()),
        ("CSeq", f"1 {method}"),
    ]
    if contact is not None:
        fields.append(("Contact", f"<{contact}>"))
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.extend(headers)
    request = Request(method, uri, fields, body)
    # The typed view of the first Max-Forwards, known here: the node reads it on send.
    request._typed["Max-Forwards"] = max_forwards
    return request
