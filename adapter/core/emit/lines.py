"""A charge line's codes as FHIR, shared by its Claim item and its ChargeItem: the CPT/HCPCS
coding, modifier systems, the coding trace, the 11-digit NDC and the drug quantity.
"""

from __future__ import annotations

from adapter.core.catalog import ndc_candidates
from adapter.core.charges import ChargeLine
from adapter.core.emit.datatypes import JSON, coding, json_number
from adapter.core.emit.urls import EXT_CODING_TRACE, EXT_SOURCE_ADMINISTRATION, UCUM
from adapter.core.mappings import Mappings
from adapter.core.model import CodeSystem

# Our normalized units (model.Quantity) -> UCUM codes; "units" of a drug are international units.
_UCUM_CODES = {"mg": "mg", "mcg": "ug", "g": "g", "mL": "mL", "L": "L", "units": "[iU]"}


def product_or_service(line: ChargeLine, mappings: Mappings) -> JSON:
    return {"coding": [line_coding(line, mappings.code_labels.get(line.code, ""))]}


def line_coding(line: ChargeLine, display: str = "") -> JSON:
    """CPT for numeric codes, HCPCS Level II otherwise; display is our own label, never AMA's."""
    system = CodeSystem.CPT if line.is_cpt else CodeSystem.HCPCS
    return coding(system, line.code, display)


def modifier_system(modifier: str) -> str:
    """CPT modifiers are two digits (59); JW, JZ and the X{EPSU} family are HCPCS Level II."""
    return CodeSystem.CPT.value if modifier.isdigit() else CodeSystem.HCPCS.value


def coding_trace(line: ChargeLine) -> list[JSON]:
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
    quantity: JSON = {"value": json_number(line.drug_amount)}
    if line.drug_unit:
        quantity["unit"] = line.drug_unit
        code = _UCUM_CODES.get(line.drug_unit)
        if code:
            quantity["system"] = UCUM
            quantity["code"] = code
    return quantity
