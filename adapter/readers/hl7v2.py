"""HL7 v2 (ER7) messages to events, as `docs/feed-conventions.md` describes.

One `InboundMessage` per message in the input, whatever happens: a message
that cannot be read becomes an `InputError` naming the message, its control
id, the segment and the field, never the value (it may be PHI), and the other
messages of the file are still read. The reader does not deduplicate; it
gives re-sends the same `dedup_key` so the feed layer can: sender, MSH-10 and
a digest of the content (`content_digest`), so that a sender reusing a control
id for another message is not taken for a re-send.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

from adapter.core.diagnoses import normalize
from adapter.core.mappings import Mappings
from adapter.core.model import (
    Action,
    Administration,
    AdminStatus,
    Code,
    CodeSystem,
    Coverage,
    Diagnosis,
    Event,
    InboundMessage,
    Ingredient,
    IngredientRole,
    InputError,
    Method,
    OrderEvent,
    PatientClass,
    Quantity,
    Route,
    SegmentLocation,
    Unsupported,
    Visit,
    VisitStatus,
)
from adapter.hl7.er7 import (
    Chunk,
    Er7Error,
    Message,
    Segment,
    implausible_header_field,
    parse_message,
    peek_charsets,
    split_messages,
)
from adapter.hl7.hl7_time import TimestampError, parse_ts

__all__ = ["DISCARDED_AMOUNT", "UNREAD_KEY_PREFIX", "content_digest", "read_hl7"]

DISCARDED_AMOUNT = "discarded-amount"  # meaning of an OBX-3 code in mappings.observation_codes
_BOM_BYTES = b"\xef\xbb\xbf"
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)\Z", re.ASCII)
_RATE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(.*)\Z", re.ASCII | re.DOTALL)
_TIME_UNIT_CODE = re.compile(r"[SMHDWL]\d+\Z")  # RXA-12 as HL7 defines it ("H1"): not a rate
_TQ_DURATION = re.compile(r"([SMHDW])(\d+)\Z")
_VERSION = re.compile(r"2\.[3-8](?:\.\d+)*\Z")
UNREAD_KEY_PREFIX = "hl7:unread:"  # dedup key of a message whose header could not be trusted


@dataclass(frozen=True, slots=True)
class _Context:
    """The run's settings every message is read against."""

    mappings: Mappings
    site_tz: tzinfo


@dataclass(frozen=True, slots=True)
class _Header:
    """What MSH says about the message; fields may be empty until `_check_header`."""

    sender: str
    control_id: str
    message_type: str
    trigger: str
    version: str
    implausible_field: int = 0  # see `implausible_header_field`; 0 = a plausible header
    digest: str = ""  # `content_digest` of the whole message

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.trigger}" if self.trigger else self.message_type

    @property
    def control_key(self) -> str:
        """Sender and MSH-10: what names the message, not what it says (the old dedup key)."""
        return f"hl7:{self.sender}:{self.control_id}"

    @property
    def dedup_key(self) -> str:
        return f"{self.control_key}:{self.digest}"


@dataclass(frozen=True, slots=True)
class _AdminBlock:
    """An RXA and the segments after it up to the next RXA or ORC (its RXR, RXC, OBX).

    `group_rxr` is the RXR of its ADMINISTRATION group: RAS_O17 sends `{RXA+} RXR`, so
    RXAs that follow each other directly share the RXR after the last of them.
    """

    rxa: Segment
    tail: tuple[Segment, ...]
    group_rxr: Segment | None = None


@dataclass(frozen=True, slots=True)
class _OrderGroup:
    """An ORC with its order-level segments (TQ1, RXO, RXE, RXR, RXC) and administrations."""

    ordinal: int  # 0 for segments before any ORC
    orc: Segment | None
    head: tuple[Segment, ...]
    admins: tuple[_AdminBlock, ...]


@dataclass(frozen=True, slots=True)
class _Scope:
    """What every RXA of one order shares, read once (PID, PV1, ORC, TQ1, RXE/RXO, RXR, RXC)."""

    patient_id: str
    visit_id: str | None
    location: str | None  # PV1-3 point of care
    patient_class: PatientClass  # PV1-2, read with or without PV1-19
    order_id: str
    expected_minutes: int | None
    rxr: Segment | None
    rxcs: tuple[Segment, ...]
    indications: tuple[Code, ...]


Outcome = tuple[Event, ...] | str  # events, or the reason the message is skipped
_Handler = Callable[[Message, _Header, _Context], Outcome]


def read_hl7(
    data: str | bytes,
    mappings: Mappings,
    site_tz: tzinfo,
    origin: str = "",
    *,
    frame: bool = False,
) -> tuple[InboundMessage, ...]:
    """Read every message in `data`; never raises for bad input.

    `frame=True` reads one MLLP frame (or HTTP body): blank lines are empty
    segments, not message breaks (see `split_messages`).
    """
    context = _Context(mappings, site_tz)
    chunks = _decode(data, blank_line_ends=not frame)
    return tuple(_read_chunk(chunk, charset, context, origin) for chunk, charset in chunks)


# --- bytes, charsets and message boundaries -------------------------------------------


