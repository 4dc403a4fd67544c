"""The grants the IdMS serves, as Authlib grant classes.

- authorization code (RFC 6749 4.1) with PKCE, S256 only (RFC 7636), and an
  ID token (OpenID Connect Core 3.1) carrying the MC claims;
- refresh token (RFC 6749 6), rotated on every use;
- token exchange (RFC 8693) at the primary IdMS: the user's access token for
  a JWT aimed at a partner IdMS, if the user's profile lets them migrate there;
- JWT bearer (RFC 7523) at the partner IdMS: such a JWT, from a primary IdMS
  the partner's visitor policy trusts, for the partner's own access token.

Authlib has the RFC 8693 name but no grant for it; the exchange grant below
is written on Authlib's BaseGrant like the others.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import (
    BaseGrant,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    TokenEndpointMixin,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import ECKey, KeySet

from mcmig.idms.models import (
    AuthorizationCode,
    PeerIssuer,
    RefreshGrantRecord,
)
from mcmig.idms.vocabulary import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    MC_CLAIMS,
    MC_SCOPES,
    TOKEN_EXCHANGE,
)
from mcmig.mc.tokens import TokenError

if TYPE_CHECKING:
    from mcmig.idms.provider import IdentityProvider

ASSERTION_LIFETIME = 300  # seconds an exchanged token may be presented to the partner IdMS


class InvalidTargetError(OAuth2Error):
    """RFC 8693 2.2.2: no token for that audience."""

    error = "invalid_target"


def mc_claims(user: str, scope: str) -> dict[str, str]:
    """TS 33.180's identity claims, one per MC service the scope asks for; an
    MC service ID is the user's identity in every service here."""
    return {MC_CLAIMS[s]: user for s in scope.split() if s in MC_CLAIMS}


class S256Challenge(CodeChallenge):
    """PKCE required on every authorization request, and only S256: ``plain``
    would let whoever sees the request redeem the code."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    @property
    def idms(self) -> IdentityProvider:
        return self.server  # type: ignore[no-any-return]

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.idms.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=request.scope,
            user=request.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            nonce=data.get("nonce"),
            auth_time=int(time.time()),
            expires_at=self.idms.clock() + self.idms.code_lifetime,
        )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        item: AuthorizationCode | None = self.idms.codes.get(code)
        if item is None or item.client_id != client.get_client_id():
            return None
        if self.idms.clock() >= item.expires_at:
            del self.idms.codes[code]
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.idms.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.user


class IdToken(OpenIDCode):
    """The ID token: signed with the IdMS's current key, MC claims by scope."""

    def __init__(self, idms: IdentityProvider) -> None:
        super().__init__(require_nonce=False)
        self.idms = idms

    def resolve_client_private_key(self, client: Any) -> ECKey:
        key = self.idms.keys.current
        assert key.private_key is not None
        return ECKey.import_key(key.private_key, {"kid": key.kid})

    def get_client_algorithm(self, client: Any) -> str:
        return "ES256"

    def get_encode_header(self, client: Any) -> dict[str, str]:
        return {"alg": "ES256", "kid": self.idms.keys.current.kid, "typ": "JWT"}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        return {
            "iss": self.idms.issuer,
            "aud": [client.get_client_id()],
            "exp": int(time.time()) + int(self.idms.token_lifetime),
        }

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return any(c.nonce == nonce for c in self.idms.codes.values())

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        return UserInfo(sub=user, **mc_claims(user, scope))


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: a stolen refresh token works once

    @property
    def idms(self) -> IdentityProvider:
        return self.server  # type: ignore[no-any-return]

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshGrantRecord | None:
        item = self.idms.refresh_tokens.get(refresh_token)
        if item is None or item.revoked or self.idms.clock() >= item.expires_at:
            return None
        return item

    def authenticate_user(self, refresh_token: RefreshGrantRecord) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshGrantRecord) -> None:
        refresh_token.revoked = True
        self.idms.refresh_tokens.pop(refresh_token.refresh_token, None)


