"""Encounter assembly: which administrations belong to one outpatient visit.

Grouping key: the visit number (PV1-19) or FHIR Encounter reference when the
feed has one; otherwise patient + local service date + location. A visit that
crosses midnight keeps its visit key, so it stays one encounter (R3, R17, D9).
Corrections (D23) are applied here: a later UPDATE replaces the earlier
administration with the same source id, DELETE / entered-in-error removes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import tzinfo

from adapter.core.infusion_time import local_date
from adapter.core.model import (
    Action,
    Administration,
    AdminStatus,
    ConditionEvent,
    Coverage,
    CoverageEvent,
    Diagnosis,
    Event,
    PatientClass,
    Visit,
    VisitStatus,
)


@dataclass(frozen=True, slots=True)
class Encounter:
    """One outpatient visit, ready to code."""

    key: str
    patient_id: str
    visit: Visit | None
    administrations: tuple[Administration, ...]
    diagnoses: tuple[Diagnosis, ...]
    coverages: tuple[Coverage, ...]


def encounter_key(admin: Administration, site_tz: tzinfo) -> str:
    """Visit number when known; else patient + local service date + location.

    An inpatient administration without a visit number (PV1-2 `I`, no PV1-19) gets a
    day key of its own (`...|inpatient`): it must never join that day's outpatient
    encounter, which would then bill it (D2).
    """
    if admin.visit_id:
        return f"visit:{admin.visit_id}"
    day = local_date(admin.start, site_tz).isoformat()
    key = f"day:{admin.patient_id}|{day}|{admin.location or ''}"
    return f"{key}|inpatient" if admin.patient_class is PatientClass.INPATIENT else key


def assemble(events: Iterable[Event], site_tz: tzinfo) -> tuple[Encounter, ...]:
    """Group events into encounters, in order of first appearance."""
    admins: dict[str, dict[str, Administration]] = {}
    keys: dict[str, str] = {}  # source id -> encounter key, so a correction finds its original
    visits: dict[str, Visit] = {}
    conditions: list[ConditionEvent] = []
    patient_coverages: dict[str, list[Coverage]] = {}
    for event in events:
        if isinstance(event, Administration):
            _apply_administration(admins, keys, event, site_tz)
        elif isinstance(event, Visit):
            visits[event.visit_id] = _merge_visit(visits.get(event.visit_id), event)
        elif isinstance(event, ConditionEvent):
            conditions.append(event)
        elif isinstance(event, CoverageEvent):
            patient_coverages.setdefault(event.patient_id, []).append(event.coverage)
    return tuple(
        _build(key, group, visits, conditions, patient_coverages)
        for key, group in admins.items()
        if group
    )


def _apply_administration(
    admins: dict[str, dict[str, Administration]],
    keys: dict[str, str],
    admin: Administration,
    site_tz: tzinfo,
) -> None:
    """Insert, replace or remove by source id; a replacement may move the admin between keys."""
    old_key = keys.pop(admin.source_id, None)
    if old_key is not None:
        admins[old_key].pop(admin.source_id, None)
    removed = admin.action is Action.DELETE or admin.status is AdminStatus.ENTERED_IN_ERROR
    if removed:
        return
    key = encounter_key(admin, site_tz)
    admins.setdefault(key, {})[admin.source_id] = admin
    keys[admin.source_id] = key


def _merge_visit(old: Visit | None, new: Visit) -> Visit:
    """A later ADT (A08 update, A03 discharge) refines the visit; empty fields keep old values."""
    if old is None:
        return new
    return replace(
        new,
        patient_class=new.patient_class
        if new.patient_class is not PatientClass.UNKNOWN
        else old.patient_class,
        status=new.status if new.status is not VisitStatus.UNKNOWN else old.status,
        location=new.location or old.location,
        facility=new.facility or old.facility,
        start=new.start or old.start,
        end=new.end or old.end,
        diagnoses=new.diagnoses or old.diagnoses,
        coverages=new.coverages or old.coverages,
    )


def _build(
    key: str,
    group: dict[str, Administration],
    visits: dict[str, Visit],
    conditions: list[ConditionEvent],
    patient_coverages: dict[str, list[Coverage]],
) -> Encounter:
    administrations = tuple(group.values())
    first = administrations[0]
    visit = visits.get(first.visit_id) if first.visit_id else None
    diagnoses = list(visit.diagnoses if visit else ())
    seen = {d.code for d in diagnoses}
    for condition in conditions:
        if condition.patient_id != first.patient_id or condition.code in seen:
            continue
        if condition.visit_id is None or condition.visit_id == first.visit_id:
            diagnoses.append(Diagnosis(condition.code, None, len(diagnoses)))
            seen.add(condition.code)
    coverages = tuple(visit.coverages if visit and visit.coverages else ()) or tuple(
        patient_coverages.get(first.patient_id, ())
    )
    return Encounter(key, first.patient_id, visit, administrations, tuple(diagnoses), coverages)
