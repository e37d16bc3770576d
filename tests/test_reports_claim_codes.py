"""The Claim of an encounter held as unknown drug carries the codes that were not matched.

Why: the "top unknown drugs" report counts them from the stored Claims; without them on the
Claim it would have to read each hold's sentence back (the codes as values, never parsed).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from adapter.core.emit.claim import OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.emit.urls import EXT_UNMATCHED_DRUG
from adapter.core.holds import HoldReason
from adapter.core.model import Code, CodeSystem, Ingredient
from tests.coding_support import MAPPINGS, admin, code, quantity

UNKNOWN_NDC = "99999000101"


def _claim_of(*ingredient_codes: Code) -> dict[str, Any]:
    dose = replace(
        admin("J9271", "200 mg", "09:00", "09:30"),
        ingredients=(Ingredient(ingredient_codes, quantity("200 mg")),),
    )
    coded = code(dose)
    assert [h.reason for h in coded.holds] == [HoldReason.UNKNOWN_DRUG]
    return encounter_resources(coded, MAPPINGS, OutputOptions())[0]


def _unmatched(claim: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in claim["extension"] if e["url"] == EXT_UNMATCHED_DRUG]


def test_an_unknown_ndc_is_on_the_held_claim_as_system_and_code() -> None:
    claim = _claim_of(Code(CodeSystem.NDC, UNKNOWN_NDC, "Mystery drug 10 mg/mL"))
    assert _unmatched(claim) == [
        {"url": EXT_UNMATCHED_DRUG, "valueCoding": {"system": CodeSystem.NDC, "code": UNKNOWN_NDC}}
    ]  # the feed's display text is not copied


def test_every_code_of_the_unmatched_drug_is_kept_and_a_text_only_drug_adds_none() -> None:
    claim = _claim_of(Code(CodeSystem.NDC, UNKNOWN_NDC), Code(CodeSystem.LOCAL, "LOC42"))
    assert [e["valueCoding"]["code"] for e in _unmatched(claim)] == [UNKNOWN_NDC, "LOC42"]
    text_only = _claim_of(Code(CodeSystem.TEXT, "", "some drug"))
    assert [e["url"] for e in text_only["extension"]] == [
        "https://charge-adapter.org/fhir/StructureDefinition/hold-reason"
    ]
