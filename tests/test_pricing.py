"""Expected payment at the national Medicare rates (adapter/core/pricing.py).

Every expected figure is computed by hand, in the test, from the CMS rows quoted beside
it (mappings/reference/, as shipped in mappings/price_*.csv); the code is never asked.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.charges import ChargeLine, LineKind
from adapter.core.mappings import SETTINGS, Setting
from adapter.core.periods import PeriodStatus, TableVersion
from adapter.core.price_tables import AspLimit, PriceSource, PriceTable, PriceTables
from adapter.core.pricing import (
    LABEL_SCOPE,
    Basis,
    NoRate,
    NoRateReason,
    PricedLine,
    SettingPrice,
    compare_sites,
    other_setting,
    price_encounter,
    price_lines,
)
from adapter.mappings_loader import default_mappings_dir, load_mappings
from tests.coding_support import admin, code

OFFICE, HOPD = Setting.OFFICE, Setting.HOSPITAL_OUTPATIENT
JAN_15 = date(2026, 1, 15)  # ASP 2026Q1 in force; PFS 2025a and OPPS Oct 2025 are past
PRICES = load_mappings(default_mappings_dir()).prices


def line(code: str, units: int = 1, day: date = JAN_15, *modifiers: str) -> ChargeLine:
    kind = LineKind.ADMINISTRATION if code[:1].isdigit() or code == "G0498" else LineKind.DRUG
    return ChargeLine(kind, code, units, day, ("test",), ("test:1",), tuple(modifiers))


def amounts(price: SettingPrice) -> dict[str, Decimal]:
    return {p.line.code: p.amount for p in price.lines if isinstance(p, PricedLine)}


def priced(price: SettingPrice, code: str) -> PricedLine:
    found = next(p for p in price.lines if p.line.code == code)
    assert isinstance(found, PricedLine), found
    return found


def no_rate(price: SettingPrice, code: str) -> NoRate:
    found = next(p for p in price.lines if p.line.code == code)
    assert isinstance(found, NoRate), found
    return found


PEMBROLIZUMAB_DAY = (line("96413"), line("J9271", 200, JAN_15, "JZ"))


class TestPembrolizumab200mgWith96413:
    """The team's worked example (design/workbench-anchors.md), recomputed from the rows."""

    def test_office_pays_pfs_nonfacility_for_96413_plus_asp_times_200_units(self) -> None:
        """PFS `96413,,A,0.28,3.35,,3.35,NA,0.06,3.69,3.69,XXX,32.3465`:
        (0.28 + 3.35 + 0.06) = 3.69 RVU x 32.3465 = 119.358585 -> $119.36.
        ASP `J9271,Inj pembrolizumab,1 MG,59.726`: 200 mg = 200 units x 59.726 = $11,945.20.
        Total $12,064.56."""
        office = price_lines(PEMBROLIZUMAB_DAY, OFFICE, PRICES)
        assert amounts(office) == {"96413": Decimal("119.36"), "J9271": Decimal("11945.20")}
        assert office.total == Decimal("12064.56")
        assert office.complete

    def test_hospital_outpatient_pays_the_apc_and_the_drug_rate(self) -> None:
        """Addendum B `96413,,S,5694,3.7198,$331.690`: $331.69.
        `J9271,Inj pembrolizumab,K,1490,,$60.291`: 200 x 60.291 = $12,058.20. Total $12,389.89."""
        hospital = price_lines(PEMBROLIZUMAB_DAY, HOPD, PRICES)
        assert amounts(hospital) == {"96413": Decimal("331.69"), "J9271": Decimal("12058.20")}
        assert hospital.total == Decimal("12389.89")

    def test_side_by_side_difference_is_other_minus_own(self) -> None:
        """12,389.89 - 12,064.56 = 325.33 more in the hospital outpatient department."""
        site = compare_sites(PEMBROLIZUMAB_DAY, OFFICE, PRICES)
        assert (site.own.setting, site.other.setting) == (OFFICE, HOPD)
        assert site.difference == Decimal("325.33")
        reverse = compare_sites(PEMBROLIZUMAB_DAY, HOPD, PRICES)
        assert reverse.difference == Decimal("-325.33")

    def test_each_line_names_its_table_row_and_status(self) -> None:
        office = price_lines(PEMBROLIZUMAB_DAY, OFFICE, PRICES)
        admin_line, drug_line = priced(office, "96413"), priced(office, "J9271")
        assert (admin_line.basis, admin_line.table.table, admin_line.status) == (
            Basis.PFS_NONFACILITY,
            PriceTable.PFS,
            "A",
        )
        assert (admin_line.rvu, admin_line.conversion_factor) == (
            Decimal("3.69"),
            Decimal("32.3465"),
        )
        assert admin_line.unit_rate == Decimal("119.358585")  # unrounded, 3.69 x 32.3465
        assert (drug_line.basis, drug_line.table.source_file, drug_line.unit_rate) == (
            Basis.ASP_LIMIT,
            "cms_asp_payment_limits_2026Q1.csv",
            Decimal("59.726"),
        )
        hospital = price_lines(PEMBROLIZUMAB_DAY, HOPD, PRICES)
        assert (priced(hospital, "96413").status, priced(hospital, "96413").apc) == ("S", "5694")
        assert (priced(hospital, "J9271").basis, priced(hospital, "J9271").apc) == (
            Basis.OPPS_DRUG,
            "1490",
        )

    def test_coded_encounter_priced_in_its_setting_and_recoded_in_the_other(self) -> None:
        """The coder's own lines: 30 min of pembrolizumab 200 mg (two 100 mg single-dose
        vials, no waste) -> 96413 x1 + J9271-JZ x200 in the office, 96413 + J9271 in HOPD."""
        dose = admin("J9271", "200 mg", "09:00", "09:30")
        office = code(dose, setting=OFFICE)
        hospital = code(dose, setting=HOPD)
        site = price_encounter(office, PRICES, other_lines=hospital.lines)
        assert (site.own.total, site.other.total) == (Decimal("12064.56"), Decimal("12389.89"))


