"""Which acknowledgement a message gets, in original and enhanced mode (HL7 table 0155)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapter.core.model import SegmentLocation
from adapter.errors import UnreadableHl7
from adapter.hl7.msh import read_msa
from adapter.hl7_answers import ack_for, internal_error
from adapter.usecases.ingest import Hl7Result

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def message(accept: str = "", app: str = "") -> bytes:
    return (
        f"MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|M1|P|2.5.1|||{accept}|{app}\r"
        "PID|1||M1^^^H^MR\r"
    ).encode()


def codes(result: object) -> list[str]:
    acks = [result.ack, *result.more_acks] if result.ack else []  # type: ignore[attr-defined]
    return [read_msa(a)[0] for a in acks]


@pytest.mark.parametrize(
    ("accept", "app", "outcome", "expected"),
    [
        ("", "", "AA", ["AA"]),
        ("", "", "AE", ["AE"]),
        ("AL", "NE", "AA", ["CA"]),
        ("AL", "AL", "AA", ["CA", "AA"]),
        ("NE", "AL", "AA", ["AA"]),
        ("ER", "NE", "AA", []),
        ("ER", "NE", "AE", ["CE"]),
        ("SU", "NE", "AE", []),
        ("AL", "ER", "AE", ["CE", "AE"]),
    ],
)
def test_acknowledgement_follows_msh15_msh16(
    accept: str, app: str, outcome: str, expected: list[str]
) -> None:
    rejection = (
        None
        if outcome == "AA"
        else UnreadableHl7("bad timestamp", at=SegmentLocation("RXA", 1, 3), location="RXA-3")
    )
    result = ack_for(message(accept, app), Hl7Result("M1", False, rejection), NOW)
    assert codes(result) == expected
    assert result.ack_code == (read_msa(result.ack)[0] if result.ack else None)


@pytest.mark.parametrize(
    ("accept", "expected"), [("", ["AE"]), ("AL", ["CE"]), ("NE", []), ("SU", [])]
)
def test_store_failure_answers_ae_207_in_the_senders_mode(accept: str, expected: list[str]) -> None:
    result = internal_error(message(accept, "NE" if accept else ""), NOW)
    assert codes(result) == expected
    if expected:
        assert "|207" in result.ack.decode()  # type: ignore[union-attr]
