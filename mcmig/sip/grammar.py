"""RFC 3261 section 25 lexical rules shared by the header parsers.

Header values reach these helpers already unfolded (CRLF + WSP replaced by a
single SP), so SWS/LWS are just runs of SP and HTAB.
"""

from __future__ import annotations

import re

from mcmig.sip.errors import SipParseError

TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# qdtext excludes CTLs other than HTAB; quoted-pair admits any octet but CR/LF.
QUOTED_STRING = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]+\]"
# via-received takes a bare IPv6address (RFC 3261 20.42), colons and all.
IPV6_ADDRESS = r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
SWS = r"[ \t]*"

TOKEN_RE = re.compile(TOKEN)
FULL_TOKEN_RE = re.compile(TOKEN + r"\Z")
_PARAM_RE = re.compile(
    rf"{SWS};{SWS}({TOKEN})(?:{SWS}={SWS}({IPV6_ADDRESS}|{TOKEN}|{IPV6_REFERENCE}|{QUOTED_STRING}))?"
)
# A whole parameter list without quoted strings, checked in one C-level match.
_PLAIN_PARAMS_RE = re.compile(
    rf"(?:{SWS};{SWS}{TOKEN}(?:{SWS}={SWS}(?:{IPV6_ADDRESS}|{TOKEN}|{IPV6_REFERENCE}))?)*{SWS}\Z"
)
_QUOTED_PAIR_RE = re.compile(r"\\([\x00-\x09\x0b\x0c\x0e-\x7f])")
# Control characters other than HTAB; CR and LF are checked before unfolding.
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CTL_OR_QUOTE_RE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f"\\]')

Params = dict[str, str | None]


def parse_params(text: str, pos: int, what: str) -> tuple[Params, int]:
    """Parse ``*( SEMI generic-param )`` from ``pos``; names are lowercased.

    Returns the parameters and the position after the last one.
    """
    end = len(text)
    if pos >= end:
        return {}, pos
    params: Params = {}
    tail = text[pos:]
    if '"' not in tail and _PLAIN_PARAMS_RE.match(tail) is not None:
        for item in tail.split(";")[1:]:
            name, eq, value = item.partition("=")
            params[name.strip(" \t").lower()] = value.strip(" \t") if eq else None
        return params, end
    while pos < end:
        m = _PARAM_RE.match(text, pos)
        if m is None:
            break
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params, pos


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def expect_end(text: str, pos: int, what: str) -> None:
    if text[pos:].strip(" \t"):
        raise SipParseError(f"unexpected text in {what}: {text[pos : pos + 40]!r}")


def unquote(quoted: str) -> str:
    """The content of a quoted-string, quoted-pairs resolved."""
    return _QUOTED_PAIR_RE.sub(r"\1", quoted[1:-1])


_NEEDS_QUOTED_PAIR_RE = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def quote(text: str) -> str:
    """A quoted-string; CR and LF cannot be quoted in SIP and are dropped."""
    text = text.replace("\r", "").replace("\n", "")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(lambda m: "\\" + m.group(), text) + '"'


def check_controls(value: str, what: str) -> None:
    """Refuse control characters except as quoted-pairs inside quoted strings.

    RFC 4475's intmeth puts NUL, BEL and DEL in a display name as quoted-pairs,
    which is legal; anywhere else they are an attack or a bug.
    """
    if _CTL_RE.search(value) is None:
        return
    in_quotes = False
    i = 0
    n = len(value)
    while i < n:
        m = _CTL_OR_QUOTE_RE.search(value, i)
        if m is None:
            return
        c = m.group()
        i = m.end()
        if c == '"':
            in_quotes = not in_quotes
        elif c == "\\":
            if in_quotes:
                i += 1
        else:
            raise SipParseError(f"control character {ord(c):#04x} in {what}")


def split_comma_list(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and <...>."""
    if "," not in value:
        return [value.strip(" \t")]
    parts: list[str] = []
    depth_angle = False
    in_quotes = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            depth_angle = True
        elif c == ">":
            depth_angle = False
        elif c == "," and not depth_angle:
            parts.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    parts.append(value[start:].strip(" \t"))
    return parts
