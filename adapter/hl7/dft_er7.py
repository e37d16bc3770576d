"""A DFT^P03 as ER7 text: MSH EVN PID PV1, one FT1 per credit then per debit, DG1s.

Pure: values in (adapter/hl7/dft_model.py), text out. Every text value is escaped
(adapter/hl7/er7_text.py); trailing empty fields and components are cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType

from adapter.core.model import PatientClass, Provider
from adapter.hl7.dft_model import Charge, DftVisit, TransactionType
from adapter.hl7.dft_profile import (
    CodeField,
    CreditQuantity,
    DftProfile,
    HL7Version,
    ModifierPlacement,
    OptionalField,
)
from adapter.hl7.er7_text import escape

HL7_NULL = '""'  # "present, no value": satisfies a required field without inventing data

_PATIENT_CLASS = MappingProxyType(
    {
        PatientClass.OUTPATIENT: "O",
        PatientClass.EMERGENCY: "E",
        PatientClass.INPATIENT: "I",
        PatientClass.UNKNOWN: "U",
    }
)

# --- ER7 ---------------------------------------------------------------------------------


def render(
    diagnoses: Sequence[str],
    visit: DftVisit,
    profile: DftProfile,
    cid: str,
    posted_at: datetime,
    credits: Sequence[Charge],
    debits: Sequence[Charge],
) -> str:
    """The message: credits first (they reverse what was posted), then debits."""
    stamp = _timestamp(posted_at)
    segments = [_msh(profile, cid, stamp), _seg("EVN", "P03", stamp), _pid(visit), _pv1(visit)]
    ft1s = [(c, TransactionType.CREDIT) for c in credits]
    ft1s += [(c, TransactionType.CHARGE) for c in debits]
    segments += [_ft1(i, charge, kind, stamp, profile) for i, (charge, kind) in enumerate(ft1s, 1)]
    if profile.fills(OptionalField.DG1):
        segments += [_dg1(i, code, profile) for i, code in enumerate(diagnoses, 1)]
    return "".join(s + "\r" for s in segments)


def _msh(profile: DftProfile, cid: str, stamp: str) -> str:
    h = profile.header
    kind = "DFT^P03" if profile.version is HL7Version.V2_3 else "DFT^P03^DFT_P03"
    fields = [
        _c(h.sending_application),
        _c(h.sending_facility),
        _c(h.receiving_application),
        _c(h.receiving_facility),
        stamp,
        "",
        kind,
        cid,
        _c(h.processing_id),
        profile.version.value,
    ]
    return _strip("|".join(["MSH", "^~\\&", *fields]), "|")


def _pid(visit: DftVisit) -> str:
    """PID-3 as received: `<id>^^^<assigning authority>` (docs/feed-conventions.md).

    PID-5 (required) is the HL7 null `""`: the adapter keeps no patient names (PHI it does
    not need); receivers match a DFT on PID-3 and PV1-19, never on the name.
    """
    return _seg("PID", "1", "", _patient_identifier(visit.patient_id), "", HL7_NULL)


def _patient_identifier(patient_id: str) -> str:
    """The patient key back as a CX: HL7 `<authority>|<id>`, FHIR `Patient/<id>` or
    `<system>|<value>` (the readers' documented key formats)."""
    if patient_id.startswith("Patient/"):
        return _c(patient_id[len("Patient/") :])
    authority, bar, ident = patient_id.partition("|")
    if not bar:
        return _c(patient_id)
    return _c(ident, "", "", authority)


def _pv1(visit: DftVisit) -> str:
    fields = [""] * 19
    fields[0] = "1"
    fields[1] = _PATIENT_CLASS[visit.patient_class]
    fields[2] = _c(visit.location, "", "", visit.facility)
    fields[6] = _xcn(visit.attending)
    fields[18] = _c(visit.visit_id)
    return _seg("PV1", *fields)


def _ft1(
    set_id: int, charge: Charge, kind: TransactionType, stamp: str, profile: DftProfile
) -> str:
    fields = [""] * profile.version.ft1_fields
    quantity = charge.quantity
    if kind is TransactionType.CREDIT and profile.credit_quantity is CreditQuantity.NEGATIVE:
        quantity = -quantity
    day = charge.service_date.strftime("%Y%m%d")

    def put(number: int, value: str) -> None:
        fields[number - 1] = value

    put(1, str(set_id))
    put(2, _c(charge.transaction_id))
    put(4, _c(day, day) if profile.version is HL7Version.V2_5_1 else day)
    put(5, stamp)
    put(6, kind.value)
    put(7, _c(charge.transaction_code, charge.description, charge.transaction_code_system))
    put(10, str(quantity))
    if charge.department is not None:
        put(13, _c(charge.department.code, charge.department.text))
    put(16, _c(charge.location, "", "", charge.facility))
    dx_system = profile.diagnosis_coding_system
    put(19, "~".join(_c(code, "", dx_system) for code in charge.diagnoses))
    put(20, _xcn(charge.performed_by))
    put(21, _xcn(charge.ordered_by))
    if charge.filler_order:
        put(23, _c(charge.filler_order))
    if CodeField.FT1_25 in profile.procedure_code_in:
        code = _suffixed(charge, profile)
        put(25, _c(code, charge.description, charge.procedure_code_system))
    if profile.modifiers is ModifierPlacement.FT1_26:
        put(26, "~".join(_c(m) for m in charge.modifiers))
    if charge.ndc and profile.version.ft1_fields >= 29:
        put(29, _c(charge.ndc, "", "NDC"))
    return _seg("FT1", *fields)


def _suffixed(charge: Charge, profile: DftProfile) -> str:
    if profile.modifiers is ModifierPlacement.CODE_SUFFIX and charge.modifiers:
        return profile.modifier_separator.join((charge.procedure_code, *charge.modifiers))
    return charge.procedure_code


def _dg1(set_id: int, code: str, profile: DftProfile) -> str:
    """DG1-6 `F` final (coded from documentation); DG1-15 the Claim's sequence (1 = primary)."""
    fields = [""] * 15
    fields[0] = str(set_id)
    fields[2] = _c(code, "", profile.diagnosis_coding_system)
    fields[5] = "F"
    fields[14] = str(set_id)
    return _seg("DG1", *fields)


def _xcn(who: Provider | None) -> str:
    """An XCN as received: id, name, degree, XCN-9 assigning authority, XCN-13 id type
    (`NPI` when the feed said the id is an NPI)."""
    if who is None:
        return ""
    return _c(who.id, who.family, who.given, who.middle, who.suffix, who.prefix, who.degree,
              "", who.authority, "", "", "", who.id_type)  # fmt: skip


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("posting time must carry its UTC offset")
    return value.strftime("%Y%m%d%H%M%S%z")


def _c(*leaves: str) -> str:
    """One field (or repetition) from its component leaves, escaped, trailing empties cut."""
    return "^".join(map(escape, leaves)).rstrip("^")


def _seg(name: str, *fields: str) -> str:
    return _strip("|".join((name, *fields)), "|")


def _strip(text: str, separator: str) -> str:
    return text.rstrip(separator)
