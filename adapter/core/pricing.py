"""Expected payment of coded lines at the national Medicare rates, as CMS publishes them.

Why: a biller deciding where an infusion should happen, or whether a held charge is worth
chasing first, needs the money next to the codes, and the same services priced in the other
setting beside it (site of care). Pure: the tables (`PriceTables`) and the lines, each with its
service date, are passed in; no I/O, no clock.

How a line is priced (docs/pricing.md has the same, for the billing office):

- **office** (`Setting.OFFICE`): an administration code at the PFS non-facility amount,
  (work + non-facility PE + MP RVU) x conversion factor x units; a drug line (its JW line too:
  the discarded amount is paid) at the ASP payment limit x billing units.
  PFS status `A` is paid; `T` (96523) is paid only when no other fee-schedule service is on
  the same date, else bundled at $0; `C` is carrier-priced and `X` is not a physician service
  (both: no rate); CMS `NA` in the non-facility column (96547, 96548): no office rate.
- **hospital outpatient** (`Setting.HOSPITAL_OUTPATIENT`): every line at its OPPS Addendum B row,
  by status indicator: `S`, `T`, `V` at the APC payment rate x units; `K`, `G` (separately paid
  drugs) at their rate x units; `N` packaged, $0; `Q1` (STV-packaged: 96372, 96401, 96523 ...)
  $0 when an `S`, `T` or `V` line is on the same date, else its APC rate x units; `Q2` the same
  with `T` lines only. Any other indicator (`M`, `E1`, `B`, `Q3` composite, ...) is not an OPPS
  payment for this line: no rate, with the indicator, rather than a guessed figure.

What is not modelled, on purpose (the arithmetic of the team's worked example ignores it, and
so does this): locality (GPCI) and wage-index adjustment, beneficiary coinsurance and
deductible, sequestration, the OPPS multiple-procedure reduction of a second `T` line (no code
of the shipped price tables is `T`; a test keeps it so), and the PFS multiple-procedure
reduction (our reading: drug-administration codes carry CMS multiple-procedure indicator 0,
so it does not apply). Each line is rounded half-up to cents once, at its end (unit rate x
units, exactly, then rounded); CMS rounds the per-unit fee first, which can differ by under
half a cent per unit.

A code without a row, or whose row pays nothing computable, is a `NoRate` with its reason,
never $0: a $0 figure is only a packaged or bundled line, and says so. A table past (or
before) its period for a line's service date is flagged with the same test the coder uses for
D27 (`TableVersion.status_on`). Every figure carries its label data: "national, unadjusted
(before locality, wage index and coinsurance)" and each table's period.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from adapter.core.charges import ChargeLine, CodedEncounter, LineKind
from adapter.core.mappings import SETTINGS, Setting
from adapter.core.periods import PeriodStatus, TableVersion
from adapter.core.price_tables import PriceSource, PriceTable, PriceTables

__all__ = [
    "LABEL_SCOPE",
    "Basis",
    "LinePrice",
    "NoRate",
    "NoRateReason",
    "PriceLabel",
    "PricedLine",
    "SettingPrice",
    "SiteComparison",
    "TableUse",
    "compare_sites",
    "other_setting",
    "price_encounter",
    "price_lines",
]

LABEL_SCOPE = "national, unadjusted (before locality, wage index and coinsurance)"
CENT = Decimal("0.01")
ZERO = Decimal(0)
ZERO_CENTS = Decimal("0.00")  # a figure, in cents like every other: not a missing one

# OPPS status indicators (Addendum D1) priced here, and what packages Q1 / Q2.
_OPPS_APC_PAID = frozenset({"S", "T", "V"})
_OPPS_DRUG_PAID = frozenset({"K", "G"})
_OPPS_PACKAGED = "N"
_OPPS_CONDITIONAL = {"Q1": frozenset({"S", "T", "V"}), "Q2": frozenset({"T"})}
# PFS status codes (RVU file): A active; T paid only when no other PFS service that day.
_PFS_PAID = "A"
_PFS_PAID_ALONE = "T"
_PFS_CARRIER_PRICED = "C"


class Basis(StrEnum):
    """How a priced line's amount was found."""

    PFS_NONFACILITY = "pfs-nonfacility"  # (work + PE non-facility + MP) RVU x CF x units
    PFS_BUNDLED = "pfs-bundled"  # PFS status T with another fee-schedule service that day: $0
    ASP_LIMIT = "asp-payment-limit"  # ASP payment limit x billing units
    OPPS_APC = "opps-apc"  # SI S/T/V (or Q1/Q2 alone): APC payment rate x units
    OPPS_DRUG = "opps-drug"  # SI K/G: the drug's payment rate x units
    OPPS_PACKAGED = "opps-packaged"  # SI N, or Q1/Q2 with a service that packages it: $0


