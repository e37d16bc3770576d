"""Serving the HTTP app under limits: connection caps, a header deadline, no version banner.

`run_app(app, settings)` is what `charge-adapter serve` runs instead of `web.run_app`: the
same runner (start-up, graceful shutdown on SIGTERM/SIGINT), but the HTTP site accepts
through `adapter.listeners.accept` (total and per-address caps, the descriptor reserve; a
refused client reads a canned 503), and:

- `http_header_timeout_seconds` is aiohttp's keep-alive timeout, which closes a connection
  whose request head has not come complete that long after it connected (or after its
  previous response), however slowly bytes trickle in; the body has its own deadline
  (`bodies.read_body`);
- aiohttp's own error responses (a malformed request line, an over-long header) say
  `Server: charge-adapter` too, not the Python and aiohttp versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from adapter import worker_role
from adapter.allocator import large_buffers_to_the_os
from adapter.config import Settings
from adapter.listeners.accept import Descriptors, Limits, Listener, RateLimitedLog
from adapter.web.app import SERVER_HEADER
from adapter.web.state import STATE

log = structlog.get_logger()

_REFUSED_BODY = (
    b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient",'
    b'"diagnostics":"too many connections; retry later"}]}'
)
REFUSED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Server: " + SERVER_HEADER.encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Type: application/fhir+json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_REFUSED_BODY)).encode() + b"\r\n\r\n" + _REFUSED_BODY
)
_REQUEST_ERRORS = RateLimitedLog()
LINGER_S = 2.0
EVICT_IDLE_S = 1.0
HTTP_RESERVE_SHARE = 4  # HTTP refuses below fd_reserve / 4: the rest is kept for the probes


class _Handler(RequestHandler):
    """aiohttp's protocol, with its own error responses under our `Server` header, and the
    time bytes last came (what `IdleConnections` evicts by)."""

    idle: IdleConnections | None = None
    last_data = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.last_data = asyncio.get_running_loop().time()
        super().connection_made(transport)
        if self.idle is not None:
            self.idle.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_data = asyncio.get_running_loop().time()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.idle is not None:
            self.idle.discard(self)
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp logs each malformed request with its traceback: a peer sending garbage in
        a loop would write a traceback per request. One line per error type per interval,
        with the count, instead (the request line is never logged: it can carry PHI)."""
        exc = kwargs.get("exc_info")
        error = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        _REQUEST_ERRORS.warning("http.request_error", error, error=error)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        response.headers["Server"] = SERVER_HEADER
        return response


class IdleConnections:
    """The open HTTP connections, to close the longest-silent one when descriptors run out.

    Silent means no byte for `EVICT_IDLE_S`: an idle keep-alive connection, or a client that
    sent part of a head and stopped. A request being answered has sent its bytes too, so a
    slow handler could be cut; only when the process is out of descriptors, which is worse.
    """

    def __init__(self) -> None:
        self._open: dict[_Handler, None] = {}

    def add(self, handler: _Handler) -> None:
        self._open[handler] = None

    def discard(self, handler: _Handler) -> None:
        self._open.pop(handler, None)

    def evict(self) -> bool:
        """Close the longest-silent connection; False when none has been silent long enough."""
        if not self._open:
            return False
        oldest = min(self._open, key=lambda handler: handler.last_data)
        if asyncio.get_running_loop().time() - oldest.last_data < EVICT_IDLE_S:
            return False
        self.discard(oldest)
        oldest.force_close()
        return True


class GuardedSite(web.BaseSite):
    """A TCP site whose accept loop is a `Listener` (caps, descriptor reserve)."""

    __slots__ = ("_descriptors", "_handler_options", "_host", "_limits", "_listener", "_port")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        limits: Limits,
        descriptors: Descriptors,
        *,
        ssl_context: ssl.SSLContext | None = None,
        handler_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._limits = limits
        self._descriptors = descriptors
        self._handler_options = handler_options or {}
        self._listener: Listener | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return self._listener.port if self._listener is not None else self._port

    @property
    def listener(self) -> Listener | None:
        """The accept loop, once started (its `limits` may be changed while it runs)."""
        return self._listener

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        options = self._handler_options

        idle = IdleConnections()

        def protocol() -> asyncio.BaseProtocol:
            handler = _Handler(server, loop=loop, **options)
            handler.idle = idle
            return handler

        state = self._runner.app.get(STATE) if isinstance(self._runner, web.AppRunner) else None
        hits = state.metrics.limits_hit if state is not None else None
        self._listener = Listener(
            "http",
            protocol,
            self._limits,
            self._descriptors,
            refused=hits,
            refusal_bytes=REFUSED_RESPONSE,
            ssl_context=self._ssl_context,
            evict=idle.evict,
        )
        await self._listener.start(self._host, self._port)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await super().stop()


def http_limits(settings: Settings) -> Limits:
    return Limits(
        settings.http_max_connections,
        settings.http_max_connections_per_address,
        settings.fd_reserve // HTTP_RESERVE_SHARE,
    )


def handler_options(settings: Settings) -> dict[str, Any]:
    """What each HTTP connection's protocol is built with (no access log: paths carry PHI).

    After an early answer (401, 408, 503) aiohttp reads and drops the rest of the body for
    `lingering_time`, so the client sees the answer rather than a reset: 2 s, not its 10,
    or a body dribbled on after its 408 would hold the connection that much longer.
    """
    return {
        "keepalive_timeout": settings.http_header_timeout_seconds,
        "lingering_time": LINGER_S,
        "access_log": None,
    }


async def start_site(
    runner: web.AppRunner, settings: Settings, ssl_context: ssl.SSLContext | None
) -> GuardedSite:
    """The HTTP site on `settings.host`/`http_port`, sharing the app's descriptor count."""
    state = runner.app.get(STATE)
    descriptors = state.descriptors if state is not None else Descriptors()
    site = GuardedSite(
        runner,
        settings.host,
        settings.http_port,
        http_limits(settings),
        descriptors,
        ssl_context=ssl_context,
        handler_options=handler_options(settings),
    )
    await site.start()
    return site


def run_app(app: web.Application, settings: Settings, ssl_context: ssl.SSLContext | None) -> None:
    """Start the app, serve until SIGTERM/SIGINT, shut down gracefully (as `web.run_app`)."""
    large_buffers_to_the_os()
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(_serve(app, settings, ssl_context))


def _loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """asyncio's own loop, or uvloop's (`ADAPTER_EVENT_LOOP=uvloop`: its transports and
    selector are C, 35-40 of the loop thread's ~190 µs of CPU per message under load)."""
    if event_loop != "uvloop":
        return None
    import uvloop  # an optional extra, checked at settings time

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(
    app: web.Application, settings: Settings, ssl_context: ssl.SSLContext | None
) -> None:
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=settings.shutdown_grace_seconds
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()  # inside: a start-up that fails half-way is cleaned up
        await start_site(runner, settings, ssl_context)
        worker_role.notify_ready()  # ADAPTER_WORKERS=N: the supervisor waits for this
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await runner.cleanup()
