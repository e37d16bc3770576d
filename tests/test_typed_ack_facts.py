"""ACK facts travel typed from where they are found: code, ERR location, unsupported kind.

Before, the ingest path re-read the ERR location from the error text with a regex and chose
AR by `startswith` on the skip reason; a file name or an echoed value that looked like a
location could move ERR-2. These pin the typed path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from adapter.core.model import SegmentLocation, Unsupported
from adapter.core.refusals import RefusalReason
from adapter.hl7.ack import AckCode, acks_for
from adapter.hl7.er7 import Er7Error, parse_message
from adapter.hl7.msh import read_msa, read_msh
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.readers.hl7v2 import read_hl7
from adapter.usecases.ingest import refusal_for

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
NY = ZoneInfo("America/New_York")
MAPPINGS = load_mappings(default_mappings_dir())


def _message(msh9: str = "RAS^O17^RAS_O17", msh10: str = "M1", version: str = "2.5.1") -> str:
    return (
        f"MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||{msh9}|{msh10}|P|{version}\rPID|1||M1^^^H^MR\r"
    )


class TestSegmentLocation:
    @pytest.mark.parametrize(
        ("location", "text"),
        [
            pytest.param(SegmentLocation("RXA", 2, 3), "segment RXA #2 field RXA-3", id="field"),
            pytest.param(SegmentLocation("PID", 1), "segment PID #1", id="segment"),
        ],
    )
    def test_its_text_is_the_form_error_messages_always_used(
        self, location: SegmentLocation, text: str
    ) -> None:
        assert text == str(location)
        assert f"{text}: bad" == str(Er7Error(location, "bad"))

    def test_a_line_that_is_no_segment_has_no_typed_location(self) -> None:
        """ "segment #2" names a position, not a segment: ERR-2 stays empty for it."""
        with pytest.raises(Er7Error) as caught:
            parse_message(["MSH|^~\\&|A|B|C|D|202601150900||ADT^A01|1|P|2.5.1", "not a segment"])
        assert caught.value.at is None
        assert caught.value.where == "segment #2"

    def test_an_invalid_msh2_is_located_at_msh_2(self) -> None:
        with pytest.raises(Er7Error) as caught:
            parse_message(["MSH|^^^^|A"])
        assert SegmentLocation("MSH", 1, 2) == caught.value.at


def test_the_err_location_is_where_the_reader_found_the_fault_not_what_the_text_says() -> None:
    """An origin that reads like a location (a file named after a segment) no longer moves it."""
    origin = "feed segment OBX #7 field OBX-2.hl7"
    messages = read_hl7(_message(msh10=""), MAPPINGS, NY, origin, frame=True)
    assert SegmentLocation("MSH", 1, 10) == messages[0].error.at  # type: ignore[union-attr]
    assert refusal_for("hl7", messages).location == "MSH-10"


@pytest.mark.parametrize(
    ("message", "unsupported", "reason"),
    [
        pytest.param(
            _message(msh9="ZZZ^Z01"),
            Unsupported.MESSAGE_TYPE,
            RefusalReason.UNSUPPORTED_TYPE,
            id="message-type",
        ),
        pytest.param(
            _message(version="9.9"),
            Unsupported.VERSION,
            RefusalReason.UNSUPPORTED_VERSION,
            id="version",
        ),
    ],
)
def test_an_unsupported_message_is_refused_by_its_typed_kind(
    message: str, unsupported: Unsupported, reason: RefusalReason
) -> None:
    read = read_hl7(message, MAPPINGS, NY, frame=True)
    assert unsupported is read[0].unsupported
    assert reason is refusal_for("hl7", read).reason


def test_a_supported_message_carries_no_unsupported_kind() -> None:
    assert None is read_hl7(_message(), MAPPINGS, NY, frame=True)[0].unsupported


class TestAcksFor:
    @pytest.mark.parametrize(
        ("code", "accept"),
        [(AckCode.AA, AckCode.CA), (AckCode.AE, AckCode.CE), (AckCode.AR, AckCode.CR)],
    )
    def test_each_outcome_has_its_enhanced_mode_accept_code(
        self, code: AckCode, accept: AckCode
    ) -> None:
        assert accept is code.accept

    @pytest.mark.parametrize("outcome", [AckCode.AA, AckCode.AE, AckCode.AR])
    @pytest.mark.parametrize(
        ("accept", "app"), [("", ""), ("AL", "AL"), ("AL", "NE"), ("ER", "AL"), ("SU", "ER")]
    )
    def test_the_code_returned_with_each_ack_is_the_code_it_carries(
        self, outcome: AckCode, accept: str, app: str
    ) -> None:
        """Nobody has to parse an ACK we built to learn its code."""
        raw = (_message().split("\r")[0] + f"|||{accept}|{app}\r").encode()
        ids = iter(f"A{n}" for n in range(10))
        acks = acks_for(read_msh(raw), outcome, error=None, now=NOW, control_ids=lambda: next(ids))
        assert [read_msa(ack)[0] for _, ack in acks] == [code.value for code, _ in acks]

    def test_without_a_readable_header_the_ack_says_ar_and_so_does_its_code(self) -> None:
        acks = acks_for(None, AckCode.AE, error=None, now=NOW, control_ids=lambda: "A1")
        assert [code for code, _ in acks] == [AckCode.AR]
        assert read_msa(acks[0][1])[0] == "AR"