class NoRateReason(StrEnum):
    """Why a line has no expected payment (it is not $0: nobody knows the figure here)."""

    NOT_IN_TABLE = "not-in-table"  # the code has no row in the setting's table
    CARRIER_PRICED = "carrier-priced"  # PFS status C: the Medicare contractor sets the rate
    NOT_PAYABLE_IN_OFFICE = "not-payable-in-office"  # PFS non-facility NA
    NOT_PAID_UNDER_PFS = "not-paid-under-pfs"  # PFS status X, I, N, R, ...: no PFS payment
    NOT_PAID_UNDER_OPPS = "not-paid-under-opps"  # SI M, E1, E2, B, C, Q3, Q4, ...
    NO_PUBLISHED_RATE = "no-published-rate"  # a paid status indicator without a rate


@dataclass(frozen=True, slots=True)
class TableUse:
    """A price table as used for a figure: its CMS file, its period and the service date's
    place in it (PAST_PERIOD is D27's "past its period": priced with the newest, and said)."""

    table: PriceTable
    source_file: str
    version: TableVersion
    period_status: PeriodStatus

    @property
    def stale(self) -> bool:
        return self.period_status is not PeriodStatus.IN_PERIOD


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A coded line with its expected payment and the row it came from."""

    line: ChargeLine
    amount: Decimal  # dollars, rounded half-up to cents
    basis: Basis
    unit_rate: Decimal  # exact dollars per unit, before rounding (0 when packaged/bundled)
    status: str  # the row's PFS status or OPPS status indicator
    table: TableUse
    apc: str = ""  # OPPS APC of the row, when it has one
    rvu: Decimal | None = None  # PFS: work + non-facility PE + MP RVUs
    conversion_factor: Decimal | None = None  # PFS
    packaged_into: str = ""  # the code of the same date that packages or bundles this line


@dataclass(frozen=True, slots=True)
class NoRate:
    """A coded line the tables give no payment for, and why (never read as $0)."""

    line: ChargeLine
    reason: NoRateReason
    table: TableUse | None  # the table consulted (None: it is not loaded)
    status: str = ""  # the row's PFS status or OPPS status indicator, when there is a row


LinePrice = PricedLine | NoRate


@dataclass(frozen=True, slots=True)
class PriceLabel:
    """What every figure must be shown with: the scope and each table's period.

    `tables` are the tables of the setting, each flagged against the latest (past) or
    earliest (before) service date of the lines.
    """

    tables: tuple[TableUse, ...]
    scope: str = LABEL_SCOPE

    @property
    def stale(self) -> tuple[TableUse, ...]:
        """Tables not in force on some service date of the lines."""
        return tuple(t for t in self.tables if t.stale)


@dataclass(frozen=True, slots=True)
class SettingPrice:
    """The lines priced in one setting; `total` is the sum of the priced lines only."""

    setting: str
    lines: tuple[LinePrice, ...]
    total: Decimal
    label: PriceLabel

    @property
    def unpriced(self) -> tuple[NoRate, ...]:
        return tuple(p for p in self.lines if isinstance(p, NoRate))

    @property
    def complete(self) -> bool:
        """Every line has a figure: only then is `total` the encounter's expected payment."""
        return not self.unpriced


@dataclass(frozen=True, slots=True)
class SiteComparison:
    """An encounter's expected payment in its own setting and in the other one, side by side."""

    own: SettingPrice
    other: SettingPrice

    @property
    def difference(self) -> Decimal | None:
        """Other minus own, when both are complete (a partial total would mislead)."""
        if not (self.own.complete and self.other.complete):
            return None
        return self.other.total - self.own.total