def test_packaged_drug_in_hospital_outpatient_is_zero_and_says_packaged() -> None:
    """Dexamethasone 12 mg push (J1100 x12) + 96375 after 96413.
    Addendum B `J1100,Dexamethasone sodium phos,N,,,,`: packaged, $0.
    Office: ASP `J1100,Dexamethasone sodium phos,1 MG,0.105`: 12 x 0.105 = $1.26."""
    lines = (line("96413"), line("96375"), line("J1100", 12))
    hospital = price_lines(lines, HOPD, PRICES)
    dexamethasone = priced(hospital, "J1100")
    assert (dexamethasone.amount, dexamethasone.basis, dexamethasone.status) == (
        Decimal("0.00"),
        Basis.OPPS_PACKAGED,
        "N",
    )
    assert priced(price_lines(lines, OFFICE, PRICES), "J1100").amount == Decimal("1.26")


def test_hydration_96360_and_two_hours_96361_with_a_liter_of_saline() -> None:
    """Office, PFS: 96360 (0.17 + 0.75 + 0.01) = 0.93 x 32.3465 = 30.082245 -> $30.08;
    96361 x2: (0.09 + 0.26 + 0.01) = 0.36 x 32.3465 = 11.64474 per unit, x2 = 23.28948
    -> $23.29 (rounded once, at the end of the line: per-unit rounding would give $23.28);
    J7030 ASP `1000 CC,1.989` x1 -> $1.99. Total $55.36.
    Hospital, Addendum B: 96360 S 5693 $210.69; 96361 S 5691 $46.14 x2 = $92.28;
    J7030 N -> $0. Total $302.97."""
    lines = (line("96360"), line("96361", 2), line("J7030"))
    office = price_lines(lines, OFFICE, PRICES)
    assert amounts(office) == {
        "96360": Decimal("30.08"),
        "96361": Decimal("23.29"),
        "J7030": Decimal("1.99"),
    }
    assert office.total == Decimal("55.36")
    hospital = price_lines(lines, HOPD, PRICES)
    assert amounts(hospital) == {
        "96360": Decimal("210.69"),
        "96361": Decimal("92.28"),
        "J7030": Decimal("0.00"),
    }
    assert hospital.total == Decimal("302.97")


