"""Encounter assembly (R3, R17, D9, D23): grouping and corrections."""

from __future__ import annotations

from dataclasses import replace

from adapter.core.assembly import assemble
from adapter.core.model import Action, AdminStatus, ConditionEvent, Visit
from tests.coding_support import NY, admin


def test_administrations_with_one_visit_number_are_one_encounter_even_across_midnight_r3_r17() -> (
    None
):
    first = admin("J9312", "700 mg", "22:00", "23:59")
    second = replace(admin("J2405", "8 mg", "00:30", "00:45", day=16, end_day=16))
    (encounter,) = assemble([first, second], NY)
    assert len(encounter.administrations) == 2


def test_without_a_visit_number_patient_date_and_location_group_the_encounter() -> None:
    a = replace(admin("J9206", "342 mg", "09:00", "10:00"), visit_id=None, location="ONCINF")
    b = replace(admin("J2405", "8 mg", "11:00"), visit_id=None, location="ONCINF")
    c = replace(admin("J2405", "8 mg", "09:00", day=16), visit_id=None, location="ONCINF")
    encounters = assemble([a, b, c], NY)
    assert [len(e.administrations) for e in encounters] == [2, 1]


def test_a_separate_visit_the_same_day_is_a_new_encounter_r3() -> None:
    a = admin("J9206", "342 mg", "09:00", "10:00")
    b = replace(admin("J9206", "342 mg", "15:00", "16:00"), visit_id="V2")
    assert len(assemble([a, b], NY)) == 2


def test_rxa21_update_replaces_the_administration_with_the_same_source_id_d23() -> None:
    original = admin("J9206", "342 mg", "09:00", "10:00", source_id="hl7:O1:0:1")
    corrected = admin(
        "J9206", "300 mg", "09:00", "10:31", source_id="hl7:O1:0:1", action=Action.UPDATE
    )
    (encounter,) = assemble([original, corrected], NY)
    assert encounter.administrations == (corrected,)


def test_rxa21_delete_removes_the_administration_d23() -> None:
    original = admin("J9206", "342 mg", "09:00", "10:00", source_id="hl7:O1:0:1")
    deleted = admin(
        "J9206", "342 mg", "09:00", "10:00", source_id="hl7:O1:0:1", action=Action.DELETE
    )
    assert assemble([original, deleted], NY) == ()


def test_fhir_entered_in_error_removes_the_earlier_version_d23() -> None:
    original = admin(
        "J9206", "342 mg", "09:00", "10:00", source_id="fhir:MedicationAdministration/1"
    )
    error = replace(original, status=AdminStatus.ENTERED_IN_ERROR)
    keep = admin("J2405", "8 mg", "11:00")
    (encounter,) = assemble([original, keep, error], NY)
    assert encounter.administrations == (keep,)


def test_visit_diagnoses_and_encounter_conditions_both_reach_the_encounter() -> None:
    visit = Visit("adt:1", "test|1", "V1", diagnoses=())
    condition = ConditionEvent("fhir:Condition/c1", "test|1", "C18.7", visit_id="V1")
    other_visit = ConditionEvent("fhir:Condition/c2", "test|1", "C50.911", visit_id="V9")
    (encounter,) = assemble(
        [visit, admin("J9206", "342 mg", "09:00", "10:00"), condition, other_visit], NY
    )
    assert [d.code for d in encounter.diagnoses] == ["C18.7"]


def test_a_later_adt_update_keeps_what_it_does_not_resend() -> None:
    first = Visit("adt:1", "test|1", "V1", location="ONCINF")
    update = Visit("adt:2", "test|1", "V1")
    (encounter,) = assemble([first, update, admin("J9206", "342 mg", "09:00", "10:00")], NY)
    assert encounter.visit is not None and encounter.visit.location == "ONCINF"


def test_a_late_ras_does_not_reopen_a_finished_visit() -> None:
    from adapter.core.model import VisitStatus

    finished = Visit("adt:3", "test|1", "V1", status=VisitStatus.FINISHED)
    from_ras = Visit("ras:1", "test|1", "V1")
    (encounter,) = assemble([finished, admin("J9206", "342 mg", "09:00", "10:00"), from_ras], NY)
    assert encounter.visit is not None and encounter.visit.status is VisitStatus.FINISHED
