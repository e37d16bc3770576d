"""Time arithmetic for infusions: where the 91-minute rule lives.

CPT bills an infusion's first hour with the initial (or sequential) code and
each further hour with an add-on only when more than 30 minutes of that hour
were used (R18, "greater than 30 minutes beyond 1-hour increments"): 90
minutes bill no add-on, 91 minutes bill one. Hydration has its own floor
(31 minutes, R20/R21). Add-on units are dated by the block they start in
(D9), so an infusion crossing midnight splits its units across two dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

PUSH_MAX_MINUTES = 15  # R9 / D4: 15 minutes or less is a push
HYDRATION_MIN_MINUTES = 31  # R20: "31 minutes to 1 hour"
HOUR = 60
ADDON_THRESHOLD = 30  # R18: more than 30 minutes past the hour


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open running interval [start, end)."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> int:
        return running_minutes(self.start, self.end)


def running_minutes(start: datetime, end: datetime) -> int:
    """Whole minutes from start to stop ("drip to drip", R10); seconds are charting noise."""
    seconds = (end - start).total_seconds()
    return int(seconds // 60)


def additional_hours(minutes: int) -> int:
    """ADD(d): add-on hours after the first hour (R18): 90 → 0, 91 → 1, 151 → 2."""
    if minutes <= HOUR:
        return 0
    beyond = minutes - HOUR
    full, rest = divmod(beyond, HOUR)
    return full + (1 if rest > ADDON_THRESHOLD else 0)


def is_push_by_time(minutes: int) -> bool:
    """An 'infusion' of 15 minutes or less is a push (R9, D4)."""
    return minutes <= PUSH_MAX_MINUTES


def hydration_reportable(minutes: int) -> bool:
    """Hydration of 30 minutes or less is not reportable, as initial or as add-on (R20, R21)."""
    return minutes >= HYDRATION_MIN_MINUTES


def subsequent_hydration_units(minutes: int) -> int:
    """96361 after another initial service (R21): 0 if ≤ 30 min, else 1 + ADD(d)."""
    if minutes <= ADDON_THRESHOLD:
        return 0
    return 1 + additional_hours(minutes)


def overlap_minutes(a: Interval, b: Interval) -> int:
    """Minutes two running intervals share."""
    start = max(a.start, b.start)
    end = min(a.end, b.end)
    return running_minutes(start, end) if end > start else 0


def subtract(segments: tuple[Interval, ...], cut: Interval) -> tuple[Interval, ...]:
    """Remove `cut` from each segment: hydration time concurrent with a drug is not billed (R25)."""
    out: list[Interval] = []
    for seg in segments:
        if cut.end <= seg.start or cut.start >= seg.end:
            out.append(seg)
            continue
        if cut.start > seg.start:
            out.append(Interval(seg.start, cut.start))
        if cut.end < seg.end:
            out.append(Interval(cut.end, seg.end))
    return tuple(out)


def total_minutes(segments: tuple[Interval, ...]) -> int:
    return sum(s.minutes for s in segments)


def clock_at(segments: tuple[Interval, ...], offset_minutes: int) -> datetime:
    """The wall-clock time at which `offset_minutes` of running time have elapsed."""
    remaining = offset_minutes
    for seg in segments:
        if remaining < seg.minutes:
            return seg.start + timedelta(minutes=remaining)
        remaining -= seg.minutes
    return segments[-1].end


def unit_dates(
    segments: tuple[Interval, ...], first_block: int, units: int, site_tz: tzinfo
) -> tuple[date, ...]:
    """Service date of each add-on unit: the local date its hour block begins (D9).

    `first_block` is the index of the first hour block the units stand for:
    1 for add-on hours after an initial hour, 0 for 96361 units that start
    with the first hour of a hydration.
    """
    return tuple(
        local_date(clock_at(segments, (first_block + i) * HOUR), site_tz) for i in range(units)
    )


def local_date(moment: datetime, site_tz: tzinfo) -> date:
    """The site-local calendar date of an instant (a service date, an encounter's day).

    The readers refuse years outside 1900-2200, so for what they produce the conversion
    cannot overflow. An instant at the very ends of the datetime range built some other way
    gets the date written in its own offset instead of an OverflowError: one bad time must
    not stop its whole encounter from being keyed or coded.
    """
    try:
        return moment.astimezone(site_tz).date()
    except OverflowError:
        return moment.date()
