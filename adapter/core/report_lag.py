"""Charge lag: administration -> coded -> delivered, median and 90th percentile per unit and week.

Why: revenue cycle measures how long a charge takes from the chair to the billing system;
a unit whose 90th percentile grows is where documentation waits. Per encounter (its Claim):

- administered: the first administration's start (the Claim's billablePeriod.start);
- coded: when the first coded (not held) version of its Claim was written;
- delivered: the first delivery of a coded version to a destination (FHIR server, DFT).

An encounter not coded yet counts as "not coded", one coded but not delivered as "not
delivered" (no sink configured, or still queued): neither is a lag of zero. Percentiles are
the linear interpolation between order statistics (numpy's default, "type 7"), so the
median of two values is their mean and p90 >= median always.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from adapter.core.report_rows import ClaimVersion
from adapter.core.report_table import Cell, ReportTable
from adapter.core.reports import Encounter, encounters, week_key, week_label

HOUR = 3600.0
TENTH = Decimal("0.1")


def quantile(values: Sequence[float], p: float) -> float:
    """The p-quantile (0 <= p <= 1) of non-empty values, linear between order statistics."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be within [0, 1], got {p}")
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and 90th percentile of a stage, in hours (one decimal), over `count` encounters."""

    count: int
    median: Decimal | None
    p90: Decimal | None

    @staticmethod
    def of(seconds: Sequence[float]) -> Spread:
        if not seconds:
            return Spread(0, None, None)
        return Spread(len(seconds), _hours(quantile(seconds, 0.5)), _hours(quantile(seconds, 0.9)))


def _hours(seconds: float) -> Decimal:
    return Decimal(repr(seconds / HOUR)).quantize(TENTH, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class LagRow:
    """One unit and service week."""

    location: str
    week: date | None
    encounters: int
    to_coded: Spread  # administered -> coded
    to_delivered: Spread  # coded -> delivered
    end_to_end: Spread  # administered -> delivered
    not_coded: int
    not_delivered: int  # coded, not delivered yet


@dataclass(frozen=True, slots=True)
class _Times:
    administered: datetime | None
    coded: datetime | None
    delivered: datetime | None


def _times(enc: Encounter) -> _Times:
    coded = [v for v in enc.versions if not v.held]
    delivered = [v.delivered_at for v in coded if v.delivered_at is not None]
    return _Times(
        enc.newest.administered_at,
        coded[0].recorded_at if coded else None,
        min(delivered, default=None),
    )


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def charge_lag(versions: Iterable[ClaimVersion]) -> tuple[LagRow, ...]:
    """Per unit and week of service, the spread of each stage and what has not got there."""
    groups: dict[tuple[str, date | None], list[_Times]] = defaultdict(list)
    for enc in encounters(versions):
        groups[(enc.newest.location, enc.week)].append(_times(enc))
    order = sorted(groups, key=lambda k: (k[0], week_key(k[1])))
    return tuple(_lag_row(location, week, groups[(location, week)]) for location, week in order)


def _lag_row(location: str, week: date | None, times: Sequence[_Times]) -> LagRow:
    def stage(seconds: Iterable[float | None]) -> Spread:
        return Spread.of([s for s in seconds if s is not None])

    return LagRow(
        location,
        week,
        len(times),
        to_coded=stage(_between(t.administered, t.coded) for t in times),
        to_delivered=stage(_between(t.coded, t.delivered) for t in times),
        end_to_end=stage(_between(t.administered, t.delivered) for t in times),
        not_coded=sum(1 for t in times if t.coded is None),
        not_delivered=sum(1 for t in times if t.coded and t.delivered is None),
    )


def lag_table(rows: Sequence[LagRow]) -> ReportTable:
    def spread(s: Spread) -> tuple[Cell, Cell]:
        return (s.median, s.p90)

    return ReportTable(
        (
            "location",
            "week of",
            "encounters",
            "administered to coded, median hours",
            "administered to coded, 90th percentile hours",
            "coded to delivered, median hours",
            "coded to delivered, 90th percentile hours",
            "administered to delivered, median hours",
            "administered to delivered, 90th percentile hours",
            "not coded yet",
            "coded, not delivered yet",
        ),
        tuple(
            (
                r.location,
                week_label(r.week),
                r.encounters,
                *spread(r.to_coded),
                *spread(r.to_delivered),
                *spread(r.end_to_end),
                r.not_coded,
                r.not_delivered,
            )
            for r in rows
        ),
    )
