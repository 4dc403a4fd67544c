"""Authorization policies: who a system's users may migrate to, whom a partner accepts.

Rules are selectors plus a verdict, so a million users need not be listed:
a selector names users, numbered ranges such as u000000-u999999, or prefix
patterns such as ``ops-*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RANGE_RE = re.compile(r"([A-Za-z._-]*)(\d+)-\1(\d+)\Z")


@dataclass(frozen=True)
class UserRange:
    """``prefix`` followed by a zero-padded number from ``first`` to ``last``."""

    prefix: str
    first: int
    last: int
    width: int

    @classmethod
    def parse(cls, text: str) -> UserRange:
        m = _RANGE_RE.match(text)
        if m is None or len(m.group(2)) != len(m.group(3)):
            raise ValueError(f"range {text!r} is not like u000000-u999999")
        first, last = int(m.group(2)), int(m.group(3))
        if first > last:
            raise ValueError(f"range {text!r} runs backwards")
        return cls(m.group(1), first, last, len(m.group(2)))

    def __contains__(self, user: object) -> bool:
        if not isinstance(user, str) or not user.startswith(self.prefix):
            return False
        digits = user[len(self.prefix) :]
        return (
            len(digits) == self.width
            and digits.isdigit()
            and self.first <= int(digits) <= self.last
        )

    def __str__(self) -> str:
        return f"{self.prefix}{self.first:0{self.width}d}-{self.prefix}{self.last:0{self.width}d}"


def parse_pattern(text: str) -> str:
    """A prefix pattern ``ops-*`` as its prefix. Only a trailing ``*``: then which
    users two servers share, and which users no server takes, can be decided when
    the profile loads."""
    if not text.endswith("*") or "*" in text[:-1] or "?" in text or "[" in text:
        raise ValueError(f"pattern {text!r} is not a prefix followed by one '*'")
    return text[:-1]


@dataclass(frozen=True)
class UserSelector:
    """Users of one system by user part: listed names, numbered ranges and prefixes."""

    names: frozenset[str] = frozenset()
    ranges: tuple[UserRange, ...] = ()
    prefixes: tuple[str, ...] = ()  # from patterns "<prefix>*"

    def matches(self, user: str) -> bool:
        return (
            user in self.names
            or any(user in r for r in self.ranges)
            or any(user.startswith(p) for p in self.prefixes)
        )


@dataclass(frozen=True)
class UserRule:
    selector: UserSelector
    migrate_to: frozenset[str]  # partner MC system ids; "*" for any


@dataclass(frozen=True)
class PrimaryPolicy:
    """A system's own users: who exists, and where each may migrate. First rule wins."""

    rules: tuple[UserRule, ...] = ()

    def _rule(self, user: str) -> UserRule | None:
        return next((r for r in self.rules if r.selector.matches(user)), None)

    def is_user(self, user: str) -> bool:
        return self._rule(user) is not None

    def may_migrate(self, user: str, partner_system: str) -> bool:
        rule = self._rule(user)
        if rule is None:
            return False
        return "*" in rule.migrate_to or partner_system.lower() in rule.migrate_to


@dataclass(frozen=True)
class VisitorPolicy:
    """Which visitors a partner accepts: a default for systems, then exceptions."""

    default_accept: bool = False
    accept_systems: frozenset[str] = frozenset()
    refuse_systems: frozenset[str] = frozenset()
    refuse_users: frozenset[str] = field(default_factory=frozenset)  # MC service IDs
    # Seconds a stay lasts at most, however long its access token is valid; the
    # client refreshes it by migrating again (PROFILE 3).
    max_stay: float = 86400.0

    def accepts_system(self, primary_system: str) -> bool:
        system = primary_system.lower()
        if system in self.refuse_systems:
            return False
        return system in self.accept_systems or self.default_accept

    def accepts_user(self, mc_service_id: str) -> bool:
        return mc_service_id not in self.refuse_users
