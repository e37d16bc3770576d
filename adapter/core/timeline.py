"""The infusion timeline of one encounter, laid out: administrations in, bars and ticks out.

Why a picture: the most common reason an infusion charge is lost is its start/stop times, and
a biller sees an overlap, a midnight crossing or a missing stop in a glance at a clock axis
that a table of timestamps hides. This module only computes the layout (positions in SVG
user units, labels, marks); a template draws it. Pure: values in, values out, no clock: the
axis is the span of the administrations themselves, in the site's time zone (D25).

- One lane per IV site / line (`Administration.access_site`; "site not documented" when the
  feed has none); inside a lane one row per administration, in start order, so a label
  never runs over another administration and overlaps show as bars side by side.
- An infusion is a bar from start to stop; a push (documented push, SC/IM injection, or an
  infusion of 15 minutes or less, R9/D4) is a tick at its start.
- Each is labelled with its drug and the codes it produced (the Claim lines naming it).
- Marks, each with words (never colour alone): concurrent (it overlaps another
  administration), crosses midnight (D9), no stop time (drawn as a short open-ended bar),
  implausible stop (before the start, or longer than 24 hours: drawn short, D10), stopped
  early / partial (D8), still in progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from adapter.core.catalog import Catalog
from adapter.core.infusion_time import is_push_by_time, running_minutes
from adapter.core.model import Administration, AdminStatus, IngredientRole, Method, Route

NO_SITE = "site not documented"
_XOf = Callable[[datetime], float]
# Geometry, in SVG user units (the picture scales to the page width).
WIDTH = 960
LEFT = 200  # room for the lane labels
RIGHT = 24
TOP = 34  # the hour labels
ROW = 34  # one row of bars
LANE_GAP = 10
BOTTOM = 14
UNKNOWN_STOP_MINUTES = 20  # how long a bar with no (or an implausible) stop is drawn
MAX_PLAUSIBLE_MINUTES = 24 * 60  # D10
MIN_SPAN_MINUTES = 60
CHAR_WIDTH = 6.6  # an estimate of one label character at the page's 12px, for placement


class Mark(StrEnum):
    """Something about an administration the biller must see; the value is the words shown."""

    CONCURRENT = "concurrent"
    CROSSES_MIDNIGHT = "crosses midnight"
    NO_STOP = "no stop time"
    IMPLAUSIBLE_STOP = "implausible stop time"
    STOPPED = "stopped early"
    IN_PROGRESS = "in progress"


class Shape(StrEnum):
    BAR = "bar"  # an infusion: start to stop
    TICK = "tick"  # a push or an injection: a moment


@dataclass(frozen=True, slots=True)
class Given:
    """One administration as the timeline needs it (built by `given_from`)."""

    source_id: str
    drug: str
    codes: tuple[str, ...]
    start: datetime
    end: datetime | None
    site: str
    push: bool
    status: AdminStatus = AdminStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class Item:
    """One drawn administration: a bar (x to x + width) or a tick (at x), in its lane's row."""

    source_id: str
    shape: Shape
    x: float
    width: float
    y: float
    height: float
    label: str  # "Rituximab → 96413, 96415"
    marks: tuple[Mark, ...]
    label_x: float  # where the label is written: after the start, or before it (anchor end)
    label_end: bool  # True: the label ends at label_x (an administration late in the day)
    start_text: str  # local clock, "09:05"
    end_text: str  # local clock, "" when unknown
    minutes: int | None  # documented running minutes (None: no plausible stop)
    lane: str

    @property
    def text(self) -> str:
        """The whole administration in words, for the SVG <title> and the table beside it."""
        when = f"{self.start_text} to {self.end_text}" if self.end_text else self.start_text
        length = f", {self.minutes} min" if self.minutes is not None else ""
        marks = f"; {', '.join(m.value for m in self.marks)}" if self.marks else ""
        return f"{self.label}: {when}{length}, {self.lane}{marks}"


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    y: float
    height: float
    rows: int


@dataclass(frozen=True, slots=True)
class HourTick:
    x: float
    label: str  # "09:00"; at midnight the new date, "Jan 24"
    midnight: bool


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: float
    left: float
    lanes: tuple[Lane, ...]
    items: tuple[Item, ...]
    hours: tuple[HourTick, ...]
    summary: str  # the picture in one sentence, for the SVG <desc>

    @property
    def bars(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.shape is Shape.BAR)

    @property
    def ticks(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.shape is Shape.TICK)

    @property
    def midnights(self) -> tuple[HourTick, ...]:
        return tuple(h for h in self.hours if h.midnight)


