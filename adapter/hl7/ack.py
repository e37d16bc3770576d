"""HL7 v2 acknowledgments (ACK) built as ER7 text from what the sender's MSH said.

Why strings and not hl7apy: building the same ACK with `hl7apy.core.Message`
costs about 5 ms; this builds it in tens of microseconds, and the tests parse
every shape it produces with hl7apy (strict validation) to keep it honest.

Fields taken from the inbound message are echoed verbatim (raw, escapes and
components intact), in the inbound's own delimiters and byte encoding, so the
sender recognises its own identifiers. Text we add (ERR-8, MSA-3) is escaped.
Nothing here raises for bad input: an ACK must always be possible.

This is the one place ACKs are built: the MLLP server's own answers, the handler's answers
to messages from MLLP and from `POST /hl7` (`acks_for`), all with a typed `AckCode`, the
ACK's control id as an argument and the ERR location as one `SegmentLocation`. The header
they answer is read by `adapter.hl7.msh` (`read_msh` -> `MshInfo`). Pure: the clock (`now`)
and the control ids are arguments.
"""

from __future__ import annotations

import functools
import itertools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from adapter.core.model import SegmentLocation
from adapter.hl7.er7 import Encoding
from adapter.hl7.msh import MshInfo, read_msh

__all__ = [
    "ACK_CODES",
    "DEFAULT_VERSION",
    "TABLE_0357",
    "AckCode",
    "AckError",
    "AckIds",
    "ack_control_id",
    "ack_from_header",
    "acks_for",
    "build_ack",
    "error_ack_code",
]


class AckCode(StrEnum):
    """MSA-1 (HL7 table 0008): original mode A*, enhanced-mode accept acknowledgments C*."""

    AA = "AA"  # accepted (committed)
    AE = "AE"  # error: the sender may correct and resend
    AR = "AR"  # rejected: resending the same message cannot succeed
    CA = "CA"
    CE = "CE"
    CR = "CR"

    @property
    def accept(self) -> AckCode:
        """The enhanced-mode accept code of the same outcome (AA -> CA, AE -> CE, AR -> CR)."""
        return AckCode("C" + self.value[1])

    @property
    def success(self) -> bool:
        return self in (AckCode.AA, AckCode.CA)

    @property
    def enhanced(self) -> bool:
        """An enhanced-mode accept acknowledgment code (CA, CE, CR)."""
        return self in (AckCode.CA, AckCode.CE, AckCode.CR)


