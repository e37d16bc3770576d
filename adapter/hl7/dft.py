"""DFT^P03 (post detail financial transactions) for one coded encounter version.

Pure: the coded encounter, its visit facts, the receiver's profile, what the receiver
already holds for the encounter (`Posting`) and the posting time in; the ER7 message and
what the receiver holds once it accepted it out. No I/O, no clock.

Billing systems never edit a posted charge in place: a correction is new transactions.
So a version is sent as the difference against the previous delivered one: a CD credit
(same transaction id, same quantity, same fields) for every charge that no longer stands
as it was, then a CG debit for every new one; an unchanged line sends nothing. Each
posted charge (`Charge`) keeps every field it was sent with, so its credit reverses
exactly what the receiver has, even after the chargemaster or the department table has
changed since.

Ids are deterministic (D24): MSH-10 from encounter key and version, so a resend of a
version carries the same MSH-10 and the receiver's duplicate check drops it; a charge's
transaction id from encounter key, the version that first posted it and the line's
identity, so a re-charge after a credit never reuses the credited id.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType

from adapter.core.assembly import Encounter
from adapter.core.catalog import ndc_candidates
from adapter.core.charges import ChargeLine, CodedEncounter, Outcome
from adapter.core.ids import line_identity
from adapter.core.model import PatientClass
from adapter.hl7.dft_profile import (
    ClaimKind,
    CodeField,
    CreditQuantity,
    Department,
    DftProfile,
    HL7Version,
    ModifierPlacement,
    OptionalField,
)
from adapter.hl7.er7_text import escape

__all__ = [
    "Charge",
    "Dft",
    "DftVisit",
    "NoDft",
    "NoDftReason",
    "Posting",
    "TransactionType",
    "UnmappedCharge",
    "build_dft",
    "control_id",
    "diff_charges",
    "transaction_id",
    "wanted_charges",
]

MAX_DIAGNOSIS_POINTERS = 4  # FT1-19 carries the line's pointers, as Claim.item does
CONTROL_ID_CHARS = 20  # MSH-10 is ST(20) in 2.3 to 2.5.1
TRANSACTION_ID_CHARS = 12  # FT1-2 is ST(12) in 2.3 to 2.5.1
_NAMESPACE = "charge-adapter/dft/v1"
HL7_NULL = '""'  # "present, no value": satisfies a required field without inventing data

_PATIENT_CLASS = MappingProxyType(
    {
        PatientClass.OUTPATIENT: "O",
        PatientClass.EMERGENCY: "E",
        PatientClass.INPATIENT: "I",
        PatientClass.UNKNOWN: "U",
    }
)


class TransactionType(StrEnum):
    """HL7 table 0017."""

    CHARGE = "CG"
    CREDIT = "CD"


@dataclass(frozen=True, slots=True)
class DftVisit:
    """The patient and visit identifiers of an encounter, as the feed sent them.

    `locations` are every location code of the encounter, most specific first (visit
    point of care, facility, then the administrations' own), for the department lookup.
    """

    patient_id: str
    visit_id: str = ""
    patient_class: PatientClass = PatientClass.UNKNOWN
    location: str = ""
    facility: str = ""
    locations: tuple[str, ...] = ()

    @staticmethod
    def of(encounter: Encounter) -> DftVisit:
        visit = encounter.visit
        admins = encounter.administrations
        visit_id = visit.visit_id if visit else ""
        visit_id = visit_id or next((a.visit_id for a in admins if a.visit_id), "")
        patient_class = visit.patient_class if visit else PatientClass.UNKNOWN
        if patient_class is PatientClass.UNKNOWN:
            patient_class = next(
                (a.patient_class for a in admins if a.patient_class is not PatientClass.UNKNOWN),
                PatientClass.UNKNOWN,
            )
        codes = [visit.location, visit.facility] if visit else []
        codes += [a.location for a in admins]
        locations = tuple(dict.fromkeys(c for c in codes if c))
        location = (visit.location if visit else None) or next(
            (a.location for a in admins if a.location), ""
        )
        return DftVisit(
            patient_id=encounter.patient_id,
            visit_id=visit_id,
            patient_class=patient_class,
            location=location or "",
            facility=(visit.facility if visit else None) or "",
            locations=locations,
        )


@dataclass(frozen=True, slots=True)
class Charge:
    """One FT1 as posted (or to be posted), with every field it is sent with.

    `line_key` is the line's identity (kind, code, sorted modifiers, service date) and its
    occurrence among lines sharing it; `transaction_id` is empty until the charge is
    posted by a version.
    """

    line_key: tuple[str, ...]
    service_date: date
    procedure_code: str
    procedure_code_system: str
    modifiers: tuple[str, ...]
    quantity: int
    transaction_code: str
    transaction_code_system: str
    description: str = ""
    ndc: str = ""
    department: Department | None = None
    location: str = ""
    facility: str = ""
    diagnoses: tuple[str, ...] = ()
    transaction_id: str = ""

    @property
    def content(self) -> Charge:
        """The charge without its transaction id: what decides "unchanged"."""
        return replace(self, transaction_id="")


@dataclass(frozen=True, slots=True)
class Posting:
    """What the receiver holds for one encounter after it accepted a version's DFT."""

    encounter_key: str
    version: int
    charges: tuple[Charge, ...]


class NoDftReason(StrEnum):
    HELD = "held"  # D22: nothing goes out until a biller releases it
    SKIPPED = "skipped"  # inpatient (D2) or nothing billable, and nothing posted before
    NOT_FOR_RECEIVER = "not-for-receiver"  # the profile takes the other claim kind
    UNCHANGED = "unchanged"  # the version bills what the receiver already holds


@dataclass(frozen=True, slots=True)
class NoDft:
    """Why a version sends nothing to this receiver; the previous posting still stands."""

    reason: NoDftReason
    detail: str


@dataclass(frozen=True, slots=True)
class Dft:
    """One DFT^P03: credits first, then debits; `posting` is what stands once accepted."""

    control_id: str
    text: str  # ER7, every segment ended by CR
    credits: tuple[Charge, ...]
    debits: tuple[Charge, ...]
    posting: Posting


class UnmappedCharge(ValueError):
    """A modified line the profile can only send through a chargemaster row it lacks.

    Raised instead of dropping the modifier: JW billed without JW is a compliance
    problem. The site adds the row to the profile's chargemaster and the version is sent.
    """

    def __init__(self, profile: str, code: str, modifiers: tuple[str, ...]) -> None:
        joined = "+".join(modifiers)
        super().__init__(
            f"profile {profile}: no chargemaster row for {code} with modifiers {joined}; "
            "this profile sends modifiers only through the chargemaster item"
        )
        self.profile = profile
        self.code = code
        self.modifiers = modifiers


# --- the version's charges and the difference -------------------------------------------


def build_dft(
    coded: CodedEncounter,
    visit: DftVisit,
    profile: DftProfile,
    *,
    version: int,
    posted_at: datetime,
    previous: Posting | None = None,
    released: bool = False,
    labels: Mapping[str, str] = MappingProxyType({}),
) -> Dft | NoDft:
    """The DFT that brings the receiver from `previous` to this coded version, or why none.

    `released`: a biller approved the held draft as it is (override): it is billed.
    `labels`: our own short code labels (never AMA descriptors) for FT1-7/FT1-25 text.
    """
    if coded.outcome is Outcome.HELD and not released:
        reasons = ", ".join(dict.fromkeys(h.reason.value for h in coded.holds))
        return NoDft(NoDftReason.HELD, f"held for review: {reasons}")
    standing = previous.charges if previous else ()
    wanted, why_none = _wanted(coded, visit, profile, labels)
    credits, kept, debits = diff_charges(standing, wanted)
    if not credits and not debits:
        if why_none is not None and not standing:
            return why_none
        since = f" since version {previous.version}" if previous else ""
        return NoDft(NoDftReason.UNCHANGED, f"the receiver already holds these charges{since}")
    posted = tuple(
        replace(c, transaction_id=transaction_id(coded.encounter_key, version, c.line_key))
        for c in debits
    )
    posting = Posting(coded.encounter_key, version, _in_claim_order(kept + posted, wanted))
    cid = control_id(coded.encounter_key, version)
    text = _message(coded, visit, profile, cid, posted_at, credits, posted)
    return Dft(cid, text, credits, posted, posting)


def _wanted(
    coded: CodedEncounter, visit: DftVisit, profile: DftProfile, labels: Mapping[str, str]
) -> tuple[tuple[Charge, ...], NoDft | None]:
    """The charges this version bills at this receiver, or none and why."""
    if coded.outcome is Outcome.SKIPPED:
        return (), NoDft(NoDftReason.SKIPPED, coded.skip_reason)
    kind = ClaimKind.of_setting(coded.setting)
    if kind not in profile.encounters:
        allowed = ", ".join(sorted(k.value for k in profile.encounters))
        detail = f"profile {profile.name} takes {allowed} encounters, this one is {kind.value}"
        return (), NoDft(NoDftReason.NOT_FOR_RECEIVER, detail)
    return wanted_charges(coded, visit, profile, labels), None


def wanted_charges(
    coded: CodedEncounter,
    visit: DftVisit,
    profile: DftProfile,
    labels: Mapping[str, str] = MappingProxyType({}),
) -> tuple[Charge, ...]:
    """One charge per billable line, in Claim order, without transaction ids."""
    department = _department(visit, profile)
    pointers = coded.diagnoses[:MAX_DIAGNOSIS_POINTERS]
    seen: Counter[tuple[str, ...]] = Counter()
    charges = []
    for line in coded.lines:
        identity = line_identity(line)
        key = (*identity, str(seen[identity]))
        seen[identity] += 1
        charges.append(_charge(line, key, profile, labels, department, visit, pointers))
    return tuple(charges)


def diff_charges(
    standing: Sequence[Charge], wanted: Sequence[Charge]
) -> tuple[tuple[Charge, ...], tuple[Charge, ...], tuple[Charge, ...]]:
    """(credits, kept, debits) that take the receiver from `standing` to `wanted`.

    A standing charge whose exact content is still wanted is kept (nothing sent); every
    other standing charge is credited as it was posted; every wanted charge not matched
    is a debit. Matching counts multiplicity, so two identical lines stay two.
    """
    wanted_contents = [c.content for c in wanted]
    unmatched = Counter(wanted_contents)
    credits: list[Charge] = []
    kept: list[Charge] = []
    for charge in standing:
        content = charge.content
        if unmatched[content] > 0:
            unmatched[content] -= 1
            kept.append(charge)
        else:
            credits.append(charge)
    debits: list[Charge] = []
    for charge, content in zip(wanted, wanted_contents, strict=True):
        if unmatched[content] > 0:
            unmatched[content] -= 1
            debits.append(charge)
    return tuple(credits), tuple(kept), tuple(debits)


def _in_claim_order(charges: Iterable[Charge], wanted: Sequence[Charge]) -> tuple[Charge, ...]:
    rank = {c.line_key: i for i, c in enumerate(wanted)}
    return tuple(sorted(charges, key=lambda c: rank.get(c.line_key, len(rank))))


def _charge(
    line: ChargeLine,
    key: tuple[str, ...],
    profile: DftProfile,
    labels: Mapping[str, str],
    department: Department | None,
    visit: DftVisit,
    pointers: tuple[str, ...],
) -> Charge:
    system = profile.cpt_coding_system if line.is_cpt else profile.hcpcs_coding_system
    code, text, code_system = _transaction_code(line, profile, labels, system)
    return Charge(
        line_key=key,
        service_date=line.service_date,
        procedure_code=line.code,
        procedure_code_system=system,
        modifiers=line.modifiers,
        quantity=line.units,
        transaction_code=code,
        transaction_code_system=code_system,
        description=text,
        ndc=_ndc(line.ndc) if profile.fills(OptionalField.NDC) else "",
        department=department if profile.fills(OptionalField.DEPARTMENT) else None,
        location=visit.location if profile.fills(OptionalField.ASSIGNED_LOCATION) else "",
        facility=visit.facility if profile.fills(OptionalField.ASSIGNED_LOCATION) else "",
        diagnoses=pointers if profile.fills(OptionalField.DIAGNOSIS_CODES) else (),
    )


def _transaction_code(
    line: ChargeLine, profile: DftProfile, labels: Mapping[str, str], system: str
) -> tuple[str, str, str]:
    """FT1-7: the CPT/HCPCS itself (FT1-7 profiles), else the chargemaster item for code +
    modifiers, else the code itself. A modifier must travel somewhere (UnmappedCharge)."""
    label = labels.get(line.code, "")
    if CodeField.FT1_7 in profile.procedure_code_in:
        return _procedure_code(line, profile), label, system
    chargemaster = profile.chargemaster
    if profile.modifiers is ModifierPlacement.CHARGEMASTER and line.modifiers:
        item = chargemaster.exact(line.code, line.modifiers)
        if item is None:
            raise UnmappedCharge(profile.name, line.code, line.modifiers)
    else:
        item = chargemaster.lookup(line.code, line.modifiers)
    if item is None:
        return line.code, label, system
    return item.transaction_code, item.description or label, ""


def _procedure_code(line: ChargeLine, profile: DftProfile) -> str:
    if profile.modifiers is ModifierPlacement.CODE_SUFFIX and line.modifiers:
        return profile.modifier_separator.join((line.code, *line.modifiers))
    return line.code


def _department(visit: DftVisit, profile: DftProfile) -> Department | None:
    for code in visit.locations:
        found = profile.departments.get(code.strip().upper())
        if found is not None:
            return found
    return None


def _ndc(ndc: str) -> str:
    """11 digits without dashes, as billing (837 N4) carries it; ambiguous forms as given."""
    candidates = ndc_candidates(ndc) if ndc else ()
    return candidates[0] if len(candidates) == 1 else ndc


# --- ids ---------------------------------------------------------------------------------


def _digest(kind: str, *parts: str) -> str:
    """Base32 of a sha256 over a JSON list: no separator choice can make two keys collide;
    upper-case letters and digits only, so the id needs no escaping in any field."""
    canonical = json.dumps([_NAMESPACE, kind, *parts], ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii")


def control_id(encounter_key: str, version: int) -> str:
    """MSH-10 for one encounter version: the same on every resend of that version."""
    return "D" + _digest("control-id", encounter_key, str(version))[: CONTROL_ID_CHARS - 1]


def transaction_id(encounter_key: str, version: int, line_key: tuple[str, ...]) -> str:
    """FT1-2 for a charge first posted by `version` (60 bits: no practical collisions)."""
    return _digest("transaction", encounter_key, str(version), *line_key)[:TRANSACTION_ID_CHARS]


# --- ER7 ---------------------------------------------------------------------------------


def _message(
    coded: CodedEncounter,
    visit: DftVisit,
    profile: DftProfile,
    cid: str,
    posted_at: datetime,
    credits: tuple[Charge, ...],
    debits: tuple[Charge, ...],
) -> str:
    stamp = _timestamp(posted_at)
    segments = [_msh(profile, cid, stamp), _seg("EVN", "P03", stamp), _pid(visit), _pv1(visit)]
    ft1s = [(c, TransactionType.CREDIT) for c in credits]
    ft1s += [(c, TransactionType.CHARGE) for c in debits]
    segments += [_ft1(i, charge, kind, stamp, profile) for i, (charge, kind) in enumerate(ft1s, 1)]
    if profile.fills(OptionalField.DG1):
        segments += [_dg1(i, code, profile) for i, code in enumerate(coded.diagnoses, 1)]
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
