"""The store interface: what the service keeps so that nothing is lost.

Two implementations share it: SQLite (embedded default, one process) and
PostgreSQL (production, several replicas). Everything the service does with
durable state goes through this Protocol; nothing else opens the database.

What is kept:
- every inbound message, raw, before it is acknowledged (dedup on its key);
  unreadable ones as dead letters with the reason, for reprocessing;
- which encounter keys each message touches (`links`), so an encounter can be
  re-derived from its messages at any time (coding is a pure function of them);
- one row per encounter with its closing state and a lease, so that with
  several replicas exactly one codes it;
- every emitted FHIR resource, versioned (Claim, ChargeItem, Task);
- the delivery outbox to the downstream FHIR server;
- an audit trail of review releases and overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"  # stored and linked to its encounters
    DEAD = "dead"  # unreadable or unsupported: kept for reprocessing, never coded


class EncounterState(StrEnum):
    OPEN = "open"  # collecting administrations
    DIRTY = "dirty"  # changed after it was coded (late correction, replay): re-code now
    CODED = "coded"
    HELD = "held"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """An inbound message as received, before any coding."""

    dedup_key: str  # hl7:<sender>:<MSH-10> | fhir:<Type>/<id>[/_history/<v>] | hash
    format: str  # "hl7" | "fhir"
    kind: str  # "RAS^O17", "MedicationAdministration", ...
    raw: bytes
    received_at: datetime
    patient_key: str = ""  # patient id from the message, "" when unknown
    control_id: str = ""  # MSH-10 or FHIR id, for logs (never PHI)
    truncated: bool = False  # only the head was kept (oversize frame): a dead letter forever
    reason: str = ""  # a dead letter's refusal code (adapter.service.refusals.RefusalReason)
    error_location: str = ""  # where: "RXA #1 field RXA-3", a JSON path; never PHI


@dataclass(frozen=True, slots=True)
class Link:
    """An encounter a message touches, and what it says about closing it."""

    encounter_key: str  # "visit:<id>", "day:<patient>|<date>|<location>"
    patient_key: str
    close_requested: bool = False  # ADT^A03, FHIR Encounter.status finished
    cutoff_at: datetime | None = None  # end-of-day cutoff instant for this encounter, if any


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    dedup_key: str
    format: str
    kind: str
    raw: bytes
    received_at: datetime
    patient_key: str
    control_id: str
    status: MessageStatus
    error: str
    truncated: bool = False  # raw is the head of an oversize frame: can never be accepted
    reason: str = ""  # dead: the refusal code; "" for accepted or older dead letters
    error_location: str = ""  # dead: segment/field or JSON path of the fault


class TruncatedMessageError(ValueError):
    """A truncated raw (the head of an oversize frame) was to be accepted: refused.

    The sender was answered AR and the rest of the message was never read, so
    nothing read from the head may be billed, not even when an analyst names it.
    """

    def __init__(self, message_id: int) -> None:
        super().__init__(
            f"message {message_id} is the truncated head of an oversize frame: it cannot be "
            "accepted; ask the sender to resend it (split, or after raising the frame limit)"
        )
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What reading one stored message again gave: its new links, or why it is dead."""

    message_id: int
    links: tuple[Link, ...] = ()
    error: str | None = None  # None: readable (ACCEPTED with `links`); else DEAD with it
    reason: str = ""  # DEAD: the refusal code and where, as a new dead letter has them
    error_location: str = ""


@dataclass(frozen=True, slots=True)
class AddResult:
    """`duplicate` is True when the dedup key was already stored: nothing was written."""

    message_id: int
    duplicate: bool


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
class ResourceRow:
    resource_type: str
    resource_id: str
    version: int
    encounter_key: str
    patient_ref: str  # "Patient/123" or the patient identifier value, for search
    status: str  # the resource's own status (active/draft, billable/planned/entered-in-error...)
    last_updated: datetime
    body: str  # the resource JSON, with meta.versionId / meta.lastUpdated set


