"""Close and code encounters: the shell around `code_encounter`.

An encounter is ready when its visit is discharged (A03, Encounter finished),
when it has been quiet for the quiet period, at the end-of-day cutoff, or when
it changed after it was coded (a late correction, a replay, a release from
review). The store leases it to exactly one replica; this worker re-reads the
encounter's stored messages through the current mappings, codes them with the
pure core and saves the resources as new versions where they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from adapter.core.assembly import Encounter, assemble
from adapter.core.charges import CodedEncounter, Outcome
from adapter.core.coder import CodingContext, code_encounter
from adapter.core.feed import collect
from adapter.core.fhir_output import OutputOptions, encounter_resources
from adapter.core.model import InboundMessage
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.service.metrics import Metrics
from adapter.store.base import EncounterState, Lease, SaveResult, Store, StoredMessage

log = structlog.get_logger()

STATE = {
    Outcome.CODED: EncounterState.CODED,
    Outcome.HELD: EncounterState.HELD,
    Outcome.SKIPPED: EncounterState.SKIPPED,
}


@dataclass(frozen=True, slots=True)
class CoderConfig:
    owner: str
    quiet_period: timedelta
    lease_seconds: int
    destination: str | None  # downstream FHIR base URL, or None
    batch: int = 50


class Coder:
    def __init__(
        self,
        store: Store,
        ctx: CodingContext,
        config: CoderConfig,
        clock: Callable[[], datetime],
        metrics: Metrics,
        output: OutputOptions | None = None,
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.output = output or OutputOptions()

    async def run_once(self) -> int:
        """Code every encounter ready now; the number coded (stale results excluded).

        An encounter whose coding fails (or that changed while it was coded) is not
        taken again in this pass, where it would come straight back; the next pass
        retries it.
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
                return done
            for lease in fresh:
                if await self._code_one(lease):
                    done += 1
                else:  # failed, or changed while coding: the next pass takes it again
                    failed.add(lease.encounter.key)
                await asyncio.sleep(0)  # let ingest and ACKs through between encounters

    async def run_forever(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the worker must survive a bad encounter or a DB blip
                log.error("coder.error", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _code_one(self, lease: Lease) -> bool:
        key = lease.encounter.key
        try:
            messages = await self.store.messages_for_encounter(key, lease.encounter.patient_key)
            coded = self.code_messages(key, messages)
            resources = encounter_resources(coded, self.ctx.mappings, self.output)
        except Exception as exc:
            log.error("coder.encounter_failed", encounter=_short(key), error=type(exc).__name__)
            await self.store.release_lease(lease)
            return False
        rows = [
            (r["resourceType"], r["id"], str(r.get("status", "")), _dumps(r)) for r in resources
        ]
        state = STATE[coded.outcome]
        detail = coded.skip_reason or " ".join(h.reason.value for h in coded.holds)
        result = await self.store.save_coding(
            lease, state, detail, rows, self.clock(), self.config.destination
        )
        self._observe(coded, result, key)
        return not result.stale

    def code_messages(self, key: str, stored: list[StoredMessage]) -> CodedEncounter:
        """Pure part: stored raw messages → events → the one encounter → coded."""
        inbound: list[InboundMessage] = []
        for message in stored:
            reader = read_hl7 if message.format == "hl7" else read_fhir
            origin = f"message {message.id}"
            inbound.extend(reader(message.raw, self.ctx.mappings, self.ctx.site_tz, origin))
        feed = collect(inbound)
        encounter = next(
            (e for e in assemble(feed.events, self.ctx.site_tz) if e.key == key),
            None,
        )
        if encounter is None:
            encounter = _empty(key, stored)
        return code_encounter(encounter, self.ctx)

    def _observe(self, coded: CodedEncounter, result: SaveResult, key: str) -> None:
        if result.stale:
            log.info("coder.stale", encounter=_short(key))
            return
        self.metrics.coded.labels(coded.outcome.value).inc()
        for warning in coded.warnings:
            self.metrics.table_warnings.labels(warning.table).inc()
        log.info(
            "encounter.coded",
            encounter=_short(key),
            outcome=coded.outcome.value,
            lines=len(coded.lines),
            holds=[h.reason.value for h in coded.holds],
            versions_written=len(result.written),
        )


def _empty(key: str, stored: list[StoredMessage]) -> Encounter:
    """An encounter key with no administrations (an ADT-only visit): nothing billable."""
    patient = next((m.patient_key for m in stored if m.patient_key), "")
    return Encounter(key, patient, None, (), (), ())


def _dumps(resource: dict[str, object]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


def _short(key: str) -> str:
    """Encounter keys can contain a patient id: logs get a stable hash instead."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:12]
