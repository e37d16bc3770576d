"""What a DFT receiver holds for an encounter (`Posting`), as stored JSON and back.

Kept per destination and encounter: the next version's DFT is built against it, so its
credits reverse exactly the charges as they were sent (adapter/hl7/dft.py:diff_charges).
Pure: text in, typed values out.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from adapter.core.model import Provider
from adapter.hl7.dft import Charge, Posting
from adapter.hl7.dft_profile import Department


def posting_json(posting: Posting) -> str:
    return json.dumps(
        {
            "encounter_key": posting.encounter_key,
            "version": posting.version,
            "charges": [_charge_json(c) for c in posting.charges],
        },
        separators=(",", ":"),
    )


def posting_of(text: str) -> Posting:
    data = json.loads(text)
    charges = tuple(_charge_of(c) for c in data["charges"])
    return Posting(str(data["encounter_key"]), int(data["version"]), charges)


def _charge_json(charge: Charge) -> dict[str, Any]:
    department = charge.department
    return {
        "line_key": list(charge.line_key),
        "service_date": charge.service_date.isoformat(),
        "procedure_code": charge.procedure_code,
        "procedure_code_system": charge.procedure_code_system,
        "modifiers": list(charge.modifiers),
        "quantity": charge.quantity,
        "transaction_code": charge.transaction_code,
        "transaction_code_system": charge.transaction_code_system,
        "description": charge.description,
        "ndc": charge.ndc,
        "department": None if department is None else [department.code, department.text],
        "location": charge.location,
        "facility": charge.facility,
        "diagnoses": list(charge.diagnoses),
        "transaction_id": charge.transaction_id,
        "performed_by": _provider_json(charge.performed_by),
        "ordered_by": _provider_json(charge.ordered_by),
        "filler_order": charge.filler_order,
    }


def _provider_json(who: Provider | None) -> list[str] | None:
    if who is None:
        return None
    return [who.id, who.family, who.given, who.middle, who.suffix, who.prefix, who.degree,
            who.authority, who.id_type]  # fmt: skip


def _provider_of(data: Any) -> Provider | None:
    """Postings stored before FT1-20/21 were sent have no key: None, as they were sent."""
    return None if data is None else Provider(*map(str, data))


def _charge_of(data: dict[str, Any]) -> Charge:
    department = data["department"]
    return Charge(
        line_key=tuple(str(k) for k in data["line_key"]),
        service_date=date.fromisoformat(data["service_date"]),
        procedure_code=str(data["procedure_code"]),
        procedure_code_system=str(data["procedure_code_system"]),
        modifiers=tuple(str(m) for m in data["modifiers"]),
        quantity=int(data["quantity"]),
        transaction_code=str(data["transaction_code"]),
        transaction_code_system=str(data["transaction_code_system"]),
        description=str(data["description"]),
        ndc=str(data["ndc"]),
        department=None if department is None else Department(*map(str, department)),
        location=str(data["location"]),
        facility=str(data["facility"]),
        diagnoses=tuple(str(d) for d in data["diagnoses"]),
        transaction_id=str(data["transaction_id"]),
        performed_by=_provider_of(data.get("performed_by")),
        ordered_by=_provider_of(data.get("ordered_by")),
        filler_order=str(data.get("filler_order", "")),
    )
