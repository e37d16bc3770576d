"""What coding produces: charge lines, diagnoses and holds for one encounter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from adapter.core.holds import Hold


class LineKind(StrEnum):
    ADMINISTRATION = "administration"  # CPT 963xx/964xx or G0498
    DRUG = "drug"  # HCPCS J/Q codes
    WASTE = "waste"  # the JW line of a drug


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One Claim item / ChargeItem.

    `rules` is the trace: the rule and decision ids (R18, D17...) that produced
    the line, emitted on the Claim item so a biller can see why it exists.
    """

    kind: LineKind
    code: str
    units: int
    service_date: date
    rules: tuple[str, ...]
    sources: tuple[str, ...]  # Administration.source_id values behind the line
    modifiers: tuple[str, ...] = ()
    ndc: str = ""
    drug_amount: Decimal | None = None  # administered (or wasted) amount, for the NDC quantity
    drug_unit: str = ""

    @property
    def is_cpt(self) -> bool:
        return self.code[:1].isdigit()


@dataclass(frozen=True, slots=True)
class TableWarning:
    """D27: a service date past the newest loaded CMS table: coded anyway, but said."""

    table: str
    effective_end: date
    service_date: date


class EncounterSkip(StrEnum):
    """Why a whole encounter bills nothing (`CodedEncounter.skip_reason`)."""

    INPATIENT = "inpatient"  # D2: billed by the inpatient claim, not here
    NOTHING_BILLABLE = "nothing billable"  # read and coded: no line and no hold
    # one visit number (PV1-19, Encounter id) carries administrations or visit context of
    # more than one patient: no claim may mix them; the feed must be fixed and replayed
    SHARED_VISIT = "visit number shared by several patients"


class Outcome(StrEnum):
    CODED = "coded"
    HELD = "held"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class CodedEncounter:
    """The coder's verdict on one encounter."""

    encounter_key: str
    patient_id: str
    setting: str
    lines: tuple[ChargeLine, ...]
    diagnoses: tuple[str, ...]
    holds: tuple[Hold, ...]
    period_start: datetime | None
    period_end: datetime | None
    skip_reason: str = ""  # an EncounterSkip value when skipped
    place_of_service: str = ""  # professional claims (R1): 11 office
    coverage_payer: str = ""
    coverage_id: str = ""
    warnings: tuple[TableWarning, ...] = ()

    @property
    def outcome(self) -> Outcome:
        if self.skip_reason:
            return Outcome.SKIPPED
        return Outcome.HELD if self.holds else Outcome.CODED
