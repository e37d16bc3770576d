"""The ACK template gives the bytes the field-by-field builder gave, for any header.

`ack_from_header` fills a template cached per sender header (MSH-1..6, 9, 11, 12, 18, the
charset) with MSH-7, MSH-10, MSA-1/2 and ERR; `tests/ack_support.py:reference_ack` is the
builder as it was before. Generated headers carry delimiters of their own, escapes,
latin-1 bytes, every version shape, MSH-15/16 (enhanced mode) and errors located anywhere;
each header is answered twice with other MSH-7/MSH-10/MSA-2, so the second is a cache hit.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapter.core.model import SegmentLocation
from adapter.hl7.ack import AckCode, AckError, ack_from_header, acks_for, build_ack
from adapter.hl7.msh import read_msh
from tests.ack_support import reference_ack

DELIMITERS = "|^~\\&#$*!@%"
TEXT = st.text(  # header fields: a break here would end the header line
    alphabet=st.sampled_from([*DELIMITERS, "A", "z", "0", "7", " ", "\xd4", "é"]), max_size=12
)
OUR_TEXT = st.text(  # what we add (ERR-8, MSA-3, our MSH-10): breaks are flattened
    alphabet=st.sampled_from([*DELIMITERS, "A", "0", " ", "é", "\r", "\n", "\x0b", "\x1c"]),
    max_size=12,
)
VERSIONS = st.sampled_from(
    ["", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.7", "2.8.2", "2.5.1^USA", "v2", "x", " 2.4"]
)
CONDITIONS = st.sampled_from(["", "AL", "NE", "ER", "SU", " al", "XX"])
# fixed offsets, naive, and a zone with folds
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-4)), None]) | st.sampled_from(
    [timezone(timedelta(hours=5, minutes=30)), ZoneInfo("America/New_York")]
)
NOWS = st.builds(
    lambda when, zone, fold: when.replace(tzinfo=zone, fold=fold),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    ZONES,
    st.integers(0, 1),
)
LOCATIONS = st.none() | st.builds(
    SegmentLocation,
    st.sampled_from(["", "MSH", "RXA", "P|D", "O^X"]),
    st.integers(0, 3),
    st.integers(0, 30),
    st.integers(0, 2),
    st.integers(0, 3),
    st.integers(0, 2),
)
ERRORS = st.none() | st.builds(
    AckError,
    st.sampled_from(["100", "101", "207", "999", "1^2"]),
    OUR_TEXT,
    LOCATIONS,
    st.sampled_from(["E", "W", "I"]),
)
CONTROL_IDS = st.sampled_from(["0a1b2c3d000000000001", "A#1", "X|Y", "\\E\\", ""]) | OUR_TEXT


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Two header lines alike in what an ACK copies, unlike in MSH-7, MSH-8 and MSH-10."""
    fs = draw(st.sampled_from("|#!@"))
    msh2 = draw(
        st.sampled_from(["^~\\&"] * 4 + ["$~\\&", "^~\\&#", "^~&\\", "^~", "^~\\&#%", "^^\\&"])
    )
    fields = {n: draw(TEXT) for n in (3, 4, 5, 6, 11)}
    fields[9] = draw(st.sampled_from(["RAS^O17^RAS_O17", "ADT^A04", "ACK", "", "RAS$O17"]))
    fields[12] = draw(VERSIONS)
    fields[15], fields[16] = draw(CONDITIONS), draw(CONDITIONS)
    fields[18] = draw(st.sampled_from(["", "", "UNICODE UTF-8", "8859/1", "ASCII"]))
    last = draw(st.sampled_from([9, 10, 12, 14, 15, 16, 16, 18, 18, 18]))
    latin = draw(st.booleans())

    def line(when: str, security: str, control_id: str) -> bytes:
        values = {**fields, 7: when, 8: security, 10: control_id}
        text = fs.join(["MSH", msh2, *(values.get(n, "") for n in range(3, last + 1))])
        return text.encode("latin-1" if latin else "utf-8", errors="replace") + b"\rPID|1\r"

    return (
        line(draw(TEXT), draw(TEXT), draw(TEXT)),
        line(draw(TEXT), draw(TEXT), draw(TEXT)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=headers(),
    code=st.sampled_from(list(AckCode)),
    error=ERRORS,
    nows=st.tuples(NOWS, NOWS),
    control_id=CONTROL_IDS,
)
@example(
    pair=(b"MSH|^~\\&|A|B|C|D|20250101||RAS^O17|M1|P|2.5.1\r",) * 2,
    code=AckCode.AE,
    error=AckError("101", "start time missing", SegmentLocation("RXA", 2, 3)),
    nows=(datetime(2025, 11, 2, 1, 30, tzinfo=ZoneInfo("America/New_York")),) * 2,
    control_id="ACK1",
)
def test_the_template_gives_the_builders_bytes(
    pair: tuple[bytes, bytes],
    code: AckCode,
    error: AckError | None,
    nows: tuple[datetime, datetime],
    control_id: str,
) -> None:
    for message, now in zip(pair, nows, strict=True):
        msh = read_msh(message)
        kwargs = {"error": error, "now": now, "control_id": control_id}
        expected = reference_ack(msh, code, **kwargs)  # type: ignore[arg-type]
        assert ack_from_header(msh, code, **kwargs) == expected  # type: ignore[arg-type]
        assert build_ack(message, code, **kwargs) == expected  # type: ignore[arg-type]
        # the same instant in another zone, and one microsecond on: the timestamp memo
        for other in (now.astimezone(UTC), now + timedelta(microseconds=1)):
            again = {**kwargs, "now": other}
            assert ack_from_header(msh, code, **again) == reference_ack(msh, code, **again)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    pair=headers(),
    outcome=st.sampled_from([AckCode.AA, AckCode.AE, AckCode.AR]),
    error=ERRORS,
    now=NOWS,
)
def test_original_and_enhanced_mode_acks_are_the_builders(
    pair: tuple[bytes, bytes], outcome: AckCode, error: AckError | None, now: datetime
) -> None:
    """`acks_for` (one ACK in original mode, accept and application ACKs in enhanced mode)."""
    for message in pair:
        msh = read_msh(message)
        ids = map("ID{}".format, itertools.count(1))
        acks = acks_for(msh, outcome, error=error, now=now, control_ids=ids.__next__)
        expected_ids = (f"ID{n}" for n in itertools.count(1))
        for sent_code, ack in acks:
            assert ack == reference_ack(
                msh, sent_code, error=error, now=now, control_id=next(expected_ids)
            )
