"""Patient and visit: PID-3 patient id, PV1 visit context, the ADT reader with its DG1
diagnoses and IN1 coverages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from adapter.core.model import Coverage, PatientClass, Visit, VisitStatus
from adapter.hl7.er7 import Er7Error, Message, Segment
from adapter.readers.hl7v2.diagnoses import read_diagnoses
from adapter.readers.hl7v2.faults import fault
from adapter.readers.hl7v2.header import Context, Header, Outcome
from adapter.readers.hl7v2.values import optional_ts, read_provider


def read_adt(message: Message, header: Header, context: Context) -> Outcome:
    """ADT A01/A04/A08/A03: the visit, its ranked diagnoses and its coverages."""
    patient = read_patient_id(message)
    pv1 = message.first("PV1")
    status = _adt_status(header.trigger, pv1)
    visit = read_visit(pv1, patient, status, context) if pv1 else None
    if visit is None:
        return "no visit number (PV1-19)"
    diagnoses = read_diagnoses(message.all("DG1"))
    coverages = _coverages(message.all("IN1"), visit.visit_id)
    return (replace(visit, diagnoses=diagnoses, coverages=coverages),)


def _adt_status(trigger: str, pv1: Segment | None) -> VisitStatus:
    """A03 closes the visit; so does any ADT that carries a discharge time (PV1-45)."""
    if trigger == "A03" or (pv1 is not None and pv1.get(45).strip()):
        return VisitStatus.FINISHED
    return VisitStatus.IN_PROGRESS


def read_patient_id(message: Message) -> str:
    """`<PID-3 assigning authority>|<id>` from the MR repetition, else the first with an id."""
    pid = message.first("PID")
    if pid is None:
        raise Er7Error("segment PID", "missing")
    enc = pid.encoding
    reps = [r for r in pid.repetitions(3) if enc.part(r, 1).strip()]
    if not reps:
        raise fault(pid, 3, "patient identifier is empty")
    chosen = next((r for r in reps if enc.part(r, 5).strip().upper() == "MR"), reps[0])
    authority = enc.part(chosen, 4, 1).strip() or enc.part(chosen, 4, 2).strip()
    return f"{authority}|{enc.part(chosen, 1).strip()}"


def read_visit(pv1: Segment, patient: str, status: VisitStatus, context: Context) -> Visit | None:
    """Visit context from PV1; none without a visit number (PV1-19) to key it."""
    visit_id = pv1.get(19).strip()
    if not visit_id:
        return None
    return Visit(
        source_id=f"hl7:visit:{visit_id}",
        patient_id=patient,
        visit_id=visit_id,
        patient_class=read_patient_class(pv1.get(2).strip().upper()),
        status=status,
        location=pv1.get(3).strip() or None,
        facility=pv1.get(3, 4).strip() or pv1.get(39).strip() or None,
        start=optional_ts(pv1, 44, context),
        end=optional_ts(pv1, 45, context),
        attending=read_provider(pv1, 7),
    )


def read_patient_class(code: str) -> PatientClass:
    """PV1-2: inpatient is not billed here (D2); every other class is outpatient."""
    if not code:
        return PatientClass.UNKNOWN
    return _PATIENT_CLASS.get(code, PatientClass.OUTPATIENT)


_PATIENT_CLASS: Mapping[str, PatientClass] = MappingProxyType(
    {"I": PatientClass.INPATIENT, "E": PatientClass.EMERGENCY}
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
