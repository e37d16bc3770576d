"""Probes and metrics: `/healthz` (alive), `/readyz` (can take traffic), `/metrics` (Prometheus).

Liveness never touches the database: a slow or down database must not get the process
restarted, only taken out of the load balancer (readiness). The store-derived gauges are
refreshed at scrape time, so they are as fresh as the scrape and cost nothing between.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from adapter.store.base import EncounterState
from adapter.web.outcome import ApiError
from adapter.web.state import STATE, AppState

log = structlog.get_logger()

PING_TIMEOUT_SECONDS = 2.0


async def healthz(request: web.Request) -> web.Response:
    """200 while the process runs and the event loop answers."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """200 when start-up finished (mappings loaded), the store answers and we are not stopping.

    Mappings are loaded before the state exists (a bad table stops start-up), so a
    present state means loaded mappings.
    """
    state = request.app.get(STATE)
    reason = await not_ready_reason(state)
    if reason:
        raise ApiError.of(503, "transient", f"not ready: {reason}")
    return web.json_response({"status": "ready"})


async def not_ready_reason(state: AppState | None) -> str:
    """Why the service should not get traffic now, or "" when it should."""
    if state is None:
        return "starting up (store and mappings not loaded yet)"
    if state.draining or state.stop.is_set():
        return "shutting down"
    try:
        answers = await asyncio.wait_for(state.store.ping(), timeout=PING_TIMEOUT_SECONDS)
    except Exception as exc:  # a closed pool, a refused connection: all mean "not ready"
        log.warning("readyz.store_error", error=type(exc).__name__)
        answers = False
    return "" if answers else "store not reachable"


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition, with the store gauges refreshed first."""
    state = request.app[STATE]
    await refresh_gauges(state)
    response = web.Response(body=state.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def refresh_gauges(state: AppState) -> None:
    """Encounters by state, outbox backlog, dead letters: from `store.counts()`.

    A failing store leaves the gauges at their last values: the scrape still answers,
    and /readyz is what reports the store.
    """
    try:
        counts = await asyncio.wait_for(state.store.counts(), timeout=PING_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("metrics.counts_failed", error=type(exc).__name__)
        return
    by_state = {s.value: 0 for s in EncounterState} | dict(counts.encounters_by_state)
    for name, value in by_state.items():
        state.metrics.encounters.labels(str(name)).set(value)
    state.metrics.backlog.set(counts.outbox_pending)
    state.metrics.outbox_rejected.set(counts.outbox_rejected)
    state.metrics.dead_letters.set(counts.dead_letters)
