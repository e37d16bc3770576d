"""The application factory: one asyncio process, every listener and worker owned by the app.

`create_app(runtime)` returns an aiohttp Application over what start-up loaded once
(`adapter.runtime.Runtime`). Its start-up is one `cleanup_ctx` per resource, in the order
of `_RESOURCES`: the tables, the store (opened and migrated), the workers as objects, the
deliverer's sinks, the MLLP listener, the coder task, the delivery task, then "serving".
Its shutdown runs them backwards: stop accepting and let in-flight messages finish, stop
the workers, close the sinks, close the store. A resource that fails to start unwinds
only those before it (a busy MLLP port closes the store it opened). `charge-adapter serve`
runs it with signal handling: SIGTERM and SIGINT shut down gracefully. `start_state` /
`stop_state` run the same resources without aiohttp (tests, benches).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web

from adapter import worker_role
from adapter.config import Settings, dft_receivers_of
from adapter.core.mappings import Mappings
from adapter.credentials import Credentials, load_credentials
from adapter.hl7_answers import HandlerResult
from adapter.listeners.mllp import MllpServer, PeerInfo
from adapter.metrics import Metrics
from adapter.outbox.deliverer import Deliverer, DeliveryConfig
from adapter.outbox.dft_receivers import DftReceiverSpec
from adapter.outbox.dft_setup import dft_receivers
from adapter.outbox.fhir_put import FhirPutConfig, FhirPutSink
from adapter.outbox.sink import Sink
from adapter.runtime import Runtime, load_mappings_checked
from adapter.setting_names import SettingName
from adapter.startup import database_error, listen_error
from adapter.store import open_store
from adapter.store.base import Store
from adapter.usecases.close_and_code import Coder, CoderConfig
from adapter.usecases.context import service_coding_context
from adapter.usecases.ingest import Ingestor
from adapter.web.app_ui import setup_ui
from adapter.web.bodies import BODY_LIMITS, BodyBudget, BodyLimits
from adapter.web.routes.api import setup_routes
from adapter.web.security import install
from adapter.web.state import INGEST_TIMEOUT_S, STATE, AppState

log = structlog.get_logger()


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    runtime: Runtime | Settings, clock: Callable[[], datetime] = utc_now
) -> web.Application:
    """The app over what start-up loaded once (`Runtime`: TLS context, tokens, tables).

    Bare `Settings` (tests, tools) are loaded here: the TLS context and tokens now
    (SettingsError if they will not load), the tables at start-up. Serve it with
    `security.server_tls_of(app)` as the HTTP site's ssl_context: the MLLP listener gets
    the same context at start-up. Start-up is one `cleanup_ctx` per resource
    (`_RESOURCES`), so a failure half-way unwinds exactly what had started.
    """
    boot = _boot(runtime, clock)
    app = web.Application(client_max_size=boot.settings.http_max_body_bytes)
    app.on_response_prepare.append(_neutral_server_header)
    app[BODY_LIMITS] = BodyLimits(
        boot.settings.http_max_body_bytes,
        boot.settings.http_body_timeout_seconds,
        BodyBudget(boot.settings.http_body_budget_bytes),
    )
    install(app, boot.settings, boot.credentials)
    boot.app = app
    app.cleanup_ctx.extend(_for_app(resource, boot) for resource in _RESOURCES)
    setup_routes(app)
    setup_ui(app, boot.settings)
    return app


SERVER_HEADER = "charge-adapter"


async def _neutral_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """No versions in `Server` (aiohttp would say `Python/3.x aiohttp/3.x`): a caller learns
    nothing it could match against a list of known vulnerabilities."""
    response.headers["Server"] = SERVER_HEADER


@dataclass
class _Boot:
    """What start-up has built so far; each resource reads what the ones before it made."""

    settings: Settings
    credentials: Credentials
    clock: Callable[[], datetime]
    mappings: Mappings | None  # None: loaded by the first resource (bare `Settings`)
    dft: tuple[DftReceiverSpec, ...]  # the receivers the settings check read
    app: web.Application | None = None  # None: started without aiohttp (`start_state`)
    store: Store | None = None
    state: AppState | None = None

    def running(self) -> AppState:
        assert self.state is not None, "a resource started before the state it needs"
        return self.state


def _boot(runtime: Runtime | Settings, clock: Callable[[], datetime]) -> _Boot:
    if isinstance(runtime, Runtime):
        settings, credentials = runtime.settings, runtime.credentials
        return _Boot(settings, credentials, clock, runtime.mappings, runtime.dft_receivers)
    return _Boot(runtime, load_credentials(runtime), clock, None, dft_receivers_of(runtime))


Resource = Callable[[_Boot], AsyncIterator[None]]


def _for_app(resource: Resource, boot: _Boot) -> Callable[[web.Application], AsyncIterator[None]]:
    def cleanup_ctx(_app: web.Application) -> AsyncIterator[None]:
        return resource(boot)

    return cleanup_ctx


async def start_state(
    runtime: Runtime | Settings, clock: Callable[[], datetime] = utc_now
) -> AppState:
    """Start every resource as the app does, without aiohttp (tests, benches, tools).

    Bare `Settings` are loaded here (TLS, tokens, tables): MLLP speaks TLS whenever the
    settings say so. `stop_state` unwinds in reverse; a failure half-way unwinds at once.
    """
    boot = _boot(runtime, clock)
    started = contextlib.AsyncExitStack()
    try:
        for resource in _RESOURCES:
            await started.enter_async_context(contextlib.asynccontextmanager(resource)(boot))
    except BaseException:
        await started.aclose()
        raise
    state = boot.running()
    state.started = started
    return state


async def stop_state(state: AppState) -> None:
    """Stop accepting, finish in-flight messages, stop the workers, close the store."""
    await state.started.aclose()


# --- the resources, in start order (stopped in reverse) ------------------------------


async def _tables(boot: _Boot) -> AsyncIterator[None]:
    """The mapping tables, unless the `Runtime` brought them (nothing to undo)."""
    if boot.mappings is None:
        boot.mappings = load_mappings_checked(boot.settings)
    yield


async def _store(boot: _Boot) -> AsyncIterator[None]:
    """Open and migrate the store; closed last, after everything that writes to it."""
    settings = boot.settings
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    try:
        await store.migrate()
    except Exception as exc:
        await store.close()
        raise database_error(exc, settings.database_url) from exc
    boot.store = store
    try:
        yield
    finally:
        await store.close()
        log.info("service.stopped")


async def _workers(boot: _Boot) -> AsyncIterator[None]:
    """Ingestor, coder, deliverer and DFT queue as objects (no task yet), in the `AppState`."""
    assert boot.store is not None and boot.mappings is not None
    state = _state(boot.settings, boot.clock, boot.mappings, boot.store, boot.dft)
    boot.state = state
    if boot.app is not None:
        boot.app[STATE] = state
        boot.app[BODY_LIMITS].hits = state.metrics.limits_hit
        boot.app[BODY_LIMITS].on_release = state.trimmer.released
    yield


async def _sinks(boot: _Boot) -> AsyncIterator[None]:
    """The deliverer's sinks (HTTP client session, DFT connection), closed after its task."""
    deliverer = boot.running().deliverer
    try:
        yield
    finally:
        if deliverer is not None:
            await deliverer.close()


