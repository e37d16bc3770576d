"""R9, R18, R20, R21: the time thresholds, including the 91-minute rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.infusion_time import (
    additional_hours,
    hydration_reportable,
    is_push_by_time,
    subsequent_hydration_units,
)

# (running minutes, add-on hours): coding-rules.md §1.5 ADD(d)
ADD_TABLE = [(16, 0), (60, 0), (61, 0), (90, 0), (91, 1), (120, 1), (150, 1), (151, 2),
             (155, 2), (162, 2), (180, 2), (210, 2), (211, 3), (220, 3), (312, 4)]  # fmt: skip


@pytest.mark.parametrize(("minutes", "hours"), ADD_TABLE)
def test_additional_hour_needs_more_than_30_minutes_past_the_hour_r18(
    minutes: int, hours: int
) -> None:
    assert additional_hours(minutes) == hours


def test_chemo_infusion_of_90_minutes_bills_no_additional_hour() -> None:
    assert additional_hours(90) == 0


def test_chemo_infusion_of_91_minutes_bills_one_additional_hour() -> None:
    assert additional_hours(91) == 1


@pytest.mark.parametrize(("minutes", "is_push"), [(0, True), (15, True), (16, False), (30, False)])
def test_infusion_of_15_minutes_or_less_is_a_push_r9_d4(minutes: int, is_push: bool) -> None:
    assert is_push_by_time(minutes) is is_push


@pytest.mark.parametrize(("minutes", "ok"), [(30, False), (31, True), (60, True)])
def test_initial_hydration_needs_31_minutes_or_more_r20(minutes: int, ok: bool) -> None:
    assert hydration_reportable(minutes) is ok


@pytest.mark.parametrize(
    ("minutes", "units"), [(30, 0), (31, 1), (45, 1), (60, 1), (90, 1), (91, 2), (102, 2), (125, 2)]
)
def test_subsequent_hydration_units_are_one_plus_additional_hours_r21(
    minutes: int, units: int
) -> None:
    assert subsequent_hydration_units(minutes) == units


@given(st.integers(min_value=0, max_value=24 * 60))
def test_billed_hours_never_exceed_documented_time(minutes: int) -> None:
    """Invariant: the first hour plus add-on hours cover at most the minutes given + 29."""
    billed_hours = 1 + additional_hours(minutes)
    assert (billed_hours - 1) * 60 < minutes or billed_hours == 1
    assert billed_hours * 60 <= minutes + 29 or minutes <= 60
