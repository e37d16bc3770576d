"""MLLP: the TCP server that reads frames, calls a handler and writes its ACKs.

Framing is `adapter.hl7.mllp_framing` (sans-I/O): this module only moves bytes between
the socket and the decoder, and enforces the connection limits.

The server knows nothing about message content: the handler builds the ACK
(see `adapter.hl7.ack`). The server answers on its own only when the
handler cannot be asked (oversize frame) or failed (exception), so a sender is
never left waiting without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from adapter.errors import HandlerFailed, OversizeFrame, ReceiverBusy, ServerRefusal
from adapter.hl7.ack import ack_control_id
from adapter.hl7.mllp_framing import (
    DEFAULT_MAX_FRAME_BYTES,
    Item,
    MllpDecoder,
    Oversize,
    encode_frame,
)
from adapter.hl7.msh import MshInfo, read_msh
from adapter.hl7_answers import HandlerResult, refusal_answer
from adapter.listeners.accept import Descriptors, Limits, Listener
from adapter.listeners.connection import (
    Connection,
    FrameBudget,
    PeerInfo,
    complete_header,
    linger,
)
from adapter.listeners.deadlines import Deadline, Sweeper, tick_for
from adapter.listeners.mllp_log import (
    ACCEPTED_CODES,
    SUMMARY_SECONDS,
    MllpSummary,
    log_closed,
    log_message,
)
from adapter.listeners.receive import SharedBufferProtocol

__all__ = [
    "AckMetrics",
    "FrameBudget",
    "Handler",
    "MllpServer",
    "PeerInfo",
]

log = structlog.get_logger()

# --- server ---------------------------------------------------------------------------


Handler = Callable[[bytes, PeerInfo], Awaitable[HandlerResult]]
OversizeKeeper = Callable[["Oversize", PeerInfo], Awaitable[None]]


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class _Incrementer(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _LabelledCounter(Protocol):
    def labels(self, *values: str) -> _Incrementer: ...


class AckMetrics(Protocol):
    """What the server needs of the application's metrics: an ACK latency histogram, and the
    counter of limits hit (`listener`, `limit` labels)."""

    @property
    def ack_latency(self) -> _Observer: ...

    @property
    def limits_hit(self) -> _LabelledCounter: ...


def _local_now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True, slots=True)
class _Reply:
    """What goes back on the wire for one item (None: nothing) and what the log says of it."""

    frame: bytes | None
    ack_code: str
    control_id: str


class MllpServer:
    """An asyncio MLLP listener: per connection, messages are answered in order, one at a time.

    Connections run in parallel, each under limits (docs/security.md): `idle_timeout`
    closes a connection that completed no frame for that long (bytes alone are not
    progress: a sender dribbling a byte a second is cut too); `frame_deadline` closes one
    whose frame did not complete within that many seconds of its start block, however
    the bytes trickle in; `buffer_budget` bounds the unfinished frames of all connections
    together (the connection that would exceed it is answered AR, ERR-3 207, when its MSH
    has come, else closed); `max_connections`, `max_per_address` and `fd_reserve` are
    checked at accept (`adapter.listeners.accept`). `max_frame_bytes` bounds a frame
    (an oversize frame is answered AR, or CR in enhanced mode, ERR-3 207, without
    calling the handler). A handler returns a `HandlerResult` (each ACK with its code).
    `clock` and `control_ids` feed the ACKs the server builds itself;
    `metrics` (optional) observes the frame-to-ACK latency; `keep_oversize`
    (optional) is given each oversize frame's head before it is refused, so the
    refusal leaves a trace an analyst can find (the rest was never buffered).
    Every `summary_seconds` with traffic, and at stop, one `mllp.summary` line
    counts what was answered (accepted messages have no info line of their own).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        idle_timeout: float = 300.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        read_bytes: int = 64 * 1024,
        frame_deadline: float = 30.0,
        buffer_budget: int = 128 * 1024 * 1024,
        max_connections: int = 1000,
        max_per_address: int = 100,
        fd_reserve: int = 64,
        descriptors: Descriptors | None = None,
        on_release: Callable[[int], None] | None = None,
        metrics: AckMetrics | None = None,
        clock: Callable[[], datetime] = _local_now,
        control_ids: Callable[[], str] = ack_control_id,
        keep_oversize: OversizeKeeper | None = None,
        summary_seconds: float = SUMMARY_SECONDS,
        handler_timeout: float | None = None,
    ) -> None:
        if min(max_frame_bytes, read_bytes) < 1 or min(idle_timeout, frame_deadline) <= 0:
            raise ValueError("MLLP limits must be positive")
        if handler_timeout is not None and handler_timeout <= 0:
            raise ValueError("MLLP limits must be positive")
        if summary_seconds <= 0:
            raise ValueError("MLLP limits must be positive")
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.frame_deadline = frame_deadline
        self.budget = FrameBudget(buffer_budget)
        self.limits = Limits(max_connections, max_per_address, fd_reserve)
        self.descriptors = descriptors or Descriptors()
        self.on_release = on_release  # told the bytes of each unfinished frame let go
        self.max_frame_bytes = max_frame_bytes
        self.read_bytes = read_bytes
        self.metrics = metrics
        self.clock = clock
        self.control_ids = control_ids
        self.keep_oversize = keep_oversize
        self._server: Listener | None = None
        self._connections: dict[int, Connection] = {}
        self._sequence = 0
        self._stopping = False
        self.summary_seconds = summary_seconds
        self._summary = MllpSummary(time.perf_counter())
        self._receive = memoryview(bytearray(read_bytes))  # one for every connection
        self.handler_timeout = handler_timeout
        self._sweeper = Sweeper(
            lambda: (c.deadline for c in self._connections.values()),
            tick_for(idle_timeout, frame_deadline, handler_timeout),
        )

    @property
    def port(self) -> int:
        """The bound port (what `start(host, 0)` picked)."""
        if self._server is None:
            raise RuntimeError("MLLP server is not started")
        return self._server.port

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._connections)

    async def start(self, host: str, port: int, *, ssl: ssl.SSLContext | None = None) -> None:
        """Bind and start accepting; port 0 picks a free port (read `.port`).

        With `ssl`, every connection is TLS (the handshake, and client-certificate checks
        for mutual TLS, happen before `_serve` sees the connection).
        """
        if self._server is not None:
            raise RuntimeError("MLLP server already started")
        self._stopping = False
        counter = self.metrics.limits_hit if self.metrics is not None else None
        listener = Listener(
            "mllp", self._protocol, self.limits, self.descriptors, refused=counter, ssl_context=ssl
        )
        await listener.start(host, port)
        self._server = listener
        log.info("mllp.listening", host=host, port=self.port, tls=ssl is not None)

    def _protocol(self) -> asyncio.BaseProtocol:
        """What `asyncio.start_server` builds per connection: a stream pair for `_serve`,
        reading into the server's one receive buffer (`adapter.listeners.receive`)."""
        reader = asyncio.StreamReader(limit=2 * self.read_bytes)
        return SharedBufferProtocol(reader, self._serve, self._receive)

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting; answer messages already received; close every connection.

        Idle connections are closed at once. A connection in the middle of a
        message (handler running, or a frame half received) gets up to
        `grace_seconds` to answer it, then is cut: the sender, unanswered, resends.
        """
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        await server.close()
        for connection in list(self._connections.values()):
            if connection.idle:
                connection.writer.close()  # the pending read returns EOF
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in late:
                task.cancel()
            if late:
                log.warning("mllp.stop_cut", connections=len(late))
                await asyncio.wait(late)
        self._sweeper.stop()
        self._summary.log(time.perf_counter(), 0)
        self._summary = MllpSummary(time.perf_counter())
        log.info("mllp.stopped")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, from accept to close."""
        connection = self._register(writer)
        peer = connection.peer
        reason = "eof"
        log.info("mllp.connected", peer=str(peer), connection=peer.connection)
        try:
            reason = await self._read_loop(reader, connection)
        except (ConnectionError, OSError) as exc:
            reason = type(exc).__name__
        except Exception as exc:  # a bug here: close, and log the type only (no content)
            reason = f"error {type(exc).__name__}"
            log.error("mllp.connection_failed", peer=str(peer), error=type(exc).__name__)
        finally:
            del self._connections[peer.connection]
            self._release(connection)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            log_closed(peer, connection.decoder, reason)
            connection.decoder.abandon()  # its buffers now, not when a GC breaks the task cycle

    def _register(self, writer: asyncio.StreamWriter) -> Connection:
        self._sequence += 1
        address = writer.get_extra_info("peername")
        host, port = (str(address[0]), int(address[1])) if address else ("?", 0)
        peer = PeerInfo(host, port, self._sequence)
        task = asyncio.current_task()
        connection = Connection(
            peer, writer, MllpDecoder(self.max_frame_bytes), task, Deadline(task)
        )
        self._connections[peer.connection] = connection
        self._sweeper.start()
        return connection

    async def _read_loop(self, reader: asyncio.StreamReader, connection: Connection) -> str:
        """Read, decode, answer every complete item in order; returns why it ended.

        Two clocks bound a connection: the last complete frame (`idle_timeout`) and the
        start of the unfinished one (`frame_deadline`); a read waits for the earlier (its
        `Deadline`, which the server's sweeper enforces).
        """
        decoder = connection.decoder
        deadline = connection.deadline
        loop = asyncio.get_running_loop()
        progress = loop.time()
        frame_started: float | None = None
        while not self._stopping or decoder.in_frame:
            idle_at = progress + self.idle_timeout
            frame_at = frame_started + self.frame_deadline if frame_started is not None else idle_at
            if frame_at < idle_at:
                deadline.arm(frame_at, "frame_deadline")
            else:
                deadline.arm(idle_at, "idle")
            connection.reading = True
            try:
                data = await reader.read(self.read_bytes)
            except asyncio.CancelledError:
                if not (reason := deadline.expired()):
                    raise
                return self._limit_hit(reason)
            finally:
                connection.reading = False
                deadline.disarm()
            if not data:
                return "stopping" if self._stopping else "eof"
            items = decoder.feed(data)
            now = loop.time()
            if items:
                progress = now
            if not decoder.in_frame:
                frame_started = None
            elif items or frame_started is None:
                frame_started = now
            within = self._hold(connection)
            for item in items:
                await self._answer(item, connection)
            if not within:
                reason = self._limit_hit("buffer_budget")  # counted before the linger
                await self._refuse_partial(reader, connection)
                return reason
        return "stopping"

    def _hold(self, connection: Connection) -> bool:
        """Count the connection's unfinished frame in the budget; False when that exceeds it."""
        held = connection.decoder.buffered
        within = self.budget.hold(connection.held, held)
        connection.held = held
        return within

    def _release(self, connection: Connection) -> None:
        """The connection's unfinished frame leaves the budget (and, told, the allocator)."""
        held, connection.held = connection.held, 0
        self.budget.hold(held, 0)
        if held and self.on_release is not None:
            self.on_release(held)

    def _limit_hit(self, reason: str) -> str:
        """A limit was hit (a connection cut, or a handler answered late): counted in
        `limits_hit`; returns the reason (the connection's end, when it ends it)."""
        if self.metrics is not None:
            self.metrics.limits_hit.labels("mllp", reason).inc()
        return reason

    async def _refuse_partial(self, reader: asyncio.StreamReader, connection: Connection) -> None:
        """Over the buffer budget: AR (ERR-3 207, resend later) when the MSH has come, so the
        sender knows which message; else nothing (it resends after the close).

        After the AR, the rest of what the sender is still writing is read and dropped for
        a moment (`linger`): closing with unread bytes would reset the connection, and a
        reset can discard the AR before the sender reads it.
        """
        decoder = connection.decoder
        msh = read_msh(complete_header(decoder.head()))
        decoder.abandon()
        self._release(connection)
        if msh is None:
            return
        busy = ReceiverBusy("receiver busy: too many unfinished messages buffered; resend later")
        reply = self._own_reply(msh, busy)
        if reply.frame is not None:
            connection.writer.write(reply.frame)
            await connection.writer.drain()
            await linger(reader, connection.writer)

    async def _answer(self, item: Item, connection: Connection) -> None:
        """Handle one item and write its ACK before the next item is looked at."""
        started = time.perf_counter()
        if isinstance(item, Oversize):
            await self._keep_oversize(item, connection.peer)
            reply = self._oversize_reply(item)
        else:
            reply = await self._handler_reply(item.payload, connection)
        if reply.frame is not None:
            connection.writer.write(reply.frame)
            await connection.writer.drain()
        finished = time.perf_counter()
        elapsed = finished - started
        if self.metrics is not None:
            self.metrics.ack_latency.observe(elapsed)
        size = item.size if isinstance(item, Oversize) else len(item.payload)
        summary = self._summary
        summary.add(reply.ack_code or "-", size, elapsed)
        if reply.ack_code not in ACCEPTED_CODES or log.is_enabled_for(logging.DEBUG):
            log_message(connection.peer, item, reply.ack_code, reply.control_id, size, elapsed)
        if finished - summary.started >= self.summary_seconds:
            summary.log(finished, len(self._connections))
            self._summary = MllpSummary(finished)

    async def _handler_reply(self, payload: bytes, connection: Connection) -> _Reply:
        """The handler's ACK; the server's own AE/207 if it raises, returns an unframeable
        ACK, or has not answered within `handler_timeout` (the store stalled, say: the
        sender resends, and finds the message if it was kept after all)."""
        peer, deadline = connection.peer, connection.deadline
        if self.handler_timeout is not None:
            loop_time = asyncio.get_running_loop().time()
            deadline.arm(loop_time + self.handler_timeout, "handler_timeout")
        try:
            return _reply(await self.handler(payload, peer))
        except asyncio.CancelledError:
            if not deadline.expired():
                raise
            self._limit_hit("handler_timeout")
            log.error("mllp.handler_timeout", peer=str(peer), seconds=self.handler_timeout)
            late = HandlerFailed(f"not answered within {self.handler_timeout:g} s; resend later")
            return self._own_reply(read_msh(payload), late)
        except Exception as exc:
            log.error("mllp.handler_failed", peer=str(peer), error=type(exc).__name__)
            failed = HandlerFailed("internal error; resend later")
            return self._own_reply(read_msh(payload), failed)
        finally:
            deadline.disarm()

    async def _keep_oversize(self, item: Oversize, peer: PeerInfo) -> None:
        """Best effort: the AR goes out whether or not the head could be kept."""
        if self.keep_oversize is None:
            return
        try:
            await self.keep_oversize(item, peer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("mllp.oversize_not_kept", peer=str(peer), error=type(exc).__name__)

    def _oversize_reply(self, item: Oversize) -> _Reply:
        """AR (resending the same bytes cannot succeed); ERR-3 207: table 0357 has no size code."""
        oversize = OversizeFrame(f"message over the {self.max_frame_bytes}-byte limit")
        return self._own_reply(read_msh(item.head), oversize)

    def _own_reply(self, msh: MshInfo | None, error: ServerRefusal) -> _Reply:
        """An ACK the server builds itself, in the mode (original or enhanced) the sender asked."""
        return _reply(refusal_answer(msh, error, self.clock(), self.control_ids))


def _reply(result: HandlerResult) -> _Reply:
    """Frame the handler's ACKs (raises ValueError if one cannot be framed)."""
    acks = [result.ack, *result.more_acks] if result.ack is not None else [*result.more_acks]
    code = result.ack_code or "-"
    if not acks:
        return _Reply(None, code, result.control_id)
    frame = b"".join(encode_frame(ack) for ack in acks)
    return _Reply(frame, code, result.control_id)