async def _mllp(boot: _Boot) -> AsyncIterator[None]:
    """The MLLP listener (one-line StartupError when it cannot bind), on the shared TLS context."""
    state, settings = boot.running(), boot.settings
    state.mllp = _mllp_server(state)
    try:
        await state.mllp.start(settings.host, settings.mllp_port, ssl=boot.credentials.server_tls)
    except OSError as exc:
        raise listen_error(
            exc, "MLLP", settings.host, settings.mllp_port, SettingName.MLLP_PORT
        ) from exc
    try:
        yield
    finally:
        await state.mllp.stop(settings.shutdown_grace_seconds)  # no-op after `_serving`


async def _coder_worker(boot: _Boot) -> AsyncIterator[None]:
    """The coder loop: closes, codes and queues what is due (ADAPTER_WORKERS=N: worker 0)."""
    state = boot.running()
    if not worker_role.runs_background():
        yield
        return
    run = state.coder.run_forever(state.stop, boot.settings.close_check_seconds)
    async with _worker(state, run):
        yield


async def _delivery_worker(boot: _Boot) -> AsyncIterator[None]:
    """The outbox loop, when there is a sink to deliver to (ADAPTER_WORKERS=N: worker 0)."""
    state = boot.running()
    if state.deliverer is None or not worker_role.runs_background():
        yield
        return
    async with _worker(state, state.deliverer.run_forever(state.stop, 1.0)):
        yield


async def _serving(boot: _Boot) -> AsyncIterator[None]:
    """Up: say so. Down, first of all: /readyz 503, MLLP stops accepting and answers what it
    has, then the workers are told to stop (their own resources wait for them)."""
    state, settings = boot.running(), boot.settings
    assert state.mllp is not None
    log.info(
        "service.started",
        mllp_port=state.mllp.port,
        http_port=settings.http_port,
        tls=boot.credentials.server_tls is not None,
        store=settings.database_url.partition(":")[0],
        replica=settings.replica_id,
        # the loop actually running (ADAPTER_EVENT_LOOP): "asyncio" or "uvloop"
        event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
    )
    try:
        yield
    finally:
        state.draining = True
        await state.mllp.stop(settings.shutdown_grace_seconds)
        state.stop.set()


_RESOURCES: tuple[Resource, ...] = (
    _tables,
    _store,
    _workers,
    _sinks,
    _mllp,
    _coder_worker,
    _delivery_worker,
    _serving,
)


@contextlib.asynccontextmanager
async def _worker(state: AppState, run: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """A background task, told to stop and given the grace period, then cancelled."""
    task = asyncio.create_task(run)
    state.tasks.append(task)
    try:
        yield
    finally:
        state.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(task, timeout=state.settings.shutdown_grace_seconds)
            except TimeoutError:
                task.cancel()


def _state(
    settings: Settings,
    clock: Callable[[], datetime],
    mappings: Mappings,
    store: Store,
    receivers: tuple[DftReceiverSpec, ...],
) -> AppState:
    """The workers as objects, wired to the store and the tables; nothing runs yet."""
    metrics = Metrics()
    tz = settings.tz
    ctx = service_coding_context(settings, mappings)
    ingestor = Ingestor(store, mappings, tz, settings.cutoff, clock, metrics)
    dft = dft_receivers(receivers, settings, store, mappings, clock)
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
    return AppState(settings, store, mappings, ingestor, coder, deliverer, metrics, clock)


def _mllp_server(state: AppState) -> MllpServer:
    settings = state.settings
    return MllpServer(
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
        metrics=state.metrics,
        clock=state.clock,
        keep_oversize=lambda item, _peer: state.ingestor.keep_oversize(
            item.head, item.size, settings.mllp_max_frame_bytes
        ),
        handler_timeout=INGEST_TIMEOUT_S,
    )


async def _mllp_handler(state: AppState, raw: bytes, peer: PeerInfo) -> HandlerResult:
    return await state.handle_hl7(raw, f"mllp {peer.host}", timeout=None)  # the server's


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
