"""The application factory: one asyncio process, every listener and worker owned by the app.

`create_app(settings)` returns an aiohttp Application whose start-up opens the
store (and migrates it), loads the mappings, starts the MLLP listener, the
coder and the delivery worker; its shutdown stops accepting, lets in-flight
messages finish, stops the workers and closes the store. `charge-adapter
serve` runs it with aiohttp's signal handling: SIGTERM and SIGINT shut down
gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from aiohttp import web

from adapter import worker_role
from adapter.config import Settings
from adapter.core.coder import CodingContext
from adapter.core.mappings import Mappings
from adapter.credentials import server_ssl_context
from adapter.icd10 import is_billable
from adapter.mappings_loader import MappingError, load_mappings
from adapter.outbox.fhir_put import FhirPutConfig, FhirPutSink
from adapter.outbox.sink import Sink
from adapter.service.coding import Coder, CoderConfig
from adapter.service.delivery import Deliverer, DeliveryConfig
from adapter.service.dft_setup import dft_receivers
from adapter.service.http_api import setup_routes
from adapter.service.ingest import Ingestor
from adapter.service.metrics import Metrics
from adapter.service.mllp import HandlerResult, MllpServer, PeerInfo
from adapter.service.operation_outcome import BODY_LIMITS, BodyBudget, BodyLimits
from adapter.service.security import install
from adapter.service.startup import EXIT_CONFIG, StartupError, database_error, listen_error
from adapter.service.state import STATE, AppState
from adapter.store import open_store
from adapter.store.base import Store
from adapter.web.app_ui import setup_ui

log = structlog.get_logger()


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, clock: Callable[[], datetime] = utc_now) -> web.Application:
    """The app, with its TLS context and tokens loaded (SettingsError if they will not load).

    Serve it with `security.server_tls_of(app)` as the HTTP site's ssl_context: the MLLP
    listener gets the same context at start-up.
    """
    app = web.Application(client_max_size=settings.http_max_body_bytes)
    app.on_response_prepare.append(_neutral_server_header)
    app[BODY_LIMITS] = BodyLimits(
        settings.http_max_body_bytes,
        settings.http_body_timeout_seconds,
        BodyBudget(settings.http_body_budget_bytes),
    )
    tls = install(app, settings)
    app.cleanup_ctx.append(_lifecycle(settings, clock, tls))
    setup_routes(app)
    setup_ui(app, settings)
    return app


SERVER_HEADER = "charge-adapter"


async def _neutral_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """No versions in `Server` (aiohttp would say `Python/3.x aiohttp/3.x`): a caller learns
    nothing it could match against a list of known vulnerabilities."""
    response.headers["Server"] = SERVER_HEADER


def _lifecycle(
    settings: Settings, clock: Callable[[], datetime], tls: ssl.SSLContext | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        state = await start_state(settings, clock, tls)
        app[STATE] = state
        app[BODY_LIMITS].hits = state.metrics.limits_hit
        app[BODY_LIMITS].on_release = state.trimmer.released
        try:
            yield
        finally:
            await stop_state(state)

    return lifecycle


async def start_state(
    settings: Settings, clock: Callable[[], datetime] = utc_now, tls: ssl.SSLContext | None = None
) -> AppState:
    """Open the store, load the tables, start the MLLP listener and the workers.

    MLLP speaks TLS whenever the settings say so: without `tls`, the context is loaded here.
    """
    tls = tls or server_ssl_context(settings)
    mappings = load_mappings_checked(settings)
    store = await _open_store(settings)
    try:
        return await _start(settings, clock, tls, mappings, store)
    except BaseException:
        await store.close()
        raise


async def _open_store(settings: Settings) -> Store:
    """Open and migrate the store; a database that refuses or is missing is a StartupError."""
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    try:
        await store.migrate()
    except Exception as exc:
        await store.close()
        raise database_error(exc, settings.database_url) from exc
    return store


async def _start(
    settings: Settings,
    clock: Callable[[], datetime],
    tls: ssl.SSLContext | None,
    mappings: Mappings,
    store: Store,
) -> AppState:
    metrics = Metrics()
    tz = settings.tz
    ctx = CodingContext(mappings, settings.coding_options(), tz, is_billable)
    ingestor = Ingestor(store, mappings, tz, settings.cutoff, clock, metrics)
    dft = dft_receivers(settings, store, mappings, clock)
    coder = Coder(
        store,
        ctx,
        CoderConfig(
            owner=settings.replica_id,
            quiet_period=timedelta(minutes=settings.quiet_period_minutes),
            lease_seconds=settings.lease_seconds,
            destination=settings.fhir_base_url or None,
        ),
        clock,
        metrics,
        dft=[receiver.queue for receiver in dft],
    )
    deliverer = _deliverer(settings, store, clock, metrics, [r.sink for r in dft])
    state = AppState(settings, store, mappings, ingestor, coder, deliverer, metrics, clock)
    state.mllp = MllpServer(
        handler=lambda raw, peer: _mllp_handler(state, raw, peer),
        idle_timeout=settings.mllp_idle_timeout_seconds,
        max_frame_bytes=settings.mllp_max_frame_bytes,
        frame_deadline=settings.mllp_frame_deadline_seconds,
        buffer_budget=settings.mllp_buffer_budget_bytes,
        max_connections=settings.mllp_max_connections,
        max_per_address=settings.mllp_max_connections_per_address,
        fd_reserve=settings.fd_reserve,
        descriptors=state.descriptors,
        on_release=state.trimmer.released,
        metrics=metrics,
        clock=clock,
        keep_oversize=lambda item, _peer: ingestor.keep_oversize(
            item.head, item.size, settings.mllp_max_frame_bytes
        ),
    )
    try:
        await state.mllp.start(settings.host, settings.mllp_port, ssl=tls)
    except OSError as exc:
        raise listen_error(
            exc, "MLLP", settings.host, settings.mllp_port, "ADAPTER_MLLP_PORT"
        ) from exc
    if worker_role.runs_background():  # ADAPTER_WORKERS=N: worker 0 codes and delivers
        state.tasks.append(
            asyncio.create_task(coder.run_forever(state.stop, settings.close_check_seconds))
        )
        if deliverer is not None:
            state.tasks.append(asyncio.create_task(deliverer.run_forever(state.stop, 1.0)))
    log.info(
        "service.started",
        mllp_port=state.mllp.port,
        http_port=settings.http_port,
        tls=tls is not None,
        store=settings.database_url.partition(":")[0],
        replica=settings.replica_id,
    )
    return state


async def _mllp_handler(state: AppState, raw: bytes, peer: PeerInfo) -> HandlerResult:
    return await state.handle_hl7(raw, f"mllp {peer.host}")


def _deliverer(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime],
    metrics: Metrics,
    sinks: list[Sink],
) -> Deliverer | None:
    if settings.fhir_base_url:
        fhir = FhirPutConfig(settings.auth_header(), settings.delivery_timeout_seconds)
        sinks = [FhirPutSink(fhir), *sinks]
    if not sinks:
        return None
    config = DeliveryConfig(
        backoff_base=settings.delivery_backoff_base_seconds,
        backoff_max=settings.delivery_backoff_max_seconds,
    )
    return Deliverer(store, config, clock, metrics, sinks)


def load_mappings_checked(settings: Settings) -> Mappings:
    """The site tables, or a StartupError naming the file and line at fault."""
    try:
        return load_mappings(Path(settings.mappings_dir))
    except MappingError as exc:
        raise StartupError(f"mapping tables: {exc}", "ADAPTER_MAPPINGS_DIR", EXIT_CONFIG) from exc


async def stop_state(state: AppState) -> None:
    """Stop accepting, finish in-flight messages, stop the workers, close the store."""
    state.draining = True
    if state.mllp is not None:
        await state.mllp.stop(state.settings.shutdown_grace_seconds)
    state.stop.set()
    for task in state.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(task, timeout=state.settings.shutdown_grace_seconds)
            except TimeoutError:
                task.cancel()
    if state.deliverer is not None:
        await state.deliverer.close()
    await state.ingestor.settle()
    await state.store.close()
    log.info("service.stopped")
