"""The MC service client: asks a partner server for migration service authorization."""

from __future__ import annotations

from dataclasses import dataclass

from mcmig.mc.body import (
    CONTENT_TYPE,
    BodyError,
    MigrationFailure,
    MigrationRequest,
    decode,
    encode,
)
from mcmig.mc.causes import warning_cause
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import parse_sip_uri


@dataclass(frozen=True)
class MigrationOutcome:
    status: int
    reason: str
    cause: str | None = None
    text: str = ""
    agent: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    def __str__(self) -> str:
        if self.accepted:
            return f"{self.status} {self.reason}: migration authorized"
        cause = f" {self.cause}" if self.cause else ""
        by = f" (from {self.agent})" if self.agent else ""
        text = f": {self.text}" if self.text else ""
        return f"{self.status} {self.reason}{cause}{by}{text}"


class McClient:
    def __init__(self, node: SipNode, mc_service_id: str) -> None:
        self.node = node
        self.mc_service_id = mc_service_id

    async def migrate(
        self, partner_psi: str, partner_server: TransportAddress, access_token: str
    ) -> MigrationOutcome:
        body = encode(MigrationRequest(mc_service_id=self.mc_service_id, access_token=access_token))
        request = make_request(
            "MESSAGE",
            parse_sip_uri(partner_psi),
            from_uri=self.mc_service_id,
            to_uri=partner_psi,
            body=body,
            content_type=CONTENT_TYPE,
            contact=self.node.uri.with_params()
            .__str__()
            .replace("sip:", f"sip:{self._user()}@", 1),
        )
        try:
            response = await self.node.send_request(request, partner_server)
        except SipTimeoutError:
            return MigrationOutcome(408, "Request Timeout", None, "no final response (Timer F)")
        except SipTransportError:
            return MigrationOutcome(503, "Service Unavailable", None, "partner server unreachable")
        cause = None
        text = ""
        if response.content_type == CONTENT_TYPE and response.body:
            try:
                failure = decode(response.body)
            except BodyError:
                failure = None
            if isinstance(failure, MigrationFailure):
                cause, text = failure.cause, failure.text
        warning = warning_cause(response.get("Warning"))
        return MigrationOutcome(
            response.status, response.reason, cause, text, warning[0] if warning else None
        )

    def _user(self) -> str:
        return parse_sip_uri(self.mc_service_id).user or "client"
