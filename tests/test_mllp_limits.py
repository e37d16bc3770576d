"""MLLP under a hostile or broken peer: each limit, on real sockets, and what the peer sees.

- the frame deadline cuts a frame that trickles in, however steadily;
- the idle timeout needs a complete frame: bytes between frames are not progress;
- the buffer budget bounds the unfinished frames of all connections together: the one that
  would exceed it is answered AR 207 when its MSH has come, else closed; the others go on;
- connection caps (total, per address) and the descriptor reserve close a new connection at
  accept, and a freed slot admits the next one;
- every cut is counted in `adapter_limits_hit_total{listener="mllp",limit=...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from adapter.hl7.ack import AckCode, build_ack
from adapter.hl7.mllp_framing import encode_frame
from adapter.hl7.msh import read_msa, read_msh
from adapter.hl7_answers import HandlerResult
from adapter.listeners.accept import Descriptors
from adapter.listeners.mllp import MllpServer, PeerInfo
from adapter.metrics import Metrics
from tests.mllp_client import connect, hl7_message

HOST = "127.0.0.1"
NOW = datetime(2025, 3, 14, 20, 15, 2, tzinfo=UTC)
_ids = itertools.count(1)
ServerFactory = Callable[..., Awaitable[MllpServer]]


async def accept_all(payload: bytes, peer: PeerInfo) -> HandlerResult:
    ack = build_ack(payload, AckCode.AA, now=NOW, control_id=f"ACK{next(_ids)}")
    msh = read_msh(payload)
    return HandlerResult(ack, AckCode.AA, msh.loggable_control_id if msh else "")


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    servers: list[MllpServer] = []

    async def start(**options: Any) -> MllpServer:
        server = MllpServer(accept_all, metrics=Metrics(), **options)
        await server.start(HOST, 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(1.0)


def hits(server: MllpServer, limit: str) -> float:
    assert isinstance(server.metrics, Metrics)
    value = server.metrics.registry.get_sample_value(
        "adapter_limits_hit_total", {"listener": "mllp", "limit": limit}
    )
    return value or 0.0


async def closed_without_answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the server closed the connection and sent nothing (a reset is a close: the
    client may have written after the server's FIN)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionResetError:
        return True


async def test_a_frame_dripped_a_byte_at_a_time_is_cut_at_the_frame_deadline(
    start_server: ServerFactory,
) -> None:
    server = await start_server(frame_deadline=0.5, idle_timeout=60)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    started = time.monotonic()
    frame = encode_frame(hl7_message("DRIP1"))
    try:
        for byte in frame[:-2]:  # never the end block: a sender that trickles forever
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)
            if reader.at_eof() or time.monotonic() - started > 8:
                break
    except ConnectionError:
        pass
    assert await closed_without_answer(reader)
    assert 0.4 < time.monotonic() - started < 3.0  # a loaded CI machine is slow, never 8 s
    assert hits(server, "frame_deadline") == 1
    writer.close()


async def test_the_idle_timeout_needs_a_complete_frame_not_a_byte(
    start_server: ServerFactory,
) -> None:
    server = await start_server(idle_timeout=0.5, frame_deadline=60)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    started = time.monotonic()
    try:
        for _ in range(400):  # a CR every 20 ms between frames (8 s): bytes, never a frame
            writer.write(b"\r")
            await writer.drain()
            await asyncio.sleep(0.02)
            if reader.at_eof():
                break
    except ConnectionError:
        pass
    assert await closed_without_answer(reader)
    assert time.monotonic() - started < 3.0
    assert hits(server, "idle") == 1
    writer.close()


async def test_complete_frames_keep_a_connection_past_the_idle_timeout(
    start_server: ServerFactory,
) -> None:
    server = await start_server(idle_timeout=0.4)
    async with connect(HOST, server.port) as client:
        for n in range(6):  # 6 x 0.15 s: longer than the idle timeout, a frame each time
            await client.send(hl7_message(f"KEEP{n}"))
            assert read_msa(await client.read_ack())[0] == "AA"
            await asyncio.sleep(0.15)


async def test_past_the_buffer_budget_the_connection_that_exceeds_it_is_answered_ar(
    start_server: ServerFactory,
) -> None:
    server = await start_server(buffer_budget=100_000, max_frame_bytes=1_000_000)
    first, second = hl7_message("BUDGET1", filler=70_000), hl7_message("BUDGET2", filler=70_000)
    r1, w1 = await asyncio.open_connection(HOST, server.port)
    w1.write(encode_frame(first)[:60_000])
    await w1.drain()
    await asyncio.sleep(0.2)
    r2, w2 = await asyncio.open_connection(HOST, server.port)
    w2.write(encode_frame(second)[:60_000])  # 120 kB unfinished in all: over 100 kB
    await w2.drain()
    ack = await asyncio.wait_for(r2.readuntil(b"\x1c\r"), 5)
    assert read_msa(ack[1:-2]) == ("AR", "BUDGET2")
    assert b"|207" in ack
    assert await closed_without_answer(r2)
    w1.write(encode_frame(first)[60_000:])  # the first sender is not hurt
    await w1.drain()
    ack = await asyncio.wait_for(r1.readuntil(b"\x1c\r"), 5)
    assert read_msa(ack[1:-2]) == ("AA", "BUDGET1")
    assert hits(server, "buffer_budget") == 1
    assert server.budget.used == 0
    for writer in (w1, w2):
        writer.close()


async def test_past_the_buffer_budget_a_frame_without_its_header_yet_is_closed(
    start_server: ServerFactory,
) -> None:
    server = await start_server(buffer_budget=50_000)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"\x0b" + b"x" * 60_000)  # no MSH: nothing to answer
    await writer.drain()
    assert await closed_without_answer(reader)
    assert hits(server, "buffer_budget") == 1
    writer.close()


async def _open(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection(HOST, port) for _ in range(count)]


async def _usable(port: int, control_id: str) -> bool:
    async with connect(HOST, port) as client:
        await client.send(hl7_message(control_id))
        return read_msa(await client.read_ack())[0] == "AA"


@pytest.mark.parametrize(
    ("options", "limit"),
    [({"max_per_address": 3}, "max_per_address"), ({"max_connections": 3}, "max_connections")],
)
async def test_a_connection_over_a_cap_is_closed_at_once_and_a_freed_slot_admits_the_next(
    start_server: ServerFactory, options: dict[str, int], limit: str
) -> None:
    server = await start_server(**options)
    held = await _open(server.port, 3)
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    assert await closed_without_answer(reader)
    assert hits(server, limit) == 1
    writer.close()
    held[0][1].close()
    await asyncio.sleep(0.1)
    assert await _usable(server.port, "FREED1")
    for _, held_writer in held[1:]:
        held_writer.close()


async def test_below_the_descriptor_reserve_a_new_connection_is_closed(
    start_server: ServerFactory,
) -> None:
    descriptors = Descriptors()
    server = await start_server(fd_reserve=descriptors.limit + 1, descriptors=descriptors)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    assert await closed_without_answer(reader)
    assert hits(server, "fd_reserve") == 1
    writer.close()


def test_the_descriptor_count_follows_connections_opened_and_closed() -> None:
    descriptors = Descriptors()
    before = descriptors.free(0)
    assert 0 < before <= descriptors.limit
    descriptors.opened()
    assert descriptors.free(0) in (before - 1, before)  # recounted or estimated


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_accept_failures_back_off_and_are_logged_once_with_a_count(
    start_server: ServerFactory,
) -> None:
    """Out of descriptors, accept() fails (EMFILE) at every try: one log line, a count in the
    metric, no traceback; once descriptors are back, the waiting client is served."""
    server = await start_server(fd_reserve=0)
    clients = [socket.socket() for _ in range(2)]  # made before the limit falls: connect needs none
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with structlog.testing.capture_logs() as logged:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) - 1, hard))
        try:
            for client in clients:
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    client.connect((HOST, server.port))
            await asyncio.sleep(0.6)  # 10 ms doubling: several failed accepts
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    failed = [entry for entry in logged if entry["event"] == "listener.accept_failed"]
    assert len(failed) == 1 and failed[0]["error"] == "EMFILE"
    assert hits(server, "accept_failed") >= 3
    reader, writer = await asyncio.open_connection(sock=clients[0])
    writer.write(encode_frame(hl7_message("BACK1")))
    ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
    assert read_msa(ack[1:-2]) == ("AA", "BACK1")
    writer.close()
    clients[1].close()
