"""The ingest hot path's check (`check_hl7_frame`) against the full reader (`read_hl7`).

The check may send any frame to the full reader (None), but a frame it vouches for must be
one the reader accepts, with the same keys, patient and encounter links: otherwise a
message would be acknowledged AA that the reader refuses, or linked elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.core.mappings import Mappings
from adapter.hl7.ack import AckCode, acks_for
from adapter.hl7.er7 import split_messages
from adapter.hl7.msh import MshInfo, read_msh
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.readers.hl7v2 import read_hl7
from adapter.readers.hl7v2.hot import CheckedMessage, check_hl7_frame
from adapter.usecases.links import checked_links, links_for, patient_key

ROOT = Path(__file__).resolve().parent.parent
NY = ZoneInfo("America/New_York")
MAPPINGS = load_mappings(default_mappings_dir())
CUTOFFS = (None, time(18, 0))
ACK_TIME = datetime(2026, 12, 4, 20, 15, 2, tzinfo=UTC)


def _frames() -> list[bytes]:
    """Every message of the repository's HL7 fixtures, one frame each (CR-separated)."""
    found: list[bytes] = []
    for directory in ("fixtures/scenarios", "fixtures/hl7v2", "fixtures/samples/hl7v2"):
        for path in sorted((ROOT / directory).glob("*.hl7")):
            text = path.read_bytes().decode("latin-1")
            for chunk in split_messages(text):
                found.append("\r".join(chunk.lines).encode("latin-1") + b"\r")
    return found


FRAMES = _frames()
CHECKED = [f for f in FRAMES if check_hl7_frame(f, MAPPINGS, NY) is not None]


def assert_same_as_reader(raw: bytes, mappings: Mappings = MAPPINGS) -> CheckedMessage | None:
    """The check's verdict, asserted to agree with the full reader whenever it vouches."""
    checked = check_hl7_frame(raw, mappings, NY)
    if checked is None:
        return None
    messages = read_hl7(raw, mappings, NY, "mllp", frame=True)
    assert len(messages) == 1
    (full,) = messages
    assert full.error is None, full.error
    assert (full.skip_reason, full.unsupported) == ("", None)
    assert checked.dedup_key == full.dedup_key
    assert checked.control_key == full.control_key
    assert checked.control_id == full.control_id
    assert checked.kind == full.kind
    assert checked.patient_id == patient_key(full.events)
    for cutoff in CUTOFFS:
        assert checked_links(checked, NY, cutoff) == links_for(full.events, NY, cutoff)
    assert _acks(MshInfo(checked.header, "utf-8")) == _acks(read_msh(raw))
    return checked


def _acks(header: MshInfo | None) -> tuple[tuple[AckCode, bytes], ...]:
    """The AA and the AE the service would send for a message with this header (the ACK is
    built from the check's MSH: it must be the one `read_msh` gives from the bytes)."""
    return tuple(
        ack
        for code in (AckCode.AA, AckCode.AE)
        for ack in acks_for(header, code, error=None, now=ACK_TIME, control_ids=lambda: "A1")
    )


def test_the_fixture_visits_are_checked_on_the_hot_path() -> None:
    """ADT and RAS of the scenario visits (what the bench sends) need no full read."""
    scenario = _frames()[: len(list((ROOT / "fixtures/scenarios").glob("*.hl7"))) * 3]
    assert len([f for f in scenario if check_hl7_frame(f, MAPPINGS, NY)]) >= len(scenario) * 0.9


@pytest.mark.parametrize("raw", FRAMES)
def test_a_checked_fixture_message_has_the_full_readers_keys_and_links(raw: bytes) -> None:
    assert_same_as_reader(raw)


RAS = (
    "MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH|20250314161502||RAS^O17^RAS_O17|CTRL0001|P|2.5.1\r"
    "PID|1||E1004417^^^NRH^MR~900112233^^^SSA^SS||SAMPLEPATIENT^AVERY^J||19610422|F\r"
    "PV1|1|O|ONCINF^CHAIR12^^NRH_CC||||||||||||||||HAR0078^^^NRH^VN\r"
    "ORC|RE|ORD1^EPIC|RX1^EPICRX||CM\r"
    "TQ1|1||||||||||||46^min\r"
    "RXA|0|1|20250314093000|20250314100000|00006-3026-02^KEYTRUDA^NDC|200|mg|||||100 mL/h"
    "||||||||CP|A||250|mL\r"
    "RXR|IV^Intravenous\r"
    "RXC|B|0338-0049^NS^NDC|250|mL\r"
    "OBX|1|NM|WASTE^Discarded||20|mg\r"
)