class TokenExchangeGrant(BaseGrant, TokenEndpointMixin):
    """RFC 8693 at the primary IdMS (TS 33.180 inter-domain authorization):
    the subject token is an access token this IdMS issued; the audience is
    the partner IdMS's issuer identifier; the result is a JWT for it."""

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    @property
    def idms(self) -> IdentityProvider:
        return self.server  # type: ignore[no-any-return]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client may not use grant_type={self.GRANT_TYPE}")
        form = self.request.form
        subject = form.get("subject_token")
        if not subject:
            raise InvalidRequestError("Missing 'subject_token'")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"'subject_token_type' must be {ACCESS_TOKEN_TYPE}")
        if form.get("requested_token_type", JWT_TOKEN_TYPE) != JWT_TOKEN_TYPE:
            raise InvalidRequestError(f"'requested_token_type' must be {JWT_TOKEN_TYPE}")
        audience = form.get("audience")
        if not audience:
            raise InvalidRequestError("Missing 'audience': the partner IdMS's issuer")
        try:
            claims = self.idms.own_access_token(subject)
        except TokenError as exc:
            raise InvalidGrantError(f"subject_token refused: {exc}") from None
        partner = self.idms.partner_system(audience)
        if partner is None:
            raise InvalidTargetError(f"{audience} is not the IdMS of a partner system")
        user = claims["sub"]
        if not self.idms.may_migrate(user, partner):
            raise InvalidTargetError(f"{user} may not migrate to {partner}")
        self.request.client = client
        self.request.user = user
        self.request.credential = (audience, claims.get("scope") or " ".join(MC_SCOPES))

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        audience, scope = self.request.credential
        assertion = self.idms.sign_assertion(self.request.user, audience, scope)
        token = {
            "access_token": assertion,
            "issued_token_type": JWT_TOKEN_TYPE,
            "token_type": "N_A",
            "expires_in": ASSERTION_LIFETIME,
        }
        return 200, token, self.TOKEN_RESPONSE_HEADER


class VisitorGrant(JWTBearerGrant):
    """RFC 7523 at the partner IdMS: the assertion's issuer must be the IdMS
    of a primary system the visitor policy accepts, its subject a user of
    that system, its audience this IdMS; each assertion is taken once."""

    CLAIMS_OPTIONS = {
        "iss": {"essential": True},
        "sub": {"essential": True},
        "aud": {"essential": True},
        "exp": {"essential": True},
        "jti": {"essential": True},
    }
    LEEWAY = 30

    @property
    def idms(self) -> IdentityProvider:
        return self.server  # type: ignore[no-any-return]

    def resolve_issuer_client(self, issuer: str) -> PeerIssuer | None:
        return self.idms.trusted_primary(issuer)

    def resolve_client_public_key(self, client: PeerIssuer) -> KeySet:
        keys: list[Any] = [
            ECKey.import_key(k.public_key, {"kid": k.kid, "alg": "ES256"})
            for k in self.idms.primary_keys(client.issuer)
        ]
        return KeySet(keys)

    def get_audiences(self) -> list[str]:
        return [self.idms.issuer, self.idms.token_endpoint]

    def process_assertion_claims(self, assertion: str) -> dict[str, Any]:
        claims: dict[str, Any] = super().process_assertion_claims(assertion)
        self.request.credential = claims  # verified: read by the checks below
        return claims

    def authenticate_user(self, subject: str) -> str | None:
        # Authlib resolved the client (the asserting primary IdMS) before this.
        client: PeerIssuer = self.request.client
        return subject if self.idms.is_user_of(subject, client.domain) else None

    def has_granted_permission(self, client: PeerIssuer, user: str) -> bool:
        return True

    def validate_token_request(self) -> None:
        super().validate_token_request()
        claims = self.request.credential
        if not self.idms.first_use(str(claims.get("jti")), float(claims["exp"])):
            raise InvalidGrantError("assertion already used")
        if self.request.user is None:
            raise InvalidGrantError("assertion names no user")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        asserted = self.request.credential.get("scope")
        scope = self.request.payload.scope or asserted or " ".join(MC_SCOPES)
        token = self.generate_token(
            scope=scope, user=self.request.user, include_refresh_token=False
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
