"""One ChargeItem per Claim line: `planned` while held, `billable` once coded, with ids that
tell apart lines of the same identity (D24).
"""

from __future__ import annotations

from collections import Counter

from adapter.core.charges import ChargeLine, CodedEncounter
from adapter.core.emit.datatypes import JSON, coding, concept, patient_reference
from adapter.core.emit.facts import Facts
from adapter.core.emit.lines import coding_trace, line_coding, modifier_system, ndc_11
from adapter.core.emit.urls import EXT_MODIFIER, ID_ADMINISTRATION, ID_CHARGE_LINE
from adapter.core.ids import charge_item_id, line_identity
from adapter.core.model import CodeSystem

_FHIR_MAR_PREFIX = "fhir:MedicationAdministration/"


def charge_item_ids(coded: CodedEncounter) -> list[str]:
    """Ids for the lines, telling apart lines that share an identity by their rank."""
    seen: Counter[tuple[str, ...]] = Counter()
    ids = []
    for line in coded.lines:
        identity = line_identity(line)
        ids.append(charge_item_id(coded.encounter_key, line, seen[identity]))
        seen[identity] += 1
    return ids


def build_charge_item(facts: Facts, line: ChargeLine, item_id: str) -> JSON:
    """The line as a ChargeItem: `planned` while held, `billable` once coded.

    R4 ChargeItem has no modifier element, so modifiers travel as extensions.
    """
    coded = facts.coded
    extensions = coding_trace(line) + [
        {"url": EXT_MODIFIER, "valueCoding": coding(modifier_system(m), m)} for m in line.modifiers
    ]
    item: JSON = {"resourceType": "ChargeItem", "id": item_id}
    if extensions:
        item["extension"] = extensions
    item["identifier"] = [{"system": ID_CHARGE_LINE, "value": item_id}]
    item["status"] = "planned" if facts.held else "billable"
    item["code"] = {"coding": [line_coding(line)]}
    item["subject"] = patient_reference(coded.patient_id)
    item["occurrenceDateTime"] = line.service_date.isoformat()
    item["quantity"] = {"value": line.units}
    item["enteredDate"] = facts.created
    if facts.pointers:
        item["reason"] = [
            concept(CodeSystem.ICD10CM, coded.diagnoses[i - 1]) for i in facts.pointers
        ]
    if line.sources:
        item["service"] = [administration_reference(source) for source in line.sources]
    if line.ndc:
        item["productCodeableConcept"] = concept(CodeSystem.NDC, ndc_11(line.ndc))
    item["supportingInformation"] = [{"reference": f"Claim/{facts.claim_id}"}]
    return item


def administration_reference(source_id: str) -> JSON:
    """A FHIR MAR entry by reference; an HL7 v2 RXA (no FHIR id) by its source identifier."""
    if source_id.startswith(_FHIR_MAR_PREFIX):
        return {"reference": "MedicationAdministration/" + source_id[len(_FHIR_MAR_PREFIX) :]}
    return {
        "identifier": {"system": ID_ADMINISTRATION, "value": source_id},
        "display": "HL7 v2 RXA",
    }
