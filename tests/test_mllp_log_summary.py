"""MLLP logs: a refused message gets its own info line, accepted ones a periodic summary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from adapter.hl7.ack import AckCode, AckError, build_ack
from adapter.hl7.msh import read_msh
from adapter.hl7_answers import HandlerResult
from adapter.listeners.mllp import MllpServer, PeerInfo
from adapter.logs import configure
from tests.mllp_client import hl7_message, send_messages

HOST = "127.0.0.1"
NOW = datetime(2025, 3, 14, 20, 15, 2, tzinfo=UTC)


async def refuse_bad(payload: bytes, peer: PeerInfo) -> HandlerResult:
    """AE for a control id starting with BAD, AA for the others (the project's ACK builder)."""
    bad = b"|BAD" in payload
    code = AckCode.AE if bad else AckCode.AA
    error = AckError("102", "bad field") if bad else None
    ack = build_ack(payload, code, error=error, now=NOW, control_id="ACK1")
    msh = read_msh(payload)
    return HandlerResult(ack, code, msh.loggable_control_id if msh else "")


@pytest.fixture
def info_level() -> Iterator[None]:
    """Logs configured as `serve` does at its default level (info), debug again after."""
    configure("json", "info")
    yield
    configure("json", "debug")


@pytest.fixture
async def server() -> AsyncIterator[MllpServer]:
    mllp = MllpServer(refuse_bad, summary_seconds=3600.0)
    await mllp.start(HOST, 0)
    yield mllp
    await mllp.stop(1.0)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_at_info_an_accepted_message_has_no_line_of_its_own_and_a_refused_one_has(
    info_level: None, server: MllpServer
) -> None:
    with structlog.testing.capture_logs() as logs:
        messages = [hl7_message("OK1"), hl7_message("BAD1"), hl7_message("OK2")]
        await send_messages(HOST, server.port, messages)
        await asyncio.sleep(0.05)
    lines = events(logs, "mllp.message")
    assert [(e["control_id"], e["ack_code"], e["log_level"]) for e in lines] == [
        ("BAD1", "AE", "info")
    ]


async def test_at_debug_every_message_keeps_its_line(server: MllpServer) -> None:
    with structlog.testing.capture_logs() as logs:
        await send_messages(HOST, server.port, [hl7_message("OK1"), hl7_message("BAD1")])
        await asyncio.sleep(0.05)
    lines = events(logs, "mllp.message")
    assert [(e["control_id"], e["log_level"]) for e in lines] == [
        ("OK1", "debug"),
        ("BAD1", "info"),
    ]


async def test_stop_logs_a_summary_of_what_was_answered(info_level: None) -> None:
    mllp = MllpServer(refuse_bad, summary_seconds=3600.0)
    await mllp.start(HOST, 0)
    messages = [hl7_message("OK1"), hl7_message("OK2"), hl7_message("BAD1")]
    with structlog.testing.capture_logs() as logs:
        await send_messages(HOST, mllp.port, messages)
        await mllp.stop(1.0)
    (summary,) = events(logs, "mllp.summary")
    assert summary["messages"] == 3
    assert summary["ack_codes"] == {"AA": 2, "AE": 1}
    assert summary["bytes"] == sum(len(m) for m in messages)
    assert 0 <= summary["latency_ms_mean"] <= summary["latency_ms_max"]
    assert summary["log_level"] == "info"


async def test_a_summary_line_comes_once_its_period_has_passed(info_level: None) -> None:
    mllp = MllpServer(refuse_bad, summary_seconds=0.2)
    await mllp.start(HOST, 0)
    try:
        with structlog.testing.capture_logs() as logs:
            await send_messages(HOST, mllp.port, [hl7_message("OK1")])
            await asyncio.sleep(0.25)
            await send_messages(HOST, mllp.port, [hl7_message("OK2")])
        (summary,) = events(logs, "mllp.summary")
        assert summary["messages"] == 2 and summary["ack_codes"] == {"AA": 2}
    finally:
        await mllp.stop(1.0)


async def test_no_summary_without_traffic(info_level: None) -> None:
    mllp = MllpServer(refuse_bad, summary_seconds=3600.0)
    await mllp.start(HOST, 0)
    with structlog.testing.capture_logs() as logs:
        await mllp.stop(1.0)
    assert events(logs, "mllp.summary") == []


def test_the_summary_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MllpServer(refuse_bad, summary_seconds=0)