# ---------------------------------------------------------------- from the feed's values


def given_from(
    admin: Administration, codes_by_source: Mapping[str, Sequence[str]], catalog: Catalog
) -> Given:
    """An administration as drawn: its drug (the feed's own words, else the catalog's name,
    else the code), the codes of the Claim lines citing it, and whether it is a moment."""
    push = admin.method is Method.PUSH or admin.route in (Route.SC, Route.IM)
    if admin.end is not None and admin.end > admin.start:
        push = push or is_push_by_time(running_minutes(admin.start, admin.end))
    return Given(
        source_id=admin.source_id,
        drug=_drug(admin, catalog),
        codes=tuple(codes_by_source.get(admin.source_id, ())),
        start=admin.start,
        end=admin.end,
        site=(admin.access_site or "").strip() or NO_SITE,
        push=push,
        status=admin.status,
    )


def _drug(admin: Administration, catalog: Catalog) -> str:
    actives = [i for i in admin.ingredients if i.role is IngredientRole.ACTIVE] or list(
        admin.ingredients
    )
    words = []
    for ingredient in actives:
        shown = next((c.display for c in ingredient.codes if c.display), "")
        match = catalog.match(ingredient.codes) if not (ingredient.text or shown) else None
        code = ingredient.codes[0].code if ingredient.codes else ""
        known = match.drug.name if match is not None else ""
        words.append(ingredient.text or shown or known or code or "unnamed drug")
    return " + ".join(words) or "unnamed drug"


# ---------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class _Span:
    given: Given
    start: datetime
    end: datetime  # drawn end (a tick: the start)
    minutes: int | None
    marks: tuple[Mark, ...]


def layout(given: Sequence[Given], site_tz: tzinfo) -> Timeline:
    """Lanes by site, rows for overlaps, bars and ticks on a clock axis in `site_tz`."""
    if not given:
        return Timeline(WIDTH, TOP + BOTTOM, LEFT, (), (), (), "No administrations.")
    named = [replace(g, site=g.site.strip() or NO_SITE) for g in given]
    spans = _concurrent([_span(g, site_tz) for g in sorted(named, key=_order)])
    first = min(s.start for s in spans).astimezone(site_tz)
    last = max(s.end for s in spans).astimezone(site_tz)
    axis_start = first.replace(minute=0, second=0, microsecond=0)
    axis_end = last.replace(minute=0, second=0, microsecond=0)
    if axis_end < last:
        axis_end += timedelta(hours=1)
    span_minutes = max(MIN_SPAN_MINUTES, running_minutes(axis_start, axis_end))
    scale = (WIDTH - LEFT - RIGHT) / span_minutes

    def x_of(moment: datetime) -> float:
        return round(LEFT + (moment - axis_start).total_seconds() / 60 * scale, 1)

    lanes: list[Lane] = []
    items: list[Item] = []
    y = float(TOP)
    for site in dict.fromkeys(s.given.site for s in spans):
        rows = [s for s in spans if s.given.site == site]
        height = len(rows) * ROW
        lanes.append(Lane(site, y, height, len(rows)))
        for number, span in enumerate(rows):
            items.append(_item(span, x_of, y + number * ROW, scale, site_tz))
        y += height + LANE_GAP
    hours = _hours(axis_start, span_minutes, x_of, site_tz)
    return Timeline(WIDTH, y + BOTTOM, LEFT, tuple(lanes), tuple(items), hours, _summary(items))


def _order(g: Given) -> tuple[datetime, str]:
    return g.start, g.source_id