def _decode(data: str | bytes, *, blank_line_ends: bool) -> list[tuple[Chunk, str]]:
    """Split into messages; bytes are decoded per message, as its MSH-18 says.

    A NUL byte (never valid HL7 text) reads as U+FFFD: PostgreSQL text cannot hold
    a NUL, so a control id or patient id carrying one could not be stored, not even
    as a dead letter, and the sender would be told to resend forever.
    """
    chunks = _decode_text(data, blank_line_ends)
    has_nul = "\x00" in data if isinstance(data, str) else b"\x00" in data
    return [(_without_nul(c), codec) for c, codec in chunks] if has_nul else chunks


def _without_nul(chunk: Chunk) -> Chunk:
    return Chunk(chunk.ordinal, tuple(line.replace("\x00", "\ufffd") for line in chunk.lines))


def _decode_text(data: str | bytes, blank_line_ends: bool) -> list[tuple[Chunk, str]]:
    if isinstance(data, str):
        chunks = split_messages(data, blank_line_ends=blank_line_ends)
        return [(c, _codec(peek_charsets(c.lines[0]))) for c in chunks]
    if data.startswith(_BOM_BYTES):
        data = data[len(_BOM_BYTES) :]
    # latin-1 maps every byte to one char, so cutting here then re-decoding is lossless
    text = data.decode("latin-1")
    return [_redecode(c) for c in split_messages(text, blank_line_ends=blank_line_ends)]


def _redecode(chunk: Chunk) -> tuple[Chunk, str]:
    codec = _codec(peek_charsets(chunk.lines[0]))
    if codec == ISO_2022_JP:  # 7-bit: every byte is ASCII, the escapes say what it means
        if not any("\x1b" in line for line in chunk.lines):
            return chunk, codec
    elif codec == "latin-1" or all(line.isascii() for line in chunk.lines):
        return chunk, codec
    try:
        lines = tuple(line.encode("latin-1").decode(codec) for line in chunk.lines)
    except (UnicodeDecodeError, LookupError):
        return chunk, "latin-1"  # not what MSH-18 claims: bytes as they are
    return Chunk(chunk.ordinal, lines), codec


ISO_2022_JP = "iso2022_jp_2"
_ISO_2022_SETS = frozenset({"ISO IR87", "ISO IR159", "ISO 2022-1994"})


def _codec(declared: tuple[str, ...]) -> str:
    """Python codec for MSH-18 (table 0211); UTF-8 when absent or ASCII.

    Japanese feeds (JAHIS, SS-MIX2) send `~ISO IR87`: ASCII, with JIS X 0208 switched
    in by ISO 2022 escapes. Its double-byte text uses bytes that look like `|` or `^`,
    so the message must be decoded before it is cut into fields.
    """
    if any(v.strip().upper() in _ISO_2022_SETS for v in declared):
        return ISO_2022_JP
    value = declared[0].strip().upper() if declared else ""
    if value.startswith("8859/"):
        number = value[5:]
        return "latin-1" if number == "1" else f"iso8859-{number}"
    return "utf-8"


# --- one message -------------------------------------------------------------------


def _read_chunk(chunk: Chunk, charset: str, context: _Context, origin: str) -> InboundMessage:
    header: _Header | None = None
    digest = content_digest(chunk.lines)
    try:
        message = parse_message(chunk.lines, charset)
        header = _header(message.msh, digest)
        return _dispatch(message, header, context)
    except Er7Error as exc:
        header = header or (_header(exc.msh, digest) if exc.msh else None)
        return _failure(chunk, header, origin, exc.where, exc.reason, exc.at)
    except Exception as exc:  # a reader bug must not lose the rest of the file
        return _failure(chunk, header, origin, "", f"unexpected {type(exc).__name__}")


def content_digest(lines: Iterable[str]) -> str:
    """What makes two messages under one sender and MSH-10 the same message, as hex.

    The segments as read (CR, LF and CRLF already cut the same way, blank lines
    dropped), each without trailing whitespace, and MSH-7 left out: an engine that
    re-sends after a lost ACK may stamp a new MSH-7 on the same message, and nothing
    read here depends on MSH-7 (docs/feed-conventions.md, "Re-sends and reused
    control ids"). Everything else counts, MSH-10 included.
    """
    canonical = "\r".join(_without_msh7(line.rstrip()) for line in lines if line.strip())
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _without_msh7(segment: str) -> str:
    if not segment.startswith("MSH") or len(segment) < 4:
        return segment
    fields = segment.split(segment[3])
    if len(fields) > 6:  # fields[0] is "MSH", fields[1] MSH-2: MSH-n is fields[n - 1]
        fields[6] = ""
    return segment[3].join(fields)


