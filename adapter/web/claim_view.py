"""Reading a stored Claim body the way a biller reads it (pure: JSON in, values out).

The worklist and the encounter page show the same facts of a Claim: the patient reference
(only to a logged-in user), service date, location, setting and its lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SETTING_NAMES = {"professional": "office", "institutional": "hospital outpatient"}
SETTING_CODES = {name: code for code, name in SETTING_NAMES.items()}
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes"
NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
TRACE_SUFFIX = "/coding-trace"
SOURCE_SUFFIX = "/source-administration"


def claim_lines(claim: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each Claim item as a biller reads it: code, modifiers, units, revenue code or POS, NDC."""
    return [_line(item) for item in claim.get("item", ())]


def _line(item: Mapping[str, Any]) -> dict[str, Any]:
    coding = first_coding(item.get("productOrService"))
    ndc = [
        first_coding(d.get("productOrService")).get("code", "")
        for d in item.get("detail", ())
        if first_coding(d.get("productOrService")).get("system") == NDC_SYSTEM
    ]
    pos = first_coding(item.get("locationCodeableConcept"))
    return {
        "sequence": item.get("sequence", ""),
        "code": coding.get("code", ""),
        "display": coding.get("display", ""),
        "modifiers": [first_coding(m).get("code", "") for m in item.get("modifier", ())],
        "units": item.get("quantity", {}).get("value", ""),
        "revenue": first_coding(item.get("revenue")).get("code", ""),
        "pos": pos.get("code", "") if str(pos.get("system", "")).startswith(POS_SYSTEM) else "",
        "ndc": ndc,
        "date": item.get("servicedDate", ""),
        "diagnosis_order": [str(s) for s in item.get("diagnosisSequence", ())],
        "rules": _extension_values(item, TRACE_SUFFIX, split=True),
        "sources": _extension_values(item, SOURCE_SUFFIX),
    }


def _extension_values(item: Mapping[str, Any], suffix: str, split: bool = False) -> list[str]:
    values: list[str] = []
    for ext in item.get("extension", ()):
        if str(ext.get("url", "")).endswith(suffix):
            text = str(ext.get("valueString", ""))
            values.extend(text.split() if split else [text])
    return values


def first_coding(concept: object) -> dict[str, Any]:
    if not isinstance(concept, Mapping):
        return {}
    codings: Sequence[Any] = concept.get("coding", ())
    return dict(codings[0]) if codings else {}


def diagnoses(claim: Mapping[str, Any]) -> list[str]:
    return [
        first_coding(d.get("diagnosisCodeableConcept")).get("code", "")
        for d in claim.get("diagnosis", ())
    ]


def patient_reference(claim: Mapping[str, Any]) -> str:
    identifier = claim.get("patient", {}).get("identifier", {})
    return str(identifier.get("value", ""))


def service_date(claim: Mapping[str, Any]) -> str:
    return str(claim.get("billablePeriod", {}).get("start", ""))[:10]


def location(claim: Mapping[str, Any]) -> str:
    return str(claim.get("provider", {}).get("display", ""))


def setting_code(claim: Mapping[str, Any]) -> str:
    return str(first_coding(claim.get("type")).get("code", ""))


def setting(claim: Mapping[str, Any]) -> str:
    code = setting_code(claim)
    return SETTING_NAMES.get(code, code)
