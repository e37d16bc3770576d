"""Replay: read stored messages again through the current mappings (e.g. after a mapping fix).

Every message keeps its id and raw bytes; only its status, error and
encounter links change. Encounters it touches are marked for re-coding, and
re-coding writes new versions of the same deterministic resources (D24), so a
replay never duplicates a charge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapter.config import Settings
from adapter.core.coder import CodingContext
from adapter.core.mappings import Mappings
from adapter.icd10 import is_billable
from adapter.mappings_loader import load_mappings
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.service.coding import Coder, CoderConfig
from adapter.service.links import links_for
from adapter.service.metrics import Metrics
from adapter.store import open_store
from adapter.store.base import Store, StoredMessage


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    read: int
    relinked: int
    dead: int
    coded: int

    def __str__(self) -> str:
        return (
            f"replay: messages={self.read} relinked={self.relinked} dead={self.dead} "
            f"encounters_coded={self.coded}"
        )


async def replay(
    settings: Settings, since: datetime | None, message_id: int | None, code: bool
) -> ReplaySummary:
    mappings = load_mappings(Path(settings.mappings_dir))
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    await store.migrate()
    try:
        now = datetime.now(UTC)
        relinked = dead = 0
        messages = await store.list_messages(since, message_id)
        for message in messages:
            if await _replay_one(store, message, mappings, settings, now):
                relinked += 1
            else:
                dead += 1
        coded = await _code(store, settings, mappings) if code else 0
        return ReplaySummary(len(messages), relinked, dead, coded)
    finally:
        await store.close()


async def _replay_one(
    store: Store, message: StoredMessage, mappings: Mappings, settings: Settings, now: datetime
) -> bool:
    reader = read_hl7 if message.format == "hl7" else read_fhir
    inbound = reader(message.raw, mappings, settings.tz, f"message {message.id}")
    good = [m for m in inbound if m.error is None and not m.skip_reason.startswith("unsupported")]
    if not good:
        errors = [f"{m.error.location}: {m.error.message}" for m in inbound if m.error]
        await store.mark_dead(message.id, "; ".join(errors) or "nothing readable")
        return False
    events = [e for m in good for e in m.events]
    await store.relink_message(message.id, links_for(events, settings.tz, settings.cutoff), now)
    return True


async def _code(store: Store, settings: Settings, mappings: Mappings) -> int:
    ctx = CodingContext(mappings, settings.coding_options(), settings.tz, is_billable)
    config = CoderConfig(
        owner=f"replay-{settings.replica_id}",
        quiet_period=timedelta(minutes=settings.quiet_period_minutes),
        lease_seconds=settings.lease_seconds,
        destination=settings.fhir_base_url or None,
    )
    return await Coder(store, ctx, config, lambda: datetime.now(UTC), Metrics()).run_once()
