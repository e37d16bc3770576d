"""Every resource we emit is conformant FHIR R4, by two independent validators.

1. fhir.resources R4B models (pydantic, generated from the spec; extra keys forbidden).
2. @medplum/core's validator over the official R4 StructureDefinitions, plus the
   required-binding check in tests/validator/validate.mjs (tests/fhir_validator.py).

Controls keep the second one honest: a FHIR specification example Claim must pass, and
deliberately broken Claims must fail, so a validator that silently accepts everything
cannot turn this file green.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from tests.fhir_validator import ValidationResult, require_medplum, validate_with_medplum
from tests.test_fhir_output import SAMPLES, all_sample_resources, resources_of

SPEC_CLAIM = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "samples"
    / "fhir"
    / "r4"
    / "Claim-960150.json"
)
MODELS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "Claim": Claim.model_validate,
    "ChargeItem": ChargeItem.model_validate,
    "Task": Task.model_validate,
    "Bundle": Bundle.model_validate,
}
OUR_RESOURCES = all_sample_resources()


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _broken_claims() -> dict[str, dict[str, Any]]:
    """Our own Claim, broken in ways each layer of the validator must notice."""
    claim = resources_of(SAMPLES["office-coded"])[0]
    missing_patient = {k: v for k, v in claim.items() if k != "patient"}
    bad_status = {**claim, "status": "approved"}
    bad_extension = copy.deepcopy(claim)
    bad_extension["item"][0]["extension"][0].pop("valueString")
    return {
        "missing-patient": missing_patient,
        "bad-status": bad_status,
        "extension-without-value": bad_extension,
    }


BROKEN = _broken_claims()


@pytest.fixture(scope="module")
def medplum() -> dict[str, ValidationResult]:
    """One node run for everything: ours, the positive control and the negative controls."""
    require_medplum()
    batch = {_label(r): r for r in OUR_RESOURCES}
    batch |= {f"broken:{name}": claim for name, claim in BROKEN.items()}
    if SPEC_CLAIM.is_file():
        batch["spec:Claim-960150"] = json.loads(SPEC_CLAIM.read_text(encoding="utf-8"))
    results = validate_with_medplum(list(batch.values()))
    return dict(zip(batch, results, strict=True))


def test_the_samples_cover_every_resource_type() -> None:
    assert {r["resourceType"] for r in OUR_RESOURCES} == set(MODELS)


@pytest.mark.parametrize("resource", OUR_RESOURCES, ids=_label)
def test_resource_validates_with_fhir_resources_r4b(resource: dict[str, Any]) -> None:
    model = MODELS[resource["resourceType"]](resource)
    assert model.id == resource["id"]


@pytest.mark.parametrize("resource", OUR_RESOURCES, ids=_label)
def test_fhir_resources_round_trip_loses_nothing(resource: dict[str, Any]) -> None:
    """A misspelt element would be rejected; a mistyped one would come back different."""
    model = MODELS[resource["resourceType"]](resource)
    assert json.loads(model.model_dump_json(exclude_none=True)) == resource


@pytest.mark.parametrize("resource", OUR_RESOURCES, ids=_label)
def test_resource_validates_with_medplum(
    resource: dict[str, Any], medplum: dict[str, ValidationResult]
) -> None:
    result = medplum[_label(resource)]
    assert result.resource_type == resource["resourceType"]
    assert result.errors == [], result.describe()


def test_positive_control_spec_claim_is_valid(medplum: dict[str, ValidationResult]) -> None:
    if "spec:Claim-960150" not in medplum:
        pytest.skip(f"positive control missing: {SPEC_CLAIM} (the shared reference samples)")
    result = medplum["spec:Claim-960150"]
    assert (result.resource_type, result.id) == ("Claim", "960150")
    assert result.errors == [], result.describe()


@pytest.mark.parametrize(
    ("name", "expression"),
    [
        ("missing-patient", "Claim.patient"),
        ("bad-status", "Claim.status"),
        ("extension-without-value", "Claim.item[0].extension[0]"),
    ],
)
def test_negative_control_broken_claim_is_reported(
    name: str, expression: str, medplum: dict[str, ValidationResult]
) -> None:
    errors = medplum[f"broken:{name}"].errors
    assert any(expression in e.get("expression", []) for e in errors), errors


def test_negative_control_fhir_resources_rejects_a_claim_without_patient() -> None:
    with pytest.raises(ValidationError, match="patient"):
        Claim.model_validate(BROKEN["missing-patient"])
