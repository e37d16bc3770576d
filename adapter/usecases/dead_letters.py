"""The dead-letter worklist: what was refused, why and where; its raw; reading it again.

Used by `charge-adapter dead-letters` and `GET /admin/dead-letters`. A list entry carries
no PHI: the stored id, when, format, message type and control id (each only when it has
the shape its standard allows, see `labels`: a control id from a header whose fields
slid is never shown), the refusal code and the place of the fault. The raw is read only
by `show` (a person with store access) or `GET /admin/dead-letters/{id}/raw` (a token).

`reprocess` re-reads one dead letter after a mapping or feed fix through the same
replay as `charge-adapter replay --dead-letter ID` (`Replayer`), then codes what it
touched: accepted, it names the encounters (their Claim ids) and how they came out;
still refused, it gives the new code and place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapter.config import Settings
from adapter.core.ids import claim_id
from adapter.core.mappings import Mappings
from adapter.core.refusals import Refusal, RefusalReason, reason_of
from adapter.labels import control_id_label, message_kind_label
from adapter.store.ports import MessageStatus, Store, StoredMessage
from adapter.usecases.ports import CodingMetrics
from adapter.usecases.replay import MessageReader, Replayer, ReplaySelection, replay_coder

DEFAULT_COUNT = 50
MAX_COUNT = 500


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    since: datetime | None = None
    reasons: tuple[RefusalReason, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One worklist entry: never the raw, never the reader's text (it can quote values)."""

    id: int
    received_at: datetime
    format: str
    message_type: str
    control_id: str
    reason: RefusalReason
    location: str
    truncated: bool

    @staticmethod
    def of(message: StoredMessage) -> DeadLetter:
        return DeadLetter(
            id=message.id,
            received_at=message.received_at.astimezone(UTC),
            format=message.format,
            message_type=message_kind_label(message.format, message.kind),
            control_id=control_id_label(message.control_id),
            reason=reason_of(message.reason),
            location=message.error_location,
            truncated=message.truncated,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "receivedAt": self.received_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "format": self.format,
            "messageType": self.message_type,
            "controlId": self.control_id,
            "reason": self.reason.value,
            "location": self.location,
            "truncated": self.truncated,
        }


async def list_dead_letters(store: Store, query: DeadLetterQuery) -> tuple[list[DeadLetter], int]:
    """One page of the worklist (oldest first) and how many match in all."""
    reasons = [r.value for r in query.reasons]
    count = max(0, min(query.count, MAX_COUNT))
    rows, total = await store.list_dead_letters(query.since, reasons, count, query.offset)
    return [DeadLetter.of(row) for row in rows], total


async def dead_letter_raw(store: Store, message_id: int) -> StoredMessage | None:
    """The stored dead letter with its raw, or None when no dead letter has this id."""
    message = await store.get_message(message_id)
    if message is None or message.status is not MessageStatus.DEAD:
        return None
    return message


@dataclass(frozen=True, slots=True)
class Touched:
    """An encounter a reprocessed message is linked to, after coding."""

    claim_id: str
    state: str


@dataclass(frozen=True, slots=True)
class ReprocessResult:
    message_id: int
    accepted: bool
    refusal: Refusal | None = None  # still refused: the new code and place
    not_replayed: str = ""  # unknown id, not a dead letter, a truncated head
    touched: tuple[Touched, ...] = ()
    coded: int = 0

    def lines(self) -> list[str]:
        """What `dead-letters reprocess` prints."""
        head = f"dead letter {self.message_id}"
        if self.not_replayed:
            return [f"{head}: not reprocessed: {self.not_replayed}"]
        if not self.accepted and self.refusal is not None:
            where = f" at {self.refusal.location}" if self.refusal.location else ""
            return [f"{head}: still refused: {self.refusal.reason.value}{where}"]
        out = [f"{head}: accepted; encounters coded: {self.coded}"]
        out += [f"  Claim/{t.claim_id}: {t.state}" for t in self.touched]
        return out


async def reprocess(
    store: Store,
    settings: Settings,
    mappings: Mappings,
    message_id: int,
    metrics: CodingMetrics,
    *,
    code: bool = True,
) -> ReprocessResult:
    """Read one dead letter again (as `replay --dead-letter`), then code what it touched
    (with the replay's coder, counting into `metrics`)."""
    message = await store.get_message(message_id)
    if message is not None and message.status is not MessageStatus.DEAD:
        return ReprocessResult(message_id, False, not_replayed="not a dead letter (accepted)")
    replayer = Replayer(
        store, MessageReader(mappings, settings.tz, settings.cutoff), lambda: datetime.now(UTC)
    )
    outcomes = []
    async for page in replayer.pages(ReplaySelection(dead_letter_ids=(message_id,))):
        outcomes = [replayer.reader.outcome(m) for m in page]
        await store.apply_replay(outcomes, replayer.clock())
    if replayer.refused or not outcomes:
        reason = replayer.refused[0].reason if replayer.refused else "no such dead letter"
        return ReprocessResult(message_id, False, not_replayed=reason)
    outcome = outcomes[0]
    if outcome.error is not None:
        refusal = Refusal(reason_of(outcome.reason), outcome.error_location)
        return ReprocessResult(message_id, False, refusal)
    coded = await replay_coder(store, settings, mappings, metrics).run_once() if code else 0
    keys = (await store.message_links([message_id])).get(message_id, [])
    return ReprocessResult(message_id, True, touched=await _touched(store, keys), coded=coded)


async def _touched(store: Store, keys: Sequence[str]) -> tuple[Touched, ...]:
    out = []
    for key in keys:
        row = await store.get_encounter(key)
        if row is None:
            continue  # a patient-level link (conditions, coverage): no encounter of its own
        state = row.state.value
        if state == "open":
            state = "open (coded when the visit closes)"
        out.append(Touched(claim_id(key), state))
    return tuple(out)
