"""FHIR Coding and CodeableConcept as the model's `Code`: our system names, ICD-10-CM dotted."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapter.core.model import Code, CodeSystem
from adapter.readers.fhir.elements import (
    JsonObject,
    check_code,
    check_string,
    check_uri,
    get_objects,
    get_str,
)

_SYSTEMS: Mapping[str, str] = MappingProxyType(
    {
        "http://hl7.org/fhir/sid/ndc": CodeSystem.NDC,
        "urn:oid:2.16.840.1.113883.6.69": CodeSystem.NDC,
        "http://www.nlm.nih.gov/research/umls/rxnorm": CodeSystem.RXNORM,
        "urn:oid:2.16.840.1.113883.6.88": CodeSystem.RXNORM,
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": CodeSystem.HCPCS,
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": CodeSystem.HCPCS,
        "urn:oid:2.16.840.1.113883.6.285": CodeSystem.HCPCS,
        "http://hl7.org/fhir/sid/icd-10-cm": CodeSystem.ICD10CM,
        "urn:oid:2.16.840.1.113883.6.90": CodeSystem.ICD10CM,
    }
)


def concept_codes(concept: JsonObject, path: str) -> tuple[Code, ...]:
    """Every coding of a CodeableConcept that carries a code."""
    codes: list[Code] = []
    for item_path, coding in get_objects(concept, "coding", path):
        code = coding_code(coding, item_path)
        if code is not None:
            codes.append(code)
    return tuple(codes)


def coding_code(coding: JsonObject, path: str) -> Code | None:
    """One Coding as a Code, or None when it has no code."""
    value, system, display = coding.get("code"), coding.get("system"), coding.get("display")
    if not (isinstance(value, str) and isinstance(system, str) and isinstance(display, str)):
        # The slow path: absent or mistyped elements (the typed getters raise with the path).
        value = get_str(coding, "code", path)
        system = get_str(coding, "system", path)
        display = get_str(coding, "display", path) or ""
        if value is None:
            return None
    value = check_code(value.strip(), f"{path}.code")
    if not value:
        return None
    system = check_uri(system.strip(), f"{path}.system") if system and system.strip() else ""
    display = check_string(display, f"{path}.display")
    return Code(_SYSTEMS.get(system, system), value, display.strip())


def concept_text(concept: JsonObject, path: str) -> str:
    """The concept's text, else its first coding's display: a label, never a code."""
    text = get_str(concept, "text", path)
    if text:
        return text
    for item_path, coding in get_objects(concept, "coding", path):
        display = get_str(coding, "display", item_path)
        if display:
            return display
    return ""


def icd10_code(concept: JsonObject, path: str) -> str | None:
    """The first ICD-10-CM coding, in dotted form (C50911 -> C50.911)."""
    for code in concept_codes(concept, path):
        if code.system == CodeSystem.ICD10CM:
            return dotted_icd10(code.code)
    return None


def dotted_icd10(code: str) -> str:
    """ICD-10-CM with its dot after the category, as the Claim carries it."""
    bare = code.strip().upper().replace(".", "")
    return f"{bare[:3]}.{bare[3:]}" if len(bare) > 3 else bare
