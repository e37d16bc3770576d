"""The workbench reports over Claim versions: documentation gaps, coded vs held, unknown drugs.

Pure: rows in (`adapter.core.report_rows`, already filtered by the store), tables out. An
encounter is counted by its Claim (one Claim per encounter, one row per stored version), and
placed by its newest version's service date, location and setting, so an encounter is in
exactly one week and one unit of a report. "Held for a reason" means some version of its
Claim was held for it: a documentation gap the unit had, even when the biller fixed it since;
"still held" counts those whose newest version is still held for it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from adapter.core.holds import HoldReason
from adapter.core.model import CodeSystem
from adapter.core.report_rows import ClaimVersion, DrugCode, week_of
from adapter.core.report_table import ReportTable

MISSING_STOP = HoldReason.MISSING_STOP_TIME.value
NO_SERVICE_DATE = "(no service date)"


@dataclass(frozen=True, slots=True)
class Encounter:
    """The versions of one Claim, oldest first; `newest` places it in the reports."""

    versions: tuple[ClaimVersion, ...]

    @property
    def newest(self) -> ClaimVersion:
        return self.versions[-1]

    def reasons_ever(self) -> frozenset[str]:
        return frozenset(r for v in self.versions if v.held for r in v.holds)

    def reasons_now(self) -> frozenset[str]:
        return frozenset(self.newest.holds) if self.newest.held else frozenset()

    @property
    def week(self) -> date | None:
        day = self.newest.service_date
        return week_of(day) if day else None


def encounters(versions: Iterable[ClaimVersion]) -> list[Encounter]:
    """The rows grouped per Claim, versions in order; encounters in a stable order."""
    grouped: dict[str, list[ClaimVersion]] = defaultdict(list)
    for v in versions:
        grouped[v.claim_id].append(v)
    return [
        Encounter(tuple(sorted(vs, key=lambda v: v.version))) for _, vs in sorted(grouped.items())
    ]


def week_label(week: date | None) -> str:
    return week.isoformat() if week else NO_SERVICE_DATE


def week_key(week: date | None) -> date:
    return week or date.min


# --------------------------------------------------------------- documentation gaps


@dataclass(frozen=True, slots=True)
class GapCell:
    """Encounters of one week and location held (at some version) for one reason."""

    week: date | None
    location: str
    reason: str
    encounters: int
    still_held: int


@dataclass(frozen=True, slots=True)
class GapReport:
    cells: tuple[GapCell, ...]  # by week, location, reason
    reasons: tuple[str, ...]  # every reason seen, most encounters first
    encounters: int  # every encounter in the rows (held or not)
    held_encounters: int  # encounters held at least once

    def by_week(self) -> list[tuple[date | None, dict[str, int]]]:
        """Per week, encounters per reason (for the stacked chart)."""
        weeks: dict[date | None, Counter[str]] = defaultdict(Counter)
        for c in self.cells:
            weeks[c.week][c.reason] += c.encounters
        return [(w, dict(weeks[w])) for w in sorted(weeks, key=week_key)]

    def table(self) -> ReportTable:
        return ReportTable(
            ("week of", "location", "hold reason", "encounters held", "still held"),
            tuple(
                (week_label(c.week), c.location, c.reason, c.encounters, c.still_held)
                for c in self.cells
            ),
        )


def documentation_gaps(versions: Iterable[ClaimVersion]) -> GapReport:
    """Holds by reason x location x week: encounters held for each reason, and still held."""
    found = encounters(versions)
    held: Counter[tuple[date | None, str, str]] = Counter()
    still: Counter[tuple[date | None, str, str]] = Counter()
    per_reason: Counter[str] = Counter()
    for enc in found:
        now = enc.reasons_now()
        for reason in enc.reasons_ever():
            key = (enc.week, enc.newest.location, reason)
            held[key] += 1
            still[key] += reason in now
            per_reason[reason] += 1
    order = sorted(held, key=lambda k: (week_key(k[0]), k[1], k[2]))
    cells = tuple(GapCell(*key, held[key], still[key]) for key in order)
    reasons = tuple(r for r, _ in sorted(per_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    return GapReport(cells, reasons, len(found), sum(1 for e in found if e.reasons_ever()))


# --------------------------------------------------------------- missing stop times per unit


@dataclass(frozen=True, slots=True)
class StopTimeRow:
    """One unit: how many of its encounters had an infusion without a documented stop time."""

    location: str
    encounters: int  # every encounter of the unit in the rows
    missing: int  # encounters held at least once for a missing stop time
    administrations: int  # infusions without a stop time (the most any version had, summed)
    still_missing: int  # encounters still held for it

    @property
    def percent(self) -> Decimal:
        """Share of the unit's encounters with a missing stop time, one decimal."""
        if not self.encounters:
            return Decimal("0.0")
        share = Decimal(100 * self.missing) / Decimal(self.encounters)
        return share.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def stop_times_by_unit(versions: Iterable[ClaimVersion]) -> tuple[StopTimeRow, ...]:
    """Missing stop times per unit, the unit with the most affected encounters first."""
    units: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for enc in encounters(versions):
        counts = units[enc.newest.location]
        counts[0] += 1
        if MISSING_STOP in enc.reasons_ever():
            counts[1] += 1
            counts[2] += max(v.holds.count(MISSING_STOP) for v in enc.versions if v.held)
            counts[3] += MISSING_STOP in enc.reasons_now()
    rows = (StopTimeRow(loc, *c) for loc, c in units.items())
    return tuple(sorted(rows, key=lambda r: (-r.missing, r.location)))


