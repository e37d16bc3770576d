"""`charge-adapter replay`: the CLI edge over the replay use cases.

Opens the configured store, loads the tables, and runs `usecases/replay.py` (or its dry
run, `usecases/replay_dry_run.py`) with the service's coder under a replay owner; what is
replayed, and why a dead letter is only read again when named, is said there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from adapter.config import Settings
from adapter.core.mappings import Mappings
from adapter.mappings_loader import load_mappings
from adapter.service.metrics import Metrics
from adapter.store import open_store
from adapter.store.ports import Store
from adapter.usecases import replay_dry_run
from adapter.usecases.close_and_code import Coder, CoderConfig
from adapter.usecases.context import service_coding_context
from adapter.usecases.replay import (
    MessageReader,
    Refusal,
    Replayer,
    ReplaySelection,
    ReplaySummary,
    replay_stored,
)

__all__ = ["MessageReader", "Refusal", "ReplaySelection", "ReplaySummary", "Replayer", "replay"]


async def replay(
    settings: Settings,
    selection: ReplaySelection,
    *,
    code: bool = True,
    progress: bool | None = None,
    dry_run: bool = False,
    out: TextIO | None = None,
) -> ReplaySummary:
    """Replay the selection against the configured store, then code what it touched.

    `dry_run`: print to `out` what would change per encounter, and write nothing."""
    mappings = load_mappings(Path(settings.mappings_dir))
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    await store.migrate()
    try:
        replayer = Replayer(
            store,
            MessageReader(mappings, settings.tz, settings.cutoff),
            lambda: datetime.now(UTC),
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        coder = coder_for(store, settings, mappings)
        if dry_run:
            return await replay_dry_run.dry_run(
                replayer, coder, store, selection, out or sys.stdout
            )
        return await replay_stored(replayer, selection, coder.run_once if code else None)
    finally:
        await store.close()


def coder_for(store: Store, settings: Settings, mappings: Mappings) -> Coder:
    """The coder a replay (or its dry run) uses: the service's, under a replay owner."""
    ctx = service_coding_context(settings, mappings)
    config = CoderConfig(
        owner=f"replay-{settings.replica_id}",
        quiet_period=timedelta(minutes=settings.quiet_period_minutes),
        lease_seconds=settings.lease_seconds,
        destination=settings.fhir_base_url or None,
    )
    return Coder(store, ctx, config, lambda: datetime.now(UTC), Metrics())


def print_refusals(refused: Sequence[Refusal], out: TextIO) -> None:
    for refusal in refused:
        print(f"refused: {refusal.name}: {refusal.reason}", file=out)
