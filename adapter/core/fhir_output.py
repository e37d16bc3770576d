"""FHIR R4 (4.0.1) output: a coded encounter as a Claim, its ChargeItems and a review Task.

Pure: no I/O and no clock. Every timestamp comes from the encounter itself, so the same
input always yields byte-identical JSON (D24).

Resources are plain JSON-ready dicts, not fhir.resources models, by measurement (Claim +
6 ChargeItems, one core): dicts 0.17 ms; models with validation + model_dump 9-15 ms;
model_construct + model_dump 11-13 ms (the dump alone is ~6 ms). The budget is ~1 ms per
encounter, so the models cannot be on the hot path; instead the tests pass every shape
through fhir.resources R4B *and* an independent validator (tests/test_conformance.py).

Key order follows the element order of the R4 specification, so the JSON reads like the
spec's own examples.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from adapter.core.catalog import ndc_candidates
from adapter.core.charges import ChargeLine, CodedEncounter, Outcome
from adapter.core.holds import Hold
from adapter.core.ids import charge_item_id, claim_id, is_fhir_id, line_identity, task_id
from adapter.core.mappings import Mappings, Setting
from adapter.core.model import Code, CodeSystem

JSON = dict[str, Any]

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
SUPPORTING_INFO_TYPE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType"
TYPE_OF_BILL = "https://www.nubc.org/CodeSystem/TypeOfBill"
REVENUE_CODES = "https://www.nubc.org/CodeSystem/RevenueCodes"
PLACE_OF_SERVICE = (
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
)
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"

_SD = "https://charge-adapter.org/fhir/StructureDefinition/"
EXT_CODING_TRACE = _SD + "coding-trace"
EXT_SOURCE_ADMINISTRATION = _SD + "source-administration"
EXT_HOLD_REASON = _SD + "hold-reason"
# a drug code an unknown-drug hold could not match: the "top unknown drugs" report counts them
EXT_UNMATCHED_DRUG = _SD + "unmatched-drug-code"
EXT_MODIFIER = _SD + "charge-modifier"  # R4 ChargeItem has no modifier element

_CS = "https://charge-adapter.org/fhir/CodeSystem/"
TASK_CODE = _CS + "task-code"
TASK_INPUT = _CS + "task-input"
HOLD_REASON = _CS + "hold-reason"

ID_PATIENT = "urn:charge-adapter:patient"
ID_ENCOUNTER = "urn:charge-adapter:encounter"
ID_COVERAGE = "urn:charge-adapter:coverage"
ID_CHARGE_LINE = "urn:charge-adapter:charge-line"
ID_ADMINISTRATION = "urn:charge-adapter:administration"

TYPE_OF_BILL_HOSPITAL_OUTPATIENT = "0131"  # D1: hospital outpatient, admit-through-discharge
DEFAULT_PLACE_OF_SERVICE = "11"  # D1: office
NO_COVERAGE_DISPLAY = "No coverage in feed (self-pay placeholder)"
MAX_DIAGNOSIS_POINTERS = 4  # a professional claim line points to at most four diagnoses
_FHIR_MAR_PREFIX = "fhir:MedicationAdministration/"
_BUNDLE_UUID_NAMESPACE = uuid.UUID("5f0c1f0e-7b7a-4a4e-9a51-2c0d6f3b8e21")

# Our normalized units (model.Quantity) -> UCUM codes; "units" of a drug are international units.
_UCUM_CODES = {"mg": "mg", "mcg": "ug", "g": "g", "mL": "mL", "L": "L", "units": "[iU]"}


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """Site facts the Claim needs that coding does not produce."""

    provider_display: str = "Infusion center"
    provider_npi: str = ""


@dataclass(frozen=True, slots=True)
class _Facts:
    """What every resource of one encounter shares, worked out once."""

    coded: CodedEncounter
    claim_id: str
    created: str
    institutional: bool
    held: bool
    pointers: tuple[int, ...]

    @staticmethod
    def of(coded: CodedEncounter) -> _Facts:
        count = min(MAX_DIAGNOSIS_POINTERS, len(coded.diagnoses))
        return _Facts(
            coded=coded,
            claim_id=claim_id(coded.encounter_key),
            created=_created(coded),
            institutional=coded.setting == Setting.HOSPITAL_OUTPATIENT,
            held=coded.outcome is Outcome.HELD,
            pointers=tuple(range(1, count + 1)),
        )


def encounter_resources(
    coded: CodedEncounter, mappings: Mappings, options: OutputOptions
) -> list[JSON]:
    """The Claim, one ChargeItem per line and, when held (D22), one review Task.

    Skipped encounters produce nothing: they are counted, not billed (D2).
    """
    if coded.outcome is Outcome.SKIPPED:
        return []
    facts = _Facts.of(coded)
    resources = [_claim(facts, mappings, options)]
    pairs = zip(coded.lines, _charge_item_ids(coded), strict=True)
    resources += [_charge_item(facts, line, item_id) for line, item_id in pairs]
    if facts.held:
        resources.append(_task(facts, mappings))
    return resources


def bundle(resources: Iterable[JSON], bundle_id: str, base_url: str = "") -> JSON:
    """A `collection` Bundle of the given resources, in order.

    With `base_url` each fullUrl is `<base>/<Type>/<id>`, so the resources' relative
    references (`Claim/<id>`) resolve inside the Bundle; without one, a urn:uuid derived
    from type and id (stable across runs, like the ids themselves).
    """
    if not is_fhir_id(bundle_id):
        raise ValueError(f"not a FHIR id: {bundle_id!r}")
    entries = [{"fullUrl": _full_url(r, base_url), "resource": r} for r in resources]
    return {"resourceType": "Bundle", "id": bundle_id, "type": "collection", "entry": entries}


def dumps(document: JSON, *, pretty: bool = True) -> str:
    """Deterministic JSON: the builders' key order is fixed, so no sorting is needed.

    `pretty` (indent=2) is for people and diffs; CPython then falls back to its pure-Python
    encoder (~1.5 ms per encounter). `pretty=False` is compact and ~5x faster: use it where
    throughput counts.
    """
    if pretty:
        return json.dumps(document, indent=2, ensure_ascii=False)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _full_url(resource: JSON, base_url: str) -> str:
    """Absolute URL for an entry (R4 fullUrl must be absolute or a urn:uuid)."""
    local = f"{resource['resourceType']}/{resource['id']}"
    if base_url:
        return f"{base_url.rstrip('/')}/{local}"
    return f"urn:uuid:{uuid.uuid5(_BUNDLE_UUID_NAMESPACE, local)}"


# --- Claim -----------------------------------------------------------------------------


def _claim(facts: _Facts, mappings: Mappings, options: OutputOptions) -> JSON:
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
    claim["type"] = _concept(CLAIM_TYPE, claim_type)
    claim["use"] = "claim"
    claim["patient"] = patient_reference(coded.patient_id)
    period = _period(coded.period_start, coded.period_end)
    if period:
        claim["billablePeriod"] = period
    claim["created"] = facts.created
    claim["provider"] = _provider(options)
    claim["priority"] = _concept(PROCESS_PRIORITY, "normal")
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
        "category": _concept(SUPPORTING_INFO_TYPE, "typeofbill"),
        "code": _concept(TYPE_OF_BILL, TYPE_OF_BILL_HOSPITAL_OUTPATIENT),
    }


def _diagnosis(sequence: int, code: str) -> JSON:
    return {"sequence": sequence, "diagnosisCodeableConcept": _concept(CodeSystem.ICD10CM, code)}


def _item(facts: _Facts, mappings: Mappings, sequence: int, line: ChargeLine) -> JSON:
    """One Claim line, in the R4 element order, with its coding trace.

    Every line, waste included, points to the first diagnoses (up to four): a JW line is
    a drug line and needs the same pointer as its drug.
    """
    item: JSON = {"extension": _trace(line), "sequence": sequence}
    if facts.pointers:
        item["diagnosisSequence"] = list(facts.pointers)
    revenue = mappings.revenue_code(line.code) if facts.institutional else ""
    if revenue:
        item["revenue"] = _concept(REVENUE_CODES, revenue)
    item["productOrService"] = product_or_service(line, mappings)
    if line.modifiers:
        item["modifier"] = [_concept(modifier_system(m), m) for m in line.modifiers]
    item["servicedDate"] = line.service_date.isoformat()
    if not facts.institutional:
        pos = place_of_service(facts.coded)
        item["locationCodeableConcept"] = _concept(PLACE_OF_SERVICE, pos)
    item["quantity"] = {"value": line.units}
    if line.ndc:
        item["detail"] = [_ndc_detail(line)]
    if not item["extension"]:
        del item["extension"]
    return item


def _ndc_detail(line: ChargeLine) -> JSON:
    """The NDC and the amount given (or wasted), as a payer's NDC segment needs them."""
    detail: JSON = {"sequence": 1, "productOrService": _concept(CodeSystem.NDC, ndc_11(line.ndc))}
    quantity = drug_quantity(line)
    if quantity:
        detail["quantity"] = quantity
    return detail