def _dispatch(message: Message, header: _Header, context: _Context) -> InboundMessage:
    _check_header(message.msh, header)
    base = InboundMessage(
        dedup_key=header.dedup_key,
        kind=_safe(header.kind),
        control_id=header.control_id,
        control_key=header.control_key,
    )
    if not _VERSION.match(header.version):
        reason = f"unsupported HL7 version {_safe(header.version)}"
        return replace(base, skip_reason=reason, unsupported=Unsupported.VERSION)
    handler = _HANDLERS.get((header.message_type, header.trigger))
    if handler is None:
        reason = f"unsupported message type {base.kind}"
        return replace(base, skip_reason=reason, unsupported=Unsupported.MESSAGE_TYPE)
    outcome = handler(message, header, context)
    if isinstance(outcome, str):
        return replace(base, skip_reason=outcome)
    return replace(base, events=outcome)


def _failure(
    chunk: Chunk,
    header: _Header | None,
    origin: str,
    where: str,
    reason: str,
    at: SegmentLocation | None = None,
) -> InboundMessage:
    """An error result; the dedup key falls back to a digest so a re-sent bad message matches."""
    if header is not None and header.implausible_field:  # its MSH-10 may be patient data
        header = None
    control_id = header.control_id if header else ""
    parts = [origin] if origin else []
    parts.append(f"message {chunk.ordinal}")
    if control_id:
        parts.append(f"(MSH-10 {_safe(control_id)})")
    if where:
        parts.append(where)
    if header and header.control_id:
        key, control_key = header.dedup_key, header.control_key
    else:
        digest = hashlib.sha256("\r".join(chunk.lines).encode("utf-8", "replace")).hexdigest()
        key, control_key = f"{UNREAD_KEY_PREFIX}{digest[:32]}", ""
    return InboundMessage(
        dedup_key=key,
        kind=_safe(header.kind) if header else "",
        error=InputError(" ".join(parts), reason, at),
        control_id=control_id,
        control_key=control_key,
    )


def _safe(text: str, limit: int = 40) -> str:
    """Wire text echoed into a location or reason: printable and short."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def _header(msh: Segment, digest: str) -> _Header:
    return _Header(
        sender=f"{_hd(msh, 3)}^{_hd(msh, 4)}",
        control_id=msh.get(10).strip(),
        message_type=msh.get(9, 1).strip().upper(),
        trigger=msh.get(9, 2).strip().upper(),
        version=msh.get(12, 1).strip(),
        implausible_field=implausible_header_field(msh),
        digest=digest,
    )


def _hd(segment: Segment, field: int) -> str:
    """An HD value's namespace id, else its universal id."""
    return segment.get(field, 1).strip() or segment.get(field, 2).strip()


def _check_header(msh: Segment, header: _Header) -> None:
    if not header.message_type:
        raise _fault(msh, 9, "message type is empty")
    if not header.control_id:
        raise _fault(msh, 10, "message control id is empty")
    if header.implausible_field:
        field = header.implausible_field
        raise _fault(msh, field, _IMPLAUSIBLE[field])


_IMPLAUSIBLE = {
    7: "message date/time is not an HL7 timestamp (was a segment break lost?)",
    9: "message type is not a three-character code (was a segment break lost?)",
    10: "message control id has components (was a segment break lost?)",
    12: "version id is not a version number (was a segment break lost?)",
}


def _fault(segment: Segment, field: int, reason: str) -> Er7Error:
    """An error naming the segment occurrence and field, never the value."""
    name = segment.name
    return Er7Error(SegmentLocation(name, segment.ordinal, field), reason)


# --- message types -------------------------------------------------------------------


def _read_ras(message: Message, header: _Header, context: _Context) -> Outcome:
    """RAS: one Administration per RXA, plus the visit context of PV1 (without diagnoses)."""
    patient = _patient_id(message)
    pv1 = message.first("PV1")
    visit = _visit(pv1, patient, VisitStatus.UNKNOWN, context) if pv1 else None
    admins: list[Administration] = []
    for group in _order_groups(message.segments):
        if group.admins:
            scope = _scope(group, patient, pv1)
            admins.extend(_administration(block, scope, context) for block in group.admins)
    return ((visit,) if visit else ()) + _distinct_ids(admins)


def _distinct_ids(admins: list[Administration]) -> tuple[Administration, ...]:
    """Number RXAs of one message that share every identifying field (`#2`, `#3`...).

    Two RXA with the same order, RXA-1/RXA-2, start and given code (two identical
    bags hung together) are still two administrations; their order in the message
    is the same in a resend, so the numbering finds the same originals again.
    """
    seen: dict[str, int] = {}
    found: list[Administration] = []
    for admin in admins:
        count = seen.get(admin.source_id, 0) + 1
        seen[admin.source_id] = count
        found.append(
            admin if count == 1 else replace(admin, source_id=f"{admin.source_id}#{count}")
        )
    return tuple(found)


def _scope(group: _OrderGroup, patient: str, pv1: Segment | None) -> _Scope:
    return _Scope(
        patient_id=patient,
        visit_id=(pv1.get(19).strip() or None) if pv1 else None,
        location=(pv1.get(3).strip() or None) if pv1 else None,
        patient_class=_patient_class(pv1.get(2).strip().upper()) if pv1 else PatientClass.UNKNOWN,
        order_id=_order_id(group),
        expected_minutes=_expected_minutes(group),
        rxr=_last(group.head, "RXR"),
        rxcs=tuple(s for s in group.head if s.name == "RXC"),
        indications=_order_indications(group),
    )


