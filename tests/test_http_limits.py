"""The HTTP API under a slow or greedy peer, served as `charge-adapter serve` serves it.

Each limit on a real socket (`serving.start_site`, the same site `serve` runs), and what the
peer sees: a request head that trickles is cut at the header deadline; a body at the body
deadline (408, closed); bodies past the shared budget get 503 with Retry-After, unread;
auth is refused before any body byte is read; a connection over the per-address cap or
below the descriptor reserve reads a canned 503; no response names a version in `Server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from adapter.config import Settings
from adapter.listeners.accept import Descriptors
from adapter.web.app import create_app
from adapter.web.bodies import BODY_LIMITS
from adapter.web.serving import EVICT_IDLE_S, HTTP_RESERVE_SHARE, start_site
from adapter.web.state import STATE
from tests.mllp_client import hl7_message
from tests.service_fixtures import HL7_TYPE, Clock, make_settings

HOST = "127.0.0.1"
TOKEN = "writer-token-0123456789"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[web.Application, int]]:
    app = create_app(settings, Clock())
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = await start_site(runner, settings, None)
        yield app, site.port
    finally:
        await runner.cleanup()


def hits(app: web.Application, limit: str) -> float:
    value = app[STATE].metrics.registry.get_sample_value(
        "adapter_limits_hit_total", {"listener": "http", "limit": limit}
    )
    return value or 0.0


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """One response: its head, and as many body bytes as its Content-Length says."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await asyncio.wait_for(reader.readexactly(length), timeout)


async def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Write a raw request, read its response."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request)
    await writer.drain()
    try:
        return await read_response(reader, timeout)
    finally:
        writer.close()


def post_hl7_head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /hl7 HTTP/1.1\r\nHost: x\r\nContent-Type: {HL7_TYPE}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def test_no_response_names_a_version_in_the_server_header(tmp_path: Path) -> None:
    async with serving(make_settings(tmp_path)) as (_, port):
        for request in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
        ):
            answer = await exchange(port, request)
            assert b"\r\nServer: charge-adapter\r\n" in answer
            assert b"aiohttp" not in answer and b"Python" not in answer


async def test_a_request_head_that_trickles_is_cut_at_the_header_deadline(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, http_header_timeout_seconds=0.5)
    async with serving(settings) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        started = time.monotonic()
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.02)
                if reader.at_eof():
                    break
        except ConnectionError:
            pass
        with contextlib.suppress(ConnectionResetError):  # written to after the server's FIN
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 3.0
        writer.close()


async def test_a_body_that_trickles_is_answered_408_at_the_body_deadline(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, http_body_timeout_seconds=0.5)
    async with serving(settings) as (app, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        started = time.monotonic()
        writer.write(post_hl7_head(5000) + b"MSH|")
        await writer.drain()
        answer = await read_response(reader)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b'"code":"timeout"' in answer
        assert 0.4 < time.monotonic() - started < 3.0
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection closed
        assert hits(app, "body_timeout") == 1
        assert app[BODY_LIMITS].budget.used == 0
        writer.close()


async def test_bodies_past_the_budget_are_answered_503_unread_and_the_budget_comes_back(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path, http_max_body_bytes=4000, http_body_budget_bytes=6000,
        http_body_timeout_seconds=5.0,
    )  # fmt: skip
    message = hl7_message("BODY1")
    async with serving(settings) as (app, port):
        _slow_reader, slow_writer = await asyncio.open_connection(HOST, port)
        slow_writer.write(post_hl7_head(4000) + b"MSH|")  # holds 4000 of the 6000
        await slow_writer.drain()
        await asyncio.sleep(0.2)
        answer = await exchange(port, post_hl7_head(3000, "Connection: close\r\n"))
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
        assert hits(app, "body_budget") == 1
        slow_writer.close()
        await asyncio.sleep(0.2)
        assert app[BODY_LIMITS].budget.used == 0
        request = post_hl7_head(len(message), "Connection: close\r\n") + message
        answer = await exchange(port, request)
        assert answer.startswith(b"HTTP/1.1 200") and b"MSA|AA|BODY1" in answer


async def test_auth_is_refused_before_a_body_byte_is_read(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_tokens=f"feed:{TOKEN}", http_body_timeout_seconds=30)
    async with serving(settings) as (app, port):
        started = time.monotonic()
        answer = await exchange(port, post_hl7_head(5_000_000))  # and no body at all
        assert answer.startswith(b"HTTP/1.1 401")
        assert time.monotonic() - started < 2
        assert app[BODY_LIMITS].budget.used == 0


async def _held(port: int, count: int) -> list[Any]:
    return [await asyncio.open_connection(HOST, port) for _ in range(count)]


async def test_a_connection_over_the_per_address_cap_reads_a_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, http_max_connections_per_address=2)
    async with serving(settings) as (app, port):
        held = await _held(port, 2)
        await asyncio.sleep(0.1)
        answer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer
        assert b"\r\nServer: charge-adapter\r\n" in answer
        assert hits(app, "max_per_address") == 1
        held[0][1].close()
        await asyncio.sleep(0.1)
        answer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        for _, writer in held[1:]:
            writer.close()


async def test_below_the_descriptor_reserve_http_reads_a_503(tmp_path: Path) -> None:
    reserve = (Descriptors().limit + 1) * HTTP_RESERVE_SHARE
    async with serving(make_settings(tmp_path, fd_reserve=reserve)) as (app, port):
        answer = await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503")
        assert hits(app, "fd_reserve") == 1


async def test_below_the_reserve_the_longest_silent_connection_makes_room_for_a_probe(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    app = create_app(settings, Clock())
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = await start_site(runner, settings, None)
        silent_reader, silent_writer = await asyncio.open_connection(HOST, site.port)
        silent_writer.write(b"GET /healthz HTTP/1.1\r\n")  # half a head, then nothing
        await silent_writer.drain()
        await asyncio.sleep(EVICT_IDLE_S + 0.3)
        listener = site.listener
        assert listener is not None
        listener.limits = replace(listener.limits, fd_reserve=(Descriptors().limit + 1) * 4)
        answer = await exchange(site.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")  # the probe got in ...
        assert await asyncio.wait_for(silent_reader.read(), 5) == b""  # ... in its place
        assert hits(app, "evicted_idle") == 1
        answer = await exchange(site.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503")  # nobody silent is left to make room
        silent_writer.close()
    finally:
        await runner.cleanup()


async def test_a_peer_sending_garbage_in_a_loop_gets_400s_and_at_most_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(make_settings(tmp_path)) as (_, port):
        with structlog.testing.capture_logs() as logged, caplog.at_level(logging.DEBUG):
            for _ in range(20):
                answer = await exchange(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
                assert answer.startswith(b"HTTP/1.0 400")
    errors = [entry for entry in logged if entry["event"] == "http.request_error"]
    assert len(errors) <= 1  # 0 when another test logged one within the interval
    assert not [record for record in caplog.records if record.name.startswith("aiohttp")]
