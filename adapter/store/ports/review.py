"""The Review port: the audit trail, and a review decision applied as one unit of work.

A biller's release (re-code) or override changes the encounter's state, may write new
versions of its resources, and is audited with the actor: all of it in one transaction
(`apply_review`), so a failure at any step, the audit insert included, leaves nothing
half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from adapter.store.ports.encounters import EncounterState
from adapter.store.ports.resources import ResourceRow


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which encounter, when (review releases and overrides)."""

    at: datetime
    actor: str
    action: str  # "release-recode" | "override"
    encounter_key: str
    note: str


@dataclass(frozen=True, slots=True)
class ResourceEdit:
    """A new version of one stored resource: its status and its body (JSON text, without
    meta.versionId/lastUpdated, which the store sets)."""

    resource_type: str
    resource_id: str
    status: str
    body: str


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """What one release or override writes, all or nothing.

    The encounter must still be in `expected` (HELD: the worklist showed it so) when the
    transaction runs; else nothing is written and `ReviewConflictError` is raised.
    """

    encounter_key: str
    expected: EncounterState
    state: EncounterState  # the state the encounter gets (DIRTY: re-code; CODED: override)
    edits: tuple[ResourceEdit, ...]  # written in this order, each queued for delivery
    audit: AuditEntry


class ReviewConflictError(RuntimeError):
    """The encounter left the expected state (or is gone) before the decision was applied."""

    def __init__(self, encounter_key: str, found: EncounterState | None) -> None:
        shown = "gone" if found is None else found.value
        super().__init__(f"the encounter is {shown}, no longer as the review saw it")
        self.encounter_key = encounter_key
        self.found = found


class Review(Protocol):
    """The audit trail and review decisions. Every method is one transaction."""

    async def add_audit(self, entry: AuditEntry) -> None: ...

    async def audit_for(self, encounter_key: str) -> list[AuditEntry]: ...

    async def apply_review(
        self, decision: ReviewDecision, now: datetime, destination: str | None
    ) -> list[ResourceRow]:
        """In one transaction: check the encounter is still `decision.expected` (else
        ReviewConflictError, nothing written), write each edit as a new version (queued
        for `destination` when not None; as `put_resource_version` would), set the
        encounter's state, and add the audit entry. The new versions, in edit order."""