def _read_adt(message: Message, header: _Header, context: _Context) -> Outcome:
    """ADT A01/A04/A08/A03: the visit, its ranked diagnoses and its coverages."""
    patient = _patient_id(message)
    pv1 = message.first("PV1")
    status = _adt_status(header.trigger, pv1)
    visit = _visit(pv1, patient, status, context) if pv1 else None
    if visit is None:
        return "no visit number (PV1-19)"
    diagnoses = _diagnoses(message.all("DG1"))
    coverages = _coverages(message.all("IN1"), visit.visit_id)
    return (replace(visit, diagnoses=diagnoses, coverages=coverages),)


def _adt_status(trigger: str, pv1: Segment | None) -> VisitStatus:
    """A03 closes the visit; so does any ADT that carries a discharge time (PV1-45)."""
    if trigger == "A03" or (pv1 is not None and pv1.get(45).strip()):
        return VisitStatus.FINISHED
    return VisitStatus.IN_PROGRESS


def _orders(kind: str) -> _Handler:
    """RDE/RDS: kept as context, never charged (D26): one OrderEvent per ORC."""

    def read(message: Message, header: _Header, context: _Context) -> Outcome:
        patient = _patient_id(message)
        pv1 = message.first("PV1")
        visit_id = (pv1.get(19).strip() or None) if pv1 else None
        return tuple(
            OrderEvent(_order_event_id(group, header, kind), patient, kind, visit_id)
            for group in _order_groups(message.segments)
            if group.orc is not None
        )

    return read


def _order_event_id(group: _OrderGroup, header: _Header, kind: str) -> str:
    source = f"hl7:{_order_id(group)}:{kind}"
    rxd = _first(group.head, "RXD")
    return f"{source}:{rxd.get(1).strip()}" if rxd and rxd.get(1).strip() else source


_HANDLERS: Mapping[tuple[str, str], _Handler] = MappingProxyType(
    {
        ("RAS", "O17"): _read_ras,
        ("RAS", "O02"): _read_ras,
        ("ADT", "A01"): _read_adt,
        ("ADT", "A04"): _read_adt,
        ("ADT", "A08"): _read_adt,
        ("ADT", "A03"): _read_adt,
        ("RDE", "O11"): _orders("order"),
        ("RDE", "O01"): _orders("order"),
        ("RDE", "O25"): _orders("order"),
        ("RDS", "O13"): _orders("dispense"),
        ("RDS", "O01"): _orders("dispense"),
    }
)


# --- structure -----------------------------------------------------------------------


def _order_groups(segments: Iterable[Segment]) -> tuple[_OrderGroup, ...]:
    """Cut the message at each ORC, and each order at each RXA."""
    groups: list[tuple[Segment | None, list[Segment], list[tuple[Segment, list[Segment]]]]]
    groups = [(None, [], [])]
    for segment in segments:
        if segment.name == "ORC":
            groups.append((segment, [], []))
            continue
        _, head, blocks = groups[-1]
        if segment.name == "RXA":
            blocks.append((segment, []))
        elif blocks:
            blocks[-1][1].append(segment)
        else:
            head.append(segment)
    return tuple(
        _OrderGroup(i, orc, tuple(head), _with_group_rxr([_AdminBlock(r, tuple(t)) for r, t in b]))
        for i, (orc, head, b) in enumerate(groups)
    )


def _with_group_rxr(blocks: list[_AdminBlock]) -> tuple[_AdminBlock, ...]:
    """Give each RXA its ADMINISTRATION group's RXR (ORDER{... ADMINISTRATION{RXA+ RXR}}).

    Walking back from the end: an RXA with its own RXR starts a group; an RXA followed
    directly by the next RXA (empty tail) belongs to that next RXA's group. An RXA whose
    tail has other segments but no RXR is a group of its own without a route there.
    """
    found: list[_AdminBlock] = []
    following: Segment | None = None
    for block in reversed(blocks):
        own = _first(block.tail, "RXR")
        if own is not None:
            following = own
        elif block.tail:
            following = None
        found.append(replace(block, group_rxr=following))
    return tuple(reversed(found))


def _first(segments: Iterable[Segment], name: str) -> Segment | None:
    return next((s for s in segments if s.name == name), None)


def _last(segments: Iterable[Segment], name: str) -> Segment | None:
    found = None
    for segment in segments:
        if segment.name == name:
            found = segment
    return found


def _order_id(group: _OrderGroup) -> str:
    """Filler order number, else placer; else the group's position in the message.

    Not the control id: a resend under a new MSH-10 must give the same ids, or it
    would be billed twice. Order numbers are not unique across patients (nor, in
    some feeds, across days): the administration's own identity adds what tells
    them apart (`_admin_ids`), and assembly keys everything per patient.
    """
    orc = group.orc
    if orc is not None:
        ident = orc.get(3, 1).strip() or orc.get(2, 1).strip()
        if ident:
            return ident
    return f"#{group.ordinal}"


# --- identity and visit ----------------------------------------------------------------