# One resource of a coding result: (resource_type, resource_id, status, body). The body is the
# resource as a JSON object (dict), without meta.versionId/lastUpdated: the store serialises it
# once, with meta set, instead of parsing a dump the caller made.
NewResource = tuple[str, str, str, Mapping[str, Any]]


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
class Delivery:
    id: int
    destination: str
    resource_type: str
    resource_id: str
    version: int
    attempts: int
    next_attempt_at: datetime
    last_error: str
    rejected_at: datetime | None = None  # refused for good by its destination: not retried
    payload: str | None = None  # the message queued with it (DFT); None: the resource version


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_type: str
    patient: str | None = None
    encounter: str | None = None  # encounter key
    status: str | None = None
    last_updated_ge: datetime | None = None
    last_updated_le: datetime | None = None
    count: int = 50
    offset: int = 0


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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which encounter, when (review releases and overrides)."""

    at: datetime
    actor: str
    action: str  # "release-recode" | "override"
    encounter_key: str
    note: str


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Gauges for /metrics."""

    encounters_by_state: dict[str, int]
    outbox_pending: int
    dead_letters: int
    messages: int
    outbox_rejected: int = 0  # versions their destination refused for good (kept, listed)


class Store(Protocol):
    """Durable state. Every method is one transaction; `now` always comes from the caller."""

    async def migrate(self) -> None:
        """Apply pending versioned migrations (idempotent; safe with several replicas)."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the database answers (for /readyz)."""

    # --- inbound ------------------------------------------------------------------------

    async def add_message(self, message: NewMessage, links: Sequence[Link]) -> AddResult:
        """Store a readable message and its links in one transaction, unless its dedup key is
        already stored (then write nothing and return duplicate=True).

        For each link, upsert the encounter: create it OPEN; bump `revision` and
        `last_activity`; OR in close_requested; keep the earliest cutoff_at; and when
        it was CODED/HELD/SKIPPED, set it DIRTY (a late correction re-codes it).
        """

    async def add_dead_letter(self, message: NewMessage, error: str) -> AddResult:
        """Keep an unreadable/unsupported message with its error (dedup as add_message).
        `message.truncated` marks a raw that is only the head of what was sent."""

    async def get_message(self, message_id: int) -> StoredMessage | None: ...

    async def messages_for_encounter(
        self, encounter_key: str, patient_key: str
    ) -> list[StoredMessage]:
        """ACCEPTED messages linked to the encounter, plus ACCEPTED messages of the patient
        linked to `patient:<patient_key>` (conditions, coverages); ordered by id (arrival)."""

    async def messages_for_encounters(
        self, encounters: Sequence[tuple[str, str]]
    ) -> dict[str, list[StoredMessage]]:
        """`messages_for_encounter` of several (encounter_key, patient_key) at once, in one
        snapshot and one round trip (the coder reads a group of encounters this way): every
        encounter key given maps to its list, empty when it has none."""

    async def list_messages(
        self, since: datetime | None = None, message_id: int | None = None
    ) -> list[StoredMessage]:
        """All messages (ACCEPTED and DEAD) received at or after `since`, or the one message;
        ordered by id, loaded at once: for tests and small tools. Replay streams accepted
        messages with `replay_page` and never sweeps dead letters."""

    async def replay_page(
        self, after_id: int, limit: int, since: datetime | None = None
    ) -> list[StoredMessage]:
        """For replay, streamed: up to `limit` ACCEPTED messages with id > `after_id`
        (received at or after `since`), ordered by id. Dead letters are never in it."""

    async def count_replayable(self, since: datetime | None = None) -> int:
        """How many messages `replay_page` would walk through (for progress)."""

    async def find_messages(self, control_ids: Sequence[str]) -> list[StoredMessage]:
        """Messages (any status) stored under one of these control ids, ordered by id."""

    async def control_id_reused(self, control_id: str, control_key: str, dedup_key: str) -> bool:
        """Whether an accepted message other than `dedup_key` has this control key (sender and
        MSH-10): the sender reused the control id for other content. Keys as the HL7 reader
        makes them: `<control key>:<digest>`, or the control key alone when stored before
        content digests (docs/reliability.md)."""

    async def message_links(self, message_ids: Sequence[int]) -> dict[int, list[str]]:
        """The encounter keys each message is linked to now (every id given is a key)."""

    async def apply_replay(self, outcomes: Sequence[ReplayOutcome], now: datetime) -> None:
        """`relink_message` or `mark_dead` of each outcome, all in one transaction.
        Raises TruncatedMessageError (and writes nothing) when one would accept a
        truncated raw; LookupError for an unknown id."""

    async def relink_message(self, message_id: int, links: Sequence[Link], now: datetime) -> None:
        """Replay: a (dead or accepted) message read again through the current mappings.
        Mark it ACCEPTED with no error, replace its links, and set every linked encounter
        DIRTY (or OPEN if never coded) with a bumped revision. A truncated raw is refused
        (TruncatedMessageError)."""

    async def mark_dead(self, message_id: int, error: str) -> None:
        """Replay found the message unreadable under the current mappings."""

    async def dead_letters(self, limit: int = 100) -> list[StoredMessage]: ...

    async def list_dead_letters(
        self, since: datetime | None, reasons: Sequence[str], limit: int, offset: int
    ) -> tuple[list[StoredMessage], int]:
        """The dead-letter worklist: DEAD messages received at or after `since` whose reason
        is one of `reasons` (all when empty), by id; one page and the total."""

    # --- closing and coding -------------------------------------------------------------

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

    # --- emitted resources --------------------------------------------------------------

    async def read_resource(
        self, resource_type: str, resource_id: str, version: int | None = None
    ) -> ResourceRow | None: ...

    async def history(self, resource_type: str, resource_id: str) -> list[ResourceRow]:
        """All versions, newest first."""

    async def search(self, query: SearchQuery) -> tuple[list[ResourceRow], int]:
        """Current versions matching the query, newest last_updated first; with the total."""

    async def put_resource_version(
        self,
        resource_type: str,
        resource_id: str,
        status: str,
        body: str,
        now: datetime,
        destination: str | None,
    ) -> ResourceRow:
        """Write a new version of one resource (review override: Claim active, Task
        completed), queue it for delivery when `destination` is not None. A resource not
        stored yet gets version 1 with no encounter (an inbound resource kept for read-back,
        `POST /fhir/{type}`)."""

    # --- delivery -----------------------------------------------------------------------

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]: ...

    async def undelivered(
        self, destination: str, resource_type: str, ids: Sequence[str]
    ) -> set[str]:
        """Of these resources of one type, those with a version still queued (not delivered)
        for `destination`: a ChargeItem or Task waits while its Claim is one of them."""

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None: ...

    async def mark_failed(self, delivery_id: int, error: str, next_attempt_at: datetime) -> None:
        """attempts += 1; retried at next_attempt_at."""

    async def mark_rejected(self, delivery_id: int, error: str, now: datetime) -> None:
        """attempts += 1; refused for good: kept with `error`, never due again, no longer
        counted as pending or as undelivered (a later version is queued as its own row)."""

    async def rejected_deliveries(self, limit: int, offset: int) -> tuple[list[Delivery], int]:
        """The rejected outbox rows, oldest first, one page; with their total."""

    async def queued_before(
        self, destination: str, resource_type: str, resource_id: str, version: int
    ) -> bool:
        """Whether an earlier version of this resource is still queued for `destination`
        (not delivered, not rejected): a DFT of version 2 credits what version 1 posted."""

    # --- DFT postings ---------------------------------------------------------------------

    async def dft_posting(self, destination: str, encounter_key: str) -> str | None:
        """The stored posting (adapter/outbox/dft_posting.py JSON) of the last DFT queued
        for this encounter to `destination`; None when none was."""

    async def set_dft_posting(
        self, destination: str, encounter_key: str, version: int, posting: str, now: datetime
    ) -> None:
        """Record that the Claim `version` was considered for `destination` and sends
        nothing (held, unchanged, skipped): the posting stands, its version moves on."""

    async def dft_since(self, destination: str, now: datetime) -> datetime:
        """When DFTs for `destination` began (the first call for it, kept): Claims older
        than that are never caught up, so turning DFT on does not post the site's history."""

    async def claims_ahead_of_dft(
        self, destination: str, since: datetime, limit: int
    ) -> list[tuple[str, int]]:
        """(encounter_key, Claim version) of current Claims updated at or after `since` and
        newer than the last version considered for `destination`: a DFT not queued because the
        process died between the coding's transaction and the DFT's, or a Claim written by
        a review override without re-coding."""

    async def queue_message(
        self,
        destination: str,
        resource: tuple[str, str, int],
        payload: str,
        encounter_key: str,
        posting: str,
        now: datetime,
    ) -> None:
        """One transaction: queue `payload` for `destination` against the resource version
        it was built from (type, id, version) and make `posting` the encounter's posting
        there."""

    # --- audit and metrics --------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None: ...

    async def audit_for(self, encounter_key: str) -> list[AuditEntry]: ...

    async def counts(self) -> StoreCounts: ...
