"""Setting and claim type (R1, R2, R44, D1, D2, D26) through the shipped mapping tables."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from adapter.core.assembly import Encounter
from adapter.core.coder import CodingContext, code_encounter
from adapter.core.emit.claim import OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.mappings import Mappings
from adapter.core.model import Diagnosis, PatientClass, Visit
from adapter.core.options import CodingOptions
from adapter.icd10 import is_billable
from adapter.mappings_loader import default_mappings_dir, load_mappings
from tests.coding_support import NY, admin, push


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(default_mappings_dir())


def _claim(
    mappings: Mappings, location: str | None, options: CodingOptions | None = None
) -> dict[str, Any]:
    visit = Visit("t", "test|1", "V1", PatientClass.OUTPATIENT, location=location,
                  diagnoses=(Diagnosis("C34.90", 1, 0),))  # fmt: skip
    chemo = replace(admin("J9271", "200 mg", "09:00", "09:30", ndc=None))
    encounter = Encounter("visit:V1", "test|1", visit, (chemo, push("J2405", "8 mg", "09:40", ndc=None)),
                          visit.diagnoses, ())  # fmt: skip
    ctx = CodingContext(mappings, options or CodingOptions(), NY, is_billable)
    coded = code_encounter(encounter, ctx)
    return encounter_resources(coded, mappings, OutputOptions())[0]


def _codes(claim: dict[str, Any]) -> list[str]:
    return [i["productOrService"]["coding"][0]["code"] for i in claim["item"]]


def test_office_location_gives_a_professional_claim_with_place_of_service_11_r1_d1(
    mappings: Mappings,
) -> None:
    claim = _claim(mappings, "ONC-OFFICE")
    assert claim["type"]["coding"][0]["code"] == "professional"
    assert {i["locationCodeableConcept"]["coding"][0]["code"] for i in claim["item"]} == {"11"}
    assert all("revenue" not in i for i in claim["item"])


def test_hospital_location_gives_an_institutional_claim_with_revenue_codes_r2_r44_d1(
    mappings: Mappings,
) -> None:
    claim = _claim(mappings, "ONCINF")
    assert claim["type"]["coding"][0]["code"] == "institutional"
    revenue = {
        i["productOrService"]["coding"][0]["code"]: i["revenue"]["coding"][0]["code"]
        for i in claim["item"]
    }
    assert revenue["96413"] == "0335"
    assert revenue["96375"] == "0260"
    assert revenue["J9271"] == "0636"


def test_unmapped_location_uses_the_configured_default_hospital_outpatient_d1(
    mappings: Mappings,
) -> None:
    assert _claim(mappings, "NOWHERE")["type"]["coding"][0]["code"] == "institutional"


def test_cli_setting_override_wins_over_the_location_mapping_d1(mappings: Mappings) -> None:
    claim = _claim(mappings, "ONCINF", CodingOptions(setting_override="office"))
    assert claim["type"]["coding"][0]["code"] == "professional"


def test_every_claim_item_carries_the_rule_trace(mappings: Mappings) -> None:
    claim = _claim(mappings, "ONC-OFFICE")
    for item in claim["item"]:
        traces = [e["valueString"] for e in item["extension"] if e["url"].endswith("coding-trace")]
        assert traces and traces[0].strip()
    initial = next(
        i for i in claim["item"] if i["productOrService"]["coding"][0]["code"] == "96413"
    )
    trace = next(
        e["valueString"] for e in initial["extension"] if e["url"].endswith("coding-trace")
    )
    assert {"R13", "R14", "R18"} <= set(trace.split())


def test_no_evaluation_and_management_code_is_ever_emitted_r29_d26(mappings: Mappings) -> None:
    assert not [c for c in _codes(_claim(mappings, "ONC-OFFICE")) if c.startswith(("99", "G0463"))]
