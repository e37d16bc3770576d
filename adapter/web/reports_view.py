"""The five report pages as sections (chart, table, CSV): rows in, what the template shows out.

Pure (no request, no store): `adapter.web.routes.reports` reads the rows and renders. Each
section's table is the CSV as downloaded; `shown` is the same rows formatted for the page
(dollars with cents, an empty cell as a dash). Hold reasons are shown as their codes, the
words a biller acts on being one click away on the worklist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from adapter.core.price_tables import PriceTables
from adapter.core.report_chart import Chart, Series, Unit, bar_chart, hbar_chart, number
from adapter.core.report_lag import charge_lag, lag_table
from adapter.core.report_payment import flag_text, payment_by_month
from adapter.core.report_rows import ClaimVersion, CodedClaim
from adapter.core.report_table import Cell, ReportTable
from adapter.core.reports import (
    coded_held_table,
    coded_vs_held,
    documentation_gaps,
    stop_times_by_unit,
    stop_times_table,
    unknown_drugs,
    unknown_drugs_table,
    week_label,
)

CHART_REASONS = 6  # the most frequent reasons get a colour each, the rest are "other"
TOP_DRUGS = 20


class Source(StrEnum):
    VERSIONS = "versions"  # every Claim version (the hold, lag and drug reports)
    CODED = "coded"  # the current coded Claims with their lines (expected payment)


@dataclass(frozen=True, slots=True)
class Section:
    heading: str
    intro: str
    chart: Chart
    table: ReportTable
    csv: str  # the download's name: /ui/reports/<csv>.csv
    money: frozenset[int] = frozenset()  # columns shown as dollars
    note: tuple[str, ...] = ()  # shown above the table and carried by every CSV row
    flags: tuple[str, ...] = ()  # warnings shown prominently (tables past their period)

    @property
    def shown(self) -> list[list[str]]:
        return [
            [_show(cell, i in self.money) for i, cell in enumerate(row)] for row in self.table.rows
        ]


def _show(cell: Cell, money: bool) -> str:
    if cell is None:
        return "–"
    if money and isinstance(cell, Decimal):
        return f"${cell:,.2f}"
    return f"{cell:,}" if isinstance(cell, int) else str(cell)


Rows = Sequence[ClaimVersion] | Sequence[CodedClaim]


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    title: str
    summary: str
    source: Source
    build: Callable[[Rows, PriceTables], list[Section]]


# --------------------------------------------------------------- the builders


def _versions(rows: Rows) -> list[ClaimVersion]:
    return [r for r in rows if isinstance(r, ClaimVersion)]


def _gaps(rows: Rows, _tables: PriceTables) -> list[Section]:
    versions = _versions(rows)
    gaps = documentation_gaps(versions)
    charted = gaps.reasons[:CHART_REASONS]
    weeks = gaps.by_week()
    series = [Series(r, tuple(float(c.get(r, 0)) for _, c in weeks)) for r in charted]
    rest = tuple(float(sum(n for r, n in c.items() if r not in charted)) for _, c in weeks)
    if any(rest):
        series.append(Series("other reasons", rest))
    categories = [week_label(w) for w, _ in weeks]
    units = stop_times_by_unit(versions)
    return [
        Section(
            "Holds by reason, location and week",
            f"{gaps.held_encounters:,} of {gaps.encounters:,} encounters were held at least "
            "once. Each is counted once per reason, in the week of its service date; "
            "'still held' are those not released yet.",
            bar_chart(
                "Encounters held per week, by reason", categories, series, Unit.COUNT, stacked=True
            ),
            gaps.table(),
            "gaps",
        ),
        Section(
            "Missing stop times per unit",
            "Infusions documented without a stop time, per unit: the most common reason "
            "infusion charges are lost. For the infusion nurse manager to take to the unit.",
            hbar_chart(
                "Encounters with a missing stop time, per unit",
                [u.location or "(no location)" for u in units],
                [float(u.missing) for u in units],
                Unit.COUNT,
            ),
            stop_times_table(units),
            "stop-times",
        ),
    ]


def _lag(rows: Rows, _tables: PriceTables) -> list[Section]:
    versions = _versions(rows)
    overall = charge_lag([replace(v, location="") for v in versions])
    categories = [week_label(r.week) for r in overall]
    series = [
        Series("to coded, median", tuple(number(r.to_coded.median) for r in overall)),
        Series("to coded, 90th percentile", tuple(number(r.to_coded.p90) for r in overall)),
        Series("to delivered, median", tuple(number(r.end_to_end.median) for r in overall)),
        Series("to delivered, 90th percentile", tuple(number(r.end_to_end.p90) for r in overall)),
    ]
    return [
        Section(
            "Charge lag per unit and week",
            "Hours from the first administration's start to the first coded version of the "
            "Claim, from coded to its first delivery (FHIR server or DFT), and end to end. "
            "The chart is every unit together; the table is per unit. An encounter not coded "
            "or not delivered yet is counted as such, never as a lag of zero.",
            bar_chart(
                "Charge lag per service week, all units (hours)",
                categories,
                series,
                Unit.HOURS,
                stacked=False,
            ),
            lag_table(charge_lag(versions)),
            "lag",
        )
    ]


def _coded_held(rows: Rows, _tables: PriceTables) -> list[Section]:
    weeks = coded_vs_held(_versions(rows))
    series = [
        Series("coded", tuple(float(w.coded) for w in weeks)),
        Series("coded after review", tuple(float(w.coded_after_review) for w in weeks)),
        Series("held", tuple(float(w.held) for w in weeks)),
    ]
    return [
        Section(
            "Coded and held encounters per week",
            "Each encounter once, in the week of its service date: coded without review, "
            "coded after a review (code again or bill as coded), or held now.",
            bar_chart(
                "Encounters per service week",
                [week_label(w.week) for w in weeks],
                series,
                Unit.COUNT,
                stacked=True,
            ),
            coded_held_table(weeks),
            "coded-held",
        )
    ]


def _unknown(rows: Rows, _tables: PriceTables) -> list[Section]:
    drugs = unknown_drugs(_versions(rows))
    top = drugs[:TOP_DRUGS]
    return [
        Section(
            "Top unknown drugs and NDCs",
            "The drug codes (NDC, RxNorm, local) that made encounters hold as unknown drug, "
            "the most encounters first. Add each to mappings/drug_catalog_local.csv (or fix "
            "the drug record), reload the mappings, then code the encounters again. "
            "Drugs sent as text only, without a code, are not listed.",
            hbar_chart(
                f"Encounters held per unknown drug code (top {TOP_DRUGS})",
                [d.code.code for d in top],
                [float(d.encounters) for d in top],
                Unit.COUNT,
            ),
            unknown_drugs_table(drugs),
            "unknown-drugs",
        )
    ]


def _payment(rows: Rows, tables: PriceTables) -> list[Section]:
    report = payment_by_month([r for r in rows if isinstance(r, CodedClaim)], tables)
    categories = [m.month.strftime("%Y-%m") for m in report.months]
    series = [
        Series("office (PFS + ASP)", tuple(float(m.office.total) for m in report.months)),
        Series("hospital outpatient (OPPS)", tuple(float(m.hospital.total) for m in report.months)),
    ]
    flags = tuple(
        f"{m.month.strftime('%Y-%m')}: {flag_text(m.flags)} (priced with the loaded table, "
        "D27: drop in the current quarter's files)"
        for m in report.months
        if m.flags
    )
    if not report.priced:
        flags = ("No price tables are loaded (mappings/price_*.csv): nothing can be priced.",)
    return [
        Section(
            "Expected payment by month",
            "Every coded encounter priced at the national Medicare rates in both settings "
            "(its own lines, as coded), summed by service month; 'as coded' prices each "
            "encounter in the setting it was coded for. A setting's sum counts the priced "
            "lines only: an encounter with a line without rate is counted in its column.",
            bar_chart(
                "Expected payment per service month (national, unadjusted)",
                categories,
                series,
                Unit.DOLLARS,
                stacked=False,
            ),
            report.table(),
            "payment",
            money=frozenset({2, 3, 5}),
            note=(report.label,),
            flags=flags,
        )
    ]


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report(
            "gaps",
            "Documentation gaps",
            "Holds by reason, location and week; missing stop times per unit.",
            Source.VERSIONS,
            _gaps,
        ),
        Report(
            "lag",
            "Charge lag",
            "Administration to coded to delivered: median and 90th percentile per unit and week.",
            Source.VERSIONS,
            _lag,
        ),
        Report(
            "coded-held",
            "Coded vs held",
            "Encounters coded, coded after review and held, per week.",
            Source.VERSIONS,
            _coded_held,
        ),
        Report(
            "unknown-drugs",
            "Top unknown drugs",
            "The drug codes and NDCs that made encounters hold as unknown drug.",
            Source.VERSIONS,
            _unknown,
        ),
        Report(
            "payment",
            "Expected payment by month",
            "Office (PFS + ASP) and hospital outpatient (OPPS), national and unadjusted.",
            Source.CODED,
            _payment,
        ),
    )
}
CSV_OF = {"stop-times": "gaps"} | {name: name for name in REPORTS}  # download -> its page
