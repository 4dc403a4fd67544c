"""The MC service client's side of the IdMS: log in, exchange, get the partner's token.

Headless: the login form is fetched and posted as a test tool would post it,
and the authorization code is read from the redirect's Location, which is
never followed. Every step checks what it gets (state, the issuer's own
endpoints) and fails with LoginError naming the step and the IdMS's error.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from mcmig.idms.errors import LoginError
from mcmig.idms.vocabulary import (
    ACCESS_TOKEN_TYPE,
    CLIENT_ID,
    DEFAULT_SCOPE,
    JWT_BEARER,
    JWT_TOKEN_TYPE,
    REDIRECT_URI,
    TOKEN_EXCHANGE,
)
from mcmig.mc.jwks import https_client_context
from mcmig.profiles.model import Deployment

TIMEOUT = 5.0  # seconds for each HTTP exchange


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = None


def pkce_pair() -> tuple[str, str]:
    """A code verifier (RFC 7636 4.1: 43 to 128 unreserved characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _tokens(body: dict[str, Any]) -> Tokens:
    return Tokens(
        access_token=str(body["access_token"]),
        expires_in=int(body.get("expires_in", 0)),
        scope=str(body.get("scope", "")),
        id_token=body.get("id_token"),
        refresh_token=body.get("refresh_token"),
    )


class IdmsClient:
    """One IdMS, by its issuer identifier, over HTTPS checked against ``ca``."""

    def __init__(self, issuer: str, ca: Path, steps: list[str] | None = None) -> None:
        self.issuer = issuer
        self._ca = ca
        self._session: aiohttp.ClientSession | None = None
        # Each HTTP exchange, one line, for ladders and logs.
        self.steps = steps if steps is not None else []

    def _step(self, request: str, status: int) -> None:
        self.steps.append(f"{self.issuer} {request} -> {status}")

    async def __aenter__(self) -> IdmsClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            connector=aiohttp.TCPConnector(ssl=https_client_context(self._ca)),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use IdmsClient in 'async with'"
        return self._session

    async def _token(self, step: str, form: dict[str, str]) -> dict[str, Any]:
        try:
            async with self.session.post(f"{self.issuer}/token", data=form) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise LoginError(
                f"{step} at {self.issuer}: {type(exc).__name__}: {exc}", self.issuer
            ) from None
        self._step(f"POST /token ({form['grant_type'].rpartition(':')[2]})", response.status)
        if response.status == 200 and isinstance(body, dict) and "access_token" in body:
            return body
        error, reason = "invalid_response", str(body)[:200]
        if isinstance(body, dict):
            error = str(body.get("error", error))
            reason = str(body.get("error_description", ""))
        raise LoginError(
            f"{step} refused by {self.issuer}: {error}: {reason}",
            self.issuer,
            response.status,
            error,
        )

    async def login(self, username: str, password: str, scope: str = DEFAULT_SCOPE) -> Tokens:
        """Authorization code with PKCE S256: the form fetched, posted, the code redeemed."""
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        url = f"{self.issuer}/authorize"
        try:
            async with self.session.get(url, params=params, allow_redirects=False) as page:
                self._step("GET /authorize (login form)", page.status)
                if page.status != 200:
                    raise LoginError(
                        f"authorization request refused by {self.issuer}: HTTP {page.status}",
                        self.issuer,
                        page.status,
                        "invalid_request",
                    )
            form = {**params, "username": username, "password": password}
            async with self.session.post(url, data=form, allow_redirects=False) as answer:
                location = answer.headers.get("Location", "")
                retry_after = answer.headers.get("Retry-After", "")
                status = answer.status
                self._step("POST /authorize (user name, password)", status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise LoginError(
                f"login at {self.issuer}: {type(exc).__name__}: {exc}", self.issuer
            ) from None
        if status == 401:
            raise LoginError(
                f"login refused by {self.issuer}: wrong user name or password",
                self.issuer,
                401,
                "access_denied",
            )
        if status in (429, 503):
            why = "too many failed logins from here" if status == 429 else "busy"
            raise LoginError(
                f"login at {self.issuer} refused for now ({why}): HTTP {status}, "
                f"retry after {retry_after or '?'} s",
                self.issuer,
                status,
                "temporarily_unavailable",
            )
        query = parse_qs(urlsplit(location).query)
        if status != 302 or not location.startswith(REDIRECT_URI):
            raise LoginError(
                f"login at {self.issuer}: HTTP {status}, no redirect to the client",
                self.issuer,
                status,
                "invalid_response",
            )
        if query.get("state") != [state]:
            raise LoginError(
                f"login at {self.issuer}: the redirect carries another state",
                self.issuer,
                status,
                "invalid_response",
            )
        if "code" not in query:
            error = query.get("error", ["?"])[0]
            raise LoginError(f"login refused by {self.issuer}: {error}", self.issuer, status, error)
        body = await self._token(
            "code redemption",
            {
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": REDIRECT_URI,
                "client_id": CLIENT_ID,
                "code_verifier": verifier,
            },
        )
        return _tokens(body)

    async def refresh(self, refresh_token: str) -> Tokens:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        }
        return _tokens(await self._token("refresh", form))

    async def exchange(self, access_token: str, audience: str) -> str:
        """RFC 8693: our access token for a JWT aimed at the IdMS ``audience``."""
        body = await self._token(
            "token exchange",
            {
                "grant_type": TOKEN_EXCHANGE,
                "client_id": CLIENT_ID,
                "subject_token": access_token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "requested_token_type": JWT_TOKEN_TYPE,
                "audience": audience,
            },
        )
        return str(body["access_token"])

    async def jwt_bearer(self, assertion: str) -> Tokens:
        """RFC 7523: an assertion from a primary IdMS for this IdMS's access token."""
        form = {"grant_type": JWT_BEARER, "client_id": CLIENT_ID, "assertion": assertion}
        return _tokens(await self._token("JWT bearer grant", form))


async def access_token_for(
    deployment: Deployment, user: str, password: str, domain: str, steps: list[str] | None = None
) -> str:
    """The access token ``user`` presents to ``domain``'s servers: logged in at
    the home IdMS; for another system, exchanged there and granted by that
    system's IdMS (TS 33.180 inter-domain user service authorization)."""
    home = deployment.system(user.rpartition("@")[2].lower())
    target = deployment.system(domain)
    if home is None or target is None:
        raise LoginError(f"no system {domain if target is None else user} in the profile", "")
    async with IdmsClient(home.idms.issuer, home.idms.tls_ca, steps) as primary:
        tokens = await primary.login(user, password)
        if target is home:
            return tokens.access_token
        assertion = await primary.exchange(tokens.access_token, target.idms.issuer)
    async with IdmsClient(target.idms.issuer, target.idms.tls_ca, steps) as partner:
        return (await partner.jwt_bearer(assertion)).access_token