# ---------------------------------------------------------------- entry points


def other_setting(setting: str) -> str:
    """The setting a site-of-care comparison prices the same services in."""
    _check_setting(setting)
    return Setting.OFFICE if setting == Setting.HOSPITAL_OUTPATIENT else Setting.HOSPITAL_OUTPATIENT


def price_lines(lines: Sequence[ChargeLine], setting: str, tables: PriceTables) -> SettingPrice:
    """Each line at the national rate of `setting` (office: PFS + ASP; hospital: OPPS)."""
    _check_setting(setting)
    used: tuple[PriceTable, ...]
    if setting == Setting.OFFICE:
        priced = tuple(_office_line(ln, lines, tables) for ln in lines)
        used = (PriceTable.PFS, PriceTable.ASP)
    else:
        priced = tuple(_hospital_line(ln, lines, tables) for ln in lines)
        used = (PriceTable.OPPS,)
    total = sum((p.amount for p in priced if isinstance(p, PricedLine)), ZERO_CENTS)
    label = PriceLabel(tuple(u for t in used if (u := _encounter_use(tables, t, lines))))
    return SettingPrice(setting, priced, total, label)


def compare_sites(
    lines: Sequence[ChargeLine],
    setting: str,
    tables: PriceTables,
    other_lines: Sequence[ChargeLine] | None = None,
) -> SiteComparison:
    """`lines` priced in `setting` and in the other setting.

    By default the other setting prices the same codes and units. Coding differs a little
    between settings (JW/JZ, G0498, a waste line only one setting bills): for an exact
    figure pass `other_lines`, the encounter coded again with the other setting forced (D1).
    """
    other = other_setting(setting)
    return SiteComparison(
        own=price_lines(lines, setting, tables),
        other=price_lines(lines if other_lines is None else other_lines, other, tables),
    )


def price_encounter(
    encounter: CodedEncounter,
    tables: PriceTables,
    other_lines: Sequence[ChargeLine] | None = None,
) -> SiteComparison:
    """A coded encounter's expected payment, own setting and the other, side by side."""
    return compare_sites(encounter.lines, encounter.setting, tables, other_lines)


def _check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r} (expected one of {', '.join(SETTINGS)})")


# ---------------------------------------------------------------- office


def _office_line(line: ChargeLine, lines: Sequence[ChargeLine], tables: PriceTables) -> LinePrice:
    if line.kind is LineKind.ADMINISTRATION:
        return _pfs_line(line, lines, tables)
    return _asp_line(line, tables)


def _pfs_line(line: ChargeLine, lines: Sequence[ChargeLine], tables: PriceTables) -> LinePrice:
    use = _line_use(tables, PriceTable.PFS, line.service_date)
    rate = tables.pfs.get(line.code)
    if use is None or rate is None:
        return NoRate(line, NoRateReason.NOT_IN_TABLE, use)
    if rate.status == _PFS_CARRIER_PRICED:
        return NoRate(line, NoRateReason.CARRIER_PRICED, use, rate.status)
    if rate.status not in (_PFS_PAID, _PFS_PAID_ALONE):
        return NoRate(line, NoRateReason.NOT_PAID_UNDER_PFS, use, rate.status)
    if rate.nonfacility_na:
        return NoRate(line, NoRateReason.NOT_PAYABLE_IN_OFFICE, use, rate.status)
    bundled_into = _pfs_bundling(line, lines, tables) if rate.status == _PFS_PAID_ALONE else ""
    unit_rate = ZERO if bundled_into else rate.nonfacility_rvu * rate.conversion_factor
    return PricedLine(
        line,
        _cents(unit_rate, line.units),
        Basis.PFS_BUNDLED if bundled_into else Basis.PFS_NONFACILITY,
        unit_rate,
        rate.status,
        use,
        rvu=rate.nonfacility_rvu,
        conversion_factor=rate.conversion_factor,
        packaged_into=bundled_into,
    )