def _patient_id(message: Message) -> str:
    """`<PID-3 assigning authority>|<id>` from the MR repetition, else the first with an id."""
    pid = message.first("PID")
    if pid is None:
        raise Er7Error("segment PID", "missing")
    enc = pid.encoding
    reps = [r for r in pid.repetitions(3) if enc.part(r, 1).strip()]
    if not reps:
        raise _fault(pid, 3, "patient identifier is empty")
    chosen = next((r for r in reps if enc.part(r, 5).strip().upper() == "MR"), reps[0])
    authority = enc.part(chosen, 4, 1).strip() or enc.part(chosen, 4, 2).strip()
    return f"{authority}|{enc.part(chosen, 1).strip()}"


def _visit(pv1: Segment, patient: str, status: VisitStatus, context: _Context) -> Visit | None:
    """Visit context from PV1; none without a visit number (PV1-19) to key it."""
    visit_id = pv1.get(19).strip()
    if not visit_id:
        return None
    return Visit(
        source_id=f"hl7:visit:{visit_id}",
        patient_id=patient,
        visit_id=visit_id,
        patient_class=_patient_class(pv1.get(2).strip().upper()),
        status=status,
        location=pv1.get(3).strip() or None,
        facility=pv1.get(3, 4).strip() or pv1.get(39).strip() or None,
        start=_optional_ts(pv1, 44, context),
        end=_optional_ts(pv1, 45, context),
    )


def _patient_class(code: str) -> PatientClass:
    """PV1-2: inpatient is not billed here (D2); every other class is outpatient."""
    if not code:
        return PatientClass.UNKNOWN
    return _PATIENT_CLASS.get(code, PatientClass.OUTPATIENT)


_PATIENT_CLASS: Mapping[str, PatientClass] = MappingProxyType(
    {"I": PatientClass.INPATIENT, "E": PatientClass.EMERGENCY}
)


def _diagnoses(segments: Iterable[Segment]) -> tuple[Diagnosis, ...]:
    """ICD-10-CM DG1s with DG1-15 rank; other coding systems (ICD-9, SNOMED) are not billable."""
    found: list[Diagnosis] = []
    for position, dg1 in enumerate(segments, start=1):
        code = _dg1_code(dg1)
        if code:
            set_id = dg1.get(1).strip()
            order = int(set_id) if set_id.isdigit() and set_id.isascii() else position
            found.append(Diagnosis(code, _rank(dg1.get(15).strip()), order))
    return tuple(found)


def _dg1_code(dg1: Segment) -> str:
    """DG1-3 code or its alternate, when the system is ICD-10 (or not given)."""
    fallback_system = dg1.get(2).strip()
    for code_c, system_c in ((1, 3), (4, 6)):
        code = dg1.get(3, code_c).strip()
        system = dg1.get(3, system_c).strip() or (fallback_system if code_c == 1 else "")
        if code and (not system or system.upper() in _ICD10_SYSTEMS):
            return normalize(code)
    return ""


def _rank(priority: str) -> int | None:
    """DG1-15; 0 means "not ranked" in HL7 table 0359."""
    if priority.isdigit() and priority.isascii() and int(priority) > 0:
        return int(priority)
    return None


_ICD10_SYSTEMS = frozenset(
    {"I10", "I10C", "ICD10CM", "ICD-10-CM", "ICD10", "2.16.840.1.113883.6.90"}
)


def _coverages(segments: Iterable[Segment], visit_id: str) -> tuple[Coverage, ...]:
    """IN1-3 payer id, IN1-4 payer name, IN1-36 policy number."""
    found: list[Coverage] = []
    for position, in1 in enumerate(segments, start=1):
        payer_id = in1.get(3).strip()
        payer = in1.get(4).strip() or in1.get(2, 2).strip() or in1.get(2).strip() or payer_id
        if payer:
            set_id = in1.get(1).strip() or str(position)
            source = f"hl7:visit:{visit_id}:IN1:{set_id}"
            found.append(Coverage(source, payer, payer_id, in1.get(36).strip()))
    return tuple(found)


# --- administrations -------------------------------------------------------------------


def _administration(block: _AdminBlock, scope: _Scope, context: _Context) -> Administration:
    """One RXA; its own RXR/RXC win over the order's (RXE's) ones."""
    rxa = block.rxa
    start = _required_ts(rxa, 3, context)
    end = _optional_ts(rxa, 4, context)
    rxr = block.group_rxr or scope.rxr
    rxcs = tuple(s for s in block.tail if s.name == "RXC") or _order_rxcs(rxa, scope, context)
    route, route_text = _route(rxr, context.mappings)
    ingredients = tuple(_rxc_ingredient(s) for s in rxcs) if rxcs else (_rxa_ingredient(rxa),)
    correction_key = f"hl7:{scope.order_id}:{rxa.get(1).strip()}:{rxa.get(2).strip()}"
    return Administration(
        source_id=f"{correction_key}:{_given(rxa, start)}",
        correction_key=correction_key,
        patient_id=scope.patient_id,
        start=start,
        end=None if end == start else end,
        stop_note=_stop_note(rxa, start, end),
        ingredients=ingredients,
        visit_id=scope.visit_id,
        route=route,
        route_text=route_text,
        method=_method(rxr, context.mappings),
        access_site=_access_site(rxr),
        rate=_rate(rxa),
        volume=_amount(rxa, 23, 24, "mL"),
        indications=_indications(rxa, 19) or scope.indications,
        status=_status(rxa),
        action=_action(rxa),
        wasted=_waste(block.tail, context.mappings),
        location=scope.location or rxa.get(11).strip() or rxa.get(11, 4).strip() or None,
        expected_minutes=scope.expected_minutes,
        patient_class=scope.patient_class,
    )