@pytest.mark.parametrize(
    ("code", "setting", "reason", "status"),
    [
        pytest.param("J9999", OFFICE, NoRateReason.NOT_IN_TABLE, "", id="drug-not-in-asp"),
        pytest.param("J9999", HOPD, NoRateReason.NOT_IN_TABLE, "", id="drug-not-in-opps"),
        pytest.param("96999", OFFICE, NoRateReason.NOT_IN_TABLE, "", id="code-not-in-pfs"),
        # PFS `G0498,,C,0.00,...`: carrier-priced, the contractor sets the rate
        pytest.param("G0498", OFFICE, NoRateReason.CARRIER_PRICED, "C", id="g0498-office"),
        # PFS `96376,,X,...`: a facility-only code, not a physician service
        pytest.param("96376", OFFICE, NoRateReason.NOT_PAID_UNDER_PFS, "X", id="96376-office"),
        # PFS `96547,,A,6.53,2.86,NA,...`: non-facility NA
        pytest.param("96547", OFFICE, NoRateReason.NOT_PAYABLE_IN_OFFICE, "A", id="96547-office"),
        # Addendum B `96380,,M,,,`: not billable to the Medicare contractor
        pytest.param("96380", HOPD, NoRateReason.NOT_PAID_UNDER_OPPS, "M", id="96380-hopd"),
    ],
)
def test_a_code_without_a_rate_is_a_typed_no_rate_not_zero(
    code: str, setting: str, reason: NoRateReason, status: str
) -> None:
    """96413 office $119.36 (3.69 x 32.3465) still counts; the unpriced line does not."""
    price = price_lines((line("96413"), line(code)), setting, PRICES)
    missing = no_rate(price, code)
    assert (missing.reason, missing.status) == (reason, status)
    assert price.unpriced == (missing,)
    assert not price.complete
    assert price.total == priced(price, "96413").amount


def test_a_comparison_with_an_unpriced_line_has_no_difference() -> None:
    site = compare_sites((line("96413"), line("J9999", 10)), OFFICE, PRICES)
    assert site.difference is None


def test_tables_past_their_period_are_flagged_for_the_service_date_d27() -> None:
    """2026-01-15: PFS 2025a (2025-01-01..2025-03-31) and OPPS Oct 2025 (..2025-12-31) are
    past their period; ASP 2026Q1 (2026-01-01..2026-03-31) is in force."""
    office = price_lines(PEMBROLIZUMAB_DAY, OFFICE, PRICES)
    assert {t.table: t.period_status for t in office.label.tables} == {
        PriceTable.PFS: PeriodStatus.PAST_PERIOD,
        PriceTable.ASP: PeriodStatus.IN_PERIOD,
    }
    assert [t.table for t in office.label.stale] == [PriceTable.PFS]
    assert priced(office, "96413").table.stale and not priced(office, "J9271").table.stale
    hospital = price_lines(PEMBROLIZUMAB_DAY, HOPD, PRICES)
    (opps,) = hospital.label.stale
    assert (opps.table, opps.period_status, opps.version.effective_end) == (
        PriceTable.OPPS,
        PeriodStatus.PAST_PERIOD,
        date(2025, 12, 31),
    )


def test_a_service_before_the_table_period_is_flagged_too() -> None:
    """2025-12-15 with ASP 2026Q1: the shipped limits were not yet in force; OPPS Oct 2025 was."""
    december = (line("96413", 1, date(2025, 12, 15)), line("J9271", 200, date(2025, 12, 15)))
    office = price_lines(december, OFFICE, PRICES)
    statuses = {t.table: t.period_status for t in office.label.tables}
    assert statuses[PriceTable.ASP] is PeriodStatus.BEFORE_PERIOD
    assert price_lines(december, HOPD, PRICES).label.stale == ()


