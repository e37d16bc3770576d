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
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType

from adapter.core.catalog import ndc_candidates
from adapter.core.charges import ChargeLine, CodedEncounter, Outcome
from adapter.core.ids import line_identity
from adapter.hl7.dft_er7 import render
from adapter.hl7.dft_model import (
    Charge,
    Dft,
    DftVisit,
    NoDft,
    NoDftReason,
    Posting,
    TransactionType,
    UnmappedCharge,
)
from adapter.hl7.dft_profile import (
    ClaimKind,
    CodeField,
    Department,
    DftProfile,
    ModifierPlacement,
    OptionalField,
)

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
    text = render(coded.diagnoses, visit, profile, cid, posted_at, credits, posted)
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
    parties = visit.parties_of(line.sources)
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
        performed_by=parties.performed_by if profile.fills(OptionalField.PERFORMED_BY) else None,
        ordered_by=parties.ordered_by if profile.fills(OptionalField.ORDERED_BY) else None,
        filler_order=parties.filler_order if profile.fills(OptionalField.FILLER_ORDER) else "",
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