def place_of_service(coded: CodedEncounter) -> str:
    """CMS place of service for a professional claim: the location's, else 11 office (D1)."""
    return coded.place_of_service or DEFAULT_PLACE_OF_SERVICE


# --- ChargeItem ------------------------------------------------------------------------


def _charge_item_ids(coded: CodedEncounter) -> list[str]:
    """Ids for the lines, telling apart lines that share an identity by their rank."""
    seen: Counter[tuple[str, ...]] = Counter()
    ids = []
    for line in coded.lines:
        identity = line_identity(line)
        ids.append(charge_item_id(coded.encounter_key, line, seen[identity]))
        seen[identity] += 1
    return ids


def _charge_item(facts: _Facts, line: ChargeLine, item_id: str) -> JSON:
    """The line as a ChargeItem: `planned` while held, `billable` once coded.

    R4 ChargeItem has no modifier element, so modifiers travel as extensions.
    """
    coded = facts.coded
    extensions = _trace(line) + [
        {"url": EXT_MODIFIER, "valueCoding": _coding(modifier_system(m), m)} for m in line.modifiers
    ]
    item: JSON = {"resourceType": "ChargeItem", "id": item_id}
    if extensions:
        item["extension"] = extensions
    item["identifier"] = [{"system": ID_CHARGE_LINE, "value": item_id}]
    item["status"] = "planned" if facts.held else "billable"
    item["code"] = {"coding": [_line_coding(line)]}
    item["subject"] = patient_reference(coded.patient_id)
    item["occurrenceDateTime"] = line.service_date.isoformat()
    item["quantity"] = {"value": line.units}
    item["enteredDate"] = facts.created
    if facts.pointers:
        item["reason"] = [
            _concept(CodeSystem.ICD10CM, coded.diagnoses[i - 1]) for i in facts.pointers
        ]
    if line.sources:
        item["service"] = [administration_reference(source) for source in line.sources]
    if line.ndc:
        item["productCodeableConcept"] = _concept(CodeSystem.NDC, ndc_11(line.ndc))
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