def test_one_late_line_flags_the_table_for_the_whole_encounter() -> None:
    """A visit over midnight into a new quarter: 2025-12-31 and 2026-01-01 (OPPS ends 12-31)."""
    lines = (line("96413", 1, date(2025, 12, 31)), line("96415", 1, date(2026, 1, 1)))
    hospital = price_lines(lines, HOPD, PRICES)
    assert [t.period_status for t in hospital.label.tables] == [PeriodStatus.PAST_PERIOD]
    assert [p.table.period_status for p in hospital.lines if isinstance(p, PricedLine)] == [
        PeriodStatus.IN_PERIOD,
        PeriodStatus.PAST_PERIOD,
    ]


def test_label_says_national_unadjusted_and_names_each_table_period() -> None:
    office = price_lines(PEMBROLIZUMAB_DAY, OFFICE, PRICES)
    assert office.label.scope == (
        "national, unadjusted (before locality, wage index and coinsurance)"
    )
    assert office.label.scope == LABEL_SCOPE
    assert [(t.table, t.source_file) for t in office.label.tables] == [
        (PriceTable.PFS, "cms_pfs_rvu_2025a_drug_admin.csv"),
        (PriceTable.ASP, "cms_asp_payment_limits_2026Q1.csv"),
    ]


class TestConditionalPackaging:
    """OPPS Q1 (STV-packaged) and PFS status T (paid only alone), same date of service."""

    def test_q1_injection_alone_is_paid_at_its_apc(self) -> None:
        """Addendum B `96372,,Q1,5692,0.7982,$71.170`: alone, $71.17."""
        hospital = price_lines((line("96372"), line("J0897", 120)), HOPD, PRICES)
        assert priced(hospital, "96372").amount == Decimal("71.17")
        assert priced(hospital, "96372").basis is Basis.OPPS_APC

    def test_q1_injection_with_a_chemotherapy_infusion_is_packaged(self) -> None:
        """96413 is SI S on the same date: 96372 (Q1) packaged, $0; 96413 $331.69."""
        hospital = price_lines((line("96413"), line("96372")), HOPD, PRICES)
        injection = priced(hospital, "96372")
        assert (injection.amount, injection.basis, injection.packaged_into) == (
            Decimal("0.00"),
            Basis.OPPS_PACKAGED,
            "96413",
        )
        assert hospital.total == Decimal("331.69")

    def test_q1_on_another_date_than_the_s_line_is_paid(self) -> None:
        lines = (line("96413", 1, date(2026, 1, 14)), line("96372", 1, JAN_15))
        assert priced(price_lines(lines, HOPD, PRICES), "96372").amount == Decimal("71.17")

    def test_pfs_status_t_port_flush_alone_is_paid(self) -> None:
        """PFS `96523,,T,0.04,0.67,,0.67,NA,0.01`: 0.72 x 32.3465 = 23.28948 -> $23.29."""
        office = price_lines((line("96523"),), OFFICE, PRICES)
        assert priced(office, "96523").amount == Decimal("23.29")

    def test_pfs_status_t_port_flush_with_an_infusion_is_bundled(self) -> None:
        """96413 (status A) the same day: 96523 is bundled, $0; total 96413's $119.36."""
        office = price_lines((line("96413"), line("96523")), OFFICE, PRICES)
        flush = priced(office, "96523")
        assert (flush.amount, flush.basis, flush.packaged_into) == (
            Decimal("0.00"),
            Basis.PFS_BUNDLED,
            "96413",
        )
        assert office.total == Decimal("119.36")


