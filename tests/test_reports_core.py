"""The report aggregations (adapter/core/reports.py, report_lag.py) over hand-built Claim versions.

Each expected table is worked out by hand in the test from the rows above it; hypothesis
checks the invariants (every encounter counted once, p90 >= median, counts summing to totals).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.model import CodeSystem
from adapter.core.report_lag import Spread, charge_lag, lag_table, quantile
from adapter.core.report_rows import ClaimVersion, DrugCode, month_of, week_of
from adapter.core.reports import (
    coded_held_table,
    coded_vs_held,
    documentation_gaps,
    stop_times_by_unit,
    stop_times_table,
    unknown_drugs,
    unknown_drugs_table,
)

MON = date(2026, 3, 9)  # a Monday
NEXT_MON = date(2026, 3, 16)
NDC_X = DrugCode(CodeSystem.NDC.value, "99999-0001-01")
LOCAL_Y = DrugCode(CodeSystem.LOCAL.value, "LOC42")


def at(day: date, hour: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


def version(
    claim: str,
    n: int,
    *,
    held: bool,
    day: date = MON,
    location: str = "Infusion 2 West",
    setting: str = "office",
    holds: tuple[str, ...] = (),
    drugs: tuple[DrugCode, ...] = (),
    recorded_h: float = 10.0,
    delivered_h: float | None = None,
    administered_h: float = 9.0,
) -> ClaimVersion:
    return ClaimVersion(
        claim_id=claim,
        version=n,
        held=held,
        recorded_at=at(day, recorded_h),
        service_date=day,
        administered_at=at(day, administered_h),
        location=location,
        setting=setting,
        holds=holds,
        unmatched_drugs=drugs,
        delivered_at=None if delivered_h is None else at(day, delivered_h),
    )


# A fixed set, counted by hand below:
# a: held twice for missing stop (2 infusions), then coded          -> Monday week, 2 West
# b: held for missing stop + unknown drug NDC_X, still held         -> Monday week, 2 West
# c: coded straight away                                            -> Monday week, 2 West
# d: held for unknown drug NDC_X and LOCAL_Y, still held            -> next week, 3 East
# e: coded straight away                                            -> next week, 3 East
ROWS = (
    version("a", 1, held=True, holds=("missing-stop-time", "missing-stop-time")),
    version("a", 2, held=False, recorded_h=30.0, delivered_h=31.0),
    version("b", 1, held=True, holds=("missing-stop-time", "unknown-drug"), drugs=(NDC_X,)),
    version("c", 1, held=False, recorded_h=11.0, delivered_h=11.5),
    version(
        "d",
        1,
        held=True,
        day=NEXT_MON,
        location="Infusion 3 East",
        holds=("unknown-drug", "unknown-drug"),
        drugs=(NDC_X, LOCAL_Y),
    ),
    version("e", 1, held=False, day=NEXT_MON, location="Infusion 3 East", recorded_h=13.0),
)


def test_documentation_gaps_count_encounters_per_reason_location_and_week() -> None:
    report = documentation_gaps(ROWS)
    assert report.table().rows == (
        ("2026-03-09", "Infusion 2 West", "missing-stop-time", 2, 1),  # a (fixed since) and b
        ("2026-03-09", "Infusion 2 West", "unknown-drug", 1, 1),  # b
        ("2026-03-16", "Infusion 3 East", "unknown-drug", 1, 1),  # d, once for two holds
    )
    assert report.reasons == ("missing-stop-time", "unknown-drug")  # 2 each: by name
    assert (report.encounters, report.held_encounters) == (5, 3)
    assert report.by_week() == [
        (MON, {"missing-stop-time": 2, "unknown-drug": 1}),
        (NEXT_MON, {"unknown-drug": 1}),
    ]


def test_missing_stop_times_per_unit_counts_encounters_infusions_and_the_share() -> None:
    rows = stop_times_by_unit(ROWS)
    assert stop_times_table(rows).rows == (
        # 2 West: a, b, c; a and b missing (2 of 3 = 66.7 %); infusions: a had 2, b 1; b still
        ("Infusion 2 West", 3, 2, Decimal("66.7"), 3, 1),
        ("Infusion 3 East", 2, 0, Decimal("0.0"), 0, 0),
    )


def test_coded_vs_held_puts_each_encounter_in_one_column_of_its_week() -> None:
    assert coded_held_table(coded_vs_held(ROWS)).rows == (
        ("2026-03-09", 1, 1, 1, 3),  # c coded, a coded after review, b held
        ("2026-03-16", 1, 0, 1, 2),  # e coded, d held
    )


def test_top_unknown_drugs_counts_each_encounter_once_per_code() -> None:
    table = unknown_drugs_table(unknown_drugs(ROWS))
    assert table.rows == (
        ("99999-0001-01", "NDC", 2, 2, 2, "2026-03-09", "2026-03-16"),  # b and d
        ("LOC42", "local code", 1, 1, 1, "2026-03-16", "2026-03-16"),  # d
    )


def test_a_code_fixed_since_is_still_counted_but_no_longer_still_held() -> None:
    fixed = (
        version("f", 1, held=True, holds=("unknown-drug",), drugs=(NDC_X,)),
        version("f", 2, held=False),
    )
    [drug] = unknown_drugs(fixed)
    assert (drug.encounters, drug.still_held) == (1, 0)


def hours(text: str) -> list[Decimal]:
    return [Decimal(h) for h in text.split()]


def test_charge_lag_per_unit_and_week_in_hours() -> None:
    table = lag_table(charge_lag(ROWS))
    assert table.rows == (
        # 2 West: a coded at 30 h (21 h after 9 h), delivered 1 h later; c coded at 11 h
        # (2 h), delivered 0.5 h later; b never coded.
        # to coded: [2, 21] -> median 11.5, p90 = 2 + 0.9 * 19 = 19.1
        # to delivered: [0.5, 1] -> median 0.75 -> 0.8 (half up), p90 0.95 -> 1.0 (half up)
        # end to end: [2.5, 22] -> median 12.25 -> 12.3, p90 2.5 + 0.9 * 19.5 = 20.05 -> 20.1
        ("Infusion 2 West", "2026-03-09", 3, *hours("11.5 19.1 0.8 1.0 12.3 20.1"), 1, 0),
        # 3 East, next week: d never coded; e coded 13 h - 9 h = 4 h, not delivered
        ("Infusion 3 East", "2026-03-16", 2, *hours("4.0 4.0"), None, None, None, None, 1, 1),
    )


def test_quantile_interpolates_between_order_statistics() -> None:
    assert quantile([4.0], 0.9) == 4.0
    assert quantile([1.0, 3.0], 0.5) == 2.0
    assert quantile([10.0, 0.0, 5.0], 0.5) == 5.0
    assert quantile([0.0, 10.0, 20.0, 30.0, 40.0], 0.9) == pytest.approx(36.0)
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    assert week_of(date(2026, 3, 15)) == MON  # a Sunday
    assert week_of(MON) == MON
    assert month_of(date(2026, 3, 31)) == date(2026, 3, 1)


# --------------------------------------------------------------- invariants

REASONS = ("missing-stop-time", "unknown-drug", "invalid-times")
LOCATIONS = ("A", "B")


@st.composite
def claim_versions(draw: st.DrawFn) -> list[ClaimVersion]:
    rows = []
    for i in range(draw(st.integers(0, 12))):
        day = MON + timedelta(days=draw(st.integers(0, 20)))
        location = draw(st.sampled_from(LOCATIONS))
        for n in range(1, draw(st.integers(1, 3)) + 1):
            held = draw(st.booleans())
            holds = tuple(draw(st.lists(st.sampled_from(REASONS), max_size=3))) if held else ()
            rows.append(
                version(
                    f"c{i}",
                    n,
                    held=held,
                    day=day,
                    location=location,
                    holds=holds,
                    drugs=(NDC_X,) if "unknown-drug" in holds else (),
                    recorded_h=draw(st.floats(0, 200)),
                    delivered_h=draw(st.none() | st.floats(0, 400)),
                    administered_h=draw(st.floats(0, 24)),
                )
            )
    return rows


@given(claim_versions())
def test_every_encounter_is_in_exactly_one_coded_held_column(rows: list[ClaimVersion]) -> None:
    weeks = coded_vs_held(rows)
    assert sum(w.total for w in weeks) == len({r.claim_id for r in rows})


@given(claim_versions())
def test_gap_counts_never_exceed_held_encounters_and_still_held_never_exceeds_held(
    rows: list[ClaimVersion],
) -> None:
    report = documentation_gaps(rows)
    for cell in report.cells:
        assert 0 <= cell.still_held <= cell.encounters
    per_reason: dict[str, int] = {}
    for cell in report.cells:
        per_reason[cell.reason] = per_reason.get(cell.reason, 0) + cell.encounters
    assert all(n <= report.held_encounters for n in per_reason.values())
    assert report.held_encounters <= report.encounters


@given(claim_versions())
def test_stop_time_units_sum_to_every_encounter(rows: list[ClaimVersion]) -> None:
    units = stop_times_by_unit(rows)
    assert sum(u.encounters for u in units) == len({r.claim_id for r in rows})
    for u in units:
        assert u.still_missing <= u.missing <= u.encounters
        assert u.missing <= u.administrations
        assert Decimal(0) <= u.percent <= Decimal(100)


@given(claim_versions())
def test_lag_p90_is_never_below_the_median_and_counts_add_up(rows: list[ClaimVersion]) -> None:
    lag = charge_lag(rows)
    assert sum(r.encounters for r in lag) == len({r.claim_id for r in rows})
    for r in lag:
        assert r.to_coded.count + r.not_coded == r.encounters
        assert r.to_delivered.count + r.not_delivered == r.to_coded.count
        for spread in (r.to_coded, r.to_delivered, r.end_to_end):
            if spread.count:
                assert spread.median is not None and spread.p90 is not None
                assert spread.p90 >= spread.median


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 1), st.floats(0, 1))
def test_quantile_is_monotone_and_within_the_values(
    values: list[float], p: float, q: float
) -> None:
    low, high = sorted((p, q))
    assert min(values) <= quantile(values, low) <= quantile(values, high) + 1e-6
    assert quantile(values, high) <= max(values) + 1e-6


def test_an_empty_spread_has_no_figures_not_zero() -> None:
    assert Spread.of([]) == Spread(0, None, None)
