"""The ACK builder as it was before the ACK template (commit fd5c436), kept as the oracle.

`adapter.hl7.ack.ack_from_header` now fills a cached template; tests/test_ack_template.py
checks that its bytes equal these for generated headers. Frozen on purpose: a change to
the ACK's bytes has to be made here too, knowingly. Field by field, as it was.
"""

from __future__ import annotations

import re
from datetime import datetime

from adapter.core.model import SegmentLocation
from adapter.hl7.ack import ACK_CODES, DEFAULT_VERSION, TABLE_0357, AckCode, AckError, ack_code_sent
from adapter.hl7.er7 import Encoding, Segment
from adapter.hl7.msh import MshInfo, read_msh

_FLATTEN = str.maketrans("\r\n\x0b\x1c", "    ")
_NOWHERE = SegmentLocation("", 0)
_VERSION_NUMBER = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_NO_HEADER = read_msh(f"MSH|^~\\&|||||||||P|{DEFAULT_VERSION}".encode())


def reference_ack(
    msh: MshInfo | None,
    code: AckCode,
    *,
    error: AckError | None = None,
    now: datetime,
    control_id: str,
) -> bytes:
    """An ER7 ACK: MSH (sender and receiver swapped), MSA, and ERR when `error` is given.

    Without a readable inbound MSH the ACK is still valid: AR (CR in enhanced
    codes), empty MSA-2, and ERR 100 on MSH unless the caller gave an error.
    `now` should be timezone-aware (MSH-7 carries its offset). `control_id` is
    the ACK's own MSH-10. Raises ValueError only for a code outside AA/AE/AR/CA/CE/CR.
    """
    if not isinstance(code, AckCode):  # a caller outside mypy's reach may pass any string
        if code not in ACK_CODES:
            raise ValueError(f"not an acknowledgment code: {code!r}")
        code = AckCode(code)
    if msh is None:
        code = ack_code_sent(msh, code)
        error = error or AckError("100", "no readable MSH segment", SegmentLocation("MSH", 1))
        assert _NO_HEADER is not None
        msh = _NO_HEADER
    enc = msh.header.encoding
    version = msh.header.raw(12) or DEFAULT_VERSION
    modern = _version(version) >= (2, 5)
    segments = [
        _msh(msh, now, control_id, version),
        _msa(msh, code, error, modern),
    ]
    if error is not None:
        segments.append(_err(error, enc) if modern else _err_v2(error, enc))
    return ("\r".join(segments) + "\r").encode(msh.charset, errors="replace")


def _msh(msh: MshInfo, now: datetime, control_id: str, version: str) -> str:
    header = msh.header
    enc = header.encoding
    fields = [
        "MSH",
        header.raw(2),
        header.raw(5),
        header.raw(6),
        header.raw(3),
        header.raw(4),
        now.strftime("%Y%m%d%H%M%S%z"),
        "",
        _message_type(header, version),
        _escape(control_id, enc),
        header.raw(11) or "P",
        version,
    ]
    charset = header.raw(18)
    if charset:  # echoed so the receiver reads the echoed MSH-3..6 bytes as they were sent
        fields += ["", "", "", "", "", charset]
    return enc.field.join(fields)


def _message_type(header: Segment, version: str) -> str:
    """ACK^<trigger>^ACK (ACK^^ACK when unknown); MSH-9.3 (structure) exists from v2.3.1."""
    enc = header.encoding
    parts = header.raw(9).split(enc.repetition)[0].split(enc.component)
    trigger = parts[1] if len(parts) > 1 else ""
    if _version(version) < (2, 3, 1):
        return f"ACK{enc.component}{trigger}" if trigger else "ACK"
    return f"ACK{enc.component}{trigger}{enc.component}ACK"


def _msa(msh: MshInfo, code: AckCode, error: AckError | None, modern: bool) -> str:
    fs = msh.header.encoding.field
    fields = ["MSA", code.value, msh.header.raw(10)]
    if error is not None and not modern and error.message:  # MSA-3 text before v2.5
        fields.append(_escape(error.message, msh.header.encoding))
    return fs.join(fields)


def _err(error: AckError, enc: Encoding) -> str:
    """v2.5+: ERR-2 location (ERL), ERR-3 code (CWE, table 0357), ERR-4 severity, ERR-8 text."""
    fields = [
        "ERR",
        "",
        _location(error, enc),
        _coded(error, enc, enc.component),
        _escape(error.severity, enc),
        "",
        "",
        "",
        _escape(error.message, enc),
    ]
    return enc.field.join(fields).rstrip(enc.field)


def _err_v2(error: AckError, enc: Encoding) -> str:
    """Before v2.5: ERR-1 (ELD) = segment^sequence^field^code&text&HL70357."""
    comp = enc.component
    at = error.at or _NOWHERE
    sequence = at.sequence or (1 if at.segment else 0)
    place = [at.segment, _number(sequence), _number(at.field)]
    return f"ERR{enc.field}{comp.join(place)}{comp}{_coded(error, enc, enc.subcomponent)}"


def _location(error: AckError, enc: Encoding) -> str:
    at = error.at
    if at is None or not at.segment:
        return ""
    numbers = (at.sequence or 1, at.field, at.repetition, at.component, at.subcomponent)
    parts = [_escape(at.segment, enc), *(_number(n) for n in numbers)]
    return enc.component.join(parts).rstrip(enc.component)


def _coded(error: AckError, enc: Encoding, separator: str) -> str:
    text = TABLE_0357.get(error.code, "")
    return separator.join((_escape(error.code, enc), text, "HL70357"))


def _number(value: int) -> str:
    return str(value) if value > 0 else ""


def _escape(value: str, enc: Encoding) -> str:
    """Text we add, made safe for ER7 and MLLP: delimiters escaped, breaks and blocks flattened."""
    value = value.translate(_FLATTEN)
    esc = enc.escape
    if esc:
        value = value.replace(esc, f"{esc}E{esc}")
    for char, letter in (
        (enc.field, "F"),
        (enc.component, "S"),
        (enc.repetition, "R"),
        (enc.subcomponent, "T"),
        (enc.truncation, "P"),
    ):
        if char and char in value:
            value = value.replace(char, f"{esc}{letter}{esc}" if esc else " ")
    return value


def _version(version: str) -> tuple[int, ...]:
    """MSH-12.1 as numbers; unreadable versions count as current (2.5.1)."""
    match = _VERSION_NUMBER.match(version)
    if match is None:
        return (2, 5, 1)
    return tuple(int(g) for g in match.groups() if g is not None)
