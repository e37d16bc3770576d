"""`charge-adapter replay`: the CLI edge over the replay use cases.

Opens the configured store, loads the tables, and runs `usecases/replay.py` (or its dry
run, `usecases/replay_dry_run.py`) with the service's coder under a replay owner; what is
replayed, and why a dead letter is only read again when named, is said there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from adapter.config import Settings
from adapter.mappings_loader import load_mappings
from adapter.metrics import Metrics
from adapter.store import open_store
from adapter.usecases import replay_dry_run
from adapter.usecases.replay import (
    MessageReader,
    Refusal,
    Replayer,
    ReplaySelection,
    ReplaySummary,
    replay_coder,
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
        coder = replay_coder(store, settings, mappings, Metrics())
        if dry_run:
            return await replay_dry_run.dry_run(
                replayer, coder, store, selection, out or sys.stdout
            )
        return await replay_stored(replayer, selection, coder.run_once if code else None)
    finally:
        await store.close()


def print_refusals(refused: Sequence[Refusal], out: TextIO) -> None:
    for refusal in refused:
        print(f"refused: {refusal.name}: {refusal.reason}", file=out)