DEFAULT_VERSION = "2.5.1"
ACK_CODES = frozenset(AckCode)
TABLE_0357 = {  # HL7 table 0357, message error condition codes (ERR-3)
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
_FLATTEN = str.maketrans("\r\n\x0b\x1c", "    ")  # segment breaks and MLLP block bytes
_NOWHERE = SegmentLocation("", 0)
_VERSION_NUMBER = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class AckError:
    """One ERR segment: what went wrong (table 0357) and where (`at`); no PHI.

    `message` is ERR-8 (MSA-3 before v2.5): a short fixed sentence, never a
    value copied from the message. `at` is the place as the reader found it
    (ERR-2; ERR-1 before v2.5); None when the fault has no segment.
    """

    code: str
    message: str = ""
    at: SegmentLocation | None = None
    severity: str = "E"


class AckIds:
    """MSH-10 for the ACKs we send: a random per-process prefix and a counter, 20 characters.

    Why not uuid4 per ACK: it was a measurable part of each ACK (a system call
    for randomness on every message); a prefix drawn once keeps ids unique across
    restarts and replicas, the counter within a process. 20 is MSH-10's length in v2.5.1.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):012d}"[:20]


ack_control_id = AckIds()  # the process's one ACK MSH-10 sequence (handler, server, errors)


def error_ack_code(msh: MshInfo | None, *, reject: bool) -> AckCode | None:
    """The code for a negative accept ACK in the sender's mode; None when it wants none.

    Original mode: AE (error, may be resent) or AR (rejected). Enhanced mode:
    CE or CR, unless MSH-15 is NE (never) or SU (only on success).
    """
    if msh is None or not msh.enhanced_mode:
        return AckCode.AR if reject else AckCode.AE
    if (msh.accept_ack_type or "AL") in ("NE", "SU"):
        return None
    return AckCode.CR if reject else AckCode.CE


def acks_for(
    msh: MshInfo | None,
    outcome: AckCode,
    *,
    error: AckError | None,
    now: datetime,
    control_ids: Callable[[], str],
) -> tuple[tuple[AckCode, bytes], ...]:
    """The ACKs of an applied message whose outcome is AA, AE or AR, each with its code.

    Original mode (no MSH-15/16, or no readable MSH): one ACK with the outcome. Enhanced
    mode: the accept acknowledgment (CA/CE/CR) as MSH-15 asks (AL always, ER only on error,
    SU only on success, NE never), then the application acknowledgment when MSH-16 asks
    (the adapter has applied the message once it is committed, so it has the same outcome).
    """
    if msh is None or not msh.enhanced_mode:
        ack = ack_from_header(msh, outcome, error=error, now=now, control_id=control_ids())
        return ((ack_code_sent(msh, outcome), ack),)
    wanted = [
        code
        for code, condition in (
            (outcome.accept, msh.accept_ack_type or "AL"),
            (outcome, msh.app_ack_type or "NE"),
        )
        if _wanted(condition, outcome.success)
    ]
    return tuple(
        (code, ack_from_header(msh, code, error=error, now=now, control_id=control_ids()))
        for code in wanted
    )


def ack_code_sent(msh: MshInfo | None, code: AckCode) -> AckCode:
    """The code an ACK carries: without a readable MSH, any code becomes AR (CR if enhanced)."""
    if msh is not None:
        return code
    return AckCode.CR if code.enhanced else AckCode.AR


def _wanted(condition: str, success: bool) -> bool:
    """HL7 table 0155: AL always, NE never, ER only on error, SU only on success."""
    return (
        condition == "AL" or (condition == "ER" and not success) or (condition == "SU" and success)
    )


def build_ack(
    message: bytes,
    code: AckCode,
    *,
    error: AckError | None = None,
    now: datetime,
    control_id: str,
) -> bytes:
    """The ACK of an inbound message (see `ack_from_header`)."""
    return ack_from_header(read_msh(message), code, error=error, now=now, control_id=control_id)


def ack_from_header(
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
        msh = _NO_HEADER
    header = msh.header
    raw = header.raw
    template = _template(header.encoding, header.fields[1:7], raw(9), raw(11), raw(12), raw(18))
    enc = template.encoding
    if not template.specials.isdisjoint(control_id):  # our own ids never need it
        control_id = _escape(control_id, enc)
    text = f"{template.head}{_timestamp(now)}{template.middle}{control_id}{template.tail}"
    text += f"{code.value}{enc.field}{raw(10)}"
    if error is not None:
        if template.modern:
            text += f"\r{_err(error, enc)}"
        else:
            if error.message:  # MSA-3 text before v2.5
                text += f"{enc.field}{_escape(error.message, enc)}"
            text += f"\r{_err_v2(error, enc)}"
    return (text + "\r").encode(msh.charset, errors="replace")


@dataclass(frozen=True, slots=True)
class _Template:
    """The fixed text of the ACKs to one sender header, around MSH-7, MSH-10 and MSA-1/2.

    `head` runs to MSH-7, `middle` from MSH-8 to MSH-10, `tail` from MSH-11 to MSA-1;
    `specials` are the characters `_escape` would touch in MSH-10 (our ids have none).
    """

    head: str
    middle: str
    tail: str
    encoding: Encoding
    modern: bool  # v2.5 or later: ERR-2/3/8, else ERR-1 and MSA-3
    specials: frozenset[str]


@functools.lru_cache(maxsize=256)
def _template(
    enc: Encoding,
    msh_1_to_6: tuple[str, ...],
    msh_9: str,
    msh_11: str,
    msh_12: str,
    msh_18: str,
) -> _Template:
    """The ACK template of the MSH fields an ACK copies, memoized.

    Why: a feed sends the same MSH-1..6, 9, 11, 12 and 18 on every message, and the ACK
    built field by field cost ~15 µs on the event loop; filled in, a few. `enc` is a key
    too (the escapes depend on it); bounded, so a sender with a new header every message
    only rebuilds. Pure, so safe to share.
    """
    raw = (*msh_1_to_6, "", "", "", "", "", "")  # raw[n - 1] is MSH-n, '' when absent
    fs = enc.field
    version = msh_12 or DEFAULT_VERSION
    fields_11_on = [msh_11 or "P", version]
    if msh_18:  # echoed so the receiver reads the echoed MSH-3..6 bytes as they were sent
        fields_11_on += ["", "", "", "", "", msh_18]
    specials = {enc.escape, enc.field, enc.component, enc.repetition, enc.subcomponent}
    specials |= {enc.truncation, *"\r\n\x0b\x1c"}
    return _Template(
        head=fs.join(("MSH", raw[1], raw[4], raw[5], raw[2], raw[3], "")),
        middle=fs.join(("", "", _message_type(msh_9, enc, version), "")),
        tail=fs.join(("", *fields_11_on)) + f"\rMSA{fs}",
        encoding=enc,
        modern=_version(version) >= (2, 5),
        specials=frozenset(specials - {""}),
    )


def _timestamp(now: datetime) -> str:
    """MSH-7 of `now` to the second with its offset (ACKs come many a second: memoized)."""
    second = now.replace(microsecond=0)
    return _second_text(second, second.utcoffset())


@functools.lru_cache(maxsize=4)
def _second_text(second: datetime, offset: timedelta | None) -> str:
    """strftime of one second. The offset is part of the key because aware datetimes equal
    as instants hash alike whatever their offset, and %z (and the wall time) differ by it:
    the instant and the offset together fix every digit written."""
    return second.strftime("%Y%m%d%H%M%S%z")


def _message_type(msh_9: str, enc: Encoding, version: str) -> str:
    """ACK^<trigger>^ACK (ACK^^ACK when unknown); MSH-9.3 (structure) exists from v2.3.1."""
    parts = msh_9.split(enc.repetition)[0].split(enc.component)
    trigger = parts[1] if len(parts) > 1 else ""
    if _version(version) < (2, 3, 1):
        return f"ACK{enc.component}{trigger}" if trigger else "ACK"
    return f"ACK{enc.component}{trigger}{enc.component}ACK"


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


def _no_header() -> MshInfo:
    info = read_msh(f"MSH|^~\\&|||||||||P|{DEFAULT_VERSION}".encode())
    assert info is not None  # a constant, well-formed header
    return info


_NO_HEADER = _no_header()
