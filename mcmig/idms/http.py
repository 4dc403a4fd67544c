"""The IdMS's HTTPS edge (aiohttp): discovery, JWKS, the authorization endpoint
with its login form, and the token endpoint. Authlib decides; this module
only carries requests in and answers out."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from authlib.oauth2.rfc6749 import OAuth2Error

from mcmig.idms.provider import HttpRequest, IdentityProvider
from mcmig.idms.throttle import LoginThrottle
from mcmig.idms.vocabulary import GRANT_TYPES
from mcmig.profiles.model import HostPort

log = logging.getLogger("mcmig.idms")

MAX_BODY = 64 * 1024  # bytes; a token request is a few kilobytes
JWKS_MAX_AGE = 300  # seconds verifiers may cache the JWKS (Cache-Control)
_LOGIN_FIELDS = ("username", "password")


def _page(title: str, body: str, status: int = 200, retry_after: int | None = None) -> web.Response:
    text = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(status=status, text=text, content_type="text/html", headers=headers)


def login_form(params: dict[str, str], problem: str | None = None) -> web.Response:
    """The login page: the authorization request's parameters ride along hidden."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k not in _LOGIN_FIELDS
    )
    note = f'<p role="alert">{html.escape(problem)}</p>' if problem else ""
    body = (
        f"<h1>MC service login</h1>{note}"
        f'<form method="post" action="/authorize">{hidden}'
        '<label>MC service ID or user name <input name="username"></label>'
        '<label>Password <input type="password" name="password"></label>'
        '<button type="submit">Log in</button></form>'
    )
    return _page("Login", body, 401 if problem else 200)


def _answer(status: int, body: Any, headers: list[tuple[str, str]]) -> web.Response:
    out = dict(headers)
    if isinstance(body, dict):
        out["Content-Type"] = "application/json"
        return web.Response(status=status, text=json.dumps(body), headers=out)
    return web.Response(status=status, text=str(body or ""), headers=out)


async def _read(request: web.Request) -> HttpRequest:
    form = await request.post() if request.method == "POST" else {}
    repeated: dict[str, list[str]] = {}
    for source in (request.query, form):
        for key in source:
            repeated.setdefault(key, []).extend(str(v) for v in source.getall(key))  # type: ignore[attr-defined]
    return HttpRequest(
        method=request.method,
        uri=str(request.url),
        headers=dict(request.headers),
        args={k: str(v) for k, v in request.query.items()},
        form={k: str(v) for k, v in form.items() if isinstance(v, str)},
        repeated=repeated,
    )


class IdmsApp:
    def __init__(self, provider: IdentityProvider, throttle: LoginThrottle | None = None) -> None:
        self.provider = provider
        self.throttle = throttle or LoginThrottle()
        # Told of each login posted (accepted, refused, throttled, busy) and of each
        # token request (its grant type, and "issued" or the OAuth error code).
        self.on_login: Callable[[str], None] = _ignore
        self.on_token: Callable[[str, str], None] = _ignore
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[self._never_a_traceback])
        self.app.add_routes(
            [
                web.get("/.well-known/openid-configuration", self.discovery),
                web.get("/jwks", self.jwks),
                web.get("/authorize", self.authorize),
                web.post("/authorize", self.login),
                web.post("/token", self.token),
            ]
        )

    @web.middleware
    async def _never_a_traceback(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException:
            raise
        except Exception:
            log.exception("IdMS %s %s failed", request.method, request.path)
            return _answer(500, {"error": "server_error"}, [("Cache-Control", "no-store")])

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(self.provider.metadata())

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response(
            self.provider.keys.jwks(), headers={"Cache-Control": f"max-age={JWKS_MAX_AGE}"}
        )

    def _consent(self, incoming: HttpRequest) -> tuple[Any, web.Response | None]:
        """Authlib's check of an authorization request; on failure the answer:
        a redirect with the error once the client and its redirect URI are
        known good (RFC 6749 4.1.2.1), else a page, never a redirect."""
        try:
            return self.provider.get_consent_grant(incoming), None
        except OAuth2Error as error:
            if error.redirect_uri:
                return None, _answer(*error(None))
            text = html.escape(f"{error.error}: {error.description or ''}")
            return None, _page("Bad request", f"<h1>Bad request</h1><p>{text}</p>", 400)

    async def authorize(self, request: web.Request) -> web.Response:
        incoming = await _read(request)
        _grant, problem = self._consent(incoming)
        return problem or login_form(incoming.args)

    async def login(self, request: web.Request) -> web.Response:
        incoming = await _read(request)
        grant, problem = self._consent(incoming)
        if problem is not None:
            return problem
        username, password = incoming.form.get("username", ""), incoming.form.get("password", "")
        source = request.remote or "-"
        refused = self._throttled(source)
        if refused is not None:
            self.on_login("throttled" if refused.status == 429 else "busy")
            return refused
        # Argon2 takes tens of milliseconds of CPU: off the event loop.
        self.throttle.checking += 1
        try:
            user = await asyncio.to_thread(self.provider.authenticate, username, password)
        finally:
            self.throttle.checking -= 1
        self.on_login("refused" if user is None else "accepted")
        if user is None:
            log.info("IdMS login refused for %r from %s", username[:64], source)
            if self.throttle.failed(source):
                log.warning(
                    "IdMS: %d failed logins from %s within %g s; its logins wait",
                    self.throttle.failures,
                    source,
                    self.throttle.window,
                )
            return login_form(incoming.form, "wrong user name or password")
        self.throttle.succeeded(source)
        log.info("IdMS login of %s", user)
        return _answer(*self.provider.create_authorization_response(incoming, user, grant))

    def _throttled(self, source: str) -> web.Response | None:
        """The answer to a login that may not be checked now, before any hash."""
        wait = self.throttle.wait_for(source)
        if wait is not None:
            text = f"Too many failed logins from this address; try again in {wait} s."
            return _page("Too many failed logins", f"<p>{text}</p>", 429, wait)
        if self.throttle.busy():
            text = "Too many logins being checked; try again in a second."
            return _page("Busy", f"<p>{text}</p>", 503, 1)
        return None

    async def token(self, request: web.Request) -> web.Response:
        incoming = await _read(request)
        await self.provider.prepare(incoming.form)
        status, body, headers = self.provider.create_token_response(incoming)
        grant = incoming.form.get("grant_type", "")
        known = grant if grant in GRANT_TYPES else "other"
        self.on_token(known.rpartition(":")[2], "issued" if status == 200 else _error(body))
        if status != 200:
            log.info("IdMS token request refused: %s", body.get("error_description") or body)
        return _answer(status, body, headers)


def _ignore(*_: str) -> None:
    pass


def _error(body: Any) -> str:
    """The OAuth error code of a refusal, as a metric label: one of RFC 6749's
    codes or "other", never whatever a request made up."""
    error = body.get("error") if isinstance(body, dict) else None
    return error if error in _OAUTH_ERRORS else "other"


_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",  # RFC 8693
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    }
)


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class IdmsServer:
    """One IdMS listening on HTTPS."""

    def __init__(
        self,
        provider: IdentityProvider,
        listen: HostPort,
        cert: Path,
        key: Path,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.provider = provider
        self.listen = listen
        self._tls = server_tls(cert, key)
        self.app = IdmsApp(provider, throttle)
        self._runner = web.AppRunner(self.app.app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen.host, self.listen.port, ssl_context=self._tls)
        await site.start()
        log.info("IdMS %s listening on https://%s", self.provider.issuer, self.listen)

    async def stop(self) -> None:
        await self._runner.cleanup()
