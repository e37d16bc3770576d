"""FHIR primitives are checked against the spec's grammar where the reader reads them.

A value the spec forbids (an id holding U+0000 or 65 characters, a string with a control
character or a lone surrogate, a code with a tab, a system with a space, a dose of 10^400,
`1e999`) is refused with the path of the element: the reader's InputError, then over HTTP a
422 (400 when the body is not JSON a FHIR server may read) whose OperationOutcome names the
path, and the body kept as a dead letter for reprocessing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.mappings_loader import load_mappings
from adapter.readers.fhir import read_fhir
from adapter.store.base import MessageStatus
from tests.service_fixtures import (
    FHIR_JSON,
    make_settings,
    running_client,
    scenario_resource,
    state_of,
)

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = load_mappings(ROOT / "mappings")
NY = ZoneInfo("America/New_York")
MEDADMIN = scenario_resource("S20", "MedicationAdministration")


def _with(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    resource = copy.deepcopy(MEDADMIN)
    node: Any = resource
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return resource


# (element changed, value, the path the error names)
REFUSED = [
    (("id",), "ma-\x00-1", "MedicationAdministration.id"),
    (("id",), "x" * 65, "MedicationAdministration.id"),
    (("id",), "ma 1", "MedicationAdministration.id"),
    (("id",), "ma/1", "MedicationAdministration.id"),
    (("id",), 17, "MedicationAdministration.id"),
    (("meta",), {"versionId": "v\u00e91"}, "MedicationAdministration.meta.versionId"),
    (("status",), "completed\x07", "MedicationAdministration.status"),
    (("medicationCodeableConcept", "text"), "beva\ud800cizumab",
     "MedicationAdministration.medicationCodeableConcept.text"),
    (("medicationCodeableConcept", "coding", 0, "code"), "50242-0061-01\t9",
     "MedicationAdministration.medicationCodeableConcept.coding[0].code"),
    (("medicationCodeableConcept", "coding", 0, "code"), "50242  0061",
     "MedicationAdministration.medicationCodeableConcept.coding[0].code"),
    (("medicationCodeableConcept", "coding", 0, "system"), "http://hl7.org/fhir/sid/ ndc",
     "MedicationAdministration.medicationCodeableConcept.coding[0].system"),
    (("medicationCodeableConcept", "coding", 0, "display"), "bev\x1b[31m",
     "MedicationAdministration.medicationCodeableConcept.coding[0].display"),
    (("dosage", "dose", "value"), 10**400, "MedicationAdministration.dosage.dose.value"),
    (("dosage", "dose", "value"), 1e300, "MedicationAdministration.dosage.dose.value"),
    (("effectivePeriod", "start"), "2026-01-13T09:00:00\x00", "MedicationAdministration.effectivePeriod.start"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "where"), REFUSED)
def test_a_primitive_outside_its_fhir_grammar_is_refused_with_its_path(
    path: tuple[str | int, ...], value: object, where: str
) -> None:
    body = json.dumps(_with(path, value)).encode()
    (message,) = read_fhir(body, MAPPINGS, NY)
    assert message.error is not None, "accepted a value the FHIR spec forbids"
    assert message.error.location == where
    assert "\x00" not in message.error.message and "\ud800" not in message.error.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), "A-z.0-9"),
        (("id",), "x" * 64),
        (("medicationCodeableConcept", "text"), "bevacizumab\t400 mg\r\n16 mL"),
        (("medicationCodeableConcept", "coding", 0, "code"), "50242-0061-01"),
        (("dosage", "dose", "value"), 999_999_999_999),
        (("dosage", "dose", "value"), 0.000001),
    ],
)
def test_a_primitive_within_its_grammar_is_read(path: tuple[str | int, ...], value: object) -> None:
    (message,) = read_fhir(json.dumps(_with(path, value)).encode(), MAPPINGS, NY)
    assert message.error is None and message.events


@pytest.mark.parametrize("literal", ["1e999", "-1E400", "123456789e999"])
def test_a_number_that_would_overflow_to_infinity_is_not_read_as_infinity(literal: str) -> None:
    body = json.dumps(MEDADMIN).replace('"value": 400', f'"value": {literal}', 1)
    assert literal in body
    (message,) = read_fhir(body.encode(), MAPPINGS, NY)
    assert message.error is not None
    assert "out of range" in message.error.message


async def test_a_forbidden_primitive_over_http_is_a_422_naming_the_path_and_kept(
    tmp_path: Path,
) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        body = json.dumps(_with(("dosage", "dose", "value"), 10**400))
        response = await client.post(
            "/fhir/MedicationAdministration", data=body, headers={"Content-Type": FHIR_JSON}
        )
        assert response.status == 422
        outcome = await response.json()
        expressions = [e for issue in outcome["issue"] for e in issue.get("expression", [])]
        assert "MedicationAdministration.dosage.dose.value" in expressions
        kept = await state_of(client).store.list_messages(None, None)
        assert [m.status for m in kept] == [MessageStatus.DEAD]


async def test_an_infinite_number_over_http_is_refused_and_kept(tmp_path: Path) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        body = json.dumps(MEDADMIN).replace('"value": 400', '"value": 1e999', 1)
        response = await client.post(
            "/fhir/MedicationAdministration", data=body, headers={"Content-Type": FHIR_JSON}
        )
        assert response.status == 400
        outcome = await response.json()
        assert "out of range" in outcome["issue"][0]["diagnostics"]
        kept = await state_of(client).store.list_messages(None, None)
        assert [m.status for m in kept] == [MessageStatus.DEAD]
