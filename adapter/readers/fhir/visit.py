"""Visit context: Encounter -> Visit, Condition -> ConditionEvent, Coverage -> CoverageEvent.

These give the administrations their setting (D1, D2), diagnoses (D19) and
payer. R4 and R5 spellings are both accepted (Encounter.class Coding vs
CodeableConcept list, period vs actualPeriod, diagnosis.condition Reference vs
CodeableReference list, Coverage.payor vs insurer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from adapter.core.model import (
    ConditionEvent,
    Coverage,
    CoverageEvent,
    Diagnosis,
    PatientClass,
    Visit,
    VisitStatus,
)
from adapter.readers.fhir.codes import coding_code, concept_codes, icd10_code
from adapter.readers.fhir.datetimes import get_datetime, get_period
from adapter.readers.fhir.elements import (
    JsonObject,
    as_object,
    get_int,
    get_object,
    get_objects,
    get_str,
)
from adapter.readers.fhir.reading import Reading, Skip, split_reference

_CLASS: Mapping[str, PatientClass] = MappingProxyType(
    {
        "IMP": PatientClass.INPATIENT,
        "ACUTE": PatientClass.INPATIENT,
        "NONAC": PatientClass.INPATIENT,
        "AMB": PatientClass.OUTPATIENT,
        "OBSENC": PatientClass.OUTPATIENT,
        "EMER": PatientClass.EMERGENCY,
    }
)

_STATUS: Mapping[str, VisitStatus] = MappingProxyType(
    {
        "planned": VisitStatus.PLANNED,
        "arrived": VisitStatus.IN_PROGRESS,
        "triaged": VisitStatus.IN_PROGRESS,
        "in-progress": VisitStatus.IN_PROGRESS,
        "onleave": VisitStatus.IN_PROGRESS,
        "on-hold": VisitStatus.IN_PROGRESS,
        "finished": VisitStatus.FINISHED,
        "completed": VisitStatus.FINISHED,
        "discharged": VisitStatus.FINISHED,
        "discontinued": VisitStatus.FINISHED,
        "cancelled": VisitStatus.CANCELLED,
        "entered-in-error": VisitStatus.CANCELLED,
    }
)

_VOID_CONDITION = frozenset({"entered-in-error", "refuted"})
_VOID_COVERAGE = frozenset({"entered-in-error", "cancelled"})


# --- Encounter ----------------------------------------------------------------------------


def read_encounter(r: Reading) -> Visit:
    """The visit the administrations point to by `context` (R4) / `encounter` (R5)."""
    res, path, tz = r.resource, r.path, r.scope.site_tz
    patient_id = r.patient_id("subject")
    period = get_period(res, "actualPeriod", path, tz) or get_period(res, "period", path, tz)
    return Visit(
        source_id=r.source_id,
        patient_id=patient_id,
        visit_id=r.own_id,
        patient_class=_patient_class(res, path),
        status=_STATUS.get(get_str(res, "status", path) or "", VisitStatus.UNKNOWN),
        location=_location(r),
        facility=_facility(res, path),
        start=period.start if period else None,
        end=period.end if period else None,
        diagnoses=_diagnoses(r),
    )


def _patient_class(res: JsonObject, path: str) -> PatientClass:
    """R4 class is a Coding, R5 a list of CodeableConcept: the first known code decides."""
    for code in _class_codes(res, path):
        found = _CLASS.get(code.upper())
        if found is not None:
            return found
    return PatientClass.UNKNOWN


def _class_codes(res: JsonObject, path: str) -> Iterator[str]:
    value = res.get("class")
    if value is None:
        return
    cpath = f"{path}.class"
    if isinstance(value, list):
        for index, item in enumerate(value):
            ipath = f"{cpath}[{index}]"
            yield from (c.code for c in concept_codes(as_object(item, ipath), ipath))
        return
    node = as_object(value, cpath)
    if "coding" in node:
        yield from (c.code for c in concept_codes(node, cpath))
    else:
        code = coding_code(node, cpath)
        if code is not None:
            yield code.code


def _location(r: Reading) -> str | None:
    """The first Encounter.location: its id (the location mapping key), else its display."""
    for lpath, entry in get_objects(r.resource, "location", r.path):
        ref = get_object(entry, "location", lpath)
        if ref is None:
            continue
        found = _reference_key(r, ref, f"{lpath}.location", "Location")
        if found:
            return found
    return None


def _facility(res: JsonObject, path: str) -> str | None:
    """serviceProvider: the display, else the Organization id."""
    ref = get_object(res, "serviceProvider", path)
    if ref is None:
        return None
    rpath = f"{path}.serviceProvider"
    display = get_str(ref, "display", rpath)
    if display:
        return display
    reference = get_str(ref, "reference", rpath)
    parts = split_reference(reference) if reference else None
    return parts[1] if parts else reference


def _reference_key(r: Reading, ref: JsonObject, path: str, rtype: str) -> str | None:
    reference = get_str(ref, "reference", path)
    if reference is not None:
        if reference.startswith("#"):
            return reference[1:]
        found = r.id_of(reference, rtype)
        if found:
            return found
    return get_str(ref, "display", path)


def _diagnoses(r: Reading) -> tuple[Diagnosis, ...]:
    """ICD-10-CM codes in source order with the source rank (D19); unresolvable ones drop out."""
    found: list[Diagnosis] = []
    seen: set[str] = set()
    for dpath, entry in get_objects(r.resource, "diagnosis", r.path):
        rank = get_int(entry, "rank", dpath)
        for code in _diagnosis_codes(r, entry, dpath):
            if code not in seen:
                seen.add(code)
                found.append(Diagnosis(code, rank, len(found)))
    return tuple(found)


def _diagnosis_codes(r: Reading, entry: JsonObject, path: str) -> Iterator[str]:
    value = entry.get("condition")
    cpath = f"{path}.condition"
    if isinstance(value, list):  # R5: CodeableReference list
        for index, item in enumerate(value):
            ipath = f"{cpath}[{index}]"
            node = as_object(item, ipath)
            concept = get_object(node, "concept", ipath)
            code = icd10_code(concept, f"{ipath}.concept") if concept else None
            ref = get_object(node, "reference", ipath)
            code = code or (_condition_code(r, ref, f"{ipath}.reference") if ref else None)
            if code:
                yield code
    elif value is not None:  # R4: Reference(Condition)
        code = _condition_code(r, as_object(value, cpath), cpath)
        if code:
            yield code


def _condition_code(r: Reading, ref: JsonObject, path: str) -> str | None:
    """The ICD-10-CM code of a contained or bundled Condition."""
    reference = get_str(ref, "reference", path)
    found = r.resolve(reference) if reference else None
    if found is None or found.resource.get("resourceType") != "Condition":
        return None
    concept = get_object(found.resource, "code", found.path)
    return icd10_code(concept, f"{found.path}.code") if concept else None


# --- Condition ----------------------------------------------------------------------------


def read_condition(r: Reading) -> ConditionEvent | Skip:
    """A diagnosis for the patient, tied to the encounter when it names one."""
    res, path = r.resource, r.path
    patient_id = r.patient_id("subject")
    status = _verification(res, path)
    if status in _VOID_CONDITION:
        return Skip(f"Condition {status}")
    concept = get_object(res, "code", path)
    code = icd10_code(concept, f"{path}.code") if concept else None
    if code is None:
        return Skip("Condition without an ICD-10-CM code")
    return ConditionEvent(
        source_id=r.source_id,
        patient_id=patient_id,
        code=code,
        visit_id=r.encounter_id("encounter", "context"),
        recorded=get_datetime(res, "recordedDate", path, r.scope.site_tz),
    )


def _verification(res: JsonObject, path: str) -> str:
    """R4/R5 verificationStatus is a CodeableConcept; STU3 sent a bare code."""
    value = res.get("verificationStatus")
    if isinstance(value, str):
        return value
    concept = get_object(res, "verificationStatus", path)
    if concept is None:
        return ""
    codes = concept_codes(concept, f"{path}.verificationStatus")
    return codes[0].code if codes else ""


# --- Coverage -----------------------------------------------------------------------------


def read_coverage(r: Reading) -> CoverageEvent | Skip:
    """The patient's payer: R4 payor[0] / R5 insurer, and the member id (subscriberId)."""
    res, path = r.resource, r.path
    patient_id = r.patient_id("beneficiary")
    status = get_str(res, "status", path) or ""
    if status in _VOID_COVERAGE:
        return Skip(f"Coverage {status}")
    payer, payer_id = _payer(res, path)
    coverage = Coverage(r.source_id, payer, payer_id, _member_id(res, path))
    return CoverageEvent(patient_id, coverage)


def _payer(res: JsonObject, path: str) -> tuple[str, str]:
    """(name, id): display else reference id; the id is the reference id else identifier."""
    payors = get_objects(res, "payor", path)
    rpath = payors[0][0] if payors else f"{path}.insurer"
    ref = payors[0][1] if payors else get_object(res, "insurer", path)
    if ref is None:
        return "", ""
    reference = get_str(ref, "reference", rpath)
    parts = split_reference(reference) if reference else None
    identifier = get_object(ref, "identifier", rpath)
    ident = get_str(identifier, "value", f"{rpath}.identifier") if identifier else None
    payer_id = parts[1] if parts else (ident or "")
    return get_str(ref, "display", rpath) or payer_id or (reference or ""), payer_id


def _member_id(res: JsonObject, path: str) -> str:
    """R4 subscriberId is a string, R5 a list of Identifier."""
    value = res.get("subscriberId")
    if isinstance(value, list):
        for ipath, identifier in get_objects(res, "subscriberId", path):
            found = get_str(identifier, "value", ipath)
            if found:
                return found
        return ""
    return get_str(res, "subscriberId", path) or ""
