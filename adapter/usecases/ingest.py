"""Ingest: read a message, keep it durably, link it to its encounters, say how it went.

The acknowledgement is only as good as the commit behind it: `receive_hl7`
returns AA only after the store has committed the raw message and its links.
Unreadable or unsupported input is kept too, as a dead letter with the reason,
and answered AE/AR with the location of the problem. Messages of one patient
are written in arrival order (a lock per patient); different patients run in
parallel.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, tzinfo

import structlog

from adapter.core.mappings import Mappings
from adapter.core.model import InboundMessage, InputError, SegmentLocation, Unsupported
from adapter.core.refusals import Refusal, RefusalReason
from adapter.errors import (
    Hl7Refused,
    NoHl7Message,
    SeveralHl7Messages,
    UnreadableHl7,
    UnsupportedHl7Type,
    UnsupportedHl7Version,
)
from adapter.hl7.ack import AckCode
from adapter.hl7.msh import MshInfo
from adapter.labels import control_id_label, message_kind_label
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.readers.hl7v2.hot import CheckedMessage, check_hl7_frame
from adapter.store.base import AddResult, Link, NewMessage, Store
from adapter.usecases.links import checked_links, links_for, patient_key
from adapter.usecases.ports import IngestMetrics

log = structlog.get_logger()

# HL7 table 0357 message error condition codes used in ERR-3
READ_ON_LOOP_MAX_BYTES = 64 * 1024  # larger payloads are read on a worker thread


@dataclass(frozen=True, slots=True)
class Hl7Result:
    """How one HL7 v2 message went: kept (a resend of one already kept: `duplicate`), or
    refused with the typed error the edges answer (AE/AR with ERR, a dead letter)."""

    control_id: str
    duplicate: bool
    refusal: Hl7Refused | None = None
    header: MshInfo | None = None  # the MSH the hot-path check read (else the ACK reads it)

    @property
    def ack_code(self) -> AckCode:
        """AA, or the refusal's AE/AR (original mode; the ACK builder picks CE/CR)."""
        return AckCode.AA if self.refusal is None else self.refusal.disposition.ack


@dataclass(frozen=True, slots=True)
class FhirEntryResult:
    """One resource of a FHIR request: HTTP-like status and, when rejected, where and why."""

    status: int  # 201 created, 200 already had it, 422 unreadable, 400 bad JSON
    resource_type: str
    resource_id: str
    error: InputError | None = None
    skip_reason: str = ""


@dataclass(frozen=True, slots=True)
class FhirResult:
    entries: tuple[FhirEntryResult, ...]
    stored: bool
    duplicate: bool