def _span(g: Given, site_tz: tzinfo) -> _Span:
    marks: list[Mark] = []
    if g.status is AdminStatus.PARTIAL:
        marks.append(Mark.STOPPED)
    if g.status is AdminStatus.IN_PROGRESS:
        marks.append(Mark.IN_PROGRESS)
    nominal = g.start + timedelta(minutes=UNKNOWN_STOP_MINUTES)
    if g.push and (g.end is None or g.end <= g.start + timedelta(minutes=15)):
        end, minutes = g.start, running_minutes(g.start, g.end) if g.end else None
        if g.end is not None and g.end < g.start:
            marks.append(Mark.IMPLAUSIBLE_STOP)
            minutes = None
    elif g.end is None:
        end, minutes = nominal, None
        marks.append(Mark.NO_STOP)
    elif g.end <= g.start or running_minutes(g.start, g.end) > MAX_PLAUSIBLE_MINUTES:
        end, minutes = nominal, None
        marks.append(Mark.IMPLAUSIBLE_STOP)
    else:
        end, minutes = g.end, running_minutes(g.start, g.end)
    if g.start.astimezone(site_tz).date() != end.astimezone(site_tz).date():
        marks.append(Mark.CROSSES_MIDNIGHT)
    return _Span(g, g.start, end, minutes, tuple(marks))


def _concurrent(spans: list[_Span]) -> list[_Span]:
    """Each span marked concurrent when its documented running time overlaps another's."""
    out = []
    for span in spans:
        overlaps = any(
            other is not span and other.start < span.end and span.start < other.end
            for other in spans
            if other.end > other.start and span.end > span.start
        )
        marks = (*span.marks, Mark.CONCURRENT) if overlaps else span.marks
        out.append(_Span(span.given, span.start, span.end, span.minutes, marks))
    return out


def _item(span: _Span, x_of: _XOf, y: float, scale: float, site_tz: tzinfo) -> Item:
    g = span.given
    shape = Shape.TICK if span.end == span.start else Shape.BAR
    x = x_of(span.start)
    width = (
        0.0
        if shape is Shape.TICK
        else max(2.0, round((span.end - span.start).total_seconds() / 60 * scale, 1))
    )
    label = f"{g.drug} → {', '.join(g.codes)}" if g.codes else f"{g.drug} → no code"
    shown = len(label) + sum(len(m.value) + 2 for m in span.marks) + 3
    label_end = x + 8 + shown * CHAR_WIDTH > WIDTH - RIGHT and x - 8 - shown * CHAR_WIDTH > 0
    end_text = _clock(g.end, site_tz) if g.end is not None else ""
    return Item(
        source_id=g.source_id,
        shape=shape,
        x=x,
        width=width,
        y=y + 4,
        height=ROW - 8,
        label=label,
        marks=span.marks,
        label_x=_label_x(x, width, shape, span.marks, label_end),
        label_end=label_end,
        start_text=_clock(g.start, site_tz),
        end_text=end_text,
        minutes=span.minutes,
        lane=g.site,
    )


def _label_x(x: float, width: float, shape: Shape, marks: tuple[Mark, ...], end: bool) -> float:
    """Before the start when it ends there; after the "?" of an open bar; else inside."""
    if end:
        return round(x - 6, 1)
    if Mark.NO_STOP in marks or Mark.IMPLAUSIBLE_STOP in marks:
        return round(x + width + 16, 1)
    return round(x + (4 if shape is Shape.BAR else 8), 1)


def _clock(moment: datetime, site_tz: tzinfo) -> str:
    return moment.astimezone(site_tz).strftime("%b %d %H:%M")


def _hours(
    axis_start: datetime, span_minutes: int, x_of: _XOf, site_tz: tzinfo
) -> tuple[HourTick, ...]:
    """One tick per hour (every second or third hour on a long day), midnights always."""
    hours = span_minutes // 60
    step = 1 if hours <= 12 else 2 if hours <= 24 else 3
    ticks = []
    for n in range(hours + 1):
        moment = (axis_start + timedelta(hours=n)).astimezone(site_tz)
        midnight = moment.hour == 0
        if midnight:
            ticks.append(HourTick(x_of(moment), moment.strftime("%b %d"), True))
        elif n % step == 0:
            ticks.append(HourTick(x_of(moment), moment.strftime("%H:%M"), False))
    return tuple(ticks)


def _summary(items: Sequence[Item]) -> str:
    bars = sum(1 for i in items if i.shape is Shape.BAR)
    ticks = len(items) - bars
    marked = [i for i in items if i.marks]
    head = f"{bars} infusion{'s' if bars != 1 else ''} and {ticks} push{'es' if ticks != 1 else ''}"
    lanes = len(dict.fromkeys(i.lane for i in items))
    head += f" on {lanes} IV site{'s' if lanes != 1 else ''}."
    if not marked:
        return head
    return (
        head
        + " Marked: "
        + "; ".join(f"{i.label} ({', '.join(m.value for m in i.marks)})" for i in marked)
        + "."
    )