def test_waste_line_is_paid_like_the_drug() -> None:
    """150 mg given from two 100 mg single-dose vials, 50 mg discarded (D17): J9271 x150 +
    J9271-JW x50. Office: 150 x 59.726 = $8,958.90 and 50 x 59.726 = $2,986.30."""
    given_line = line("J9271", 150)
    waste = ChargeLine(LineKind.WASTE, "J9271", 50, JAN_15, ("D17",), ("test:1",), ("JW",))
    office = price_lines((given_line, waste), OFFICE, PRICES)
    assert [p.amount for p in office.lines if isinstance(p, PricedLine)] == [
        Decimal("8958.90"),
        Decimal("2986.30"),
    ]


def test_other_setting_prices_the_recoded_lines_when_given() -> None:
    """Own: office 96413 ($119.36). Other: the hospital's own coding, 96413 + J1100 x12."""
    site = compare_sites((line("96413"),), OFFICE, PRICES, (line("96413"), line("J1100", 12)))
    assert [p.line.code for p in site.other.lines] == ["96413", "J1100"]
    assert site.other.total == Decimal("331.69")


def test_no_shipped_hospital_code_needs_the_multiple_procedure_discount() -> None:
    """The core pays SI T at the full APC rate (no 50 % second-procedure reduction): true
    to CMS only while no priced code is T. A new quarter that makes one T fails here."""
    assert not [c for c, r in PRICES.opps.items() if r.status_indicator == "T"]


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown setting 'inpatient'"):
        price_lines((), "inpatient", PRICES)
    assert other_setting(OFFICE) == HOPD and other_setting(HOPD) == OFFICE


def test_tables_not_loaded_give_no_rate_for_every_line() -> None:
    price = price_lines(PEMBROLIZUMAB_DAY, OFFICE, PriceTables())
    assert [p.reason for p in price.unpriced] == [NoRateReason.NOT_IN_TABLE] * 2
    assert price.total == Decimal(0) and price.label.tables == ()


def test_a_hand_built_table_prices_by_its_own_rows() -> None:
    """A site's next quarter (made-up limit 61.000 per mg, 2026Q2): 200 x 61 = $12,200.00,
    and a 2026-01-15 service is before that period."""
    q2 = TableVersion("asp", date(2026, 4, 1), date(2026, 6, 30))
    tables = PriceTables(
        asp=MappingProxyType({"J9271": AspLimit("J9271", Decimal(1), "mg", Decimal("61.000"))}),
        sources=MappingProxyType(
            {PriceTable.ASP: PriceSource(PriceTable.ASP, q2, "cms_asp_payment_limits_2026Q2.csv")}
        ),
    )
    office = price_lines((line("J9271", 200),), OFFICE, tables)
    assert office.total == Decimal("12200.00")
    assert [t.period_status for t in office.label.stale] == [PeriodStatus.BEFORE_PERIOD]


# ---------------------------------------------------------------- invariants

_CODES = [*sorted(set(PRICES.pfs) | set(PRICES.opps) | set(PRICES.asp)), "J9999", "96999"]
_lines = st.lists(
    st.builds(
        line,
        st.sampled_from(_CODES),
        st.integers(min_value=1, max_value=2000),
        st.dates(min_value=date(2024, 6, 1), max_value=date(2026, 12, 31)),
    ),
    max_size=12,
)


@given(_lines, st.sampled_from(SETTINGS))
def test_total_is_the_sum_of_the_priced_lines_and_nothing_is_negative(
    lines: list[ChargeLine], setting: str
) -> None:
    price = price_lines(lines, setting, PRICES)
    assert [p.line for p in price.lines] == lines
    figures = [p.amount for p in price.lines if isinstance(p, PricedLine)]
    assert price.total == sum(figures, Decimal(0))
    assert all(a >= 0 and a.as_tuple().exponent == -2 for a in figures)
    assert price.complete == (len(figures) == len(lines))


@given(_lines, st.sampled_from(SETTINGS))
def test_both_settings_price_every_line_once(lines: list[ChargeLine], setting: str) -> None:
    site = compare_sites(lines, setting, PRICES)
    assert len(site.own.lines) == len(site.other.lines) == len(lines)
    assert {site.own.setting, site.other.setting} == set(SETTINGS)
    if site.difference is not None:
        assert site.difference == site.other.total - site.own.total
