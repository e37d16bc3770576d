"""Expected payment by month: the coded encounters priced in both settings, summed per month.

Why: the billing office asks "what is a month of infusions worth, and would the same services
be worth more in the other setting" (issue 13, item 5). Each coded encounter is priced with
`adapter.core.pricing.compare_sites` (office = PFS + ASP, hospital outpatient = OPPS) over its
own lines, so the month's totals are sums of the encounter figures the encounter page shows.

Every figure is national and unadjusted: the report's label says so and names each table's
period; a table past (or before) its period for a month's service dates is flagged for that
month, by the test the coder uses for D27. A setting's total sums priced lines only; an
encounter with a line the tables give no rate for is counted as incomplete, never as $0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from adapter.core.mappings import Setting
from adapter.core.periods import PeriodStatus
from adapter.core.price_tables import PriceTable, PriceTables
from adapter.core.pricing import LABEL_SCOPE, SettingPrice, compare_sites
from adapter.core.report_rows import CodedClaim, month_of
from adapter.core.report_table import ReportTable

ZERO = Decimal("0.00")
STATUS_WORDS = {
    PeriodStatus.PAST_PERIOD: "past its period",
    PeriodStatus.BEFORE_PERIOD: "before its period",
}


@dataclass(frozen=True, slots=True)
class SettingSum:
    """One setting's sum over a month: priced lines only; `incomplete` encounters had a line
    without a rate (so the true figure is higher than `total`)."""

    total: Decimal = ZERO
    incomplete: int = 0

    def plus(self, price: SettingPrice) -> SettingSum:
        return SettingSum(self.total + price.total, self.incomplete + (not price.complete))


@dataclass(frozen=True, slots=True)
class PaymentMonth:
    month: date  # the first of the month
    encounters: int
    office: SettingSum  # every encounter's lines at the office rates
    hospital: SettingSum  # every encounter's lines at the hospital outpatient rates
    as_coded: SettingSum  # each encounter in the setting it was coded for
    flags: tuple[tuple[PriceTable, PeriodStatus], ...]  # tables not in force for some date


@dataclass(frozen=True, slots=True)
class PaymentReport:
    months: tuple[PaymentMonth, ...]
    label: str  # "national, unadjusted (...), table period PFS ..., ASP ..., OPPS ..."
    priced: bool  # False: no price tables are loaded (every figure would be "no rate")

    def table(self) -> ReportTable:
        return ReportTable(
            (
                "month",
                "encounters",
                "as coded, expected payment",
                "office (PFS + ASP), expected payment",
                "office, encounters with a line without rate",
                "hospital outpatient (OPPS), expected payment",
                "hospital outpatient, encounters with a line without rate",
                "tables past their period",
            ),
            tuple(
                (
                    m.month.strftime("%Y-%m"),
                    m.encounters,
                    m.as_coded.total,
                    m.office.total,
                    m.office.incomplete,
                    m.hospital.total,
                    m.hospital.incomplete,
                    flag_text(m.flags) or None,
                )
                for m in self.months
            ),
        )


def table_label(tables: PriceTables) -> str:
    """The label every figure carries: scope, then each loaded table's period and file."""
    periods = [
        f"{t.value.upper()} {s.version.effective_start.isoformat()} to "
        f"{s.version.effective_end.isoformat()} ({s.source_file})"
        for t in PriceTable
        if (s := tables.sources.get(t)) is not None
    ]
    return f"{LABEL_SCOPE}, table period " + ("; ".join(periods) or "none loaded")


def flag_text(flags: Sequence[tuple[PriceTable, PeriodStatus]]) -> str:
    return "; ".join(f"{t.value.upper()} {STATUS_WORDS[s]}" for t, s in flags)


def payment_by_month(claims: Iterable[CodedClaim], tables: PriceTables) -> PaymentReport:
    """Each coded encounter priced in both settings, summed by service month."""
    sums: dict[date, list[SettingSum]] = defaultdict(lambda: [SettingSum()] * 3)
    counts: dict[date, int] = defaultdict(int)
    flags: dict[date, set[tuple[PriceTable, PeriodStatus]]] = defaultdict(set)
    for claim in claims:
        month = month_of(claim.service_date)
        sites = compare_sites(claim.lines, claim.setting, tables)
        office, hospital = (
            (sites.own, sites.other)
            if claim.setting == Setting.OFFICE
            else (sites.other, sites.own)
        )
        office_sum, hospital_sum, coded_sum = sums[month]
        sums[month] = [
            office_sum.plus(office),
            hospital_sum.plus(hospital),
            coded_sum.plus(sites.own),
        ]
        counts[month] += 1
        for use in (*office.label.stale, *hospital.label.stale):
            flags[month].add((use.table, use.period_status))
    order = list(PriceTable)
    months = tuple(
        PaymentMonth(
            month,
            counts[month],
            office=sums[month][0],
            hospital=sums[month][1],
            as_coded=sums[month][2],
            flags=tuple(sorted(flags[month], key=lambda f: (order.index(f[0]), f[1]))),
        )
        for month in sorted(sums)
    )
    return PaymentReport(months, table_label(tables), bool(tables.sources))
