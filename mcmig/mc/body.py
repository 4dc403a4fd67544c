"""The migration body (application/vnd.mcmig.migration+xml), PROFILE sections 2 and 3.

Decoding uses defusedxml: entity declarations, external entities and DTDs
are refused, so a hostile body costs us no more than its own bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from mcmig.sip.errors import SipParseError
from mcmig.sip.uri import SipUri, is_host, parse_sip_uri

CONTENT_TYPE = "application/vnd.mcmig.migration+xml"
NAMESPACE = "urn:mcmig:params:xml:ns:migration:1"
MAX_BODY = 16384  # bytes; a migration body is a few hundred
_NS = "{" + NAMESPACE + "}"
_REQUEST_FIELDS = (
    "mc-service-id",
    "access-token",
    "partner-system",
    "partner-address",
    "temporary-id",
)
# temporary-id in a release is our extension of PROFILE 3: it names the
# migration being ended, so a late release never ends a newer one.
_RELEASE_FIELDS = ("mc-service-id", "partner-system", "temporary-id")
_CAUSE_RE = re.compile(r"[a-z][a-z0-9-]{0,63}\Z")


class BodyError(Exception):
    """The body is not a valid migration document; ``status`` is 400 or 413."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class MigrationRequest:
    mc_service_id: str
    access_token: str | None = None
    partner_system: str | None = None
    partner_address: str | None = None
    temporary_id: str | None = None


@dataclass(frozen=True, slots=True)
class MigrationRelease:
    mc_service_id: str
    partner_system: str | None = None
    temporary_id: str | None = None


@dataclass(frozen=True, slots=True)
class MigrationFailure:
    cause: str
    text: str = ""


MigrationBody = MigrationRequest | MigrationRelease | MigrationFailure


def service_id_uri(text: str, what: str = "mc-service-id") -> SipUri:
    """An MC service ID or temporary identity: a SIP URI with a user part."""
    try:
        uri = parse_sip_uri(text)
    except SipParseError:
        raise BodyError(f"{what} is not a SIP URI") from None
    if uri.user is None or uri.headers is not None:
        raise BodyError(f"{what} needs a user part and no headers")
    return uri


def system_domain(mc_service_id: str) -> str:
    """The MC system id of a user: the domain of its MC service ID."""
    return service_id_uri(mc_service_id).host.lower()


def decode(body: bytes) -> MigrationBody:
    if len(body) > MAX_BODY:
        raise BodyError(f"migration body of {len(body)} bytes exceeds {MAX_BODY}", 413)
    try:
        root = fromstring(body, forbid_dtd=True)
    # LookupError: an XML declaration naming an encoding Python does not know.
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise BodyError(f"not well-formed XML: {type(exc).__name__}") from None
    if root.tag != _NS + "migration":
        raise BodyError(f"root element must be migration in {NAMESPACE}")
    children = list(root)
    if len(children) != 1:
        raise BodyError("migration holds exactly one of request, release, failure")
    (child,) = children
    if child.tag == _NS + "request":
        fields = _fields(child, _REQUEST_FIELDS)
        request = MigrationRequest(
            mc_service_id=_required(fields, "mc-service-id"),
            **{k.replace("-", "_"): v for k, v in fields.items() if k != "mc-service-id"},
        )
        _check_request(request)
        return request
    if child.tag == _NS + "release":
        fields = _fields(child, _RELEASE_FIELDS)
        release = MigrationRelease(
            _required(fields, "mc-service-id"),
            fields.get("partner-system"),
            fields.get("temporary-id"),
        )
        service_id_uri(release.mc_service_id)
        if release.temporary_id is not None:
            service_id_uri(release.temporary_id, "temporary-id")
        if release.partner_system is not None and not is_host(release.partner_system):
            raise BodyError("partner-system is not a domain")
        return release
    if child.tag == _NS + "failure":
        cause = child.get("cause") or ""
        if _CAUSE_RE.match(cause) is None or len(child):
            raise BodyError("failure needs a cause token and text only")
        return MigrationFailure(cause, (child.text or "").strip())
    raise BodyError(f"unknown element {child.tag.removeprefix(_NS)}")


def _fields(element: Element, allowed: tuple[str, ...]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in element:
        name = item.tag.removeprefix(_NS)
        if not item.tag.startswith(_NS) or name not in allowed:
            raise BodyError(f"unknown element {name}")
        if name in fields:
            raise BodyError(f"{name} appears twice")
        if len(item):
            raise BodyError(f"{name} must hold text only")
        fields[name] = (item.text or "").strip()
    return fields


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise BodyError(f"missing {name}")
    return value


def _check_request(request: MigrationRequest) -> None:
    service_id_uri(request.mc_service_id)
    if request.partner_system is not None and not is_host(request.partner_system):
        raise BodyError("partner-system is not a domain")
    if request.partner_address is not None:
        try:
            parse_sip_uri(request.partner_address)
        except SipParseError:
            raise BodyError("partner-address is not a SIP URI") from None
    if request.temporary_id is not None:
        service_id_uri(request.temporary_id, "temporary-id")


def encode(body: MigrationBody) -> bytes:
    root = Element("migration", xmlns=NAMESPACE)
    if isinstance(body, MigrationFailure):
        failure = SubElement(root, "failure", cause=body.cause)
        failure.text = body.text
    else:
        name = "request" if isinstance(body, MigrationRequest) else "release"
        element = SubElement(root, name)
        fields = _REQUEST_FIELDS if isinstance(body, MigrationRequest) else _RELEASE_FIELDS
        for field_name in fields:
            value = getattr(body, field_name.replace("-", "_"))
            if value is not None:
                SubElement(element, field_name).text = value
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode").encode()
