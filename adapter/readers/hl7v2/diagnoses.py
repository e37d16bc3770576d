"""Diagnoses and indications: DG1 (ICD-10-CM with DG1-15 rank) and the repeating CWE
reasons of RXA-19 / RXE-27 / RXO-20, ICD-10-CM codes in FHIR's system and dotted form.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapter.core.diagnoses import normalize
from adapter.core.model import Code, CodeSystem, Diagnosis
from adapter.hl7.er7 import Segment


def read_diagnoses(segments: Iterable[Segment]) -> tuple[Diagnosis, ...]:
    """ICD-10-CM DG1s with DG1-15 rank; other coding systems (ICD-9, SNOMED) are not billable."""
    found: list[Diagnosis] = []
    for position, dg1 in enumerate(segments, start=1):
        code = _dg1_code(dg1)
        if code:
            set_id = dg1.get(1).strip()
            order = int(set_id) if set_id.isdigit() and set_id.isascii() else position
            found.append(Diagnosis(code, _rank(dg1.get(15).strip()), order))
    return tuple(found)


def _dg1_code(dg1: Segment) -> str:
    """DG1-3 code or its alternate, when the system is ICD-10 (or not given)."""
    fallback_system = dg1.get(2).strip()
    for code_c, system_c in ((1, 3), (4, 6)):
        code = dg1.get(3, code_c).strip()
        system = dg1.get(3, system_c).strip() or (fallback_system if code_c == 1 else "")
        if code and (not system or system.upper() in ICD10_SYSTEMS):
            return normalize(code)
    return ""


def _rank(priority: str) -> int | None:
    """DG1-15; 0 means "not ranked" in HL7 table 0359."""
    if priority.isdigit() and priority.isascii() and int(priority) > 0:
        return int(priority)
    return None


ICD10_SYSTEMS = frozenset(
    {"I10", "I10C", "ICD10CM", "ICD-10-CM", "ICD10", "2.16.840.1.113883.6.90"}
)


def read_indications(segment: Segment, field: int) -> tuple[Code, ...]:
    """Repeating CWE of reasons; ICD-10-CM codes get the FHIR system and the dotted form.

    A repetition with text but no code (`^Hydration post chemotherapy`) is still a
    documented indication (D12), as a FHIR `reasonCode.text` is: system `text`, no code.
    """
    enc = segment.encoding
    found: list[Code] = []
    for rep in segment.repetitions(field):
        for code_c, text_c, system_c in ((1, 2, 3), (4, 5, 6)):
            code = enc.part(rep, code_c).strip()
            if code:
                found.append(_indication(code, enc.part(rep, text_c), enc.part(rep, system_c)))
                break
        else:
            text = enc.part(rep, 2).strip() or enc.part(rep, 5).strip()
            if text:
                found.append(Code(CodeSystem.TEXT.value, "", text))
    return tuple(found)


def _indication(code: str, text: str, system: str) -> Code:
    if system.strip().upper() in ICD10_SYSTEMS:
        return Code(CodeSystem.ICD10CM.value, normalize(code), text.strip())
    return Code(system.strip(), code, text.strip())
