"""Header field names: canonical spellings, compact forms, which may repeat."""

from __future__ import annotations

from collections.abc import Callable

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "Server",
    "Subject",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
    "RSeq",
    "RAck",
    "Event",
    "Allow-Events",
    "Session-Expires",
    "Min-SE",
    "Refer-To",
    "Referred-By",
    "Identity",
    "Accept-Contact",
    "Reject-Contact",
    "Request-Disposition",
]
CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN}
CANONICAL.update(COMPACT_FORMS)

# Headers that RFC 3261 defines as single-valued: a second instance is a 400
# (RFC 4475 multi01 and mcl01).
SINGLE_VALUED = frozenset(
    {"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}
)


class _LongForms(dict[str, str]):
    """Names already in their long form, each mapped to itself; any other name is
    looked up lowercased and not stored, since peers choose the spellings."""

    def __missing__(self, name: str) -> str:
        return CANONICAL.get(name.lower(), name)


# The long, conventionally capitalised form; unknown names stay as given. A bound
# dict lookup rather than a function: messages ask for names on every header they
# build or read, nearly always canonical ones from our own code, and a hit then
# runs no Python code at all.
canonical_name: Callable[[str], str] = _LongForms({name: name for name in _KNOWN}).__getitem__
