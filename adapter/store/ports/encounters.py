"""The Encounters port: one row per encounter with its closing state and a lease.

With several replicas exactly one coder holds an encounter's lease; its coding result is
saved against that lease (with the resources and their outbox rows, in one transaction) or
found stale. Held encounters form the review worklist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from adapter.store.ports.resources import NewResource, ResourceRow


class EncounterState(StrEnum):
    OPEN = "open"  # collecting administrations
    DIRTY = "dirty"  # changed after it was coded (late correction, replay): re-code now
    CODED = "coded"
    HELD = "held"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class EncounterRow:
    key: str
    patient_key: str
    state: EncounterState
    last_activity: datetime
    close_requested: bool
    cutoff_at: datetime | None
    revision: int  # bumped by every linked message: a coding result saved against an older
    # revision is stale and leaves the encounter to be coded again
    outcome_detail: str  # hold reasons or skip reason, for the review worklist
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """An encounter handed to one coder until `until`."""

    encounter: EncounterRow
    owner: str
    until: datetime


@dataclass(frozen=True, slots=True)
class CodingResult:
    """One encounter's coding, to be saved against the lease it was coded under."""

    lease: Lease
    state: EncounterState
    outcome_detail: str
    resources: Sequence[NewResource]  # every resource the encounter now has


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What a coding result changed: new versions written (unchanged resources are not)."""

    written: tuple[ResourceRow, ...]
    stale: bool  # the encounter changed while it was being coded: nothing saved


@dataclass(frozen=True, slots=True)
class HeldQuery:
    """The workbench worklist's filters over held encounters and their current Claim.

    `setting` is the Claim type code (`professional` office, `institutional` hospital
    outpatient); the service dates compare the first ten characters of the Claim's
    billablePeriod.start (the site's local date, as the Claim writes it).
    """

    reason: str = ""
    location: str = ""  # the Claim's provider.display
    setting: str = ""
    service_from: str = ""  # YYYY-MM-DD, inclusive
    service_to: str = ""  # YYYY-MM-DD, inclusive
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class HeldItem:
    encounter: EncounterRow
    claim_body: str  # the current Claim's JSON ("" when it has none)


@dataclass(frozen=True, slots=True)
class HeldPage:
    """One page, oldest held first; `total` matches the filters; the counts per reason and
    the locations are over every held encounter, so the filters can offer them all."""

    items: tuple[HeldItem, ...]
    total: int
    held: int  # every held encounter, whatever the filters
    reason_counts: tuple[tuple[str, int], ...]
    locations: tuple[str, ...]


class Encounters(Protocol):
    """Leases, coding results, states and the held worklist. Every method is one
    transaction; `now` always comes from the caller."""

    async def lease_ready(
        self, now: datetime, quiet_before: datetime, owner: str, lease_seconds: int, limit: int
    ) -> list[Lease]:
        """Hand out encounters to code, each to exactly one owner across replicas.

        Ready = (DIRTY) or (OPEN and (close_requested or last_activity <= quiet_before or
        cutoff_at <= now)), and not leased to another owner until after `now`.
        PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, then set the lease.
        """

    async def save_codings(
        self, results: Sequence[CodingResult], now: datetime, destination: str | None
    ) -> list[SaveResult]:
        """Save several encounters' coding results in one transaction (one commit, a few
        statements for all of them), one SaveResult each, in order.

        Each result is saved only if its encounter's revision is still the leased one
        and no other owner holds it; else it is stale: nothing of it is written and its
        lease is released (the others are saved all the same).

        `resources` = every resource the encounter now has, each (resource_type,
        resource_id, status, body as a dict); a `meta` in the body is kept apart from
        versionId/lastUpdated, which the store sets. A resource whose status or body
        (without meta) differs from its current version gets a new version (version+1,
        meta.versionId/lastUpdated set in the stored body); an unchanged one is not
        rewritten. "Differs" compares a hash of the compact JSON the store writes, so a
        body is serialised once and the stored one is never parsed (versions written
        before the hash existed are compared as parsed JSON); the JSON keeps the body's
        key order, so the same content in another key order is a new version. A
        ChargeItem of the encounter that is no longer in `resources` gets a new version
        with status `entered-in-error`; a Task no longer present gets a new version with
        status `cancelled`. Each new version is queued in the outbox for `destination`
        when it is not None. The encounter gets `state`, `outcome_detail`, its lease
        cleared.

        All or nothing: when the transaction fails (a result the database refuses, a
        resource given twice in one result), nothing is saved and the error is raised;
        the caller may save the results one by one to isolate the bad one.
        """

    async def save_coding(
        self,
        lease: Lease,
        state: EncounterState,
        outcome_detail: str,
        resources: Sequence[NewResource],
        now: datetime,
        destination: str | None,
    ) -> SaveResult:
        """One coding result, alone in its transaction: `save_codings` of one."""

    async def release_lease(self, lease: Lease) -> None:
        """Give an encounter back without a result (coding failed); it stays ready."""

    async def get_encounter(self, key: str) -> EncounterRow | None: ...

    async def encounters_in_state(
        self, state: EncounterState, limit: int = 100
    ) -> list[EncounterRow]: ...

    async def held_worklist(self, query: HeldQuery) -> HeldPage:
        """Held encounters with their current Claim, filtered and paged in the database."""

    async def set_state(self, key: str, state: EncounterState, now: datetime) -> None:
        """Force a state (review worklist: DIRTY to re-code on release)."""
