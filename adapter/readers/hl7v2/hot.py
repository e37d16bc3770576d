"""The ingest hot path's check of one HL7 v2 frame: what the ACK and the store need, no events.

Why: `read_hl7` builds the whole frozen event model (administrations, ingredients, codes),
~160 µs of a RAS or ADT on this machine, and ingest uses only the keys and the encounter
links; the coder reads the stored message again anyway. This module answers "would
`read_hl7` accept this frame, and with which keys and links?" in a fraction of that, by
tokenizing once and checking every field the reader could refuse.

It never decides a refusal. It returns a `CheckedMessage` only for the common shapes it
can vouch for (one ASCII message, a supported ADT or RAS with a visit number, every
field the reader checks within what the reader takes) and None for anything else, and
the caller then reads the frame with `read_hl7`, which gives today's AE/AR and ERR
location. So the NAKs are the reader's by construction; what this module must get right
is only that an accepted frame gives the same keys and links as the full read, which
tests/test_hl7v2_hot.py checks against `read_hl7` on every fixture and on mutated ones.
Pure: values in, values out.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from adapter.core.mappings import Mappings
from adapter.hl7.er7 import (
    Er7Error,
    Segment,
    implausible_header_field,
    parse_message,
    peek_charsets,
    split_messages,
)
from adapter.hl7.hl7_time import TimestampError, parse_ts
from adapter.readers.hl7v2.admin import is_waste
from adapter.readers.hl7v2.message import content_digest

__all__ = ["CheckedMessage", "check_hl7_frame"]

# The reader's own shapes (adapter.readers.hl7v2), kept in step by the equivalence tests.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)\Z", re.ASCII)
_RATE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(.*)\Z", re.ASCII | re.DOTALL)
_TIME_UNIT_CODE = re.compile(r"[SMHDWL]\d+\Z")
_VERSION = re.compile(r"2\.[3-8](?:\.\d+)*\Z")
_ADT = frozenset({"A01", "A04", "A08", "A03"})
_RAS = frozenset({"O17", "O02"})
_COMPLETION = frozenset({"", "CP", "PA", "NA", "RE"})
_ACTIONS = frozenset({"", "A", "U", "D"})
_RXC_TYPES = frozenset({"A", "B", ""})
_NOT_COUNTED_OBX = frozenset({"W", "D", "X"})
_READ = frozenset({"PID", "PV1", "RXA", "RXC", "TQ1", "OBX"})  # the segments the check reads
# A segment name `split_messages` and `parse_message` take as it is in a plain frame: not
# MSH (a second message), not a batch envelope (dropped), no blank or indented line.
_PLAIN_NAME = re.compile(r"(?!MSH|FHS|FTS|BHS|BTS)[A-Z][A-Z0-9]{2}\Z")


class _Doubt(Exception):
    """Something the full reader must look at: it may refuse it, or read it otherwise."""


@dataclass(frozen=True, slots=True)
class CheckedMessage:
    """What ingest keeps of a frame `read_hl7` would accept, as the reader would give it.

    One encounter: the visit (PV1-19) every event of an ADT or RAS belongs to. `starts`
    are the administrations' start times (RXA-3), for the end-of-day cutoff of the link.
    """

    dedup_key: str
    control_key: str
    control_id: str
    kind: str
    patient_id: str
    encounter_key: str
    close_requested: bool
    starts: tuple[datetime, ...]
    header: Segment  # the MSH as `read_msh` tokenizes it: the ACK is built from it


def check_hl7_frame(raw: bytes, mappings: Mappings, site_tz: tzinfo) -> CheckedMessage | None:
    """The keys and encounter of one MLLP frame when `read_hl7(raw, frame=True)` would read
    it without error, skip or refusal; None when the full reader has to decide."""
    try:
        return _check(raw, mappings, site_tz)
    except (_Doubt, Er7Error, TimestampError):
        return None
    except Exception:  # never a crash on the hot path: the full reader names the fault
        return None


def _check(raw: bytes, mappings: Mappings, site_tz: tzinfo) -> CheckedMessage:
    if not raw.isascii() or b"\x00" in raw:  # charsets, BOM and NUL: the reader's business
        raise _Doubt
    lines, msh, segments = _tokens(raw.decode("ascii"))
    if any(peek_charsets(lines[0])):  # MSH-18 valued: decoded as the reader decides
        raise _Doubt
    kind, trigger = _kind(msh)
    sender = f"{_hd(msh, 3)}^{_hd(msh, 4)}"
    control_id = msh.get(10).strip()
    control_key = f"hl7:{sender}:{control_id}"
    patient = _patient_id(segments)
    pv1 = _first(segments, "PV1")
    visit_id = pv1.get(19).strip()
    if not visit_id:  # administrations keyed by day, or an ADT skipped: the reader decides
        raise _Doubt
    _optional_ts(pv1, 44, site_tz)
    discharged = _optional_ts(pv1, 45, site_tz) is not None
    if kind.startswith("ADT"):
        starts: tuple[datetime, ...] = ()
        closes = trigger == "A03" or discharged
    else:
        starts = _check_ras(segments, mappings, site_tz)
        closes = False
    return CheckedMessage(
        dedup_key=f"{control_key}:{content_digest(lines)}",
        control_key=control_key,
        control_id=control_id,
        kind=kind,
        patient_id=patient,
        encounter_key=f"visit:{visit_id}",
        close_requested=closes,
        starts=starts,
        header=msh,
    )


def _tokens(text: str) -> tuple[tuple[str, ...], Segment, list[Segment]]:
    """The frame's lines as `split_messages` cuts them, its MSH, and the segments the check
    reads (`_READ`, in order), tokenized as `parse_message` would; _Doubt or Er7Error where
    those would give anything but one message.

    Why not `parse_message`: it builds a `Segment` for every line, most of them never read
    here (EVN, DG1, IN1, ORC, RXR: a third of the check's CPU went there). The usual frame
    (`|` fields, CR breaks, every line a segment: a plain name, then `|` or nothing; no blank
    line but at the end) is cut with `str.split`, which cuts it as `split_messages` does;
    anything else goes through `split_messages` and `parse_message`.
    """
    if not text.startswith("MSH|") or "\n" in text or "\x0b" in text or "\x1c" in text:
        return _parsed(text)
    lines = tuple(text.rstrip("\r").split("\r"))
    read = []
    for line in lines[1:]:
        name = line[:3]
        if not _plain_name(name):
            return _parsed(text)
        if line[3:4] not in ("|", ""):
            return _parsed(text)
        if name in _READ:
            read.append(line)
    msh = parse_message(lines[:1], "utf-8").msh  # MSH-1/MSH-2 checked as for any message
    encoding = msh.encoding
    counts: dict[str, int] = {}
    segments = []
    for line in read:
        name = line[:3]
        counts[name] = ordinal = counts.get(name, 0) + 1
        segments.append(Segment(name, ordinal, tuple(line.split("|")), encoding))
    return lines, msh, segments


@functools.lru_cache(maxsize=1024)
def _plain_name(name: str) -> bool:
    """`_PLAIN_NAME` of a segment name, memoized (no regex per line). Bounded: a feed sends
    a few dozen names, a hostile peer any three characters it likes."""
    return _PLAIN_NAME.match(name) is not None


def _parsed(text: str) -> tuple[tuple[str, ...], Segment, list[Segment]]:
    """`_tokens` of any frame, by `split_messages` and `parse_message`."""
    chunks = split_messages(text, blank_line_ends=False)
    if len(chunks) != 1:
        raise _Doubt
    lines = chunks[0].lines
    message = parse_message(lines, "utf-8")
    return lines, message.msh, [s for s in message.segments if s.name in _READ]


def _kind(msh: Segment) -> tuple[str, str]:
    """MSH-9 of a supported ADT or RAS in a supported version, with a plausible header."""
    message_type = msh.get(9, 1).strip().upper()
    trigger = msh.get(9, 2).strip().upper()
    if message_type == "ADT":
        supported = trigger in _ADT
    else:
        supported = message_type == "RAS" and trigger in _RAS
    if not supported or not _VERSION.match(msh.get(12, 1).strip()):
        raise _Doubt
    if not msh.get(10).strip() or implausible_header_field(msh):
        raise _Doubt
    return f"{message_type}^{trigger}", trigger


def _hd(segment: Segment, field: int) -> str:
    return segment.get(field, 1).strip() or segment.get(field, 2).strip()


def _first(segments: list[Segment], name: str) -> Segment:
    for segment in segments:
        if segment.name == name:
            return segment
    raise _Doubt


def _patient_id(segments: list[Segment]) -> str:
    """`<PID-3 assigning authority>|<id>`, the MR repetition else the first with an id."""
    pid = _first(segments, "PID")
    enc = pid.encoding
    reps = [r for r in pid.repetitions(3) if enc.part(r, 1).strip()]
    if not reps:
        raise _Doubt
    chosen = next((r for r in reps if enc.part(r, 5).strip().upper() == "MR"), reps[0])
    authority = enc.part(chosen, 4, 1).strip() or enc.part(chosen, 4, 2).strip()
    return f"{authority}|{enc.part(chosen, 1).strip()}"


def _check_ras(
    segments: list[Segment], mappings: Mappings, site_tz: tzinfo
) -> tuple[datetime, ...]:
    """Every field of a RAS the reader could refuse, checked on every segment that has it
    (the reader reads some only where they apply: checking more only sends more frames to
    it); the RXA start times."""
    starts: list[datetime] = []
    waste = 0
    for segment in segments:
        name = segment.name
        if name == "RXA":
            starts.append(_check_rxa(segment, site_tz))
        elif name == "RXC":
            if segment.get(1).strip().upper() not in _RXC_TYPES:
                raise _Doubt
            _amount(segment, 3)
        elif name == "TQ1":
            _amount(segment, 13)
        elif name == "OBX" and is_waste(segment, mappings):
            waste += _check_waste(segment)
    if waste > 1:  # several discards: their units must agree, which the reader checks
        raise _Doubt
    return tuple(starts)


def _check_rxa(rxa: Segment, site_tz: tzinfo) -> datetime:
    start = _optional_ts(rxa, 3, site_tz)
    if start is None:
        raise _Doubt
    _optional_ts(rxa, 4, site_tz)
    _amount(rxa, 6)
    _amount(rxa, 23)
    _rate(rxa)
    if rxa.get(20).strip().upper() not in _COMPLETION:
        raise _Doubt
    if rxa.get(21).strip().upper() not in _ACTIONS:
        raise _Doubt
    return start


def _optional_ts(segment: Segment, field: int, site_tz: tzinfo) -> datetime | None:
    text = segment.get(field).strip()
    return parse_ts(text, site_tz) if text else None


def _number(text: str) -> None:
    """An HL7 NM the reader takes as an amount: digits, point, no negative value."""
    if not _NUMBER.match(text) or text.startswith("-"):
        raise _Doubt


def _amount(segment: Segment, field: int) -> None:
    text = segment.get(field).strip()
    if text:
        _number(text)


def _rate(rxa: Segment) -> None:
    text = rxa.get(12).strip()
    if not text or _TIME_UNIT_CODE.match(text.upper()):
        return
    match = _RATE.match(text)
    if match is None:
        raise _Doubt
    _number(match.group(1))


def _check_waste(obx: Segment) -> int:
    """1 when the OBX is a counted discard (its amount checked), 0 when the reader skips it."""
    if obx.get(11).strip().upper() in _NOT_COUNTED_OBX:
        return 0
    if obx.get(5).strip():
        _amount(obx, 5)
        return 1
    text = obx.get(5, 2).strip()
    if not text:
        return 0
    _number(text)
    return 1
