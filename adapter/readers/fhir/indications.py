"""FHIR MedicationAdministration indications (D12): R4 reasonCode + reasonReference, R5 reason.

A coded reason, a text-only one, or a referenced Condition's ICD-10-CM code; the
`reason-medication-given` codes say why a dose was given, not what it treats.
"""

from __future__ import annotations

from adapter.core.model import Code, CodeSystem
from adapter.readers.fhir.codes import concept_codes, dotted_icd10, icd10_code
from adapter.readers.fhir.elements import JsonObject, get_object, get_objects, get_str
from adapter.readers.fhir.reading import Reading

_GIVEN_REASONS = "http://terminology.hl7.org/CodeSystem/reason-medication-given"


def read_indications(r: Reading) -> tuple[Code, ...]:
    """R4 reasonCode + reasonReference, R5 reason (CodeableReference)."""
    res, path = r.resource, r.path
    found: list[Code] = []
    for cpath, coded in get_objects(res, "reasonCode", path):
        found.extend(_reason_concept(coded, cpath))
    for rpath, referenced in get_objects(res, "reasonReference", path):
        found.extend(_reason_reference(r, referenced, rpath))
    for rpath, reason in get_objects(res, "reason", path):
        concept = get_object(reason, "concept", rpath)
        if concept is not None:
            found.extend(_reason_concept(concept, f"{rpath}.concept"))
        ref = get_object(reason, "reference", rpath)
        if ref is not None:
            found.extend(_reason_reference(r, ref, f"{rpath}.reference"))
    return tuple(dict.fromkeys(found))


def _reason_concept(concept: JsonObject, path: str) -> tuple[Code, ...]:
    """Coded reasons; an uncoded one still documents an indication (D12): system `text`.

    `reason-medication-given` codes (none / given as ordered / emergency) say
    why a dose was given, not what it treats: they would turn every carrier
    fluid into hydration, so they are not indications.
    """
    codes = concept_codes(concept, path)
    if codes:
        return tuple(_dotted(code) for code in codes if code.system != _GIVEN_REASONS)
    text = get_str(concept, "text", path)
    return (Code(CodeSystem.TEXT.value, "", text),) if text else ()


def _dotted(code: Code) -> Code:
    """ICD-10-CM indications in the dotted form the rest of the adapter compares."""
    if code.system != CodeSystem.ICD10CM:
        return code
    return Code(code.system, dotted_icd10(code.code), code.display)


def _reason_reference(r: Reading, ref: JsonObject, path: str) -> tuple[Code, ...]:
    """A Condition in the input gives its ICD-10-CM code; otherwise the reference stands."""
    reference = get_str(ref, "reference", path)
    if reference is None:
        return ()
    found = r.resolve(reference)
    if found is not None and found.resource.get("resourceType") == "Condition":
        concept = get_object(found.resource, "code", found.path)
        code = icd10_code(concept, f"{found.path}.code") if concept else None
        if code is not None:
            return (Code(CodeSystem.ICD10CM, code),)
    return (Code("reference", reference),)
