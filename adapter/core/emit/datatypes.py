"""The FHIR datatypes every resource of the output is built from: Coding, CodeableConcept,
Period, dateTime, a JSON number, the Patient reference.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from adapter.core.emit.urls import ID_PATIENT

JSON = dict[str, Any]


def patient_reference(patient_id: str) -> JSON:
    """A FHIR Patient by reference; an MRN (HL7 v2 PID-3) by identifier."""
    if patient_id.startswith("Patient/"):
        return {"reference": patient_id}
    return {"identifier": {"system": ID_PATIENT, "value": patient_id}}


def json_number(value: Decimal) -> int | float:
    """A JSON number: integral amounts stay integers, so `100` never prints as `100.0`."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def fhir_period(start: datetime | None, end: datetime | None) -> JSON:
    period: JSON = {}
    if start is not None:
        period["start"] = fhir_datetime(start)
    if end is not None:
        period["end"] = fhir_datetime(end)
    return period


def fhir_datetime(value: datetime) -> str:
    """FHIR dateTime; a time without a zone is not valid FHIR, so it is refused (D25)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: readers must apply the site zone")
    return value.isoformat(timespec="seconds")


def coding(system: str, code: str, display: str = "") -> JSON:
    coding: JSON = {"system": str(system), "code": code}
    if display:
        coding["display"] = display
    return coding


def concept(system: str, code: str, display: str = "") -> JSON:
    return {"coding": [coding(system, code, display)]}
