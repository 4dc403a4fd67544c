"""The IdMS's OAuth 2.0 / OpenID Connect authorization server (Authlib), without HTTP.

It knows its own system's users (passwords, migration policy) and, from the
deployment, the IdMSs of its peer systems: the partners it may issue
exchanged tokens for (``peers``) and the primaries whose assertions it takes
(``peers`` accepted by its visitor policy). The HTTP edge is mcmig.idms.http.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Payload, OAuth2Request
from joserfc import jws
from joserfc.errors import JoseError

from mcmig.idms.accounts import check_password
from mcmig.idms.grants import (
    ASSERTION_LIFETIME,
    CodeGrant,
    IdToken,
    RefreshGrant,
    S256Challenge,
    TokenExchangeGrant,
    VisitorGrant,
    mc_claims,
)
from mcmig.idms.models import (
    CODE_LIFETIME,
    REFRESH_LIFETIME,
    AuthorizationCode,
    PeerIssuer,
    PublicClient,
    RefreshGrantRecord,
)
from mcmig.idms.signing import SigningKeys
from mcmig.idms.vocabulary import (
    CLIENT_ID,
    GRANT_TYPES,
    JWT_BEARER,
    MC_SCOPES,
    REDIRECT_URI,
    SCOPES,
)
from mcmig.mc.jwks import JwksKeys, https_client_context
from mcmig.mc.tokens import ALGORITHM, IdmsKey, TokenError, TokenVerifier
from mcmig.profiles.model import Deployment, SystemProfile
from mcmig.sip.errors import SipParseError
from mcmig.sip.uri import parse_sip_uri


@dataclass
class HttpRequest:
    """What the HTTP edge hands over: the request as received."""

    method: str
    uri: str
    headers: Mapping[str, str]
    args: dict[str, str]
    form: dict[str, str]
    repeated: dict[str, list[str]]  # every value of every parameter (for duplicate checks)


class _Payload(OAuth2Payload):
    def __init__(self, request: HttpRequest) -> None:
        self._request = request

    @property
    def data(self) -> dict[str, str]:
        return {**self._request.args, **self._request.form}

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._request.repeated


class _OAuth2Request(OAuth2Request):
    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request.method, request.uri, headers=dict(request.headers))
        self._http = request
        self.payload = _Payload(request)

    @property
    def args(self) -> dict[str, str]:
        return self._http.args

    @property
    def form(self) -> dict[str, str]:
        return self._http.form


class IdentityProvider(AuthorizationServer):
    def __init__(
        self,
        system: SystemProfile,
        deployment: Deployment,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        idms = system.idms
        self.system = system
        self.domain = system.domain
        self.issuer = idms.issuer
        self.token_endpoint = f"{idms.issuer}/token"
        self.keys = SigningKeys(idms.issuer, idms.key_files)
        self.token_lifetime = idms.token_lifetime
        self.code_lifetime = CODE_LIFETIME
        self.clock = clock
        self.client = PublicClient(CLIENT_ID, (REDIRECT_URI,))
        self.codes: dict[str, AuthorizationCode] = {}
        self.refresh_tokens: dict[str, RefreshGrantRecord] = {}
        self._used_assertions: dict[str, float] = {}
        self._own = TokenVerifier(self.domain, self.keys, max_lifetime=idms.token_lifetime)
        self._partners: dict[str, str] = {}  # partner IdMS issuer -> partner system
        self._primaries: dict[str, tuple[PeerIssuer, JwksKeys]] = {}
        for peer in system.peers:
            other = deployment.system(peer.domain)
            if other is None:
                continue
            self._partners[other.idms.issuer] = peer.domain
            if system.visitors.accepts_system(peer.domain):
                keys = JwksKeys(other.idms.issuer, idms_client_tls(other))
                self._primaries[other.idms.issuer] = (
                    PeerIssuer(other.idms.issuer, peer.domain),
                    keys,
                )
        self.register_grant(CodeGrant, [S256Challenge(required=True), IdToken(self)])
        self.register_grant(RefreshGrant)
        self.register_grant(TokenExchangeGrant)
        self.register_grant(VisitorGrant)
        self.register_token_generator("default", self._access_token)

    # -- what Authlib asks of a server ---------------------------------------------------
    def query_client(self, client_id: str) -> PublicClient | None:
        return self.client if client_id == self.client.client_id else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Access tokens are self-contained JWTs; refresh tokens were kept when made."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: HttpRequest | OAuth2Request) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else _OAuth2Request(request)

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers

    # -- tokens ----------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self.keys.current
        assert key.private_key is not None  # SigningKeys holds private keys only
        headers = {"kid": key.kid, "typ": typ}
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)

    def _claims(self, user: str, audience: str, lifetime: float, scope: str) -> dict[str, Any]:
        now = int(self.clock())
        return {
            "iss": self.issuer,
            "sub": user,
            "aud": audience,
            "iat": now,
            "exp": now + int(lifetime),
            "jti": secrets.token_hex(12),
            "client_id": CLIENT_ID,
            "scope": scope,
            **mc_claims(user, scope),
        }

    def _access_token(
        self,
        grant_type: str,
        client: Any,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """An access token for this system's MC service servers (RFC 9068 form):
        audience the MC system id, as PROFILE 2.1 asks."""
        assert user is not None
        granted = " ".join(s for s in (scope or "").split() if s in SCOPES) or " ".join(MC_SCOPES)
        service = " ".join(s for s in granted.split() if s in MC_SCOPES)
        claims = self._claims(user, self.domain, self.token_lifetime, service)
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": self._sign(claims, "at+jwt"),
            "expires_in": int(self.token_lifetime),
            "scope": granted,
        }
        if include_refresh_token:
            value = secrets.token_urlsafe(32)
            self.refresh_tokens[value] = RefreshGrantRecord(
                value, client.get_client_id(), user, granted, self.clock() + REFRESH_LIFETIME
            )
            token["refresh_token"] = value
        return token

    def sign_assertion(self, user: str, audience: str, scope: str) -> str:
        return self._sign(self._claims(user, audience, ASSERTION_LIFETIME, scope), "JWT")

    def own_access_token(self, token: str) -> dict[str, Any]:
        """An access token this IdMS issued for its own system, still valid."""
        try:
            subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
        except jwt.PyJWTError as exc:
            raise TokenError(f"unreadable: {exc}") from None
        return self._own.verify(token, str(subject), now=self.clock())

    # -- policy ------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> str | None:
        """The MC service ID of a user of this system whose password this is."""
        name = username.strip()
        if name.startswith("sip:"):
            if not self.is_user_of(name, self.domain):
                return None
            name = parse_sip_uri(name).user or ""
        if not name or not self.system.users.is_user(name):
            check_password({}, name, password)  # as long as a real check
            return None
        if not check_password(self.system.idms.accounts, name, password):
            return None
        return f"sip:{name}@{self.domain}"

    def is_user_of(self, user: str, domain: str) -> bool:
        try:
            uri = parse_sip_uri(user)
        except SipParseError:
            return False
        return uri.host.lower() == domain and bool(uri.user) and str(uri) == user

    def partner_system(self, issuer: str) -> str | None:
        return self._partners.get(issuer)

    def may_migrate(self, user: str, partner: str) -> bool:
        if not self.is_user_of(user, self.domain):
            return False
        return self.system.users.may_migrate(parse_sip_uri(user).user or "", partner)

    def trusted_primary(self, issuer: str) -> PeerIssuer | None:
        entry = self._primaries.get(issuer)
        return entry[0] if entry else None

    def primary_keys(self, issuer: str) -> list[IdmsKey]:
        entry = self._primaries.get(issuer)
        return entry[1].current() if entry else []

    def first_use(self, jti: str, expires: float) -> bool:
        """Remember an assertion's jti until it expires; False if seen before."""
        now = self.clock()
        for old in [j for j, exp in self._used_assertions.items() if exp < now]:
            del self._used_assertions[old]
        if jti in self._used_assertions:
            return False
        self._used_assertions[jti] = expires
        return True

    async def prepare(self, form: Mapping[str, str]) -> None:
        """Before a JWT bearer grant: learn the asserting primary IdMS's keys
        (over HTTPS, so not inside Authlib's synchronous call) if the
        assertion names a key we do not hold."""
        if form.get("grant_type") != JWT_BEARER:
            return
        try:
            assertion = jws.extract_compact(form.get("assertion", "").encode())
            claims = json.loads(assertion.payload)
        except (JoseError, ValueError):
            return  # Authlib refuses it, with the reason
        entry = self._primaries.get(str(claims.get("iss"))) if isinstance(claims, dict) else None
        kid = str(assertion.headers().get("kid"))
        if entry is not None and entry[1].key(kid) is None:
            await entry[1].refresh(kid)

    # -- discovery -----------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": self.token_endpoint,
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": list(GRANT_TYPES),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "scopes_supported": list(SCOPES),
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "mcptt_id",
                "mcdata_id",
                "mcvideo_id",
            ],
        }


def idms_client_tls(system: SystemProfile) -> ssl.SSLContext:
    """TLS for talking to ``system``'s IdMS: its CA, host name checked."""
    return https_client_context(system.idms.tls_ca)
