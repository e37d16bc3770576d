"""The encounter's Claim: `draft` while held (D22), `active` once coded; professional with a
place of service (office) or institutional with type of bill 0131 and revenue codes (D1).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.core.charges import ChargeLine, CodedEncounter
from adapter.core.emit.datatypes import JSON, concept, fhir_period, patient_reference
from adapter.core.emit.facts import Facts
from adapter.core.emit.lines import (
    coding_trace,
    drug_quantity,
    modifier_system,
    ndc_11,
    product_or_service,
)
from adapter.core.emit.urls import (
    CLAIM_TYPE,
    EXT_HOLD_REASON,
    EXT_UNMATCHED_DRUG,
    ID_COVERAGE,
    ID_ENCOUNTER,
    NPI,
    PLACE_OF_SERVICE,
    PROCESS_PRIORITY,
    REVENUE_CODES,
    SUPPORTING_INFO_TYPE,
    TYPE_OF_BILL,
)
from adapter.core.mappings import Mappings
from adapter.core.model import Code, CodeSystem

TYPE_OF_BILL_HOSPITAL_OUTPATIENT = "0131"  # D1: hospital outpatient, admit-through-discharge
DEFAULT_PLACE_OF_SERVICE = "11"  # D1: office
NO_COVERAGE_DISPLAY = "No coverage in feed (self-pay placeholder)"


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """Site facts the Claim needs that coding does not produce."""

    provider_display: str = "Infusion center"
    provider_npi: str = ""


def build_claim(facts: Facts, mappings: Mappings, options: OutputOptions) -> JSON:
    """The encounter's Claim: `draft` while held (D22), `active` once coded."""
    coded = facts.coded
    claim: JSON = {"resourceType": "Claim", "id": facts.claim_id}
    holds = [{"url": EXT_HOLD_REASON, "valueCode": h.reason.value} for h in coded.holds]
    holds += [_unmatched_drug(code) for h in coded.holds for code in h.codes if code.code]
    if holds:
        claim["extension"] = holds
    claim["identifier"] = [{"system": ID_ENCOUNTER, "value": coded.encounter_key}]
    claim["status"] = "draft" if facts.held else "active"
    claim_type = "institutional" if facts.institutional else "professional"
    claim["type"] = concept(CLAIM_TYPE, claim_type)
    claim["use"] = "claim"
    claim["patient"] = patient_reference(coded.patient_id)
    period = fhir_period(coded.period_start, coded.period_end)
    if period:
        claim["billablePeriod"] = period
    claim["created"] = facts.created
    claim["provider"] = _provider(options)
    claim["priority"] = concept(PROCESS_PRIORITY, "normal")
    if facts.institutional:
        claim["supportingInfo"] = [_type_of_bill()]
    if coded.diagnoses:
        claim["diagnosis"] = [_diagnosis(i, code) for i, code in enumerate(coded.diagnoses, 1)]
    claim["insurance"] = [{"sequence": 1, "focal": True, "coverage": _coverage(coded)}]
    if coded.lines:
        claim["item"] = [_item(facts, mappings, i, line) for i, line in enumerate(coded.lines, 1)]
    return claim


def _unmatched_drug(code: Code) -> JSON:
    """System and code only: the feed's display text is not needed to fix the catalog."""
    return {"url": EXT_UNMATCHED_DRUG, "valueCoding": {"system": code.system, "code": code.code}}


def _provider(options: OutputOptions) -> JSON:
    """The billing organization, by display and (when configured) NPI."""
    provider: JSON = {"type": "Organization", "display": options.provider_display}
    if options.provider_npi:
        provider["identifier"] = {"system": NPI, "value": options.provider_npi}
    return provider


def _coverage(coded: CodedEncounter) -> JSON:
    """The payer when the feed names one; else a visible self-pay placeholder.

    Claim.insurance is mandatory in R4, so an encounter without coverage still needs one
    entry; the placeholder says plainly that the feed had none.
    """
    if not coded.coverage_payer:
        return {"display": NO_COVERAGE_DISPLAY}
    coverage: JSON = {"display": coded.coverage_payer}
    if coded.coverage_id:
        coverage["identifier"] = {"system": ID_COVERAGE, "value": coded.coverage_id}
    return coverage


def _type_of_bill() -> JSON:
    """UB-04 type of bill 0131 (D1), as CARIN BB carries it."""
    return {
        "sequence": 1,
        "category": concept(SUPPORTING_INFO_TYPE, "typeofbill"),
        "code": concept(TYPE_OF_BILL, TYPE_OF_BILL_HOSPITAL_OUTPATIENT),
    }


def _diagnosis(sequence: int, code: str) -> JSON:
    return {"sequence": sequence, "diagnosisCodeableConcept": concept(CodeSystem.ICD10CM, code)}


def _item(facts: Facts, mappings: Mappings, sequence: int, line: ChargeLine) -> JSON:
    """One Claim line, in the R4 element order, with its coding trace.

    Every line, waste included, points to the first diagnoses (up to four): a JW line is
    a drug line and needs the same pointer as its drug.
    """
    item: JSON = {"extension": coding_trace(line), "sequence": sequence}
    if facts.pointers:
        item["diagnosisSequence"] = list(facts.pointers)
    revenue = mappings.revenue_code(line.code) if facts.institutional else ""
    if revenue:
        item["revenue"] = concept(REVENUE_CODES, revenue)
    item["productOrService"] = product_or_service(line, mappings)
    if line.modifiers:
        item["modifier"] = [concept(modifier_system(m), m) for m in line.modifiers]
    item["servicedDate"] = line.service_date.isoformat()
    if not facts.institutional:
        pos = place_of_service(facts.coded)
        item["locationCodeableConcept"] = concept(PLACE_OF_SERVICE, pos)
    item["quantity"] = {"value": line.units}
    if line.ndc:
        item["detail"] = [_ndc_detail(line)]
    if not item["extension"]:
        del item["extension"]
    return item


def _ndc_detail(line: ChargeLine) -> JSON:
    """The NDC and the amount given (or wasted), as a payer's NDC segment needs them."""
    detail: JSON = {"sequence": 1, "productOrService": concept(CodeSystem.NDC, ndc_11(line.ndc))}
    quantity = drug_quantity(line)
    if quantity:
        detail["quantity"] = quantity
    return detail


def place_of_service(coded: CodedEncounter) -> str:
    """CMS place of service for a professional claim: the location's, else 11 office (D1)."""
    return coded.place_of_service or DEFAULT_PLACE_OF_SERVICE
