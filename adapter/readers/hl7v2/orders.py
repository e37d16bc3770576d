"""The order structure: a message cut at each ORC and each order at each RXA, what every RXA
of one order shares (`Scope`: order id, expected duration, RXR/RXC, indications), and the
RDE/RDS readers (orders kept as context, never charged: D26).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

from adapter.core.model import Code, OrderEvent, PatientClass, Provider
from adapter.hl7.er7 import Message, Segment
from adapter.readers.hl7v2.diagnoses import read_indications
from adapter.readers.hl7v2.header import Context, Handler, Header, Outcome
from adapter.readers.hl7v2.values import read_decimal, read_provider
from adapter.readers.hl7v2.visit import read_patient_class, read_patient_id

_TQ_DURATION = re.compile(r"([SMHDW])(\d+)\Z")


@dataclass(frozen=True, slots=True)
class AdminBlock:
    """An RXA and the segments after it up to the next RXA or ORC (its RXR, RXC, OBX).

    `group_rxr` is the RXR of its ADMINISTRATION group: RAS_O17 sends `{RXA+} RXR`, so
    RXAs that follow each other directly share the RXR after the last of them.
    """

    rxa: Segment
    tail: tuple[Segment, ...]
    group_rxr: Segment | None = None


@dataclass(frozen=True, slots=True)
class OrderGroup:
    """An ORC with its order-level segments (TQ1, RXO, RXE, RXR, RXC) and administrations."""

    ordinal: int  # 0 for segments before any ORC
    orc: Segment | None
    head: tuple[Segment, ...]
    admins: tuple[AdminBlock, ...]


@dataclass(frozen=True, slots=True)
class Scope:
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
    orderer: Provider | None = None  # ORC-12
    filler_order: str = ""  # ORC-3.1


def order_scope(group: OrderGroup, patient: str, pv1: Segment | None) -> Scope:
    return Scope(
        patient_id=patient,
        visit_id=(pv1.get(19).strip() or None) if pv1 else None,
        location=(pv1.get(3).strip() or None) if pv1 else None,
        patient_class=read_patient_class(pv1.get(2).strip().upper())
        if pv1
        else PatientClass.UNKNOWN,
        order_id=read_order_id(group),
        expected_minutes=read_expected_minutes(group),
        rxr=last_segment(group.head, "RXR"),
        rxcs=tuple(s for s in group.head if s.name == "RXC"),
        indications=read_order_indications(group),
        orderer=read_provider(group.orc, 12) if group.orc is not None else None,
        filler_order=group.orc.get(3).strip() if group.orc is not None else "",
    )


def read_orders(kind: str) -> Handler:
    """RDE/RDS: kept as context, never charged (D26): one OrderEvent per ORC."""

    def read(message: Message, header: Header, context: Context) -> Outcome:
        patient = read_patient_id(message)
        pv1 = message.first("PV1")
        visit_id = (pv1.get(19).strip() or None) if pv1 else None
        return tuple(
            OrderEvent(_order_event_id(group, header, kind), patient, kind, visit_id)
            for group in order_groups(message.segments)
            if group.orc is not None
        )

    return read


def _order_event_id(group: OrderGroup, header: Header, kind: str) -> str:
    source = f"hl7:{read_order_id(group)}:{kind}"
    rxd = first_segment(group.head, "RXD")
    return f"{source}:{rxd.get(1).strip()}" if rxd and rxd.get(1).strip() else source


def order_groups(segments: Iterable[Segment]) -> tuple[OrderGroup, ...]:
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
        OrderGroup(i, orc, tuple(head), _with_group_rxr([AdminBlock(r, tuple(t)) for r, t in b]))
        for i, (orc, head, b) in enumerate(groups)
    )


def _with_group_rxr(blocks: list[AdminBlock]) -> tuple[AdminBlock, ...]:
    """Give each RXA its ADMINISTRATION group's RXR (ORDER{... ADMINISTRATION{RXA+ RXR}}).

    Walking back from the end: an RXA with its own RXR starts a group; an RXA followed
    directly by the next RXA (empty tail) belongs to that next RXA's group. An RXA whose
    tail has other segments but no RXR is a group of its own without a route there.
    """
    found: list[AdminBlock] = []
    following: Segment | None = None
    for block in reversed(blocks):
        own = first_segment(block.tail, "RXR")
        if own is not None:
            following = own
        elif block.tail:
            following = None
        found.append(replace(block, group_rxr=following))
    return tuple(reversed(found))


def first_segment(segments: Iterable[Segment], name: str) -> Segment | None:
    return next((s for s in segments if s.name == name), None)


def last_segment(segments: Iterable[Segment], name: str) -> Segment | None:
    found = None
    for segment in segments:
        if segment.name == name:
            found = segment
    return found


def read_order_id(group: OrderGroup) -> str:
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


def read_order_indications(group: OrderGroup) -> tuple[Code, ...]:
    """D12 allows the order's indication: RXE-27 give indication, else RXO-20."""
    for name, field in (("RXE", 27), ("RXO", 20)):
        segment = first_segment(group.head, name)
        found = read_indications(segment, field) if segment else ()
        if found:
            return found
    return ()


def read_expected_minutes(group: OrderGroup) -> int | None:
    """TQ1-13 occurrence duration; before 2.5, the TQ duration in ORC-7.3 or RXE-1.3."""
    tq1 = first_segment(group.head, "TQ1")
    if tq1 is not None and tq1.get(13).strip():
        return _cq_minutes(tq1)
    candidates = (group.orc, first_segment(group.head, "RXE"))
    for segment, field in zip(candidates, (7, 1), strict=True):
        match = _TQ_DURATION.match(segment.get(field, 3).strip().upper()) if segment else None
        if match:
            return to_minutes(Decimal(match.group(2)), match.group(1))
    return None


def _cq_minutes(tq1: Segment) -> int | None:
    """`46^h`: a quantity with a UCUM or HL7 time unit; an unknown unit tells nothing."""
    value = read_decimal(tq1, 13, tq1.get(13).strip())
    return to_minutes(value, tq1.get(13, 2, 1).strip() or tq1.get(13, 2, 2).strip())


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


def to_minutes(value: Decimal, unit: str) -> int | None:
    """A duration in whole minutes; None for a unit we do not know (months, years, typos)."""
    seconds = _SECONDS.get(unit.strip().upper())
    if seconds is None:
        return None
    return int((value * seconds / 60).to_integral_value(ROUND_HALF_UP))
