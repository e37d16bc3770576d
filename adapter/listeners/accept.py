"""Accepting connections under limits: a total cap, a per-address cap, a descriptor reserve.

Why our own accept loop rather than `asyncio.start_server`/`loop.create_server`: asyncio
accepts whatever comes until the process runs out of descriptors, and then every new
client, `/healthz` included, waits in the kernel's backlog while `accept()` failures are
reported with a traceback each. Here each listener:

- refuses a connection over its total cap or its per-address cap, or when fewer free
  descriptors than its reserve remain, by closing it at once (HTTP first writes a canned
  `503` with `Retry-After`): the peer gets an answer instead of a hang, and the refusal is
  counted in `adapter_connections_refused_total{listener,reason}` (NGINX `limit_conn`,
  HAProxy `maxconn`, Mirth's "max connections" do the same);
- backs off when `accept()` itself fails (EMFILE and friends: 10 ms doubling to 1 s) and
  logs such failures at most once per `LOG_INTERVAL_S`, with their count;
- below the reserve, a listener given `evict` (HTTP) first closes its longest-idle
  connection to make room (as NGINX drops keep-alive connections when out of them): a
  probe or an operator's request gets in even when idle clients took every slot;
- hands an admitted socket to the protocol (`loop.connect_accepted_socket`, TLS included)
  and releases its slot when the connection is lost or the TLS handshake fails.

MLLP keeps a larger descriptor reserve than HTTP, so when senders exhaust the process's
descriptors the probes, `/metrics` and an operator's request still get through.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from adapter import worker_role

log = structlog.get_logger()

LOG_INTERVAL_S = 10.0  # accept() failures and refusals: one log line per interval per kind
BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 1.0
RECOUNT_INTERVAL_S = 1.0  # how stale the open-descriptor count may be far from the limit
RECOUNT_NEAR_S = 0.05  # ... and near it
HANDSHAKE_TIMEOUT_S = 30.0
_FD_DIRS = ("/proc/self/fd", "/dev/fd")


class _Counter(Protocol):
    def labels(self, *values: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """One listener's caps; 0 disables a cap."""

    max_connections: int
    max_per_address: int
    fd_reserve: int  # refuse when fewer descriptors than this are free


class Descriptors:
    """Free file descriptors of the process, cheaply: a recount now and then, and in between
    the connections opened and closed since (every listener shares one instance).

    Counting `/proc/self/fd` costs a few milliseconds at 20,000 descriptors: it is done at
    most every second, or every 50 ms once the estimate is near the reserve.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._clock = clock
        self._live = 0  # connections the listeners hold now
        self._base = 0  # descriptors open besides them, at the last count
        self._counted_at = -1e9
        self._countable = any(os.path.isdir(path) for path in _FD_DIRS)

    def opened(self) -> None:
        self._live += 1

    def closed(self) -> None:
        self._live -= 1

    def free(self, reserve: int) -> int:
        """Descriptors still free (a large number when the platform cannot count them)."""
        if not self._countable or self.limit == resource.RLIM_INFINITY:
            return 1 << 30
        now = self._clock()
        estimate = self.limit - self._base - self._live
        stale = RECOUNT_NEAR_S if estimate < 2 * reserve + 16 else RECOUNT_INTERVAL_S
        if now - self._counted_at >= stale:
            self._base = max(_open_descriptors() - self._live, 0)
            self._counted_at = now
            estimate = self.limit - self._base - self._live
        return estimate


def _open_descriptors() -> int:
    for path in _FD_DIRS:
        with contextlib.suppress(OSError):
            return len(os.listdir(path)) - 1  # listdir's own descriptor
    return 0


class RateLimitedLog:
    """One warning per interval per event, carrying how many happened since the last one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warning(self, event: str, key: str = "", **fields: object) -> None:
        """Log `event` now if its key has not been logged within the interval, else count it."""
        key = f"{event} {key}"
        self._count[key] = self._count.get(key, 0) + 1
        now = self._clock()
        if now - self._last.get(key, -1e9) >= LOG_INTERVAL_S:
            log.warning(event, count=self._count.pop(key), **fields)
            self._last[key] = now


class _Slot:
    """One admitted connection's place under the caps; released exactly once."""

    __slots__ = ("_host", "_listener", "_released")

    def __init__(self, listener: Listener, host: str) -> None:
        self._listener = listener
        self._host = host
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._listener._release(self._host)