class Ingestor:
    """Turns inbound bytes into stored messages and encounter links."""

    def __init__(
        self,
        store: Store,
        mappings: Mappings,
        site_tz: tzinfo,
        cutoff: time | None,
        clock: Callable[[], datetime],
        metrics: IngestMetrics,
    ) -> None:
        self.store = store
        self.mappings = mappings
        self.tz = site_tz
        self.cutoff = cutoff
        self.clock = clock
        self.metrics = metrics
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}  # holders + waiters per lock, to drop idle ones

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def receive_hl7(self, raw: bytes, origin: str = "mllp") -> Hl7Result:
        """Read and keep one HL7 v2 message (a frame); the result decides the ACK.

        The usual frame is checked on the hot path (`check_hl7_frame`: keys and links, no
        event model, ~1/3 of a full read); any other, and every one it would refuse, is
        read in full here, so refusals and their ERR locations are the reader's.
        """
        checked = (
            check_hl7_frame(raw, self.mappings, self.tz)
            if len(raw) <= READ_ON_LOOP_MAX_BYTES
            else None
        )
        if checked is not None:
            return await self._keep_checked(raw, checked)
        messages = await self._off_loop_if_large(
            raw, functools.partial(read_hl7, raw, self.mappings, self.tz, origin, frame=True)
        )
        if not messages:
            empty = NoHl7Message("no message", location=f"{origin}: no MSH segment")
            await self._dead(
                raw, "hl7", "unknown", _hash_key("hl7", raw), "", empty.message, empty.refusal
            )
            return Hl7Result("", False, empty)
        first = messages[0]
        control_id = _control_id(first)
        rejection = _hl7_rejection(first) or _one_message_per_frame(messages)
        if rejection is not None:
            # keyed by content, not MSH-10: the sender's corrected resend with the same
            # control id must be stored, while an identical bad resend stays one dead letter
            dead_key = _hash_key("hl7-dead", raw)
            await self._dead(
                raw, "hl7", first.kind, dead_key, control_id, rejection.message, rejection.refusal
            )
            self.metrics.message("hl7", first.kind, "rejected")
            return Hl7Result(control_id, False, rejection)
        links = links_for(first.events, self.tz, self.cutoff)
        patient = patient_key(first.events)
        duplicate = await self._keep(
            raw, "hl7", first.kind, first.dedup_key, control_id, links, patient, first.control_key
        )
        self.metrics.message("hl7", first.kind, "duplicate" if duplicate else "accepted")
        return Hl7Result(control_id, duplicate)

    async def _keep_checked(self, raw: bytes, checked: CheckedMessage) -> Hl7Result:
        """Keep a frame the hot path vouched for, as `receive_hl7` keeps a fully read one."""
        links = checked_links(checked, self.tz, self.cutoff)
        control_id = checked.control_id
        duplicate = await self._keep(
            raw, "hl7", checked.kind, checked.dedup_key, control_id, links,
            checked.patient_id, checked.control_key,
        )  # fmt: skip
        self.metrics.message("hl7", checked.kind, "duplicate" if duplicate else "accepted")
        # the check vouches for ASCII frames only, so the header's charset is utf-8's
        return Hl7Result(control_id, duplicate, header=MshInfo(checked.header, "utf-8"))

    def _note_reused(self, kind: str, control_id: str) -> None:
        """Count and log (no PHI) a control id its sender already used for other content.

        Both messages are kept and read (`dedup_key` holds a content digest); the warning
        tells the interface analyst that the sender's counter restarted or is constant. The
        store answers it in the commit that keeps the message (`AddResult.control_id_reused`):
        a query of its own per message, on the ACK path, cost PostgreSQL 200-490 us of CPU per
        message, and after the ACK it still cost a store round trip per message.
        """
        self.metrics.control_id_reuse("hl7")
        log.warning(
            "message.control_id_reused",
            format="hl7",
            kind=message_kind_label("hl7", kind),
            control_id=control_id_label(control_id),
        )

    async def keep_oversize(self, head: bytes, size: int, limit: int) -> None:
        """Keep the first bytes of a message refused for its size, as a dead letter.

        Only the head was buffered (the limit protects memory), so this cannot be
        reprocessed: it is stored marked truncated, which the store never lets become
        accepted (not even by a replay that names it). It tells the analyst which
        message (its MSH) was refused and how large it was, so the sender can be asked
        to split or resend it.
        """
        reason = f"message of {size} bytes over the {limit}-byte limit; first {len(head)} kept"
        key = _hash_key("hl7-oversize", head + str(size).encode())
        refusal = Refusal(RefusalReason.OVERSIZE)
        await self._dead(head, "hl7", "oversize", key, "", reason, refusal, truncated=True)

    async def receive_fhir(self, raw: bytes, origin: str = "http") -> FhirResult:
        """Read and keep a FHIR payload (resource, Bundle or NDJSON) as one stored message.

        Per-resource dedup (type/id/version) is applied when the encounter is coded
        (`collect`), so a resource re-sent in another Bundle never bills twice.
        """
        messages = await self._off_loop_if_large(
            raw, functools.partial(read_fhir, raw, self.mappings, self.tz, origin)
        )
        entries = tuple(_fhir_entry(m) for m in messages)
        good = [m for m in messages if m.error is None]
        errors = [m for m in messages if m.error is not None]
        if errors:
            detail = "; ".join(f"{e.error.location}: {e.error.message}" for e in errors if e.error)
            key = _hash_key("fhir-dead", raw)
            await self._dead(raw, "fhir", "Bundle", key, "", detail, refusal_for("fhir", errors))
            self.metrics.message("fhir", "payload", "rejected")
        if not good:
            return FhirResult(entries, bool(errors), False)
        events = tuple(e for m in good for e in m.events)
        envelope = InboundMessage(_hash_key("fhir", raw), _fhir_kind(good), events)
        duplicate = await self._keep(
            raw, "fhir", envelope.kind, envelope.dedup_key, _first_id(good),
            links_for(events, self.tz, self.cutoff), patient_key(events),
        )  # fmt: skip
        self.metrics.message("fhir", envelope.kind, "duplicate" if duplicate else "accepted")
        if duplicate:
            entries = tuple(
                FhirEntryResult(200, e.resource_type, e.resource_id) if e.status == 201 else e
                for e in entries
            )
        return FhirResult(entries, True, duplicate)

    @staticmethod
    async def _off_loop_if_large(
        raw: bytes, read: Callable[[], tuple[InboundMessage, ...]]
    ) -> tuple[InboundMessage, ...]:
        """Read a large payload on a worker thread, a usual one on the loop.

        Why: reading is CPU work on the event loop, ~0.1 ms for a real message but
        seconds for a hostile megabyte (escape characters, thousands of segments),
        which would stall every other connection and request meanwhile. On a
        thread the GIL still serialises the work, but the loop gets its turn every
        switch interval (5 ms). Small payloads stay on the loop: a thread hop costs
        more than their whole read.
        """
        if len(raw) <= READ_ON_LOOP_MAX_BYTES:
            return read()
        return await asyncio.to_thread(read)

    async def _keep(
        self,
        raw: bytes,
        fmt: str,
        kind: str,
        dedup_key: str,
        control_id: str,
        links: list[Link],
        patient: str,
        control_key: str = "",
    ) -> bool:
        """Commit the raw message and its encounter links; True when it was already stored.

        With a `control_key` (HL7), the commit also says whether the control id was reused.
        """
        new = NewMessage(
            dedup_key, fmt, kind, raw, self.clock(), patient, control_id, control_key=control_key
        )
        key = patient or dedup_key
        lock = self._lock(key)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                result = await self.store.add_message(new, links)
        finally:
            self._users[key] -= 1
            if not self._users[key]:  # nobody holds or waits: one entry per patient forever
                del self._users[key]  # was ~89% of the RSS growth in the memory bench
                del self._locks[key]
        # a new message at debug (the MLLP summary counts it), a resend at info: one the
        # store already had tells the analyst an ACK was lost (killed between commit and ACK)
        (log.info if result.duplicate else log.debug)(
            "message.stored",
            format=fmt,
            kind=message_kind_label(fmt, kind),
            control_id=control_id_label(control_id),
            message_id=result.message_id,
            duplicate=result.duplicate,
            encounters=len(links),
        )
        if result.control_id_reused:
            self._note_reused(kind, control_id)
        return result.duplicate

    async def keep_refused(
        self, raw: bytes, fmt: str, kind: str, error: str, refusal: Refusal
    ) -> AddResult:
        """Keep a payload refused outside the ingestor (the HTTP contract) as a dead letter,
        under the same content key as the ingestor's own refusals, so a resend is kept once."""
        key = _hash_key(f"{fmt}-dead", raw)
        new = NewMessage(
            key, fmt, kind, raw, self.clock(), "", "", False,
            refusal.reason.value, refusal.location,
        )  # fmt: skip
        return await self.store.add_dead_letter(new, error)

    async def _dead(
        self,
        raw: bytes,
        fmt: str,
        kind: str,
        key: str,
        control_id: str,
        error: str,
        refusal: Refusal,
        *,
        truncated: bool = False,
    ) -> None:
        new = NewMessage(
            key, fmt, kind, raw, self.clock(), "", control_id, truncated,
            refusal.reason.value, refusal.location,
        )  # fmt: skip
        result = await self.store.add_dead_letter(new, error)
        log.warning(
            "message.dead_letter",
            format=fmt,
            kind=message_kind_label(fmt, kind),
            control_id=control_id_label(control_id),
            message_id=result.message_id,
            reason=refusal.reason.value,
            location=refusal.location,
        )


