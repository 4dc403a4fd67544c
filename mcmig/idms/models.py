"""What the IdMS keeps: its clients, authorization codes and refresh tokens.

Codes and refresh tokens live in memory: an IdMS restart logs every user out
(they log in again), which is the simplification docs/identity.md states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.util import scope_to_list

from mcmig.idms.vocabulary import DEFAULT_SCOPE, GRANT_TYPES, JWT_BEARER, SCOPES

CODE_LIFETIME = 60.0  # seconds; RFC 6749 recommends at most 10 minutes
REFRESH_LIFETIME = 8 * 3600.0


def allowed_scope(scope: str | None) -> str:
    """What a client may ask for: the scopes we know of (all of them if none)."""
    if not scope:
        return DEFAULT_SCOPE
    return " ".join(s for s in scope_to_list(scope) if s in SCOPES)


@dataclass(frozen=True)
class PublicClient(ClientMixin):
    """An MC service client: a public client (no secret), PKCE required."""

    client_id: str
    redirect_uris: tuple[str, ...]
    grant_types: frozenset[str] = frozenset(GRANT_TYPES)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str | None) -> str:
        return allowed_scope(scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class PeerIssuer(ClientMixin):
    """A primary system's IdMS, as the issuer of the assertions a partner IdMS
    accepts (RFC 7523 calls it the client)."""

    issuer: str
    domain: str  # the primary MC system it speaks for

    def get_client_id(self) -> str:
        return self.issuer

    def get_allowed_scope(self, scope: str | None) -> str:
        return allowed_scope(scope)

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == JWT_BEARER


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str  # the MC service ID
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


@dataclass
class RefreshGrantRecord(TokenMixin):
    refresh_token: str
    client_id: str
    user: str
    scope: str
    expires_at: float
    revoked: bool = field(default=False)

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at - time.time()))

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked
