"""The infusion timeline's layout (adapter/core/timeline.py): bars, ticks, lanes and marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.core.model import (
    Administration,
    AdminStatus,
    Code,
    Ingredient,
    Method,
    Quantity,
    Route,
)
from adapter.core.timeline import (
    LEFT,
    NO_SITE,
    RIGHT,
    UNKNOWN_STOP_MINUTES,
    WIDTH,
    Given,
    Mark,
    Shape,
    given_from,
    layout,
)
from adapter.mappings_loader import default_mappings_dir, load_mappings

TZ = ZoneInfo("America/New_York")
CATALOG = load_mappings(default_mappings_dir()).catalog
DAY = datetime(2026, 1, 23, tzinfo=TZ)


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour, minutes=minute)


def infusion(
    source: str,
    start: datetime,
    end: datetime | None,
    site: str = "left forearm",
    codes: tuple[str, ...] = ("96413",),
    push: bool = False,
    status: AdminStatus = AdminStatus.COMPLETED,
) -> Given:
    return Given(source, f"drug {source}", codes, start, end, site, push, status)


def test_one_bar_per_infusion_and_one_tick_per_push() -> None:
    timeline = layout(
        [
            infusion("a", at(9), at(10, 30)),
            infusion("b", at(10, 30), at(10, 30), push=True, codes=("96375",)),
            infusion("c", at(10, 45), at(11, 45), codes=("96367",)),
        ],
        TZ,
    )
    assert [i.source_id for i in timeline.bars] == ["a", "c"]
    assert [i.source_id for i in timeline.ticks] == ["b"]
    assert all(t.width == 0 for t in timeline.ticks)


def test_a_bar_runs_from_start_to_stop_on_the_clock_axis() -> None:
    """Axis 09:00-12:00 (180 min) over 736 units: 10:00-11:00 is 60 min from 200 + 245.3."""
    timeline = layout([infusion("a", at(10), at(11)), infusion("b", at(9, 30), at(11, 30))], TZ)
    scale = (WIDTH - LEFT - RIGHT) / 180
    bar = next(i for i in timeline.items if i.source_id == "a")
    assert bar.x == round(LEFT + 60 * scale, 1)
    assert bar.width == round(60 * scale, 1)
    assert (bar.start_text, bar.end_text, bar.minutes) == ("Jan 23 10:00", "Jan 23 11:00", 60)
    assert [h.label for h in timeline.hours] == ["09:00", "10:00", "11:00", "12:00"]


def test_each_administration_is_labelled_with_its_drug_and_the_codes_it_produced() -> None:
    timeline = layout(
        [
            infusion("a", at(9), at(10), codes=("96413", "J9271")),
            infusion("b", at(10), at(11), codes=()),
        ],
        TZ,
    )
    assert [i.label for i in timeline.items] == ["drug a → 96413, J9271", "drug b → no code"]


def test_administrations_are_grouped_in_one_lane_per_iv_site_in_order_of_first_use() -> None:
    timeline = layout(
        [
            infusion("a", at(9), at(10), site="port"),
            infusion("b", at(9, 15), at(9, 45), site="left forearm"),
            infusion("c", at(10, 30), at(11), site="port"),
            infusion("d", at(11), at(11, 40), site=""),
        ],
        TZ,
    )
    assert [lane.label for lane in timeline.lanes] == ["port", "left forearm", NO_SITE]
    port = timeline.lanes[0]
    assert {i.source_id for i in timeline.items if i.lane == "port"} == {"a", "c"}
    assert all(port.y <= i.y < port.y + port.height for i in timeline.items if i.lane == "port")


def test_overlapping_infusions_are_both_marked_concurrent_and_drawn_in_two_rows() -> None:
    timeline = layout([infusion("a", at(9), at(10, 30)), infusion("b", at(10), at(11))], TZ)
    a, b = timeline.items
    assert Mark.CONCURRENT in a.marks and Mark.CONCURRENT in b.marks
    assert a.y != b.y
    assert timeline.lanes[0].rows == 2
    assert "concurrent" in a.text


def test_back_to_back_infusions_are_not_concurrent() -> None:
    timeline = layout([infusion("a", at(9), at(10)), infusion("b", at(10), at(11))], TZ)
    a, b = timeline.items
    assert a.marks == b.marks == ()
    assert a.y < b.y  # one row each, in start order


def test_a_label_late_in_the_day_is_written_before_its_start_not_off_the_picture() -> None:
    early, late = layout([infusion("a", at(8), at(9)), infusion("b", at(15, 50), at(16))], TZ).items
    assert (early.label_end, early.label_x) == (False, early.x + 4)
    assert (late.label_end, late.label_x) == (True, late.x - 6)


def test_an_infusion_over_midnight_is_marked_and_the_axis_shows_the_new_date() -> None:
    timeline = layout([infusion("a", at(22, 30), at(1, 15, day=1))], TZ)
    (bar,) = timeline.items
    assert Mark.CROSSES_MIDNIGHT in bar.marks
    (midnight,) = timeline.midnights
    assert midnight.label == "Jan 24"
    assert bar.x < midnight.x < bar.x + bar.width


def test_midnight_is_local_time_not_utc() -> None:
    """21:00-21:40 in New York is 02:00-02:40 UTC the next day: no midnight crossed locally."""
    start = datetime(2026, 1, 24, 2, 0, tzinfo=UTC)
    timeline = layout([infusion("a", start, start + timedelta(minutes=40))], TZ)
    assert timeline.items[0].marks == ()
    assert timeline.items[0].start_text == "Jan 23 21:00"


def test_a_missing_stop_time_is_an_open_bar_of_nominal_length_marked_in_words() -> None:
    timeline = layout([infusion("a", at(10), None), infusion("b", at(9), at(12))], TZ)
    bar = timeline.items[1]
    assert bar.source_id == "a" and bar.shape is Shape.BAR
    assert bar.marks == (Mark.NO_STOP, Mark.CONCURRENT)
    assert bar.minutes is None and bar.end_text == ""
    scale = (WIDTH - LEFT - RIGHT) / 180
    assert bar.width == round(UNKNOWN_STOP_MINUTES * scale, 1)
    assert "no stop time" in bar.text


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(at(9, 30), id="stop-before-start"),
        pytest.param(at(10), id="stop-equals-start"),
        pytest.param(at(10, 1, day=1), id="longer-than-24-hours"),
    ],
)
def test_an_implausible_stop_time_is_drawn_short_and_marked(end: datetime) -> None:
    (bar,) = layout([infusion("a", at(10), end)], TZ).items
    assert Mark.IMPLAUSIBLE_STOP in bar.marks
    assert bar.minutes is None
    assert bar.shape is Shape.BAR


def test_a_stopped_or_partial_infusion_is_marked_stopped_early() -> None:
    (bar,) = layout([infusion("a", at(10), at(10, 40), status=AdminStatus.PARTIAL)], TZ).items
    assert bar.marks == (Mark.STOPPED,)
    assert bar.minutes == 40
    assert "stopped early" in bar.text


def test_the_summary_says_how_many_and_what_is_marked() -> None:
    timeline = layout([infusion("a", at(10), None), infusion("b", at(11), at(11), push=True)], TZ)
    assert timeline.summary.startswith("1 infusion and 1 push on 1 IV site.")
    assert "drug a → 96413 (no stop time)" in timeline.summary


def test_no_administrations_give_an_empty_picture() -> None:
    timeline = layout([], TZ)
    assert timeline.items == () and timeline.lanes == ()


def admin(**changes: object) -> Administration:
    base: dict[str, object] = {
        "source_id": "s1",
        "patient_id": "p",
        "start": at(10),
        "end": at(11),
        "ingredients": (
            Ingredient((Code("NDC", "00006302602", "pembrolizumab 100 mg/4 mL"),), None),
        ),
        "route": Route.IV,
        "access_site": "RAC",
    }
    return Administration(**(base | changes))  # type: ignore[arg-type]


def test_given_from_an_administration_takes_its_drug_site_and_the_codes_citing_it() -> None:
    g = given_from(admin(), {"s1": ["96413", "J9271"]}, CATALOG)
    assert (g.drug, g.site, g.codes, g.push) == (
        "pembrolizumab 100 mg/4 mL",
        "RAC",
        ("96413", "J9271"),
        False,
    )


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"method": Method.PUSH, "end": at(10, 40)}, id="documented-push"),
        pytest.param({"route": Route.SC, "end": None}, id="subcutaneous"),
        pytest.param({"end": at(10, 15)}, id="15-minutes-is-a-push-D4"),
    ],
)
def test_a_push_or_injection_is_a_moment(changes: dict[str, object]) -> None:
    assert given_from(admin(**changes), {}, CATALOG).push


def test_an_administration_without_a_site_or_drug_text_still_has_words() -> None:
    bare = admin(access_site=None, ingredients=(Ingredient((Code("NDC", "123"),), None),))
    g = given_from(bare, {}, CATALOG)
    assert (g.site, g.drug) == (NO_SITE, "123")


def test_a_drug_named_only_by_its_ndc_gets_the_catalog_name() -> None:
    coded = admin(ingredients=(Ingredient((Code("NDC", "00006302602"),), None),))
    drug = given_from(coded, {}, CATALOG).drug
    assert drug == CATALOG.match([Code("NDC", "00006302602")]).drug.name  # type: ignore[union-attr]
    assert drug != "00006302602"


def test_a_16_minute_infusion_is_a_bar() -> None:
    g = given_from(admin(end=at(10, 16), rate=Quantity(Decimal(1), "mL/h")), {}, CATALOG)
    assert not g.push


moments = st.integers(min_value=0, max_value=40 * 60)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            moments,
            st.one_of(st.none(), st.integers(-60, 30 * 60)),
            st.booleans(),
            st.sampled_from(["a", "b", ""]),
        ),
        max_size=12,
    )
)
def test_every_administration_is_drawn_once_inside_the_picture(
    rows: list[tuple[int, int | None, bool, str]],
) -> None:
    given_list = [
        infusion(
            f"s{n}",
            at(0, start),
            None if length is None else at(0, start + length),
            site=site,
            push=push,
        )
        for n, (start, length, push, site) in enumerate(rows)
    ]
    timeline = layout(given_list, TZ)
    assert sorted(i.source_id for i in timeline.items) == sorted(g.source_id for g in given_list)
    for item in timeline.items:
        assert LEFT <= item.x <= item.x + item.width <= WIDTH - RIGHT + 0.5
        lane = next(lane for lane in timeline.lanes if lane.label == item.lane)
        assert lane.y <= item.y < item.y + item.height <= lane.y + lane.height
    assert len({i.y for i in timeline.items}) == len(timeline.items)  # one row each