def _stop_note(rxa: Segment, start: datetime, end: datetime | None) -> str:
    """Why there is no stop time, as the interface analyst will look for it."""
    if end is None:
        return "RXA-4 is empty"
    return "RXA-4 equals RXA-3 (no real stop time)" if end == start else ""


def _given(rxa: Segment, start: datetime) -> str:
    """What tells apart RXAs that share order and RXA-1/RXA-2: start (UTC) and given code.

    Senders leave RXA-1/RXA-2 at `0|1` for every RXA of an order (a bag and its
    additive, the doses of a standing order on different days) and reuse order numbers;
    the start and the code of what was given differ where the administrations differ,
    and stay the same in a resend of the same documentation.
    """
    code = rxa.get(5, 1).strip() or rxa.get(5, 4).strip() or rxa.get(5, 2).strip()
    return f"{start.astimezone(UTC):%Y%m%dT%H%M%SZ}:{_safe(code)}"


def _order_rxcs(rxa: Segment, scope: _Scope, context: _Context) -> tuple[Segment, ...]:
    """The order's RXC components, unless RXA-5 itself names a drug.

    RXA-5 is what was given: a bag and its additive documented as two RXA under an
    order whose RXE lists both as RXC must stay two administrations, each its own
    drug, not twice the whole mix. The order's components describe an RXA only
    when its RXA-5 is a local name for the mix: no standard code (NDC, RxNorm,
    HCPCS) and nothing the catalog knows.
    """
    if not scope.rxcs:
        return ()
    codes = _drug_codes(rxa, 5)
    standard = any(c.system != CodeSystem.LOCAL.value for c in codes)
    if standard or context.mappings.catalog.match(codes) is not None:
        return ()
    return scope.rxcs


def _access_site(rxr: Segment | None) -> str | None:
    """RXR-2 site code, else its text: only compared between overlapping infusions (D10a)."""
    if rxr is None:
        return None
    site = rxr.components(2)
    return next((c.strip() for c in site[:2] if c.strip()), None)


def _rxa_ingredient(rxa: Segment) -> Ingredient:
    text = rxa.get(5, 2).strip() or rxa.get(5, 5).strip()
    return Ingredient(_drug_codes(rxa, 5), _amount(rxa, 6, 7, ""), IngredientRole.ACTIVE, text)


def _rxc_ingredient(rxc: Segment) -> Ingredient:
    """RXC-1 `B` is the base fluid, `A` (or empty) an additive: the drug (R8)."""
    kind = rxc.get(1).strip().upper()
    if kind not in ("A", "B", ""):
        raise _fault(rxc, 1, "component type is not A or B")
    role = IngredientRole.BASE if kind == "B" else IngredientRole.ACTIVE
    text = rxc.get(2, 2).strip() or rxc.get(2, 5).strip()
    return Ingredient(_drug_codes(rxc, 2), _amount(rxc, 3, 4, ""), role, text)


def _drug_codes(segment: Segment, field: int) -> tuple[Code, ...]:
    """A CWE's identifier, alternate and (2.7+) second alternate, each with its system."""
    cwe = segment.components(field)
    codes: list[Code] = []
    for code_i in (0, 3, 9):
        code = cwe[code_i].strip() if code_i < len(cwe) else ""
        if code:
            text = cwe[code_i + 1].strip() if code_i + 1 < len(cwe) else ""
            raw_system = cwe[code_i + 2].strip().upper() if code_i + 2 < len(cwe) else ""
            system = _DRUG_SYSTEMS.get(raw_system, CodeSystem.LOCAL)
            codes.append(Code(system.value, code, text))
    return tuple(codes)


_DRUG_SYSTEMS: Mapping[str, CodeSystem] = MappingProxyType(
    {
        "NDC": CodeSystem.NDC,
        "RXNORM": CodeSystem.RXNORM,
        "RXN": CodeSystem.RXNORM,
        "HCPCS": CodeSystem.HCPCS,
        "HCPC": CodeSystem.HCPCS,
        "HPC": CodeSystem.HCPCS,
        "CPT": CodeSystem.HCPCS,
        "CPT4": CodeSystem.HCPCS,
        "C4": CodeSystem.HCPCS,
    }
)


