"""The running service's state and its app key: what every HTTP handler reads.

Why its own module: the HTTP route modules need `STATE`/`AppState`, and the app factory
(`adapter.web.app`) imports the routes; with the key in the factory they imported each
other. Here it depends on the workers it holds, never on the app or the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog
from aiohttp import web

from adapter.allocator import Trimmer
from adapter.config import Settings
from adapter.core.mappings import Mappings
from adapter.hl7_answers import HandlerResult, ack_for, internal_error
from adapter.listeners.accept import Descriptors
from adapter.listeners.mllp import MllpServer
from adapter.mappings_loader import MappingError, load_mappings
from adapter.metrics import Metrics
from adapter.outbox.deliverer import Deliverer
from adapter.store.base import Store
from adapter.usecases.close_and_code import Coder
from adapter.usecases.ingest import Ingestor

__all__ = ["INGEST_TIMEOUT_S", "STATE", "AppState"]

log = structlog.get_logger()


INGEST_TIMEOUT_S = 30.0  # beyond this the message is answered AE rather than held silently


@dataclass
class AppState:
    """Everything a request handler may need, created at start-up."""

    settings: Settings
    store: Store
    mappings: Mappings
    ingestor: Ingestor
    coder: Coder
    deliverer: Deliverer | None
    metrics: Metrics
    clock: Callable[[], datetime]
    mllp: MllpServer | None = None
    descriptors: Descriptors = field(default_factory=Descriptors)  # MLLP and HTTP share it
    trimmer: Trimmer = field(default_factory=Trimmer)  # memory back to the OS after peers go
    draining: bool = False  # set first on shutdown: /readyz turns 503 while MLLP drains
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # what `app.start_state` started, unwound by `stop_state` (an app unwinds its cleanup_ctx)
    started: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def reload_mappings(self) -> MappingError | None:
        """Load the tables again and swap them in; on any error keep the old ones.

        Validated first (a bad row is a MappingError naming file and line), swapped in one
        step after: a message read during the reload sees the old tables or the new, never
        a mix. Encounters already coded are not re-coded (that is `replay`); what is read
        or coded from now on uses the new tables.
        """
        try:
            mappings = await asyncio.to_thread(load_mappings, Path(self.settings.mappings_dir))
        except MappingError as exc:
            self.metrics.mapping_reloads.labels("error").inc()
            log.error("mappings.reload_failed", error=str(exc), kept="previous tables")
            return exc
        self.mappings = mappings
        self.ingestor.mappings = mappings
        self.coder.ctx = dataclasses.replace(self.coder.ctx, mappings=mappings)
        self.metrics.mapping_reloads.labels("ok").inc()
        log.info("mappings.reloaded", directory=self.settings.mappings_dir)
        return None

    async def handle_hl7(
        self, raw: bytes, origin: str, timeout: float | None = INGEST_TIMEOUT_S
    ) -> HandlerResult:
        """Keep the message, then build its ACK (AA only after the commit). `timeout=None`:
        the caller bounds the wait itself (the MLLP server, with one timer for all its
        connections: `adapter.listeners.deadlines`)."""
        bound = contextlib.nullcontext() if timeout is None else asyncio.timeout(timeout)
        try:
            async with bound:
                result = await self.ingestor.receive_hl7(raw, origin)
        except Exception as exc:  # store down or stalled: AE 207, the sender resends (dedup)
            log.error("hl7.ingest_failed", error=type(exc).__name__)
            return internal_error(raw, self.clock())
        return ack_for(raw, result, self.clock())


STATE = web.AppKey("state", AppState)
