"""The chart layout (adapter/core/report_chart.py) and the CSV text (adapter/core/report_table.py)."""

from __future__ import annotations

import csv
import io
import itertools
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.report_chart import Series, Unit, bar_chart, fmt, hbar_chart, nice_step
from adapter.core.report_table import ReportTable, csv_text, safe_cell


def test_a_bar_is_as_tall_as_its_value_on_the_axis() -> None:
    """A peak of 8: steps of 2 (8 / 4), the axis ends at 8, a bar of 4 is half as tall."""
    chart = bar_chart("t", ["w1", "w2"], [Series("held", (8.0, 4.0))], Unit.COUNT, stacked=False)
    assert chart.axis_max == 8.0
    plot_h = 340 - 40 - 48
    first, second = chart.bars
    assert first.height == pytest.approx(plot_h, abs=0.1)
    assert second.height == pytest.approx(plot_h / 2, abs=0.1)
    assert first.y + first.height == pytest.approx(second.y + second.height, abs=0.1)  # baseline
    assert first.title == "w1, held: 8"


def test_stacked_bars_sit_on_each_other_and_reach_the_total() -> None:
    chart = bar_chart(
        "t", ["w1"], [Series("a", (3.0,)), Series("b", (5.0,))], Unit.COUNT, stacked=True
    )
    low, high = chart.bars
    assert high.y + high.height == pytest.approx(low.y, abs=0.15)
    assert chart.axis_max == 8.0
    assert [s.text for s in chart.legend] == ["a", "b"]
    assert low.fill != high.fill


def test_grouped_bars_share_the_category_band_side_by_side() -> None:
    chart = bar_chart(
        "t", ["m1"], [Series("office", (1.0,)), Series("hospital", (2.0,))], Unit.DOLLARS,
        stacked=False,
    )  # fmt: skip
    office, hospital = chart.bars
    assert office.x + office.width == pytest.approx(hospital.x, abs=0.15)


def test_a_negative_value_draws_no_bar_but_its_tooltip_tells_the_value() -> None:
    chart = bar_chart("t", ["w1"], [Series("lag", (-2.0,))], Unit.HOURS, stacked=False)
    assert chart.bars[0].height == 0
    assert chart.bars[0].title == "w1, lag: -2.0 h"


def test_no_categories_says_there_is_no_data() -> None:
    chart = bar_chart("Holds", [], [Series("a", ())], Unit.COUNT, stacked=True)
    assert "No data for these filters" in [t.text for t in chart.texts]
    assert chart.summary == "Holds: no data for these filters."


def test_category_labels_are_thinned_so_they_do_not_overlap() -> None:
    weeks = [f"2026-{m:02d}-{d:02d}" for m in range(1, 13) for d in (1, 15)]
    chart = bar_chart("t", weeks, [Series("a", (1.0,) * len(weeks))], Unit.COUNT, stacked=True)
    shown = sorted(t.x for t in chart.texts if t.text in weeks)
    assert 1 < len(shown) < len(weeks)
    widest = max(len(w) for w in weeks) * 7.0
    assert all(b - a >= widest for a, b in itertools.pairwise(shown))


def test_horizontal_bars_put_the_first_category_on_top() -> None:
    chart = hbar_chart("top", ["99999-0001-01", "LOC42"], [5.0, 1.0], Unit.COUNT)
    first, second = chart.bars
    assert first.y < second.y and first.width == pytest.approx(5 * second.width, abs=0.5)


@pytest.mark.parametrize(
    ("value", "unit", "tick", "text"),
    [
        (12345.678, Unit.DOLLARS, False, "$12,345.68"),
        (25000.0, Unit.DOLLARS, True, "$25k"),
        (1500000.0, Unit.DOLLARS, True, "$1.5M"),
        (3.25, Unit.HOURS, False, "3.2 h"),
        (12.0, Unit.COUNT, True, "12"),
    ],
)
def test_values_read_as_a_biller_reads_them(
    value: float, unit: Unit, tick: bool, text: str
) -> None:
    assert fmt(value, unit, tick) == text


@given(st.floats(0.001, 1e9))
def test_the_axis_step_is_a_1_2_5_number_covering_the_peak_in_about_four_steps(top: float) -> None:
    step = nice_step(top)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1.0, 2.0, 2.5, 5.0, 10.0)
    assert step * 4 >= top * (1 - 1e-9)


@given(st.lists(st.lists(st.floats(0, 1e6), min_size=3, max_size=3), min_size=1, max_size=4))
def test_no_bar_leaves_the_plot(values: list[list[float]]) -> None:
    series = [Series(f"s{i}", tuple(v)) for i, v in enumerate(values)]
    for stacked in (True, False):
        chart = bar_chart("t", ["a", "b", "c"], series, Unit.DOLLARS, stacked=stacked)
        for bar in chart.bars:
            assert bar.y >= 40 - 0.2 and bar.y + bar.height <= 340 - 48 + 0.2
            assert bar.height >= 0


# --------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("Infusion 2 West", "Infusion 2 West"),
        (Decimal("-2.5"), "-2.5"),  # a number we computed stays a number
        (7, "7"),
        (None, ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(
    cell: str | Decimal | int | None, written: str
) -> None:
    assert safe_cell(cell) == written


def test_csv_has_the_headings_then_the_rows_and_the_note_column() -> None:
    table = ReportTable(("month", "total"), (("2026-01", Decimal("12.50")), ("=evil", None)))
    text = csv_text(table, ("national, unadjusted",))
    assert text.endswith("\r\n")
    assert list(csv.reader(io.StringIO(text))) == [
        ["month", "total", "note"],
        ["2026-01", "12.50", "national, unadjusted"],
        ["'=evil", "", "national, unadjusted"],
    ]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError):
        ReportTable(("a", "b"), (("only one",),))


@pytest.mark.parametrize("peak", [0.0, 5e-324, 1e-12])
def test_a_zero_or_vanishing_peak_draws_a_short_empty_axis(peak: float) -> None:
    chart = bar_chart("t", ["a"], [Series("s", (peak,))], Unit.DOLLARS, stacked=True)
    assert chart.axis_max == 10.0
    assert len(chart.rules) <= 22