def _route(rxr: Segment | None, mappings: Mappings) -> tuple[Route, str]:
    """RXR-1 through the site's route table, and what the feed wrote.

    Identifier, alternate identifier, then the texts (`^Intravenous`, `^IV push`: many
    feeds send no code), each looked up in `mappings/routes.csv`, whose rows hold codes
    and text synonyms alike. When none matches, the first value sent is kept so the
    unknown-route hold can name it.
    """
    if rxr is None:
        return Route.UNKNOWN, ""
    sent = [v for c in (1, 4, 2, 5) if (v := rxr.get(1, c).strip())]
    for value in sent:
        if (route := mappings.route(value)) is not Route.UNKNOWN:
            return route, _safe(value)
    return Route.UNKNOWN, _safe(sent[0]) if sent else ""


def _method(rxr: Segment | None, mappings: Mappings) -> Method:
    """RXR-4 (identifier, then alternate) through the site's method table.

    Some feeds put the method in the route (RXR-1 `IVP`, `IV PUSH`): when RXR-4
    says nothing, a route code that names a push or a pump counts too, so a
    documented push is not mistaken for an infusion (D4).
    """
    if rxr is None:
        return Method.UNSPECIFIED
    for component in (1, 4, 2, 5):  # codes, then texts (`^IV push`)
        code = rxr.get(4, component).strip()
        if code and (method := mappings.method(code)) is not Method.UNSPECIFIED:
            return method
    for component in (1, 4, 2, 5):
        code = rxr.get(1, component).strip()
        if code and (method := mappings.method(code)) in (Method.PUSH, Method.PUMP):
            return method
    return Method.UNSPECIFIED


def _indications(segment: Segment, field: int) -> tuple[Code, ...]:
    """Repeating CWE of reasons; ICD-10-CM codes get the FHIR system and the dotted form.

    A repetition with text but no code (`^Hydration post chemotherapy`) is still a
    documented indication (D12), as a FHIR `reasonCode.text` is: system `text`, no code.
    """
    enc = segment.encoding
    found: list[Code] = []
    for rep in segment.repetitions(field):
        for code_c, text_c, system_c in ((1, 2, 3), (4, 5, 6)):
            code = enc.part(rep, code_c).strip()
            if code:
                found.append(_indication(code, enc.part(rep, text_c), enc.part(rep, system_c)))
                break
        else:
            text = enc.part(rep, 2).strip() or enc.part(rep, 5).strip()
            if text:
                found.append(Code(CodeSystem.TEXT.value, "", text))
    return tuple(found)


def _indication(code: str, text: str, system: str) -> Code:
    if system.strip().upper() in _ICD10_SYSTEMS:
        return Code(CodeSystem.ICD10CM.value, normalize(code), text.strip())
    return Code(system.strip(), code, text.strip())


def _order_indications(group: _OrderGroup) -> tuple[Code, ...]:
    """D12 allows the order's indication: RXE-27 give indication, else RXO-20."""
    for name, field in (("RXE", 27), ("RXO", 20)):
        segment = _first(group.head, name)
        found = _indications(segment, field) if segment else ()
        if found:
            return found
    return ()


def _status(rxa: Segment) -> AdminStatus:
    """RXA-20 (table 0322); empty means complete, as HL7 defines it."""
    status = _COMPLETION.get(rxa.get(20).strip().upper())
    if status is None:
        raise _fault(rxa, 20, "completion status is not CP, PA, NA or RE")
    return status


_COMPLETION: Mapping[str, AdminStatus] = MappingProxyType(
    {
        "": AdminStatus.COMPLETED,
        "CP": AdminStatus.COMPLETED,
        "PA": AdminStatus.PARTIAL,
        "NA": AdminStatus.NOT_DONE,
        "RE": AdminStatus.NOT_DONE,
    }
)


def _action(rxa: Segment) -> Action:
    """RXA-21 (table 0206); empty means add."""
    action = _ACTIONS.get(rxa.get(21).strip().upper())
    if action is None:
        raise _fault(rxa, 21, "action code is not A, U or D")
    return action


_ACTIONS: Mapping[str, Action] = MappingProxyType(
    {"": Action.ADD, "A": Action.ADD, "U": Action.UPDATE, "D": Action.DELETE}
)


def _waste(tail: Iterable[Segment], mappings: Mappings) -> Quantity | None:
    """Documented discard (D17): OBX after the RXA whose OBX-3 means discarded amount."""
    total: Quantity | None = None
    for obx in tail:
        if obx.name != "OBX" or not _is_waste(obx, mappings):
            continue
        if obx.get(11).strip().upper() in ("W", "D", "X"):  # wrong, deleted, cannot obtain
            continue
        amount = _amount(obx, 5, 6, "") if obx.get(5).strip() else _sn_amount(obx)
        if amount is None:
            continue
        if total is not None and total.unit != amount.unit:
            raise _fault(obx, 6, "waste units differ between OBX segments")
        total = amount if total is None else Quantity(total.value + amount.value, total.unit)
    return total


def _is_waste(obx: Segment, mappings: Mappings) -> bool:
    codes = mappings.observation_codes
    for component in (1, 4):
        code = obx.get(3, component).strip()
        if code and (
            code.upper() == "WASTE"
            or codes.get(code) == DISCARDED_AMOUNT
            or codes.get(code.upper()) == DISCARDED_AMOUNT
        ):
            return True
    return False


