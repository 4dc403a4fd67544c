"""Failure causes of PROFILE section 2.5 and the responses that carry them."""

from __future__ import annotations

import re
from enum import Enum

from mcmig.mc.body import CONTENT_TYPE, MigrationFailure, encode
from mcmig.sip.message import Request, Response
from mcmig.sip.responses import make_response


class Cause(Enum):
    """Each cause with the status it is sent with."""

    BAD_REQUEST = ("bad-request", 400)
    INVALID_CREDENTIALS = ("invalid-credentials", 403)
    PRIMARY_SYSTEM_NOT_PERMITTED = ("primary-system-not-permitted", 403)
    USER_NOT_PERMITTED_BY_PARTNER = ("user-not-permitted-by-partner", 403)
    PEER_NOT_AUTHORIZED = ("peer-not-authorized", 403)
    UNKNOWN_MC_SYSTEM = ("unknown-mc-system", 404)
    UNKNOWN_USER = ("unknown-user", 404)
    MIGRATION_NOT_PERMITTED = ("migration-not-permitted", 403)
    USER_NOT_REACHABLE = ("user-not-reachable", 480)
    OVERLOADED = ("overloaded", 503)
    TIMEOUT = ("timeout", 504)

    @property
    def token(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]


_WARNING_RE = re.compile(r'\s*399\s+(\S+)\s+"((?:[^"\\]|\\.)*)"\s*\Z')


def failure_response(
    request: Request,
    cause: Cause,
    text: str,
    agent: str,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    """A failure as PROFILE 2.5 shapes it: Warning 399 and a failure body."""
    extra, body = failure_headers(cause, text, agent)
    return make_response(request, cause.status, headers=extra + (headers or []), body=body)


def failure_headers(cause: Cause, text: str, agent: str) -> tuple[list[tuple[str, str]], bytes]:
    """The Warning, Content-Type and cause body of a failure (PROFILE 2.5), for
    responses built elsewhere (an INVITE's, through its server handle)."""
    clean = text.replace("\\", "").replace('"', "'")
    headers = [("Warning", f'399 {agent} "{cause.token}: {clean}"'), ("Content-Type", CONTENT_TYPE)]
    return headers, encode(MigrationFailure(cause.token, text))


def unsupported_media_type(request: Request) -> Response:
    return make_response(request, 415, headers=[("Accept", CONTENT_TYPE)])


def warning_cause(warning: str | None) -> tuple[str, str] | None:
    """(agent, text) of a ``399`` Warning value, or None."""
    if warning is None:
        return None
    m = _WARNING_RE.match(warning)
    return None if m is None else (m.group(1), m.group(2))


def rewrite_warning_agent(warning: str, agent: str) -> str:
    """The same warning with our own public name as its agent (PROFILE 2.5)."""
    parsed = warning_cause(warning)
    if parsed is None:
        return f'399 {agent} "warning withheld"'
    return f'399 {agent} "{parsed[1]}"'