class _Tracked(asyncio.Protocol):
    """The protocol of one connection, with its slot released when the connection is lost."""

    def __init__(self, inner: asyncio.BaseProtocol, slot: _Slot) -> None:
        self._inner: Any = inner
        self._slot = slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._slot.release()


class _TrackedBuffered(_Tracked, asyncio.BufferedProtocol):
    """`_Tracked` for a protocol the transport reads into (`asyncio.BufferedProtocol`): the
    transport picks `recv_into` only when the protocol it holds is one."""

    def get_buffer(self, sizehint: int) -> Any:
        return self._inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._inner.buffer_updated(nbytes)


def _tracked(inner: asyncio.BaseProtocol, slot: _Slot) -> _Tracked:
    if isinstance(inner, asyncio.BufferedProtocol):
        return _TrackedBuffered(inner, slot)
    return _Tracked(inner, slot)


class Listener:
    """A listening socket whose connections are admitted under `Limits` (see the module)."""

    def __init__(
        self,
        name: str,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        limits: Limits,
        descriptors: Descriptors,
        *,
        refused: _Counter | None = None,
        refusal_bytes: bytes = b"",
        ssl_context: ssl.SSLContext | None = None,
        evict: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self.descriptors = descriptors
        self._factory = protocol_factory
        self._refused = refused
        self._refusal_bytes = refusal_bytes
        self._ssl = ssl_context
        self._evict = evict
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._per_address: dict[str, int] = {}
        self._total = 0
        self._log = RateLimitedLog()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError(f"{self.name} listener is not started")
        return int(self._sock.getsockname()[1])

    @property
    def connections(self) -> int:
        return self._total

    async def start(self, host: str, port: int, backlog: int = 511) -> None:
        """Bind (port 0 picks a free one) and start accepting."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if worker_role.reuse_port():  # ADAPTER_WORKERS=N: the workers share the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._task = asyncio.create_task(self._accept_loop(sock))

    async def close(self) -> None:
        """Stop accepting (connections already admitted go on) and close the socket."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sock is not None:
            self._sock.close()
        for pending in list(self._handshakes):
            pending.cancel()

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_MIN_S
        while True:
            try:
                client, address = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED...
                error = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
                self._log.warning(
                    "listener.accept_failed",
                    error,
                    listener=self.name,
                    error=error,
                    backoff_s=backoff,
                )
                self._count_refusal("accept_failed")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            self._admit(client, str(address[0]) if address else "?")

    def _admit(self, client: socket.socket, host: str) -> None:
        reason = self._refusal(host)
        if reason:
            self._refuse(client, reason)
            return
        self._per_address[host] = self._per_address.get(host, 0) + 1
        self._total += 1
        self.descriptors.opened()
        slot = _Slot(self, host)
        task = asyncio.create_task(self._connect(client, slot))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def _refusal(self, host: str) -> str:
        limits = self.limits
        if limits.max_connections and self._total >= limits.max_connections:
            return "max_connections"
        if limits.max_per_address and self._per_address.get(host, 0) >= limits.max_per_address:
            return "max_per_address"
        if limits.fd_reserve and self.descriptors.free(limits.fd_reserve) < limits.fd_reserve:
            if self._evict is not None and self._evict():
                self._count_refusal("evicted_idle")
                return ""
            return "fd_reserve"
        return ""

    def _refuse(self, client: socket.socket, reason: str) -> None:
        """Answer (HTTP: a canned 503) and close at once; counted, logged once per interval."""
        if self._refusal_bytes:
            with contextlib.suppress(OSError):
                client.send(self._refusal_bytes)
        client.close()
        self._count_refusal(reason)
        self._log.warning("listener.refused", reason, listener=self.name, reason=reason)

    def _count_refusal(self, reason: str) -> None:
        if self._refused is not None:
            self._refused.labels(self.name, reason).inc()

    async def _connect(self, client: socket.socket, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _tracked(self._factory(), slot),
                client,
                ssl=self._ssl,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self._ssl else None,
            )
        except (OSError, ssl.SSLError, asyncio.CancelledError, TimeoutError) as exc:
            slot.release()
            with contextlib.suppress(OSError):
                client.close()
            if not isinstance(exc, asyncio.CancelledError):
                error = type(exc).__name__
                self._log.warning(
                    "listener.handshake_failed", error, listener=self.name, error=error
                )

    def _release(self, host: str) -> None:
        self._total -= 1
        self.descriptors.closed()
        left = self._per_address.get(host, 1) - 1
        if left:
            self._per_address[host] = left
        else:
            self._per_address.pop(host, None)