def stop_times_table(rows: Sequence[StopTimeRow]) -> ReportTable:
    return ReportTable(
        (
            "location",
            "encounters",
            "encounters with a missing stop time",
            "percent",
            "infusions without a stop time",
            "still held",
        ),
        tuple(
            (r.location, r.encounters, r.missing, r.percent, r.administrations, r.still_missing)
            for r in rows
        ),
    )


# --------------------------------------------------------------- coded vs held over time


@dataclass(frozen=True, slots=True)
class CodedHeldWeek:
    """One service week: coded straight away, coded after a review, still held."""

    week: date | None
    coded: int  # never held
    coded_after_review: int  # held at some version, coded now
    held: int  # newest version held

    @property
    def total(self) -> int:
        return self.coded + self.coded_after_review + self.held


def coded_vs_held(versions: Iterable[ClaimVersion]) -> tuple[CodedHeldWeek, ...]:
    """Per service week, every encounter in exactly one of the three columns."""
    weeks: dict[date | None, list[int]] = defaultdict(lambda: [0, 0, 0])
    for enc in encounters(versions):
        counts = weeks[enc.week]
        if enc.newest.held:
            counts[2] += 1
        elif any(v.held for v in enc.versions):
            counts[1] += 1
        else:
            counts[0] += 1
    return tuple(CodedHeldWeek(w, *weeks[w]) for w in sorted(weeks, key=week_key))


def coded_held_table(weeks: Sequence[CodedHeldWeek]) -> ReportTable:
    return ReportTable(
        ("week of", "coded", "coded after review", "held", "total"),
        tuple((week_label(w.week), w.coded, w.coded_after_review, w.held, w.total) for w in weeks),
    )


# --------------------------------------------------------------- top unknown drugs


@dataclass(frozen=True, slots=True)
class UnknownDrug:
    """A drug code that made encounters hold as unknown drug."""

    code: DrugCode
    encounters: int  # encounters held for it at some version
    still_held: int  # of which the newest version is still held for it
    locations: int  # how many units sent it
    first_seen: date | None  # earliest service date
    last_seen: date | None


def unknown_drugs(versions: Iterable[ClaimVersion]) -> tuple[UnknownDrug, ...]:
    """Every unmatched drug code, the one holding the most encounters first.

    An encounter counts once per code whatever the number of versions or administrations.
    """
    seen: dict[DrugCode, list[Encounter]] = defaultdict(list)
    for enc in encounters(versions):
        for code in {c for v in enc.versions if v.held for c in v.unmatched_drugs}:
            seen[code].append(enc)
    out = []
    for code, encs in seen.items():
        days = [d for e in encs if (d := e.newest.service_date)]
        out.append(
            UnknownDrug(
                code,
                len(encs),
                sum(1 for e in encs if e.newest.held and code in e.newest.unmatched_drugs),
                len({e.newest.location for e in encs}),
                min(days, default=None),
                max(days, default=None),
            )
        )
    return tuple(sorted(out, key=lambda u: (-u.encounters, u.code.system, u.code.code)))


def unknown_drugs_table(drugs: Sequence[UnknownDrug]) -> ReportTable:
    return ReportTable(
        (
            "code",
            "code system",
            "encounters held",
            "still held",
            "locations",
            "first service date",
            "last service date",
        ),
        tuple(
            (
                d.code.code,
                system_name(d.code.system),
                d.encounters,
                d.still_held,
                d.locations,
                d.first_seen.isoformat() if d.first_seen else None,
                d.last_seen.isoformat() if d.last_seen else None,
            )
            for d in drugs
        ),
    )


SYSTEM_NAMES = {
    CodeSystem.NDC.value: "NDC",
    CodeSystem.RXNORM.value: "RxNorm",
    CodeSystem.HCPCS.value: "HCPCS",
    CodeSystem.LOCAL.value: "local code",
}


def system_name(system: str) -> str:
    """The code system as a biller names it (the URI when it is not a known one)."""
    return SYSTEM_NAMES.get(system, system)