# --- Task ------------------------------------------------------------------------------


def _task(facts: _Facts, mappings: Mappings) -> JSON:
    """The D22 review Task: one input per hold reason, each with a sentence a biller can act on."""
    coded = facts.coded
    count = len(coded.holds)
    return {
        "resourceType": "Task",
        "id": task_id(coded.encounter_key),
        "status": "requested",
        "intent": "order",
        "code": _concept(TASK_CODE, "charge-review"),
        "description": f"Charge review: {count} hold{'s' if count != 1 else ''} on this encounter",
        "focus": {"reference": f"Claim/{facts.claim_id}"},
        "for": patient_reference(coded.patient_id),
        "authoredOn": facts.created,
        "input": [_task_input(hold, mappings) for hold in coded.holds],
    }


def _task_input(hold: Hold, mappings: Mappings) -> JSON:
    """R4 Task.input has no text of its own: the sentence is the value's CodeableConcept.text."""
    value = _concept(HOLD_REASON, hold.reason.value)
    value["text"] = hold_text(hold, mappings)
    return {"type": _concept(TASK_INPUT, "hold-reason"), "valueCodeableConcept": value}


def hold_text(hold: Hold, mappings: Mappings) -> str:
    """The site's sentence for the reason, then what exactly to fix (codes, NDCs, source ids)."""
    sentence = mappings.hold_reasons.get(hold.reason.value)
    parts = [sentence.sentence if sentence else "", hold.detail]
    if hold.source_id and hold.source_id not in hold.detail:
        parts.append(f"(source {hold.source_id})")
    text = " ".join(p.strip() for p in parts if p.strip())
    return text or hold.reason.value