def _sn_amount(obx: Segment) -> Quantity | None:
    """OBX-5 as a structured numeric (`^12.5`): the number sits in component 2."""
    text = obx.get(5, 2).strip()
    if not text:
        return None
    return _quantity(_decimal(obx, 5, text), obx.get(6).strip() or obx.get(6, 2).strip())


def _expected_minutes(group: _OrderGroup) -> int | None:
    """TQ1-13 occurrence duration; before 2.5, the TQ duration in ORC-7.3 or RXE-1.3."""
    tq1 = _first(group.head, "TQ1")
    if tq1 is not None and tq1.get(13).strip():
        return _cq_minutes(tq1)
    candidates = (group.orc, _first(group.head, "RXE"))
    for segment, field in zip(candidates, (7, 1), strict=True):
        match = _TQ_DURATION.match(segment.get(field, 3).strip().upper()) if segment else None
        if match:
            return _minutes(Decimal(match.group(2)), match.group(1))
    return None


def _cq_minutes(tq1: Segment) -> int | None:
    """`46^h`: a quantity with a UCUM or HL7 time unit; an unknown unit tells nothing."""
    value = _decimal(tq1, 13, tq1.get(13).strip())
    return _minutes(value, tq1.get(13, 2, 1).strip() or tq1.get(13, 2, 2).strip())


_SECONDS: Mapping[str, int] = MappingProxyType(
    {
        "S": 1,
        "SEC": 1,
        "M": 60,
        "MIN": 60,
        "MINUTE": 60,
        "MINUTES": 60,
        "H": 3600,
        "HR": 3600,
        "HRS": 3600,
        "HOUR": 3600,
        "HOURS": 3600,
        "D": 86400,
        "DAY": 86400,
        "DAYS": 86400,
        "W": 604800,
        "WK": 604800,
    }
)


def _minutes(value: Decimal, unit: str) -> int | None:
    """A duration in whole minutes; None for a unit we do not know (months, years, typos)."""
    seconds = _SECONDS.get(unit.strip().upper())
    if seconds is None:
        return None
    return int((value * seconds / 60).to_integral_value(ROUND_HALF_UP))


# --- values ------------------------------------------------------------------------------


def _required_ts(segment: Segment, field: int, context: _Context) -> datetime:
    value = _optional_ts(segment, field, context)
    if value is None:
        raise _fault(segment, field, "timestamp is empty")
    return value


def _optional_ts(segment: Segment, field: int, context: _Context) -> datetime | None:
    text = segment.get(field).strip()
    if not text:
        return None
    try:
        return parse_ts(text, context.site_tz)
    except TimestampError as exc:
        raise _fault(segment, field, str(exc)) from None


def _decimal(segment: Segment, field: int, text: str) -> Decimal:
    """An HL7 NM: digits with an optional sign and point; amounts are never negative."""
    if not _NUMBER.match(text):
        raise _fault(segment, field, "not a number")
    value = Decimal(text)
    if value < 0:
        raise _fault(segment, field, "negative amount")
    return value


def _amount(segment: Segment, field: int, unit_field: int, default_unit: str) -> Quantity | None:
    """NM value plus CWE units (code, else text), normalized."""
    text = segment.get(field).strip()
    if not text:
        return None
    value = _decimal(segment, field, text)
    unit = segment.get(unit_field).strip() or segment.get(unit_field, 2).strip()
    return _quantity(value, unit or default_unit)


def _rate(rxa: Segment) -> Quantity | None:
    """RXA-12 as `<number>[ <unit>]` (unit default mL/h); HL7's own `H1` codes are ignored."""
    text = rxa.get(12).strip()
    if not text or _TIME_UNIT_CODE.match(text.upper()):
        return None
    match = _RATE.match(text)
    if match is None:
        raise _fault(rxa, 12, "rate is not a number")
    value = _decimal(rxa, 12, match.group(1))
    unit = match.group(2).strip() or rxa.get(12, 2).strip() or "mL/h"
    return _quantity(value, unit)


def _quantity(value: Decimal, unit: str) -> Quantity:
    """Units to `mg`, `mcg`, `g`, `mL`, `units`, `mL/h`; litres become mL; others stay as sent."""
    key = unit.strip().upper()
    if key in _LITRES:
        return Quantity(value * 1000, "mL")
    return Quantity(value, _UNITS.get(key, unit.strip()))


def _unit_table(groups: Mapping[str, tuple[str, ...]]) -> Mapping[str, str]:
    return MappingProxyType(
        {variant.upper(): unit for unit, variants in groups.items() for variant in variants}
    )


_UNITS = _unit_table(
    {
        "mg": ("mg", "milligram", "milligrams"),
        "mcg": ("mcg", "ug", "µg", "μg", "microgram", "micrograms"),
        "g": ("g", "gm", "gram", "grams"),
        "mL": ("mL", "cc", "milliliter", "milliliters", "millilitre", "millilitres"),
        "units": ("U", "unit", "units", "IU", "[IU]", "[iU]", "[U]"),
        "mL/h": ("mL/h", "mL/hr", "mL/hour", "cc/h", "cc/hr"),
    }
)
_LITRES = frozenset({"L", "LITER", "LITRE", "LITERS", "LITRES"})
