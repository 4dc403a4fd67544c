"""Scalar header values: CSeq, Max-Forwards, Content-Length, Date."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mcmig.sip.errors import SipParseError
from mcmig.sip.grammar import FULL_TOKEN_RE, TOKEN

MAX_CSEQ = 2**31 - 1
_CSEQ_RE = re.compile(rf"[ \t]*(\d{{1,10}})[ \t]+({TOKEN})[ \t]*\Z")
_DIGITS_RE = re.compile(r"[ \t]*(\d{1,10})[ \t]*\Z")
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT\Z"
)


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@lru_cache(maxsize=1024)  # values repeat ("1 MESSAGE"); a CSeq is immutable
def parse_cseq(value: str) -> CSeq:
    number, sep, method = value.partition(" ")
    fast = sep and number.isascii() and number.isdigit() and len(number) <= 10
    if fast and FULL_TOKEN_RE.match(method) is not None:
        seq = int(number)
        if seq > MAX_CSEQ:
            raise SipParseError("CSeq number above 2**31-1")
        return CSeq(seq, method)
    m = _CSEQ_RE.match(value)
    if m is None:
        raise SipParseError(f"malformed CSeq {value[:40]!r}")
    seq = int(m.group(1))
    if seq > MAX_CSEQ:
        raise SipParseError("CSeq number above 2**31-1")
    return CSeq(seq, m.group(2))


def parse_bounded_int(value: str, what: str, maximum: int) -> int:
    if value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
        if number > maximum:
            raise SipParseError(f"{what} above {maximum}")
        return number
    m = _DIGITS_RE.match(value)
    if m is None:
        raise SipParseError(f"{what} is not a non-negative integer")
    number = int(m.group(1))
    if number > maximum:
        raise SipParseError(f"{what} above {maximum}")
    return number


def check_date(value: str) -> None:
    """SIP-date is RFC 1123 in GMT only (RFC 3261 section 20.17; RFC 4475 baddate)."""
    if _DATE_RE.match(value.strip(" \t")) is None:
        raise SipParseError("Date is not an RFC 1123 date in GMT")
