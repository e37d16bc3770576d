"""The Inbox port: every inbound message kept before it is acknowledged, and its links.

A readable message is stored with the encounter keys it touches (`links`), so an encounter
can be re-derived from its messages at any time; an unreadable or unsupported one is kept as
a dead letter with its reason, for reprocessing. Replay reads the stored messages again in
pages and re-links them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"  # stored and linked to its encounters
    DEAD = "dead"  # unreadable or unsupported: kept for reprocessing, never coded


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
    reason: str = ""  # a dead letter's refusal code (adapter.core.refusals.RefusalReason)
    error_location: str = ""  # where: "RXA #1 field RXA-3", a JSON path; never PHI
    control_key: str = ""  # HL7 `hl7:<sender>:<MSH-10>`: checked for reuse in the commit


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
    """`duplicate` is True when the dedup key was already stored: nothing was written.

    `control_id_reused`: the message is new and another accepted message (stored before, or
    in the same commit group) has its `control_key` with other content (see
    `control_id_reused`), answered by the commit itself instead of one more query.
    """

    message_id: int
    duplicate: bool
    control_id_reused: bool = False


class Inbox(Protocol):
    """Messages, dead letters, replay pages and links. Every method is one transaction;
    `now` always comes from the caller."""

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
