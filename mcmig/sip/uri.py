"""SIP and SIPS URIs (RFC 3261 section 19.1) and opaque absolute URIs."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from mcmig.sip.errors import SipParseError

_ESC = r"%[0-9A-Fa-f]{2}"
_USER = rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|{_ESC})+"
_PASSWORD = rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|{_ESC})*"
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IPV6 = r"\[[0-9A-Fa-f:.]+\]"
_HOSTNAME = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
HOST = rf"(?:{_IPV6}|{_IPV4}|{_HOSTNAME})"
_PCHAR = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|{_ESC})+"
_HCHAR = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{_ESC})"

_SIP_URI_RE = re.compile(
    rf"((?i:sips?)):(?:({_USER})(?::({_PASSWORD}))?@)?({HOST})(?::(\d{{1,5}}))?"
    rf"((?:;{_PCHAR}(?:={_PCHAR})?)*)"
    rf"(?:\?({_HCHAR}+={_HCHAR}*(?:&{_HCHAR}+={_HCHAR}*)*))?\Z"
)
_ABSOLUTE_URI_RE = re.compile(
    rf"[A-Za-z][A-Za-z0-9+\-.]*:(?:[;/?:@&=+$,A-Za-z0-9\-_.!~*'()]|{_ESC})+\Z"
)
_HOST_RE = re.compile(HOST + r"\Z")


def host_reference(host: str) -> str:
    """A host as it is written in a URI or Via: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def is_host(text: str) -> bool:
    return _HOST_RE.match(text) is not None


@lru_cache(maxsize=4096)
def is_ip_address(host: str) -> bool:
    """An IPv4 address, or an IPv6 address bare or in brackets (cached: hosts repeat)."""
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


# The values of the message model (this class, NameAddress, Via, TransportAddress)
# are immutable through Final rather than frozen=True: the type checker refuses
# an assignment either way, and the compiled core refuses it at run time too, but
# a frozen dataclass's __init__ sets each field through object.__setattr__ in
# Python, which cost more than the rest of building a parsed URI.
@dataclass(slots=True, init=False)
class SipUri:
    """A sip: or sips: URI. ``user`` keeps its escapes, so it re-serializes exactly."""

    host: Final[str]
    user: Final[str | None]
    port: Final[int | None]
    scheme: Final[str]
    password: Final[str | None]
    params: Final[dict[str, str | None]]
    headers: Final[str | None]

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        scheme: str = "sip",
        password: str | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
    ) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.scheme = scheme
        self.password = password
        self.params = {} if params is None else params
        self.headers = headers

    def __str__(self) -> str:
        if not self.params and self.port is None and self.password is None and not self.headers:
            # The public form that crosses a gateway (user@domain), on every request.
            if self.user is None:
                return f"{self.scheme}:{self.host}"
            return f"{self.scheme}:{self.user}@{self.host}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        port = "" if self.port is None else f":{self.port}"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        headers = "" if self.headers is None else "?" + self.headers
        return f"{self.scheme}:{userinfo}{self.host}{port}{params}{headers}"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return None if value is None else value.lower()

    @property
    def aor(self) -> str:
        """The address-of-record form: scheme, user and host, lowercased host."""
        user = "" if self.user is None else self.user + "@"
        return f"{self.scheme}:{user}{self.host.lower()}"

    def with_params(self, **params: str | None) -> SipUri:
        merged = dict(self.params)
        merged.update(params)
        return SipUri(
            self.host, self.user, self.port, self.scheme, self.password, merged, self.headers
        )


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of another scheme, kept opaque (RFC 3261 allows them in most places)."""

    text: str

    @property
    def scheme(self) -> str:
        return self.text.split(":", 1)[0].lower()

    def __str__(self) -> str:
        return self.text


Uri = SipUri | AbsoluteUri


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";")[1:]:
        name, eq, value = item.partition("=")
        params[name.lower()] = value if eq else None
    return params


@lru_cache(maxsize=8192)
def parse_sip_uri(text: str) -> SipUri:
    """Parse a SIP/SIPS URI. Cached: URIs repeat across messages, and SipUri is frozen."""
    m = _SIP_URI_RE.match(text)
    if m is None:
        raise SipParseError(f"malformed SIP URI {text[:80]!r}")
    scheme, user, password, host, port, params, headers = m.groups()
    port_number = None
    if port is not None:
        port_number = int(port)
        if port_number > 65535:
            raise SipParseError(f"port out of range in {text[:80]!r}")
    return SipUri(
        host=host,
        user=user,
        port=port_number,
        scheme=scheme.lower(),
        password=password,
        params=_parse_uri_params(params) if params else {},
        headers=headers,
    )


def parse_uri(text: str) -> Uri:
    """Parse any URI: SIP/SIPS strictly, other schemes as opaque absolute URIs."""
    head = text[:5].lower()
    if head.startswith(("sip:", "sips:")):
        return parse_sip_uri(text)
    if _ABSOLUTE_URI_RE.match(text) is None:
        raise SipParseError(f"malformed URI {text[:80]!r}")
    return AbsoluteUri(text)
