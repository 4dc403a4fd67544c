"""What a client's login can fail with (no HTTP library needed to catch it)."""

from __future__ import annotations


class LoginError(Exception):
    """A step of the login or exchange failed; the text names it and the reason.
    ``status`` and ``error`` are the IdMS's HTTP status and OAuth error code
    (0 and "unreachable" when it could not be asked)."""

    def __init__(self, text: str, issuer: str, status: int = 0, error: str = "unreachable") -> None:
        super().__init__(text)
        self.issuer = issuer
        self.status = status
        self.error = error
