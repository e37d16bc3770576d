"""The values of a DFT^P03: the visit as the feed sent it, the charges as posted, and what
a receiver holds for an encounter (`Posting`). Pure, frozen; built by adapter/hl7/dft.py,
written as ER7 by adapter/hl7/dft_er7.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from adapter.core.assembly import Encounter
from adapter.core.model import PatientClass, Provider
from adapter.hl7.dft_profile import Department


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
    attending: Provider | None = None  # PV1-7
    # per Administration.source_id: who gave it, who ordered it, the filler order number
    parties: Mapping[str, Parties] = field(default_factory=lambda: MappingProxyType({}))

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
        parties = {
            a.source_id: Parties(a.performer, a.orderer, a.filler_order)
            for a in admins
            if a.performer or a.orderer or a.filler_order
        }
        return DftVisit(
            patient_id=encounter.patient_id,
            visit_id=visit_id,
            patient_class=patient_class,
            location=location or "",
            facility=(visit.facility if visit else None) or "",
            locations=locations,
            attending=visit.attending if visit else None,
            parties=MappingProxyType(parties),
        )

    def parties_of(self, sources: Sequence[str]) -> Parties:
        """The parties of a line: those of its first administration that has any."""
        return next((self.parties[s] for s in sources if s in self.parties), Parties())


@dataclass(frozen=True, slots=True)
class Parties:
    """Who is behind a charge, as the feed named them: FT1-20, FT1-21, FT1-23."""

    performed_by: Provider | None = None  # RXA-10
    ordered_by: Provider | None = None  # ORC-12
    filler_order: str = ""  # ORC-3


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
    performed_by: Provider | None = None
    ordered_by: Provider | None = None
    filler_order: str = ""

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