def refusal_for(fmt: str, messages: Sequence[InboundMessage]) -> Refusal:
    """The code and place of a refused payload, as the worklist shows it (replay too)."""
    if fmt != "hl7":
        located = [m.error.path for m in messages if m.error is not None]
        return Refusal(RefusalReason.INVALID_RESOURCE, located[0] if located else "")
    if not messages:
        return Refusal(RefusalReason.NO_MESSAGE)
    rejection = _hl7_rejection(messages[0]) or _one_message_per_frame(messages)
    return rejection.refusal if rejection else Refusal(RefusalReason.UNREADABLE_FIELD)


def _control_id(message: InboundMessage) -> str:
    """MSH-10 as the reader read it; empty when the header was unreadable.

    The reader sets it only when its header is plausible (see
    `implausible_header_field`), so a garbled header cannot put patient data here,
    and this value is logged.
    """
    return message.control_id


def _one_message_per_frame(messages: Sequence[InboundMessage]) -> Hl7Refused | None:
    """A frame holding a second MSH is refused whole: one ACK cannot answer two messages.

    Accepting the first and dropping the rest would be an AA for data never read;
    accepting both would ACK a message the sender does not know was taken. The
    frame is kept as a dead letter, so nothing is lost; the sender's interface
    should send one message per frame (or an analyst replays them one by one).
    """
    if len(messages) < 2:
        return None
    text = f"{len(messages)} messages in one frame; MLLP carries one message per frame"
    return SeveralHl7Messages(text, at=SegmentLocation("MSH", 2), location="message 2: MSH")


