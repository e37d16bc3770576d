"""Close and code encounters: the use case around the pure `code_encounter`.

An encounter is ready when its visit is discharged (A03, Encounter finished),
when it has been quiet for the quiet period, at the end-of-day cutoff, or when
it changed after it was coded (a late correction, a replay, a release from
review). The store leases it to exactly one replica; this worker re-reads the
encounter's stored messages through the current mappings, codes them with the
pure core and saves the resources as new versions where they changed. A biller's
override stands through a re-code that bills the same lines (`plan`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from adapter.core.assembly import Encounter, assemble_noted
from adapter.core.charges import CodedEncounter, Outcome
from adapter.core.claim_diff import ClaimDiff, diff_claims
from adapter.core.coder import CodingContext, code_encounter
from adapter.core.emit.claim import OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.feed import collect
from adapter.core.ids import claim_id, task_id
from adapter.core.model import InboundMessage
from adapter.core.review_decision import apply_override, standing_override
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.store.ports import (
    CodingResult,
    DftPostings,
    Encounters,
    EncounterState,
    Inbox,
    Lease,
    Resources,
    SaveResult,
    StoredMessage,
)
from adapter.usecases.ports import CodingMetrics, DftOutlet

log = structlog.get_logger()

DFT_CATCH_UP_EVERY = timedelta(minutes=5)

STATE = {
    Outcome.CODED: EncounterState.CODED,
    Outcome.HELD: EncounterState.HELD,
    Outcome.SKIPPED: EncounterState.SKIPPED,
}


class CodingStore(Inbox, Encounters, Resources, DftPostings, Protocol):
    """What the coder reads and writes: the encounters' messages, their leases and coding
    results, the current Claim and Task (standing overrides), the DFT catch-up."""


@dataclass(frozen=True, slots=True)
class CoderConfig:
    owner: str
    quiet_period: timedelta
    lease_seconds: int
    destination: str | None  # downstream FHIR base URL, or None
    batch: int = 50  # encounters leased at a time
    # encounters saved per store transaction: one commit (and on PostgreSQL 4 round trips)
    # for the group instead of each. Drain of 1,200 encounters (bench/drain.py), admin/s
    # SQLite / PostgreSQL: 1 -> 943 / 594, 5 -> 1,364 / 1,098, 10 -> 1,536 / 1,275,
    # 20 -> 1,708 / 1,556. Bounded because one group's transaction holds SQLite's write
    # lock, which ingest waits behind: 10 holds it ~7 ms (p99 ~18 ms) against ~2 ms alone.
    save_batch: int = 10


class Coder:
    def __init__(
        self,
        store: CodingStore,
        ctx: CodingContext,
        config: CoderConfig,
        clock: Callable[[], datetime],
        metrics: CodingMetrics,
        output: OutputOptions | None = None,
        dft: Sequence[DftOutlet] = (),
    ) -> None:
        self.dft = tuple(dft)  # one queue per DFT receiver
        self._dft_catch_up_at: datetime | None = None  # the next look for Claims ahead
        self.store = store
        self.ctx = ctx
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.output = output or OutputOptions()

    async def run_once(self) -> int:
        """Code every encounter ready now; the number coded (stale results excluded).

        Encounters are coded one by one and saved `save_batch` at a time. An encounter
        whose coding fails (or that changed while it was coded) is not taken again in
        this pass, where it would come straight back; the next pass retries it.
        """
        done = 0
        failed: set[str] = set()
        while True:
            now = self.clock()
            leases = await self.store.lease_ready(
                now,
                now - self.config.quiet_period,
                self.config.owner,
                self.config.lease_seconds,
                self.config.batch,
            )
            fresh = [lease for lease in leases if lease.encounter.key not in failed]
            for lease in leases:
                if lease.encounter.key in failed:
                    await self.store.release_lease(lease)
            if not fresh:
                await self._maybe_catch_up_dft()
                return done
            size = max(1, self.config.save_batch)
            for start in range(0, len(fresh), size):
                coded = await self._code_group(fresh[start : start + size], failed)
                done += await self._save(coded, failed)

    async def run_forever(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the worker must survive a bad encounter or a DB blip
                log.error("coder.error", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _code_group(self, leases: list[Lease], failed: set[str]) -> list[_Coded]:
        """Read the group's messages at once, code each encounter; one whose coding
        failed is given back and noted."""
        wanted = [(lease.encounter.key, lease.encounter.patient_key) for lease in leases]
        try:
            messages = await self.store.messages_for_encounters(wanted)
        except Exception as exc:
            log.error("coder.read_failed", encounters=len(leases), error=type(exc).__name__)
            for lease in leases:
                failed.add(lease.encounter.key)
                await self.store.release_lease(lease)
            return []
        coded: list[_Coded] = []
        for lease in leases:
            one = await self._code_one(lease, messages[lease.encounter.key])
            if one is None:
                failed.add(lease.encounter.key)
            else:
                coded.append(one)
            await asyncio.sleep(0)  # let ingest and ACKs through between encounters
        return coded

    async def _code_one(self, lease: Lease, messages: list[StoredMessage]) -> _Coded | None:
        key = lease.encounter.key
        try:
            planned = await self.plan(key, lease.encounter.state, messages)
        except Exception as exc:
            log.error("coder.encounter_failed", encounter=_short(key), error=type(exc).__name__)
            await self.store.release_lease(lease)
            return None
        resources = planned.resources
        # dicts, not JSON: the store serialises each body once, with its meta
        rows = [(r["resourceType"], r["id"], str(r.get("status", "")), r) for r in resources]
        result = CodingResult(lease, planned.state, planned.detail, rows)
        return _Coded(result, planned.coded, messages, planned.override_kept)

    async def plan(self, key: str, state: EncounterState, messages: list[StoredMessage]) -> Planned:
        """What coding the encounter now gives: the pure coding, then a standing review
        override applied when the encounter is re-coded (`state` DIRTY) and still bills
        the same. Reads the store (the current Claim and Task) but writes nothing, so a
        dry run uses it as is."""
        coded = self.code_messages(key, messages)
        resources = encounter_resources(coded, self.ctx.mappings, self.output)
        detail = coded.skip_reason or " ".join(h.reason.value for h in coded.holds)
        planned = Planned(coded, STATE[coded.outcome], detail, resources)
        if state is EncounterState.DIRTY and planned.state is EncounterState.HELD:
            return await self._with_standing_override(key, planned)
        return planned

    async def _with_standing_override(self, key: str, planned: Planned) -> Planned:
        """Same lines and diagnoses as the overridden Claim: the override stands (the
        resources come out as the override made them, so nothing new is written).
        Otherwise the encounter is held again: the review shows what changed."""
        task = await self.store.read_resource("Task", task_id(key))
        override = standing_override(None if task is None else json.loads(task.body))
        if override is None:
            return planned
        current = await self.store.read_resource("Claim", claim_id(key))
        claim = next((r for r in planned.resources if r["resourceType"] == "Claim"), None)
        before = None if current is None else json.loads(current.body)
        diff = diff_claims(before, claim)
        if not diff.empty:
            log.info(
                "review.override_reopened",
                encounter=_short(key),
                added=len(diff.added),
                removed=len(diff.removed),
                changed=len(diff.changed),
            )
            return replace(planned, reopened=diff)
        log.info("review.override_kept", encounter=_short(key))
        kept = apply_override(planned.resources, override)
        return replace(planned, state=EncounterState.CODED, resources=kept, override_kept=True)

    async def _save(self, coded: list[_Coded], failed: set[str]) -> int:
        """Save a group in one store transaction; the number saved. A stale result (the
        encounter changed while it was coded) is noted in `failed`: the next pass codes
        it again. When the group's transaction fails, each is saved alone, so that one
        result the store refuses is given back (and retried next pass) without keeping
        the others from being saved."""
        if not coded:
            return 0
        results = [c.result for c in coded]
        try:
            saved = await self.store.save_codings(results, self.clock(), self.config.destination)
        except Exception as exc:
            if len(coded) > 1:
                return sum([await self._save([one], failed) for one in coded])
            key = coded[0].result.lease.encounter.key
            log.error("coder.save_failed", encounter=_short(key), error=type(exc).__name__)
            failed.add(key)
            await self.store.release_lease(coded[0].result.lease)  # raises if the store is down
            return 0
        done = 0
        for item, result in zip(coded, saved, strict=True):
            key = item.result.lease.encounter.key
            self._observe(item.coded, result, key)
            if result.stale:
                failed.add(key)
            else:
                done += 1
                await self._queue_dft(item, result)
        return done

    async def _queue_dft(self, item: _Coded, result: SaveResult) -> None:
        """A new Claim version: its DFT for each billing receiver set."""
        claim = next((r for r in result.written if r.resource_type == "Claim"), None)
        if not self.dft or claim is None:
            return
        key = item.result.lease.encounter.key
        encounter = self.encounter_of(key, item.messages)
        for queue in self.dft:  # one receiver failing does not keep the others' DFTs
            try:
                await queue.enqueue(item.coded, encounter, claim, item.released)
            except Exception as exc:
                log.error(
                    "coder.dft_failed",
                    encounter=_short(key),
                    destination=queue.destination,
                    error=type(exc).__name__,
                )

    async def _maybe_catch_up_dft(self) -> None:
        now = self.clock()
        if not self.dft or (self._dft_catch_up_at and now < self._dft_catch_up_at):
            return
        self._dft_catch_up_at = now + DFT_CATCH_UP_EVERY
        try:
            await self.catch_up_dft()
        except Exception as exc:
            log.error("coder.dft_catch_up_failed", error=type(exc).__name__)

    async def catch_up_dft(self) -> int:
        """Queue the DFT of every current Claim version the receiver was not considered
        for: the process died between the coding's transaction and the DFT's, or a review
        override wrote the Claim without a re-code (then the standing override bills the
        held draft). Only Claims written since DFTs began for the receiver: turning it on
        does not post the history. The number looked at. At start, then every 5 minutes."""
        return sum([await self._catch_up(queue) for queue in self.dft])

    async def _catch_up(self, queue: DftOutlet) -> int:
        destination = queue.destination
        since = await self.store.dft_since(destination, self.clock())
        ahead = await self.store.claims_ahead_of_dft(destination, since, self.config.batch)
        for key, version in ahead:
            encounter_row = await self.store.get_encounter(key)
            claim = await self.store.read_resource("Claim", claim_id(key))
            if encounter_row is None or claim is None or claim.version != version:
                continue
            wanted = [(key, encounter_row.patient_key)]
            messages = (await self.store.messages_for_encounters(wanted))[key]
            planned = await self.plan(key, EncounterState.DIRTY, messages)
            encounter = self.encounter_of(key, messages)
            await queue.enqueue(planned.coded, encounter, claim, planned.override_kept)
        return len(ahead)

    def code_messages(self, key: str, stored: list[StoredMessage]) -> CodedEncounter:
        """Pure part: stored raw messages → events → the one encounter → coded."""
        return code_encounter(self.encounter_of(key, stored), self.ctx)

    def encounter_of(self, key: str, stored: list[StoredMessage]) -> Encounter:
        """Stored raw messages → events → the one encounter (assembled, not coded)."""
        inbound: list[InboundMessage] = []
        for message in stored:
            reader = read_hl7 if message.format == "hl7" else read_fhir
            origin = f"message {message.id}"
            inbound.extend(reader(message.raw, self.ctx.mappings, self.ctx.site_tz, origin))
        feed = collect(inbound)
        encounters, notes = assemble_noted(feed.events, self.ctx.site_tz)
        if notes.unmatched_updates or notes.unmatched_deletes or notes.shared_ids:
            # the batch prints these as warnings; here they are logged, counted, no PHI
            log.warning(
                "encounter.assembly",
                encounter=_short(key),
                unmatched_updates=notes.unmatched_updates,
                unmatched_deletes=notes.unmatched_deletes,
                shared_ids=notes.shared_ids,
            )
        encounter = next((e for e in encounters if e.key == key), None)
        return encounter if encounter is not None else _empty(key, stored)

    def _observe(self, coded: CodedEncounter, result: SaveResult, key: str) -> None:
        if result.stale:
            log.info("coder.stale", encounter=_short(key))
            return
        self.metrics.encounter_coded(coded.outcome.value, (w.table for w in coded.warnings))
        log.info(
            "encounter.coded",
            encounter=_short(key),
            outcome=coded.outcome.value,
            lines=len(coded.lines),
            holds=[h.reason.value for h in coded.holds],
            versions_written=len(result.written),
        )


@dataclass(frozen=True, slots=True)
class Planned:
    """One encounter's coding as it would be saved: state, detail and resources."""

    coded: CodedEncounter
    state: EncounterState
    detail: str
    resources: list[dict[str, Any]]
    override_kept: bool = False  # a review override stands: same lines and diagnoses
    reopened: ClaimDiff | None = None  # an override no longer matches: what changed


@dataclass(frozen=True, slots=True)
class _Coded:
    """One encounter coded, waiting to be saved with its group."""

    result: CodingResult
    coded: CodedEncounter
    messages: list[StoredMessage]  # to assemble the visit again for a DFT
    released: bool  # a review override stands: a held draft is billed as it is


def _empty(key: str, stored: list[StoredMessage]) -> Encounter:
    """An encounter key with no administrations (an ADT-only visit): nothing billable."""
    patient = next((m.patient_key for m in stored if m.patient_key), "")
    return Encounter(key, patient, None, (), (), ())


def _short(key: str) -> str:
    """Encounter keys can contain a patient id: logs get a stable hash instead."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:12]
