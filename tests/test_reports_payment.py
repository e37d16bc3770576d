"""Expected payment by month (adapter/core/report_payment.py) with the shipped price tables.

The encounter figures are the pricing tests' hand-computed ones (docs/pricing.md, worked
example): pembrolizumab 200 mg + 96413 is $12,064.56 in the office and $12,389.89 in the
hospital outpatient department; 96360 + 96361 x2 + J7030 is $55.36 and $302.97.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from adapter.core.charges import ChargeLine, LineKind
from adapter.core.mappings import SETTINGS, Setting
from adapter.core.periods import PeriodStatus
from adapter.core.price_tables import PriceTable, PriceTables
from adapter.core.report_payment import payment_by_month, table_label
from adapter.core.report_rows import CodedClaim
from adapter.mappings_loader import default_mappings_dir, load_mappings

PRICES = load_mappings(default_mappings_dir()).prices
OFFICE, HOPD = Setting.OFFICE, Setting.HOSPITAL_OUTPATIENT
JAN_15, FEB_2, APR_1 = date(2026, 1, 15), date(2026, 2, 2), date(2026, 4, 1)


def line(code: str, units: int, day: date) -> ChargeLine:
    kind = LineKind.ADMINISTRATION if code[:1].isdigit() or code == "G0498" else LineKind.DRUG
    return ChargeLine(kind, code, units, day, (), ())


def pembrolizumab(claim: str, setting: str, day: date) -> CodedClaim:
    lines = (line("96413", 1, day), line("J9271", 200, day))
    return CodedClaim(claim, day, "Infusion 2 West", setting, lines)


def hydration(claim: str, setting: str, day: date) -> CodedClaim:
    lines = (line("96360", 1, day), line("96361", 2, day), line("J7030", 1, day))
    return CodedClaim(claim, day, "Infusion 2 West", setting, lines)


def test_a_month_sums_each_encounter_in_both_settings_and_as_coded() -> None:
    report = payment_by_month(
        [
            pembrolizumab("a", OFFICE, JAN_15),
            hydration("b", HOPD, JAN_15),
            pembrolizumab("c", HOPD, FEB_2),
        ],
        PRICES,
    )
    jan, feb = report.months
    assert (jan.month, jan.encounters) == (date(2026, 1, 1), 2)
    assert jan.office.total == Decimal("12064.56") + Decimal("55.36")  # 12,119.92
    assert jan.hospital.total == Decimal("12389.89") + Decimal("302.97")  # 12,692.86
    assert jan.as_coded.total == Decimal("12064.56") + Decimal("302.97")  # 12,367.53
    assert (jan.office.incomplete, jan.hospital.incomplete) == (0, 0)
    assert (feb.office.total, feb.hospital.total, feb.as_coded.total) == (
        Decimal("12064.56"),
        Decimal("12389.89"),
        Decimal("12389.89"),
    )
    assert report.table().rows[0] == (
        "2026-01",
        2,
        Decimal("12367.53"),
        Decimal("12119.92"),
        0,
        Decimal("12692.86"),
        0,
        "PFS past its period; OPPS past its period",
    )


def test_tables_past_their_period_are_flagged_per_month_d27() -> None:
    """January 2026: PFS (to 2025-03-31) and OPPS (to 2025-12-31) are past, ASP (2026 Q1) is
    in force; April 2026: all three are past."""
    report = payment_by_month(
        [pembrolizumab("a", OFFICE, JAN_15), pembrolizumab("b", OFFICE, APR_1)], PRICES
    )
    jan, apr = report.months
    assert jan.flags == (
        (PriceTable.PFS, PeriodStatus.PAST_PERIOD),
        (PriceTable.OPPS, PeriodStatus.PAST_PERIOD),
    )
    assert apr.flags == (
        (PriceTable.PFS, PeriodStatus.PAST_PERIOD),
        (PriceTable.ASP, PeriodStatus.PAST_PERIOD),
        (PriceTable.OPPS, PeriodStatus.PAST_PERIOD),
    )


def test_the_label_says_national_unadjusted_and_each_table_period() -> None:
    assert table_label(PRICES) == (
        "national, unadjusted (before locality, wage index and coinsurance), table period "
        "PFS 2025-01-01 to 2025-03-31 (cms_pfs_rvu_2025a_drug_admin.csv); "
        "ASP 2026-01-01 to 2026-03-31 (cms_asp_payment_limits_2026Q1.csv); "
        "OPPS 2025-10-01 to 2025-12-31 (cms_opps_addendum_b_2025oct_no_cpt_desc.csv)"
    )
    assert table_label(PriceTables()).endswith("table period none loaded")


def test_an_encounter_with_a_line_without_rate_is_incomplete_not_zero() -> None:
    """G0498 is carrier-priced under the PFS: no office rate; its office total holds only the
    priced 96413 and J9271 ($12,064.56), and the month says one encounter is incomplete."""
    day = JAN_15
    lines = (line("96413", 1, day), line("J9271", 200, day), line("G0498", 1, day))
    [jan] = payment_by_month([CodedClaim("a", day, "X", OFFICE, lines)], PRICES).months
    assert (jan.office.total, jan.office.incomplete) == (Decimal("12064.56"), 1)


def test_no_tables_loaded_says_so() -> None:
    report = payment_by_month([pembrolizumab("a", OFFICE, JAN_15)], PriceTables())
    assert not report.priced
    assert report.months[0].office.incomplete == 1


CODES = ("96413", "96360", "96361", "J9271", "J7030", "G0498", "J9999")


@st.composite
def coded_claims(draw: st.DrawFn) -> list[CodedClaim]:
    out = []
    for i in range(draw(st.integers(0, 8))):
        day = date(2026, draw(st.integers(1, 6)), draw(st.integers(1, 28)))
        codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=4, unique=True))
        lines = tuple(line(c, draw(st.integers(1, 300)), day) for c in codes)
        out.append(CodedClaim(f"c{i}", day, "X", draw(st.sampled_from(SETTINGS)), lines))
    return out


@given(coded_claims())
def test_months_count_every_encounter_and_as_coded_is_the_sum_of_each_own_setting(
    claims: list[CodedClaim],
) -> None:
    report = payment_by_month(claims, PRICES)
    assert sum(m.encounters for m in report.months) == len(claims)
    for m in report.months:
        assert m.office.incomplete <= m.encounters and m.hospital.incomplete <= m.encounters
        assert min(m.office.total, m.hospital.total, m.as_coded.total) >= 0
    office = sum((m.office.total for m in report.months), Decimal(0))
    single = sum((payment_by_month([c], PRICES).months[0].office.total for c in claims), Decimal(0))
    assert office == single
