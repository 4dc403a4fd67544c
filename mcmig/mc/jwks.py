"""An IdMS's public keys, learnt from its JWKS over HTTPS and cached.

MC service servers and partner IdMSs hold no signing key of anyone's: they
verify with what the issuer publishes (OpenID Connect discovery, RFC 8414,
then the JWKS, RFC 7517). The cache lives ``max_age`` seconds; after that a
key is not trusted until the JWKS has been read again, so a key the IdMS has
withdrawn stops verifying within ``max_age``. A token naming a key id we do
not know makes us read the JWKS again at once, but never more often than
every ``min_interval`` seconds: a stream of forged key ids costs the IdMS
one request per interval. When the JWKS cannot be read, verification fails
closed (no key), and the failure is logged once until it is readable again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK, PyJWKError

from mcmig.mc.tokens import ALGORITHM, IdmsKey

log = logging.getLogger("mcmig.mc.jwks")

MAX_AGE = 300.0  # seconds a JWKS read is trusted
MIN_INTERVAL = 10.0  # seconds between two reads asked for by unknown key ids
FETCH_TIMEOUT = 3.0  # seconds for discovery plus JWKS
MAX_DOCUMENT = 64 * 1024  # bytes; an IdMS's JWKS is a few hundred


def https_client_context(ca: Path) -> ssl.SSLContext:
    """TLS to an IdMS: its certificate must chain to ``ca`` and name its host."""
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class JwksError(Exception):
    """The JWKS could not be read or understood; the text says why."""


def parse_jwks(document: Any, issuer: str) -> dict[str, IdmsKey]:
    """The ES256 signing keys of a JWKS; other keys are skipped, not errors
    (an IdMS may publish keys for other uses)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JWK set")
    keys: dict[str, IdmsKey] = {}
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") != "EC" or item.get("crv") != "P-256":
            continue
        if item.get("use", "sig") != "sig" or item.get("alg", ALGORITHM) != ALGORITHM:
            continue
        kid = item.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            public = PyJWK.from_dict({k: v for k, v in item.items() if k != "d"}).key
        except PyJWKError as exc:
            raise JwksError(f"key {kid!r}: {exc}") from None
        if isinstance(public, ec.EllipticCurvePublicKey):
            keys[kid] = IdmsKey(issuer, kid, public)
    return keys


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, allow_redirects=False) as response:
        if response.status != 200:
            raise JwksError(f"{url}: HTTP {response.status}")
        body = await response.content.read(MAX_DOCUMENT + 1)
        if len(body) > MAX_DOCUMENT:
            raise JwksError(f"{url}: larger than {MAX_DOCUMENT} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise JwksError(f"{url}: not JSON") from None


async def fetch_jwks(issuer: str, tls: ssl.SSLContext) -> dict[str, IdmsKey]:
    """Discovery at the issuer, then its ``jwks_uri``, which must be on the
    issuer's own origin (a discovery document cannot send us elsewhere)."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    connector = aiohttp.TCPConnector(ssl=tls)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            meta = await _get_json(
                session, issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            if not isinstance(meta, dict) or meta.get("issuer") != issuer:
                raise JwksError("discovery names another issuer")
            jwks_uri = meta.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(issuer.rstrip("/") + "/"):
                raise JwksError("jwks_uri is not on the issuer's origin")
            return parse_jwks(await _get_json(session, jwks_uri), issuer)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise JwksError(f"{issuer}: {type(exc).__name__}: {exc}") from None


class JwksKeys:
    """The KeySource of one issuer, read over HTTPS (see the module's text)."""

    def __init__(
        self,
        issuer: str,
        tls: ssl.SSLContext,
        *,
        max_age: float = MAX_AGE,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._tls = tls
        self._max_age = max_age
        self._min_interval = min_interval
        self._clock = clock
        self._keys: dict[str, IdmsKey] = {}
        self._read_at: float | None = None  # when the cached set was read
        self._tried_at: float | None = None  # when a read was last attempted
        self._failing = False
        self._pending: asyncio.Task[None] | None = None
        self.reads = 0  # JWKS reads attempted (for tests and metrics)

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self._max_age

    def current(self) -> list[IdmsKey]:
        """Every key of the cached set, if it has not aged out."""
        return list(self._keys.values()) if self._fresh() else []

    def key(self, kid: str) -> IdmsKey | None:
        return self._keys.get(kid) if self._fresh() else None

    async def refresh(self, kid: str) -> None:
        """Read the JWKS again unless a read was tried less than ``min_interval``
        ago; concurrent callers share one read."""
        if self._pending is None:
            if self._tried_at is not None and self._clock() - self._tried_at < self._min_interval:
                return
            self._pending = asyncio.ensure_future(self._read())
        pending = self._pending
        try:
            await asyncio.shield(pending)
        finally:
            if self._pending is pending and pending.done():
                self._pending = None

    async def _read(self) -> None:
        self._tried_at = self._clock()
        self.reads += 1
        try:
            keys = await fetch_jwks(self.issuer, self._tls)
        except JwksError as exc:
            if not self._failing:
                log.warning(
                    "JWKS of %s unreadable, tokens refused until it is: %s", self.issuer, exc
                )
            self._failing = True  # the cached keys age out as they would
            return
        if self._failing:
            log.warning("JWKS of %s readable again", self.issuer)
        self._failing = False
        self._keys = keys
        self._read_at = self._clock()
