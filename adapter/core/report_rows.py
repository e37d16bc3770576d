"""What the workbench reports read: Claim versions and coded lines, without patient data.

The store adapters (`adapter.store.reports_sqlite`, `adapter.store.reports_postgres`) select
these rows with the report's filters applied; the pure aggregations (`adapter.core.reports`,
`report_lag`, `report_payment`) turn them into tables. No row carries a patient identifier,
an encounter key or free text: a report, its page and its CSV are at unit, week and code
level only, so a CSV mailed to a unit manager holds no PHI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from adapter.core.charges import ChargeLine


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """The filters every report takes (the page's GET parameters): service date range
    (inclusive), location (the Claim's provider, as the worklist shows it) and setting
    (`Setting.OFFICE` / `Setting.HOSPITAL_OUTPATIENT`); empty means all."""

    service_from: date | None = None
    service_to: date | None = None
    location: str = ""
    setting: str = ""


@dataclass(frozen=True, slots=True)
class DrugCode:
    """A drug code an unknown-drug hold could not match (NDC, RxNorm, a local code)."""

    system: str
    code: str


@dataclass(frozen=True, slots=True)
class ClaimVersion:
    """One stored version of an encounter's Claim, as the reports read it.

    `claim_id` is the deterministic Claim id (a hash, never a patient identifier): it only
    groups the versions of one encounter and never leaves the aggregation.
    `holds` has one code per hold, so a reason repeats when several administrations of the
    encounter have it (two infusions without a stop time: twice). `delivered_at` is the
    first time this version was delivered to any destination (None: not yet, or no sink).
    """

    claim_id: str
    version: int
    held: bool  # the version is a draft (held for review); else coded (active)
    recorded_at: datetime  # when this version was written (coded or held)
    service_date: date | None  # billablePeriod.start's date (the site's local date)
    administered_at: datetime | None  # billablePeriod.start: the first administration's start
    location: str
    setting: str
    holds: tuple[str, ...] = ()
    unmatched_drugs: tuple[DrugCode, ...] = ()
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CodedClaim:
    """The current version of a coded (active) Claim with its lines, for pricing."""

    claim_id: str
    service_date: date
    location: str
    setting: str
    lines: tuple[ChargeLine, ...]


def week_of(day: date) -> date:
    """The Monday of the ISO week a service date falls in (how the reports group weeks)."""
    return day - timedelta(days=day.weekday())


def month_of(day: date) -> date:
    """The first day of the service date's month."""
    return day.replace(day=1)