# --- shared pieces ---------------------------------------------------------------------


def patient_reference(patient_id: str) -> JSON:
    """A FHIR Patient by reference; an MRN (HL7 v2 PID-3) by identifier."""
    if patient_id.startswith("Patient/"):
        return {"reference": patient_id}
    return {"identifier": {"system": ID_PATIENT, "value": patient_id}}


def product_or_service(line: ChargeLine, mappings: Mappings) -> JSON:
    return {"coding": [_line_coding(line, mappings.code_labels.get(line.code, ""))]}


def _line_coding(line: ChargeLine, display: str = "") -> JSON:
    """CPT for numeric codes, HCPCS Level II otherwise; display is our own label, never AMA's."""
    system = CodeSystem.CPT if line.is_cpt else CodeSystem.HCPCS
    return _coding(system, line.code, display)


def modifier_system(modifier: str) -> str:
    """CPT modifiers are two digits (59); JW, JZ and the X{EPSU} family are HCPCS Level II."""
    return CodeSystem.CPT.value if modifier.isdigit() else CodeSystem.HCPCS.value


def _trace(line: ChargeLine) -> list[JSON]:
    """Why the line exists (rule ids) and which administrations it bills."""
    trace: list[JSON] = []
    if line.rules:
        trace.append({"url": EXT_CODING_TRACE, "valueString": " ".join(line.rules)})
    trace += [{"url": EXT_SOURCE_ADMINISTRATION, "valueString": s} for s in line.sources if s]
    return trace


def ndc_11(ndc: str) -> str:
    """The 11-digit 5-4-2 dashed form; an ambiguous undashed 10-digit NDC is left as given."""
    candidates = ndc_candidates(ndc)
    if len(candidates) != 1:
        return ndc
    digits = candidates[0]
    return f"{digits[:5]}-{digits[5:9]}-{digits[9:]}"


def drug_quantity(line: ChargeLine) -> JSON | None:
    """The administered (or wasted) amount, with a UCUM code when the unit has one."""
    if line.drug_amount is None:
        return None
    quantity: JSON = {"value": _number(line.drug_amount)}
    if line.drug_unit:
        quantity["unit"] = line.drug_unit
        code = _UCUM_CODES.get(line.drug_unit)
        if code:
            quantity["system"] = UCUM
            quantity["code"] = code
    return quantity


def _number(value: Decimal) -> int | float:
    """A JSON number: integral amounts stay integers, so `100` never prints as `100.0`."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _created(coded: CodedEncounter) -> str:
    """Claim.created and friends: the end of care, never the wall clock (D24)."""
    if coded.period_end is not None:
        return _datetime(coded.period_end)
    if coded.period_start is not None:
        return _datetime(coded.period_start)
    dates = [line.service_date for line in coded.lines]
    if dates:
        return max(dates).isoformat()
    raise ValueError(f"encounter {coded.encounter_key!r} has no period and no lines")


def _period(start: datetime | None, end: datetime | None) -> JSON:
    period: JSON = {}
    if start is not None:
        period["start"] = _datetime(start)
    if end is not None:
        period["end"] = _datetime(end)
    return period


def _datetime(value: datetime) -> str:
    """FHIR dateTime; a time without a zone is not valid FHIR, so it is refused (D25)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: readers must apply the site zone")
    return value.isoformat(timespec="seconds")


def _coding(system: str, code: str, display: str = "") -> JSON:
    coding: JSON = {"system": str(system), "code": code}
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str = "") -> JSON:
    return {"coding": [_coding(system, code, display)]}
