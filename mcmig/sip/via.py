"""The Via header (RFC 3261 sections 8.1.1.7, 18.2.1, 20.42; RFC 3581 rport)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from mcmig.sip.errors import SipParseError
from mcmig.sip.grammar import (
    IPV6_ADDRESS,
    IPV6_REFERENCE,
    SWS,
    TOKEN,
    Params,
    expect_end,
    format_params,
    parse_params,
)
from mcmig.sip.uri import HOST, is_ip_address

MAGIC_COOKIE = "z9hG4bK"

_SENT_RE = re.compile(
    rf"{SWS}({TOKEN}){SWS}/{SWS}({TOKEN}){SWS}/{SWS}({TOKEN})[ \t]+({HOST})"
    rf"(?:{SWS}:{SWS}(\d{{1,5}}))?"
)
# The form nearly every element sends: no LWS inside sent-protocol or sent-by.
_COMMON_RE = re.compile(rf"SIP/2\.0/([A-Z]{{2,4}}) ({HOST})(?::(\d{{1,5}}))?")
# The same with its parameters, no LWS anywhere: one match, then a split.
_COMMON_FULL_RE = re.compile(
    rf"SIP/2\.0/([A-Z]{{2,4}}) ({HOST})(?::(\d{{1,5}}))?"
    rf"((?:;{TOKEN}(?:=(?:{IPV6_ADDRESS}|{TOKEN}|{IPV6_REFERENCE}))?)*)\Z"
)
_RPORT_RE = re.compile(r"\d{1,5}\Z")


# Immutable through Final, as the other values of the message model (uri.py).
@dataclass(slots=True, init=False)
class Via:
    transport: Final[str]
    host: Final[str]
    port: Final[int | None]
    params: Final[Params]
    protocol: Final[str]

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Params | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.protocol = protocol

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host.lower(), self.port)

    @property
    def rfc3261_branch(self) -> bool:
        """True when the branch carries the magic cookie and something after it."""
        b = self.branch
        return b is not None and b.startswith(MAGIC_COOKIE) and len(b) > len(MAGIC_COOKIE)

    def with_params(self, **params: str | None) -> Via:
        merged = dict(self.params)
        merged.update(params)
        return Via(self.transport, self.host, self.port, merged, self.protocol)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


_BRANCH = ";branch="
_STAND_IN = "-"  # a token, so the template parses as the Via itself would
_BRANCH_RE = re.compile(TOKEN + r"\Z")


def parse_via(value: str) -> Via:
    """Parse one via-parm.

    The Vias of one peer differ only by their branch: the rest is parsed once
    (cached, with a stand-in branch) and the branch put back in its place.
    """
    start = value.find(_BRANCH)
    if start > 0 and '"' not in value:
        end = value.find(";", start + len(_BRANCH))
        if end < 0:
            end = len(value)
        branch = value[start + len(_BRANCH) : end]
        if _BRANCH_RE.match(branch) is not None:
            try:
                template = _parse_template(value[:start] + _BRANCH + _STAND_IN + value[end:])
            except SipParseError:
                return parse_via_uncached(value)  # raises, naming the value itself
            # Another branch parameter (in other case) would have overwritten the stand-in.
            if template.params.get("branch") == _STAND_IN:
                params = {k: branch if k == "branch" else v for k, v in template.params.items()}
                return Via(
                    template.transport, template.host, template.port, params, template.protocol
                )
    return parse_via_uncached(value)


def parse_via_uncached(value: str) -> Via:
    full = _COMMON_FULL_RE.match(value)
    if full is not None:
        transport, host, port, raw = full.groups()
        params: Params = {}
        for item in raw.split(";")[1:]:
            name, eq, param = item.partition("=")
            params[name.lower()] = param if eq else None
        return _checked(transport, host, port, params, "SIP/2.0")
    return _parse_via_slowly(value)


# Cached Vias are shared: their params must not be changed (with_params copies).
_parse_template = lru_cache(maxsize=4096)(parse_via_uncached)


def _parse_via_slowly(value: str) -> Via:
    m = _COMMON_RE.match(value)
    if m is not None and (m.end() == len(value) or value[m.end()] == ";"):
        name, version = "SIP", "2.0"
        transport, host, port = m.groups()
    else:
        m = _SENT_RE.match(value)
        if m is None:
            raise SipParseError(f"malformed Via {value[:80]!r}")
        name, version, transport, host, port = m.groups()
    params, pos = parse_params(value, m.end(), "Via")
    expect_end(value, pos, "Via")
    return _checked(transport, host, port, params, f"{name.upper()}/{version}")


def _checked(transport: str, host: str, port: str | None, params: Params, protocol: str) -> Via:
    port_number = None if port is None else int(port)
    if port_number is not None and port_number > 65535:
        raise SipParseError("Via port out of range")
    received = params.get("received")
    if received is not None and not is_ip_address(received):
        raise SipParseError("Via received is not an IP address")
    rport = params.get("rport")
    if rport is not None and _RPORT_RE.match(rport) is None:
        raise SipParseError("Via rport is not a port number")
    return Via(
        transport=transport.upper(), host=host, port=port_number, params=params, protocol=protocol
    )
