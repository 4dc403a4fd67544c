"""What the registries hold: the primary's migration records (PROFILE 2.4) and the
partner's visitor bindings, the changes made to them, and the store interface
each engine implements."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class MigrationRecord:
    mc_service_id: str
    partner_system: str
    partner_address: str
    temporary_id: str | None
    since: float

    def same_migration(self, other: MigrationRecord) -> bool:
        return (self.partner_system, self.partner_address, self.temporary_id) == (
            other.partner_system,
            other.partner_address,
            other.temporary_id,
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MigrationEnd:
    """Ends a stay: deletes the user's record if it still names this partner
    (and this temporary ID, when given); a stale end changes nothing."""

    mc_service_id: str
    partner_system: str
    temporary_id: str | None = None

    def ends(self, record: MigrationRecord | None) -> bool:
        return (
            record is not None
            and record.partner_system == self.partner_system
            and (self.temporary_id is None or record.temporary_id == self.temporary_id)
        )


# What put() returns: (what is stored now, the record it replaced).
Stored = tuple[MigrationRecord, MigrationRecord | None]
MigrationChange = MigrationRecord | MigrationEnd
# One per change: Stored for a record, the deleted record (or None) for an end.
MigrationOutcome = Stored | MigrationRecord | None


class MigrationStore(Protocol):
    def get(self, mc_service_id: str) -> MigrationRecord | None: ...

    def put(self, record: MigrationRecord) -> tuple[MigrationRecord, MigrationRecord | None]:
        """Store ``record``; return (what is stored now, the record it replaced)."""
        ...

    def delete_if_partner(
        self, mc_service_id: str, partner_system: str, temporary_id: str | None = None
    ) -> MigrationRecord | None:
        """Delete the record if it names ``partner_system`` (and ``temporary_id``
        when given); return what was deleted."""
        ...

    def all(self) -> list[MigrationRecord]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class VisitorBinding:
    """A partner's record of a visitor: the temporary identity it gave, and where
    the visitor's client takes requests (its Contact)."""

    temporary_id: str
    mc_service_id: str
    contact: str | None
    since: float
    # When the stay ends unless the client refreshes it (PROFILE 3); None: never
    # (a user at home).
    expires: float | None = None


@dataclass(frozen=True)
class VisitorRelease:
    """Ends a visitor's binding: whichever it has, or only the one with this temporary ID."""

    mc_service_id: str
    temporary_id: str | None = None
    expires: float | None = None  # given: only the stay with this lifetime (not a refresh)

    def ends(self, binding: VisitorBinding | None) -> bool:
        return (
            binding is not None
            and self.temporary_id in (None, binding.temporary_id)
            and (self.expires is None or binding.expires == self.expires)
        )


VisitorChange = VisitorBinding | VisitorRelease


class TemporaryIdTaken(Exception):
    """A binding would take a temporary identity that another visitor holds: refused,
    never a silent rebinding of the other visitor's traffic."""

    def __init__(self, temporary_id: str, holder: str) -> None:
        super().__init__(f"{temporary_id} is held by {holder}")
        self.temporary_id = temporary_id
        self.holder = holder


# What a visitor change did: the binding it removed, None, or the refusal of a binding.
VisitorOutcome = VisitorBinding | TemporaryIdTaken | None


def new_record(
    mc_service_id: str, partner_system: str, partner_address: str, temporary_id: str | None
) -> MigrationRecord:
    return MigrationRecord(
        mc_service_id, partner_system, partner_address, temporary_id, time.time()
    )
