"""name-addr / addr-spec values: From, To, Contact, Route, Record-Route."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from mcmig.sip.errors import SipParseError
from mcmig.sip.grammar import (
    QUOTED_STRING,
    SWS,
    TOKEN,
    Params,
    expect_end,
    format_params,
    parse_params,
    quote,
    split_comma_list,
    unquote,
)
from mcmig.sip.uri import SipUri, Uri, parse_uri

_QUOTED_DISPLAY_RE = re.compile(rf"{SWS}({QUOTED_STRING}){SWS}<")
_TOKEN_DISPLAY_RE = re.compile(rf"{SWS}((?:{TOKEN}(?:[ \t]+{TOKEN})*)?){SWS}<")
# addr-spec form: the URI runs to the first SEMI or whitespace (RFC 3261 20.10).
_ADDR_SPEC_RE = re.compile(r"[ \t]*([^;\s<>\"]+)")


# Immutable through Final, as the other values of the message model (uri.py).
@dataclass(slots=True, init=False)
class NameAddress:
    """``[display-name] <uri> *(;param)``; parameter names are lowercased."""

    uri: Final[Uri]
    display_name: Final[str | None]
    params: Final[Params]

    def __init__(
        self, uri: Uri, display_name: str | None = None, params: Params | None = None
    ) -> None:
        self.uri = uri
        self.display_name = display_name
        self.params = {} if params is None else params

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise SipParseError(f"not a SIP URI: {self.uri}")
        return self.uri

    def __str__(self) -> str:
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


_TAG_RE = re.compile(TOKEN + r"\Z")


def parse_name_address(value: str, what: str, require_brackets: bool = False) -> NameAddress:
    """Parse one name-addr or addr-spec with its parameters.

    From and To values of one peer differ only by a trailing tag, so the part
    before it is parsed once and cached; anything unusual takes the full path.
    """
    head, sep, tag = value.rpartition(";tag=")
    if sep and ">" not in tag and _TAG_RE.match(tag) is not None:
        try:
            base = _parse_name_address(head, what, require_brackets)
        except SipParseError:
            pass
        else:
            if "tag" not in base.params:
                return NameAddress(base.uri, base.display_name, {**base.params, "tag": tag})
    return _parse_name_address(value, what, require_brackets)


@lru_cache(maxsize=8192)
def _parse_name_address(value: str, what: str, require_brackets: bool) -> NameAddress:
    """Cached: the result is frozen; treat its ``params`` dict as read-only."""
    if value.startswith("<"):
        # The common form on the wire, without a display name.
        close = value.find(">")
        if close < 0:
            raise SipParseError(f"unterminated <URI> in {what}")
        uri = parse_uri(value[1:close])
        params, pos = parse_params(value, close + 1, what)
        expect_end(value, pos, what)
        return NameAddress(uri=uri, params=params)
    display: str | None = None
    m = _QUOTED_DISPLAY_RE.match(value)
    if m is not None:
        display = unquote(m.group(1))
    elif "<" in value:
        m = _TOKEN_DISPLAY_RE.match(value)
        if m is None:
            raise SipParseError(f"malformed display name in {what}")
        display = m.group(1) or None
    if m is not None:
        close = value.find(">", m.end())
        if close < 0:
            raise SipParseError(f"unterminated <URI> in {what}")
        uri = parse_uri(value[m.end() : close])
        pos = close + 1
    else:
        if require_brackets:
            raise SipParseError(f"{what} needs a name-addr in <...>")
        if '"' in value:
            raise SipParseError(f"unbalanced quotes in {what}")
        m2 = _ADDR_SPEC_RE.match(value)
        if m2 is None:
            raise SipParseError(f"missing URI in {what}")
        spec = m2.group(1)
        if "?" in spec or "," in spec:
            raise SipParseError(f"{what}: a URI with '?' or ',' must be in <...>")
        uri = parse_uri(spec)
        pos = m2.end()
    params, pos = parse_params(value, pos, what)
    expect_end(value, pos, what)
    return NameAddress(uri=uri, display_name=display, params=params)


def parse_name_address_list(
    value: str, what: str, require_brackets: bool = False
) -> list[NameAddress]:
    return [parse_name_address(part, what, require_brackets) for part in split_comma_list(value)]
