"""Encounter assembly: which administrations belong to one outpatient visit.

Grouping key: the visit number (PV1-19) or FHIR Encounter reference when the
feed has one; otherwise patient + local service date + location. A visit that
crosses midnight keeps its visit key, so it stays one encounter (R3, R17, D9).
Corrections (D23) are applied here: a later UPDATE replaces the earlier
administration with the same source id, DELETE / entered-in-error removes it.
Identity is per patient: senders reuse order numbers across patients, and one
patient's correction must never replace another patient's administration.
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
    # every patient id the visit's own messages (ADT, the RAS's PV1, FHIR Encounter) named:
    # more than one means the visit number is shared, and nothing may be billed from it
    visit_patients: frozenset[str] = frozenset()


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


_Identity = tuple[str, str]  # (patient id, source id)


@dataclass(frozen=True, slots=True)
class AssemblyNotes:
    """What assembly did besides grouping, counted so nothing leaves without a reason.

    `replaced`: an administration read again (a resend, an UPDATE) replaced its earlier
    copy; `deleted`: removed by DELETE / entered-in-error; `unmatched_updates`: an
    UPDATE with no original, kept as given; `unmatched_deletes`: a DELETE with no
    original (nothing to remove); `shared_ids`: order/administration ids
    (ORC-3/ORC-2 + RXA-1/RXA-2) used by more than one patient, kept apart.
    """

    replaced: int = 0
    deleted: int = 0
    unmatched_updates: int = 0
    unmatched_deletes: int = 0
    shared_ids: int = 0


@dataclass
class _Admins:
    """Administrations by encounter key, findable by identity and by correction key."""

    by_key: dict[str, dict[_Identity, Administration]]
    where: dict[_Identity, str]  # identity -> encounter key
    family: dict[_Identity, list[_Identity]]  # (patient, correction key) -> identities
    counts: dict[str, int]


def assemble(events: Iterable[Event], site_tz: tzinfo) -> tuple[Encounter, ...]:
    """Group events into encounters, in order of first appearance."""
    return assemble_noted(events, site_tz)[0]


def assemble_noted(
    events: Iterable[Event], site_tz: tzinfo
) -> tuple[tuple[Encounter, ...], AssemblyNotes]:
    """`assemble`, plus what became of administrations that are not in an encounter."""
    state = _Admins({}, {}, {}, {})
    visits: dict[str, Visit] = {}
    conditions: list[ConditionEvent] = []
    patient_coverages: dict[str, list[Coverage]] = {}
    patients_of: dict[str, set[str]] = {}
    visit_patients: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event, Administration):
            _apply_administration(state, event, site_tz)
            correction = event.correction_key or event.source_id
            patients_of.setdefault(correction, set()).add(event.patient_id)
        elif isinstance(event, Visit):
            visits[event.visit_id] = _merge_visit(visits.get(event.visit_id), event)
            visit_patients.setdefault(event.visit_id, set()).add(event.patient_id)
        elif isinstance(event, ConditionEvent):
            conditions.append(event)
        elif isinstance(event, CoverageEvent):
            patient_coverages.setdefault(event.patient_id, []).append(event.coverage)
    encounters = tuple(
        _build(key, group, visits, conditions, patient_coverages, visit_patients)
        for key, group in state.by_key.items()
        if group
    )
    counts = state.counts
    notes = AssemblyNotes(
        replaced=counts.get("replaced", 0),
        deleted=counts.get("deleted", 0),
        unmatched_updates=counts.get("unmatched_updates", 0),
        unmatched_deletes=counts.get("unmatched_deletes", 0),
        shared_ids=sum(1 for patients in patients_of.values() if len(patients) > 1),
    )
    return encounters, notes


def _apply_administration(state: _Admins, admin: Administration, site_tz: tzinfo) -> None:
    """Insert, replace or remove; a replacement may move the admin between keys.

    The same identity (patient + source id: a resend, an UPDATE of the same start and
    drug) replaces its earlier copy. A correction (UPDATE, DELETE, entered-in-error)
    whose identity is new changed a distinguishing field (start time, code): it
    replaces the patient's administration with the same correction key (order +
    RXA-1/RXA-2), preferring one with the same drug, then the latest read.
    """
    ident = (admin.patient_id, admin.source_id)
    removed = admin.action is Action.DELETE or admin.status is AdminStatus.ENTERED_IN_ERROR
    correction = removed or admin.action is Action.UPDATE
    target = ident if ident in state.where else None
    if target is None and correction:
        target = _original(state, admin)
    if target is not None:
        _remove(state, target)
        _count(state, "deleted" if removed else "replaced")
    elif correction:
        _count(state, "unmatched_deletes" if removed else "unmatched_updates")
    if removed:
        return
    key = encounter_key(admin, site_tz)
    state.by_key.setdefault(key, {})[ident] = admin
    state.where[ident] = key
    state.family.setdefault(_family(admin), []).append(ident)


def _family(admin: Administration) -> _Identity:
    return admin.patient_id, admin.correction_key or admin.source_id


def _original(state: _Admins, admin: Administration) -> _Identity | None:
    """The administration a correction with a new identity stands for, if any."""
    candidates = [i for i in state.family.get(_family(admin), []) if i in state.where]
    if not candidates:
        return None
    given = _given_codes(admin)
    same_drug = [i for i in candidates if _given_codes(_lookup(state, i)) == given]
    return (same_drug or candidates)[-1]


def _lookup(state: _Admins, ident: _Identity) -> Administration:
    return state.by_key[state.where[ident]][ident]


def _given_codes(admin: Administration) -> frozenset[tuple[str, str]]:
    return frozenset((c.system, c.code) for i in admin.ingredients for c in i.codes)


def _remove(state: _Admins, ident: _Identity) -> None:
    key = state.where.pop(ident)
    state.by_key[key].pop(ident, None)


def _count(state: _Admins, what: str) -> None:
    state.counts[what] = state.counts.get(what, 0) + 1


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
    group: dict[_Identity, Administration],
    visits: dict[str, Visit],
    conditions: list[ConditionEvent],
    patient_coverages: dict[str, list[Coverage]],
    visit_patients: dict[str, set[str]],
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
    named = frozenset(visit_patients.get(first.visit_id, ())) if first.visit_id else frozenset()
    return Encounter(
        key, first.patient_id, visit, administrations, tuple(diagnoses), coverages, named
    )
