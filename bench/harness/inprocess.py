"""The service in this process, as `serve` wires it, with its background workers paused.

Why: the in-process benches (drain, DFT send, replicas, the loop split) each time one
use case (`coder.run_once()`, `deliverer.run_once()`, ingest) and must be the only pass
that runs it; a background coder leasing the same encounters would make the timing
a race. Every one of them needs the same settings (no listeners, no close check) and the
same care to cancel the workers before their first pass, so it lives here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any


def pause_background_coder(state: object) -> None:
    """Cancel the workers `start_state` just created, before their first pass runs.

    Call it right after `await start_state(...)`, with no await in between: the
    coder task has been created but not started, so it never leases anything and
    the benchmark's own `coder.run_once()` is the only coding pass.
    """
    for task in state.tasks:  # type: ignore[attr-defined]
        task.cancel()


@asynccontextmanager
async def paused_service(database_url: str, **overrides: Any) -> AsyncIterator[Any]:
    """`start_state` on `database_url` (no MLLP/HTTP ports, no close check), workers paused.

    `overrides` are further `Settings` fields (schema, replica id, DFT URL, log level).
    Yields the running `AppState`; stops it on the way out, whatever happened.
    """
    from adapter.config import Settings
    from adapter.web.app import start_state, stop_state

    settings = replace(
        Settings(),
        database_url=database_url,
        mllp_port=0,
        http_port=0,
        close_check_seconds=3600.0,
        **overrides,
    )
    state = await start_state(settings)
    pause_background_coder(state)  # no await before this: the workers never run
    try:
        yield state
    finally:
        await stop_state(state)