def _hl7_rejection(message: InboundMessage) -> Hl7Refused | None:
    """The typed refusal of a message the reader could not read or does not read."""
    error = message.error
    if error is not None:
        at = error.at
        reason = None
        if not message.control_id:  # the header itself is unread (see `_control_id`)
            header = at is None or at.segment in ("MSH", "")
            reason = RefusalReason.IMPLAUSIBLE_HEADER if header else RefusalReason.NO_MESSAGE
        return UnreadableHl7(error.message, at=at, location=error.location, reason=reason)
    text = message.skip_reason
    if message.unsupported is Unsupported.MESSAGE_TYPE:
        return UnsupportedHl7Type(text, at=SegmentLocation("MSH", 1, 9), location="MSH-9")
    if message.unsupported is Unsupported.VERSION:
        return UnsupportedHl7Version(text, at=SegmentLocation("MSH", 1, 12), location="MSH-12")
    return None


def _fhir_entry(message: InboundMessage) -> FhirEntryResult:
    """The resource's type and id as the reader read them (the dedup key is opaque)."""
    if message.error is not None:
        return FhirEntryResult(422, message.kind, message.resource_id, message.error)
    return FhirEntryResult(201, message.kind, message.resource_id, None, message.skip_reason)


def _fhir_kind(messages: list[InboundMessage]) -> str:
    kinds = sorted({m.kind for m in messages})
    return kinds[0] if len(kinds) == 1 else "Bundle"


def _first_id(messages: list[InboundMessage]) -> str:
    return messages[0].control_id[:64]


def _hash_key(prefix: str, raw: bytes) -> str:
    return f"{prefix}:sha256:{hashlib.sha256(raw).hexdigest()}"
