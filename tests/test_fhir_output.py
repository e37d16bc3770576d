"""FHIR R4 output shapes (Claim, ChargeItem, Task, Bundle) and deterministic ids (D22, D24).

The encounters are built by hand, so these tests pin the output contract independently of
the coder. `SAMPLES` is reused by test_conformance.py, which validates every resource.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.catalog import Catalog
from adapter.core.charges import ChargeLine, CodedEncounter, LineKind, Outcome
from adapter.core.emit.bundle import bundle, dumps
from adapter.core.emit.claim import NO_COVERAGE_DISPLAY, OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.emit.lines import ndc_11
from adapter.core.emit.urls import (
    EXT_CODING_TRACE,
    EXT_HOLD_REASON,
    EXT_MODIFIER,
    EXT_SOURCE_ADMINISTRATION,
)
from adapter.core.holds import Hold, HoldReason
from adapter.core.ids import bundle_id, charge_item_id, claim_id, is_fhir_id, task_id
from adapter.core.mappings import HoldReasonText, Mappings

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
UCUM = "http://unitsofmeasure.org"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
EDT = timezone(timedelta(hours=-4))
DAY = date(2026, 3, 10)
START = datetime(2026, 3, 10, 9, 0, tzinfo=EDT)
END = datetime(2026, 3, 10, 13, 45, tzinfo=EDT)
MISSING_STOP_SENTENCE = "An infusion has no stop time: document it in the MAR, then release."

MAPPINGS = Mappings(
    catalog=Catalog.build([], []),
    revenue_codes=MappingProxyType({"964*": "0335", "963*": "0260", "J*": "0636"}),
    hold_reasons=MappingProxyType(
        {"missing-stop-time": HoldReasonText("missing-stop-time", MISSING_STOP_SENTENCE)}
    ),
    code_labels=MappingProxyType(
        {"96413": "Chemo IV infusion, first hour", "J9045": "Carboplatine 50 mg — flacon"}
    ),
)
OPTIONS = OutputOptions(provider_display="Riverside Infusion Center", provider_npi="1234567893")


def _line(kind: LineKind, code: str, units: int = 1, **extra: Any) -> ChargeLine:
    fields: dict[str, Any] = {
        "rules": ("R13", "R14"),
        "sources": ("fhir:MedicationAdministration/ma-1",),
    }
    fields.update(extra)
    return ChargeLine(kind=kind, code=code, units=units, service_date=DAY, **fields)


OFFICE_LINES = (
    _line(LineKind.ADMINISTRATION, "96413", rules=("R13", "R14", "R18", "D4")),
    _line(LineKind.ADMINISTRATION, "96415", 2, rules=("R17",)),
    _line(LineKind.ADMINISTRATION, "96375", modifiers=("59",)),
    _line(
        LineKind.DRUG,
        "J9045",
        9,
        modifiers=("JZ",),
        ndc="0703-4239-01",
        drug_amount=Decimal("450"),
        drug_unit="mg",
        rules=("R33", "D16", "D17"),
    ),
    _line(
        LineKind.DRUG,
        "J9267",
        263,
        ndc="00069007601",
        drug_amount=Decimal("262.5"),
        drug_unit="mg",
        sources=("fhir:MedicationAdministration/ma-2",),
    ),
    _line(
        LineKind.WASTE,
        "J9267",
        37,
        modifiers=("JW",),
        ndc="00069007601",
        drug_amount=Decimal("37.5"),
        drug_unit="mg",
        sources=("fhir:MedicationAdministration/ma-2",),
    ),
)

OFFICE_CODED = CodedEncounter(
    encounter_key="visit:V100",
    patient_id="Patient/p-100",
    setting="office",
    lines=OFFICE_LINES,
    diagnoses=("Z51.11", "C50.911", "C77.3", "E11.9", "I10"),
    holds=(),
    period_start=START,
    period_end=END,
    place_of_service="11",
    coverage_payer="Acme Health Plan",
    coverage_id="cov-77",
)

HOSPITAL_HELD = CodedEncounter(
    encounter_key="day:MRN12345|2026-03-10|ONC2",
    patient_id="MRN12345",
    setting="hospital-outpatient",
    lines=(
        _line(LineKind.ADMINISTRATION, "96365", sources=("hl7:EPIC:MSG001#RXA1",)),
        _line(
            LineKind.ADMINISTRATION, "96366", modifiers=("XU",), sources=("hl7:EPIC:MSG001#RXA2",)
        ),
        _line(
            LineKind.DRUG,
            "J1100",
            12,
            ndc="63323-0165-01",
            drug_amount=Decimal("12"),
            drug_unit="mg",
            sources=("hl7:EPIC:MSG001#RXA1",),
        ),
        _line(LineKind.DRUG, "J2405", 8, rules=(), sources=()),
    ),
    diagnoses=("C34.90",),
    holds=(
        Hold(HoldReason.MISSING_STOP_TIME, "RXA hl7:EPIC:MSG001#RXA2 has no stop time."),
        Hold(
            HoldReason.WASTE_UNDETERMINED,
            "Container type unknown for NDC 63323-0165-01.",
            source_id="hl7:EPIC:MSG001#RXA1",
        ),
    ),
    period_start=START,
    period_end=END,
)

HOSPITAL_CODED = replace(
    HOSPITAL_HELD,
    encounter_key="visit:V300",
    patient_id="Patient/p-300",
    holds=(),
    coverage_payer="Medicare Part B",
)

OFFICE_HELD_NO_DIAGNOSIS = replace(
    OFFICE_CODED,
    encounter_key="visit:V400",
    diagnoses=(),
    place_of_service="",
    coverage_payer="",
    coverage_id="",
    holds=(Hold(HoldReason.MISSING_DIAGNOSIS, "No neoplasm code for a chemotherapy visit."),),
)

SKIPPED = replace(OFFICE_CODED, encounter_key="visit:V500", skip_reason="inpatient")

SAMPLES = {
    "office-coded": OFFICE_CODED,
    "hospital-held": HOSPITAL_HELD,
    "hospital-coded": HOSPITAL_CODED,
    "office-held-no-diagnosis": OFFICE_HELD_NO_DIAGNOSIS,
}


def resources_of(coded: CodedEncounter) -> list[dict[str, Any]]:
    return encounter_resources(coded, MAPPINGS, OPTIONS)


def all_sample_resources() -> list[dict[str, Any]]:
    """Every resource the samples produce, plus the Bundle holding them."""
    resources = [r for coded in SAMPLES.values() for r in resources_of(coded)]
    return [*resources, bundle(resources, bundle_id(c.encounter_key for c in SAMPLES.values()))]


def _by_type(resources: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == resource_type]


def _claim(coded: CodedEncounter) -> dict[str, Any]:
    (claim,) = _by_type(resources_of(coded), "Claim")
    return claim


def _coding(concept: dict[str, Any]) -> tuple[str, str]:
    (coding,) = concept["coding"]
    return coding["system"], coding["code"]


def _ext(element: dict[str, Any], url: str) -> list[Any]:
    return [
        next(v for k, v in e.items() if k.startswith("value"))
        for e in element.get("extension", [])
        if e["url"] == url
    ]


# --- which resources -------------------------------------------------------------------


def test_skipped_encounter_produces_nothing() -> None:
    assert SKIPPED.outcome is Outcome.SKIPPED
    assert resources_of(SKIPPED) == []


def test_coded_encounter_is_a_claim_and_one_charge_item_per_line() -> None:
    types = [r["resourceType"] for r in resources_of(OFFICE_CODED)]
    assert types == ["Claim"] + ["ChargeItem"] * len(OFFICE_LINES)


def test_held_encounter_adds_one_review_task() -> None:
    types = [r["resourceType"] for r in resources_of(HOSPITAL_HELD)]
    assert types == ["Claim"] + ["ChargeItem"] * 4 + ["Task"]


# --- Claim -----------------------------------------------------------------------------


def test_office_claim_header() -> None:
    claim = _claim(OFFICE_CODED)
    assert claim["id"] == claim_id("visit:V100")
    assert claim["status"] == "active"
    assert _coding(claim["type"]) == (
        "http://terminology.hl7.org/CodeSystem/claim-type",
        "professional",
    )
    assert claim["use"] == "claim"
    assert claim["patient"] == {"reference": "Patient/p-100"}
    assert claim["billablePeriod"] == {
        "start": "2026-03-10T09:00:00-04:00",
        "end": "2026-03-10T13:45:00-04:00",
    }
    assert claim["created"] == "2026-03-10T13:45:00-04:00"
    assert claim["provider"]["display"] == "Riverside Infusion Center"
    assert claim["provider"]["identifier"]["value"] == "1234567893"
    assert _coding(claim["priority"])[1] == "normal"
    assert "supportingInfo" not in claim
    assert "extension" not in claim


def test_claim_insurance_names_the_payer() -> None:
    (insurance,) = _claim(OFFICE_CODED)["insurance"]
    assert insurance["sequence"] == 1
    assert insurance["focal"] is True
    assert insurance["coverage"] == {
        "display": "Acme Health Plan",
        "identifier": {"system": "urn:charge-adapter:coverage", "value": "cov-77"},
    }


def test_claim_without_coverage_carries_the_self_pay_placeholder() -> None:
    (insurance,) = _claim(HOSPITAL_HELD)["insurance"]
    assert insurance["coverage"] == {"display": NO_COVERAGE_DISPLAY}


def test_claim_diagnoses_keep_the_coded_order() -> None:
    diagnoses = _claim(OFFICE_CODED)["diagnosis"]
    assert [d["sequence"] for d in diagnoses] == [1, 2, 3, 4, 5]
    assert [_coding(d["diagnosisCodeableConcept"]) for d in diagnoses] == [
        (ICD10CM, code) for code in OFFICE_CODED.diagnoses
    ]


def test_office_items_codes_modifiers_and_place_of_service() -> None:
    items = _claim(OFFICE_CODED)["item"]
    assert [i["sequence"] for i in items] == [1, 2, 3, 4, 5, 6]
    assert [_coding(i["productOrService"]) for i in items[:4]] == [
        (CPT, "96413"),
        (CPT, "96415"),
        (CPT, "96375"),
        (HCPCS, "J9045"),
    ]
    assert [[_coding(m) for m in i.get("modifier", [])] for i in items] == [
        [],
        [],
        [(CPT, "59")],
        [(HCPCS, "JZ")],
        [],
        [(HCPCS, "JW")],
    ]
    assert [i["quantity"] for i in items] == [{"value": u} for u in (1, 2, 1, 9, 263, 37)]
    assert {i["servicedDate"] for i in items} == {"2026-03-10"}
    assert {_coding(i["locationCodeableConcept"]) for i in items} == {(POS, "11")}
    assert all("revenue" not in i for i in items)


def test_item_display_is_our_label_or_nothing() -> None:
    items = _claim(OFFICE_CODED)["item"]
    assert items[0]["productOrService"]["coding"][0]["display"] == "Chemo IV infusion, first hour"
    assert "display" not in items[1]["productOrService"]["coding"][0]


def test_every_line_points_to_at_most_four_diagnoses() -> None:
    items = _claim(OFFICE_CODED)["item"]
    assert {tuple(i["diagnosisSequence"]) for i in items} == {(1, 2, 3, 4)}
    held_items = _claim(HOSPITAL_HELD)["item"]
    assert {tuple(i["diagnosisSequence"]) for i in held_items} == {(1,)}


def test_no_diagnosis_means_no_pointers() -> None:
    claim = _claim(OFFICE_HELD_NO_DIAGNOSIS)
    assert "diagnosis" not in claim
    assert all("diagnosisSequence" not in i for i in claim["item"])


def test_drug_line_carries_its_ndc_and_amount() -> None:
    items = _claim(OFFICE_CODED)["item"]
    assert "detail" not in items[0]
    assert items[3]["detail"] == [
        {
            "sequence": 1,
            "productOrService": {"coding": [{"system": NDC, "code": "00703-4239-01"}]},
            "quantity": {"value": 450, "unit": "mg", "system": UCUM, "code": "mg"},
        }
    ]
    (waste_detail,) = items[5]["detail"]
    assert _coding(waste_detail["productOrService"]) == (NDC, "00069-0076-01")
    assert waste_detail["quantity"]["value"] == 37.5


def test_items_carry_the_coding_trace_and_sources() -> None:
    first, second = _claim(OFFICE_CODED)["item"][:2]
    assert _ext(first, EXT_CODING_TRACE) == ["R13 R14 R18 D4"]
    assert _ext(second, EXT_CODING_TRACE) == ["R17"]
    assert _ext(first, EXT_SOURCE_ADMINISTRATION) == ["fhir:MedicationAdministration/ma-1"]


def test_line_without_rules_or_sources_has_no_empty_extension() -> None:
    untraced = _claim(HOSPITAL_HELD)["item"][3]
    assert "extension" not in untraced


def test_institutional_claim_has_type_of_bill_and_revenue_codes() -> None:
    claim = _claim(HOSPITAL_CODED)
    assert _coding(claim["type"])[1] == "institutional"
    (info,) = claim["supportingInfo"]
    assert _coding(info["category"]) == (
        "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType",
        "typeofbill",
    )
    assert _coding(info["code"]) == ("https://www.nubc.org/CodeSystem/TypeOfBill", "0131")
    assert [_coding(i["revenue"]) for i in claim["item"]] == [
        (REVENUE, "0260"),
        (REVENUE, "0260"),
        (REVENUE, "0636"),
        (REVENUE, "0636"),
    ]
    assert all("locationCodeableConcept" not in i for i in claim["item"])


def test_missing_revenue_mapping_omits_revenue() -> None:
    bare = Mappings(catalog=Catalog.build([], []))
    (claim, *_) = encounter_resources(HOSPITAL_CODED, bare, OPTIONS)
    assert all("revenue" not in i for i in claim["item"])


def test_held_claim_is_draft_and_shows_its_hold_reasons() -> None:
    claim = _claim(HOSPITAL_HELD)
    assert claim["status"] == "draft"
    assert _ext(claim, EXT_HOLD_REASON) == ["missing-stop-time", "waste-undetermined"]


def test_mrn_patient_is_referenced_by_identifier() -> None:
    assert _claim(HOSPITAL_HELD)["patient"] == {
        "identifier": {"system": "urn:charge-adapter:patient", "value": "MRN12345"}
    }


def test_place_of_service_comes_from_the_encounter_and_defaults_to_office() -> None:
    outpatient_pos = replace(OFFICE_CODED, place_of_service="19")
    assert {_coding(i["locationCodeableConcept"])[1] for i in _claim(outpatient_pos)["item"]} == {
        "19"
    }
    no_pos = _claim(OFFICE_HELD_NO_DIAGNOSIS)["item"]
    assert {_coding(i["locationCodeableConcept"])[1] for i in no_pos} == {"11"}


def test_created_never_uses_the_clock() -> None:
    only_start = replace(OFFICE_CODED, period_end=None)
    assert _claim(only_start)["created"] == "2026-03-10T09:00:00-04:00"
    assert _claim(only_start)["billablePeriod"] == {"start": "2026-03-10T09:00:00-04:00"}
    no_period = replace(OFFICE_CODED, period_start=None, period_end=None)
    assert _claim(no_period)["created"] == "2026-03-10"
    assert "billablePeriod" not in _claim(no_period)


def test_naive_datetime_is_refused() -> None:
    naive = replace(OFFICE_CODED, period_end=datetime(2026, 3, 10, 13, 45))
    with pytest.raises(ValueError, match="naive"):
        resources_of(naive)


# --- ChargeItem ------------------------------------------------------------------------


def test_charge_items_mirror_the_claim_items() -> None:
    resources = resources_of(OFFICE_CODED)
    claim, items = resources[0], _by_type(resources, "ChargeItem")
    for line, item, claim_item in zip(OFFICE_LINES, items, claim["item"], strict=True):
        assert item["id"] == charge_item_id("visit:V100", line)
        assert item["identifier"] == [
            {"system": "urn:charge-adapter:charge-line", "value": item["id"]}
        ]
        assert item["status"] == "billable"
        assert _coding(item["code"]) == _coding(claim_item["productOrService"])
        assert item["subject"] == claim["patient"]
        assert item["occurrenceDateTime"] == "2026-03-10"
        assert item["quantity"] == {"value": line.units}
        assert item["enteredDate"] == claim["created"]
        assert item["supportingInformation"] == [{"reference": f"Claim/{claim['id']}"}]
        assert _ext(item, EXT_CODING_TRACE) == _ext(claim_item, EXT_CODING_TRACE)
        assert [_coding(c) for c in item["reason"]] == [
            (ICD10CM, code) for code in ("Z51.11", "C50.911", "C77.3", "E11.9")
        ]


def test_charge_item_products_and_modifiers() -> None:
    items = _by_type(resources_of(OFFICE_CODED), "ChargeItem")
    assert "productCodeableConcept" not in items[0]
    assert _coding(items[3]["productCodeableConcept"]) == (NDC, "00703-4239-01")
    assert _ext(items[3], EXT_MODIFIER) == [{"system": HCPCS, "code": "JZ"}]
    assert _ext(items[2], EXT_MODIFIER) == [{"system": CPT, "code": "59"}]


def test_charge_item_service_references_the_source_administrations() -> None:
    fhir_item = _by_type(resources_of(OFFICE_CODED), "ChargeItem")[0]
    assert fhir_item["service"] == [{"reference": "MedicationAdministration/ma-1"}]
    hl7_item = _by_type(resources_of(HOSPITAL_HELD), "ChargeItem")[0]
    assert hl7_item["service"] == [
        {
            "identifier": {
                "system": "urn:charge-adapter:administration",
                "value": "hl7:EPIC:MSG001#RXA1",
            },
            "display": "HL7 v2 RXA",
        }
    ]


def test_held_charge_items_are_planned() -> None:
    items = _by_type(resources_of(HOSPITAL_HELD), "ChargeItem")
    assert {i["status"] for i in items} == {"planned"}
    assert items[0]["subject"] == {
        "identifier": {"system": "urn:charge-adapter:patient", "value": "MRN12345"}
    }


# --- Task ------------------------------------------------------------------------------


def test_held_task_shape() -> None:
    (task,) = _by_type(resources_of(HOSPITAL_HELD), "Task")
    assert task["id"] == task_id(HOSPITAL_HELD.encounter_key)
    assert task["status"] == "requested"
    assert task["intent"] == "order"
    assert _coding(task["code"]) == (
        "https://charge-adapter.org/fhir/CodeSystem/task-code",
        "charge-review",
    )
    assert task["focus"] == {"reference": f"Claim/{claim_id(HOSPITAL_HELD.encounter_key)}"}
    assert task["for"] == _claim(HOSPITAL_HELD)["patient"]
    assert task["authoredOn"] == "2026-03-10T13:45:00-04:00"


def test_task_has_one_input_per_hold_with_an_actionable_sentence() -> None:
    (task,) = _by_type(resources_of(HOSPITAL_HELD), "Task")
    inputs = task["input"]
    assert [_coding(i["type"]) for i in inputs] == [
        ("https://charge-adapter.org/fhir/CodeSystem/task-input", "hold-reason")
    ] * 2
    values = [i["valueCodeableConcept"] for i in inputs]
    assert [_coding(v) for v in values] == [
        ("https://charge-adapter.org/fhir/CodeSystem/hold-reason", "missing-stop-time"),
        ("https://charge-adapter.org/fhir/CodeSystem/hold-reason", "waste-undetermined"),
    ]
    assert (
        values[0]["text"] == f"{MISSING_STOP_SENTENCE} RXA hl7:EPIC:MSG001#RXA2 has no stop time."
    )
    assert values[1]["text"] == (
        "Container type unknown for NDC 63323-0165-01. (source hl7:EPIC:MSG001#RXA1)"
    )


# --- ids and determinism (D24) ---------------------------------------------------------


def test_ids_are_pinned() -> None:
    """Changing the id scheme would duplicate every Claim on reprocessing: it must not drift."""
    assert claim_id("visit:V100") == "clm-876f6680a26e092e52a50e9ede0b144f"
    assert task_id("visit:V100") == "tsk-a71eaee17fe522456c034711f17fcc76"
    assert charge_item_id("visit:V100", OFFICE_LINES[0]) == "chg-f1403e2870200cf74e93ad7a98b08b40"


def test_same_input_gives_byte_identical_output() -> None:
    first = dumps(bundle(resources_of(OFFICE_CODED), "b1"))
    rebuilt = replace(OFFICE_CODED, lines=tuple(replace(line) for line in OFFICE_LINES))
    assert dumps(bundle(resources_of(rebuilt), "b1")) == first


def test_units_correction_keeps_the_charge_item_and_claim_ids() -> None:
    corrected_line = replace(OFFICE_LINES[4], units=250, drug_amount=Decimal("250"))
    corrected = replace(OFFICE_CODED, lines=(*OFFICE_LINES[:4], corrected_line, OFFICE_LINES[5]))
    before, after = resources_of(OFFICE_CODED), resources_of(corrected)
    assert [r["id"] for r in before] == [r["id"] for r in after]
    assert after[5]["quantity"] == {"value": 250}
    assert before[5]["quantity"] == {"value": 263}


@pytest.mark.parametrize(
    "change",
    [
        {"code": "J9267X"},
        {"modifiers": ("JW",)},
        {"service_date": date(2026, 3, 11)},
        {"kind": LineKind.WASTE},
    ],
)
def test_line_identity_changes_the_charge_item_id(change: dict[str, Any]) -> None:
    line = OFFICE_LINES[4]
    assert charge_item_id("k", replace(line, **change)) != charge_item_id("k", line)


def test_modifier_order_does_not_change_the_id() -> None:
    line = replace(OFFICE_LINES[2], modifiers=("59", "JW"))
    reordered = replace(line, modifiers=("JW", "59"))
    assert charge_item_id("k", line) == charge_item_id("k", reordered)


def test_lines_sharing_an_identity_get_distinct_ids() -> None:
    twin = replace(OFFICE_CODED, lines=(OFFICE_LINES[2], replace(OFFICE_LINES[2], units=3)))
    items = _by_type(resources_of(twin), "ChargeItem")
    assert items[0]["id"] == charge_item_id("visit:V100", OFFICE_LINES[2])
    assert items[0]["id"] != items[1]["id"]


def test_ids_differ_per_encounter_and_kind() -> None:
    assert claim_id("visit:A") != claim_id("visit:B")
    assert claim_id("visit:A")[4:] != task_id("visit:A")[4:]


@given(st.text(min_size=0, max_size=200))
def test_ids_are_fhir_id_safe_for_any_key(key: str) -> None:
    for value in (claim_id(key), task_id(key), charge_item_id(key, OFFICE_LINES[0])):
        assert is_fhir_id(value)


def test_bundle_id_ignores_order_and_duplicates() -> None:
    assert bundle_id(["b", "a", "a"]) == bundle_id(["a", "b"])
    assert is_fhir_id(bundle_id(["a"]))


# --- Bundle and JSON -------------------------------------------------------------------


def test_bundle_is_a_collection_with_stable_unique_urn_uuids() -> None:
    resources = [r for coded in SAMPLES.values() for r in resources_of(coded)]
    first = bundle(resources, "run-1")
    assert first["resourceType"] == "Bundle"
    assert first["type"] == "collection"
    assert first["id"] == "run-1"
    urls = [e["fullUrl"] for e in first["entry"]]
    assert all(u.startswith("urn:uuid:") for u in urls)
    assert len(set(urls)) == len(urls)
    assert [e["resource"] for e in first["entry"]] == resources
    assert urls == [e["fullUrl"] for e in bundle(resources, "run-2")["entry"]]


def test_bundle_with_a_base_url_uses_resolvable_full_urls() -> None:
    claim = _claim(OFFICE_CODED)
    (entry,) = bundle([claim], "b", base_url="https://fhir.example.org/r4/")["entry"]
    assert entry["fullUrl"] == f"https://fhir.example.org/r4/Claim/{claim['id']}"


def test_bundle_refuses_a_non_fhir_id() -> None:
    with pytest.raises(ValueError, match="FHIR id"):
        bundle([], "not a valid id!")


def test_dumps_is_indented_unescaped_and_starts_with_the_resource_type() -> None:
    text = dumps(bundle(resources_of(OFFICE_CODED), "b1"))
    assert text.startswith('{\n  "resourceType": "Bundle",\n  "id": "b1"')
    assert "Carboplatine 50 mg — flacon" in text
    assert json.loads(text)["entry"][0]["resource"]["resourceType"] == "Claim"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00069007601", "00069-0076-01"),
        ("0703-4239-01", "00703-4239-01"),
        ("63323-165-01", "63323-0165-01"),
        ("63323-0165-1", "63323-0165-01"),
        ("00069-0076-01", "00069-0076-01"),
        ("6332301651", "6332301651"),  # undashed 10 digits: ambiguous, left as given
    ],
)
def test_ndc_is_emitted_in_11_digit_5_4_2_form(raw: str, expected: str) -> None:
    assert ndc_11(raw) == expected


def test_compact_dumps_is_the_same_document() -> None:
    document = bundle(resources_of(HOSPITAL_HELD), "b1")
    compact = dumps(document, pretty=False)
    assert "\n" not in compact
    assert json.loads(compact) == json.loads(dumps(document))
