"""The error tree at its edges: each error answered from its typed disposition, once.

MLLP: a refusal becomes its ACK code (AE/AR, CE/CR in enhanced mode) with ERR-3 from its
table 0357 code and ERR-2 from its `SegmentLocation`, over a real socket. HTTP: any
`AdapterError` a handler raises leaves as an OperationOutcome with its disposition's status.
The tree itself: every error has an ACK code, a status and an exit code, and every HL7
refusal kept as a dead letter has the worklist's code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapter.core.model import SegmentLocation
from adapter.core.refusals import RefusalReason
from adapter.errors import (
    EXIT_CONFIG,
    EXIT_STARTUP,
    AdapterError,
    HandlerFailed,
    Hl7Refused,
    IngestFailed,
    NoHl7Message,
    ReceiverBusy,
    SettingsError,
    SeveralHl7Messages,
    UnreadableHl7,
    UnsupportedHl7Type,
    UnsupportedHl7Version,
)
from adapter.hl7.ack import AckCode
from adapter.hl7.er7 import parse_message, split_messages
from adapter.hl7.msh import read_msa, read_msh
from adapter.hl7_answers import HandlerResult, ack_for
from adapter.listeners.mllp import MllpServer, PeerInfo
from adapter.usecases.ingest import Hl7Result
from adapter.web.outcome import error_middleware
from tests.mllp_client import send_messages

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
HOST = "127.0.0.1"
ORIGINAL = "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|{cid}|P|2.5.1"
ENHANCED = ORIGINAL + "|||AL|NE"


def _all_errors() -> Iterator[type[AdapterError]]:
    stack: list[type[AdapterError]] = [AdapterError]
    while stack:
        cls = stack.pop()
        yield cls
        stack.extend(cls.__subclasses__())


def _message(template: str, cid: str) -> bytes:
    return (template.format(cid=cid) + "\rPID|1||M1^^^H^MR\r").encode()


def _err(ack: bytes) -> tuple[str, str]:
    """(ERR-2, ERR-3.1) of a v2.5 ACK."""
    segment = parse_message(split_messages(ack.decode())[0].lines).first("ERR")
    assert segment is not None
    return segment.raw(2), segment.get(3, 1)


REFUSALS = [
    pytest.param(
        UnreadableHl7("bad timestamp", at=SegmentLocation("RXA", 2, 3)),
        AckCode.AE, "102", "RXA^2^3", id="unreadable",
    ),
    pytest.param(
        UnsupportedHl7Type("unsupported message type MDM^T02", at=SegmentLocation("MSH", 1, 9)),
        AckCode.AR, "200", "MSH^1^9", id="unsupported-type",
    ),
    pytest.param(
        UnsupportedHl7Version("unsupported version", at=SegmentLocation("MSH", 1, 12)),
        AckCode.AR, "203", "MSH^1^12", id="unsupported-version",
    ),
    pytest.param(NoHl7Message("no message"), AckCode.AR, "100", "", id="no-message"),
    pytest.param(
        SeveralHl7Messages("2 messages in one frame", at=SegmentLocation("MSH", 2)),
        AckCode.AR, "100", "MSH^2", id="several",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("refusal", "code", "err3", "err2"), REFUSALS)
@pytest.mark.parametrize("template", [ORIGINAL, ENHANCED], ids=["original", "enhanced"])
async def test_an_hl7_refusal_is_answered_over_mllp_from_its_disposition_and_location(
    refusal: Hl7Refused, code: AckCode, err3: str, err2: str, template: str
) -> None:
    async def refuse(payload: bytes, peer: PeerInfo) -> HandlerResult:
        msh = read_msh(payload)
        return ack_for(payload, Hl7Result(msh.control_id if msh else "", False, refusal), NOW)

    server = MllpServer(refuse, clock=lambda: NOW)
    await server.start(HOST, 0)
    try:
        (ack,) = await send_messages(HOST, server.port, [_message(template, "R1")])
    finally:
        await server.stop(1.0)
    expected = code.accept if template == ENHANCED else code
    assert read_msa(ack) == (expected.value, "R1")
    assert _err(ack) == (err2, err3)


@pytest.mark.parametrize(
    "error",
    [
        IngestFailed("message could not be stored; resend later"),
        ReceiverBusy("receiver busy"),
        HandlerFailed("internal error; resend later"),
        SettingsError("ADAPTER_X: not a number"),
        UnsupportedHl7Type("unsupported message type"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_an_error_raised_in_a_route_is_an_operation_outcome_with_its_status(
    error: AdapterError,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app, host=HOST)) as client:
        response = await client.get("/x")
        body: dict[str, Any] = await response.json(content_type=None)
    assert response.status == error.disposition.http_status
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == error.message


@pytest.mark.parametrize("cls", list(_all_errors()), ids=lambda c: c.__name__)
def test_every_error_of_the_tree_says_what_each_edge_does(cls: type[AdapterError]) -> None:
    disposition = cls.DISPOSITION
    assert disposition.ack in (AckCode.AE, AckCode.AR)  # the builder picks CE/CR itself
    assert 200 <= disposition.http_status < 600
    assert disposition.exit_code in (1, EXIT_CONFIG, EXIT_STARTUP)


@pytest.mark.parametrize(
    "cls",
    [c for c in _all_errors() if issubclass(c, Hl7Refused)],
    ids=lambda c: c.__name__,
)
def test_every_hl7_refusal_is_a_dead_letter_with_a_worklist_code(cls: type[Hl7Refused]) -> None:
    refusal = cls("text", at=SegmentLocation("RXA", 1, 3))
    assert cls.DISPOSITION.dead_letter
    assert refusal.refusal.reason in RefusalReason
    assert refusal.refusal.location == "RXA #1 field RXA-3"
    assert refusal.err_code in {"100", "102", "200", "203"}


def test_a_settings_error_is_still_a_value_error_and_exits_as_a_configuration_error() -> None:
    """Callers that catch ValueError (argument parsing) keep working."""
    error = SettingsError("ADAPTER_X: not a number")
    assert isinstance(error, ValueError)
    assert error.disposition.exit_code == EXIT_CONFIG
    assert str(error) == error.message