def _with(raw: str, segment: str, field: int, value: str) -> bytes:
    """RAS with one field of the first `segment` replaced (MSH-n is the n-1th piece)."""
    lines = raw.rstrip("\r").split("\r")
    index = field - 1 if segment == "MSH" else field
    for i, line in enumerate(lines):
        if line.startswith(segment + "|"):
            fields = line.split("|")
            fields += [""] * (index + 1 - len(fields))
            fields[index] = value
            lines[i] = "|".join(fields)
            break
    return ("\r".join(lines) + "\r").encode()


def test_a_complete_ras_is_checked_with_its_visit_and_start() -> None:
    checked = assert_same_as_reader(RAS.encode())
    assert checked is not None
    assert (checked.encounter_key, checked.patient_id) == ("visit:HAR0078", "NRH|E1004417")
    assert len(checked.starts) == 1


@pytest.mark.parametrize(
    ("segment", "field", "value"),
    [
        ("RXA", 3, ""),  # start required
        ("RXA", 3, "2025031409300"),  # not a timestamp (odd digits)
        ("RXA", 4, "20251340"),  # month 13
        ("RXA", 6, "-5"),  # negative amount
        ("RXA", 6, "two"),
        ("RXA", 12, "fast"),  # rate is not a number
        ("RXA", 20, "XX"),  # completion status
        ("RXA", 21, "Q"),  # action code
        ("RXA", 23, "1,5"),
        ("RXC", 1, "Z"),  # component type
        ("RXC", 3, "abc"),
        ("TQ1", 13, "x^min"),
        ("OBX", 5, "lots"),  # waste amount
        ("PV1", 19, ""),  # administrations keyed by day: the reader decides
        ("PV1", 44, "2025X"),
        ("PID", 3, ""),
        ("MSH", 9, "ORU^R01"),  # unsupported type
        ("MSH", 12, "2.9"),  # unsupported version
        ("MSH", 10, ""),  # empty control id
        ("MSH", 10, "A^B"),  # implausible header
        ("MSH", 18, "8859/1"),  # a declared character set
    ],
)
def test_a_field_the_reader_may_refuse_goes_to_the_full_reader(
    segment: str, field: int, value: str
) -> None:
    assert check_hl7_frame(_with(RAS, segment, field, value), MAPPINGS, NY) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"PID|1||X\r",  # no MSH
        RAS.encode() + RAS.encode(),  # two messages in one frame
        RAS.replace("Intravenous", "Intraven\xf6s").encode("latin-1"),  # not ASCII
        RAS.replace("NRH_ONC", "NRH\x00ONC").encode(),  # NUL byte
        RAS.replace("PID|", "P!D|").encode(),  # not a segment
    ],
)
def test_a_frame_of_unusual_shape_goes_to_the_full_reader(raw: bytes) -> None:
    assert check_hl7_frame(raw, MAPPINGS, NY) is None


def test_two_counted_discards_go_to_the_full_reader() -> None:
    raw = RAS + "OBX|2|NM|WASTE^Discarded||5|mL\r"
    assert check_hl7_frame(raw.encode(), MAPPINGS, NY) is None


_FIELD_TEXT = st.text(alphabet="0123456789.-+^&~\\ ABCDEFHNRSTXabcdmlgh/", max_size=16)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(min_value=0),
    line=st.integers(min_value=0, max_value=40),
    field=st.integers(min_value=1, max_value=30),
    value=_FIELD_TEXT,
)
def test_a_mutated_checked_message_is_still_read_alike(
    index: int, line: int, field: int, value: str
) -> None:
    """Any one field of any checked message set to odd text: checked alike or not at all."""
    raw = CHECKED[index % len(CHECKED)].decode("ascii")
    lines = raw.rstrip("\r").split("\r")
    target = lines[line % len(lines)]
    fields = target.split("|")
    fields += [""] * (field + 1 - len(fields))
    fields[field] = value
    lines[line % len(lines)] = "|".join(fields)
    assert_same_as_reader(("\r".join(lines) + "\r").encode("ascii"))