def _pfs_bundling(line: ChargeLine, lines: Sequence[ChargeLine], tables: PriceTables) -> str:
    """PFS status T: the code of another fee-schedule-paid service of the same date, if any.

    Drugs are paid under ASP, not the fee schedule, so only administration codes count.
    """
    paid = (
        other.code
        for other in lines
        if other is not line
        and other.kind is LineKind.ADMINISTRATION
        and other.service_date == line.service_date
        and (rate := tables.pfs.get(other.code)) is not None
        and rate.status == _PFS_PAID
        and not rate.nonfacility_na
    )
    return min(paid, default="")


def _asp_line(line: ChargeLine, tables: PriceTables) -> LinePrice:
    use = _line_use(tables, PriceTable.ASP, line.service_date)
    limit = tables.asp.get(line.code)
    if use is None or limit is None:
        return NoRate(line, NoRateReason.NOT_IN_TABLE, use)
    amount = _cents(limit.payment_limit, line.units)
    return PricedLine(line, amount, Basis.ASP_LIMIT, limit.payment_limit, "", use)


# ---------------------------------------------------------------- hospital outpatient


def _hospital_line(line: ChargeLine, lines: Sequence[ChargeLine], tables: PriceTables) -> LinePrice:
    use = _line_use(tables, PriceTable.OPPS, line.service_date)
    rate = tables.opps.get(line.code)
    if use is None or rate is None:
        return NoRate(line, NoRateReason.NOT_IN_TABLE, use)
    si = rate.status_indicator
    if si == _OPPS_PACKAGED:
        return PricedLine(line, ZERO_CENTS, Basis.OPPS_PACKAGED, ZERO, si, use, rate.apc)
    if si in _OPPS_CONDITIONAL:
        packager = _opps_packager(line, lines, tables, _OPPS_CONDITIONAL[si])
        if packager:
            return PricedLine(
                line, ZERO_CENTS, Basis.OPPS_PACKAGED, ZERO, si, use, rate.apc,
                packaged_into=packager,
            )  # fmt: skip
        basis = Basis.OPPS_APC
    elif si in _OPPS_APC_PAID:
        basis = Basis.OPPS_APC
    elif si in _OPPS_DRUG_PAID:
        basis = Basis.OPPS_DRUG
    else:
        return NoRate(line, NoRateReason.NOT_PAID_UNDER_OPPS, use, si)
    if rate.payment_rate is None:
        return NoRate(line, NoRateReason.NO_PUBLISHED_RATE, use, si)
    amount = _cents(rate.payment_rate, line.units)
    return PricedLine(line, amount, basis, rate.payment_rate, si, use, rate.apc)


def _opps_packager(
    line: ChargeLine, lines: Sequence[ChargeLine], tables: PriceTables, packaging: frozenset[str]
) -> str:
    """Q1/Q2: the code of a same-date line whose status indicator packages this one, if any."""
    found = (
        other.code
        for other in lines
        if other is not line
        and other.service_date == line.service_date
        and (rate := tables.opps.get(other.code)) is not None
        and rate.status_indicator in packaging
    )
    return min(found, default="")


# ---------------------------------------------------------------- periods and rounding


def _cents(unit_rate: Decimal, units: int) -> Decimal:
    """Exact product, rounded half-up to cents once, at the end of the line."""
    return (unit_rate * units).quantize(CENT, rounding=ROUND_HALF_UP)


def _line_use(tables: PriceTables, table: PriceTable, service_date: date) -> TableUse | None:
    source = tables.sources.get(table)
    if source is None:
        return None
    return _use(source, source.version.status_on(service_date))


def _encounter_use(
    tables: PriceTables, table: PriceTable, lines: Iterable[ChargeLine]
) -> TableUse | None:
    """The table flagged past its period if any line is past it, else before if any is before."""
    source = tables.sources.get(table)
    if source is None:
        return None
    found = {source.version.status_on(ln.service_date) for ln in lines}
    for status in (PeriodStatus.PAST_PERIOD, PeriodStatus.BEFORE_PERIOD):
        if status in found:
            return _use(source, status)
    return _use(source, PeriodStatus.IN_PERIOD)


def _use(source: PriceSource, status: PeriodStatus) -> TableUse:
    return TableUse(source.table, source.source_file, source.version, status)
