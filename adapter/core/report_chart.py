"""The layout of a report's bar chart: values in, positioned shapes out (the page draws the SVG).

Why here and pure: where each bar, tick and label goes is arithmetic worth testing (a bar's
height is its value on the axis, stacked bars add up to the total, labels do not overlap),
and the template that writes the `<svg>` then only places what it is given. The chart is a
picture of the table below it, never the only place a number is: the table and the CSV carry
every value, the chart carries a title and a summary for a screen reader.

Colours: the Okabe-Ito palette (told apart with the common colour-vision deficiencies);
each bar also has a tooltip title with its category, series and value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#737373")
MIN_PEAK = 1e-6  # a peak below this draws an empty axis (a count, an hour or a dollar is far above)
TEXT_WIDTH = 7.0  # px per character at the chart's 12 px label size (a generous average)


class Unit(StrEnum):
    """What the values count, for the axis ticks and the tooltips."""

    COUNT = "count"
    HOURS = "hours"
    DOLLARS = "dollars"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[float, ...]  # one per category


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str  # "<category>, <series>: <value>"


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor: start | middle | end


@dataclass(frozen=True, slots=True)
class Rule:
    """A grid line (or the axis itself)."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Swatch:
    x: float
    y: float
    fill: str
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    title: str
    summary: str  # for screen readers: what the chart shows, and that the table has the values
    bars: tuple[Bar, ...]
    texts: tuple[Text, ...]
    rules: tuple[Rule, ...]
    legend: tuple[Swatch, ...]
    axis_max: float


def fmt(value: float, unit: Unit, tick: bool = False) -> str:
    """A value as the axis or a tooltip says it."""
    if unit is Unit.HOURS:
        return f"{value:g} h" if tick else f"{value:.1f} h"
    if unit is Unit.DOLLARS:
        if tick and value >= 1_000_000:
            return f"${value / 1_000_000:g}M"
        if tick and value >= 1_000:
            return f"${value / 1_000:g}k"
        return f"${value:,.0f}" if tick else f"${value:,.2f}"
    return f"{value:g}" if tick else f"{value:,.0f}"


def nice_step(top: float, ticks: int = 4) -> float:
    """A 1-2-5 step so that about `ticks` steps cover `top` (> 0)."""
    raw = top / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _axis(top: float, unit: Unit) -> tuple[float, float]:
    """(axis maximum, step): at least one step; counts step by whole numbers."""
    if top < MIN_PEAK:  # nothing to draw (or a float too small for a readable axis)
        empty = 1.0 if unit is Unit.COUNT else 10.0
        return empty, empty
    step = nice_step(top)
    if unit is Unit.COUNT:
        step = float(max(1, math.ceil(step)))
    return step * math.ceil(top / step - 1e-9), step


def _r(v: float) -> float:
    return round(v, 1)


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    unit: Unit,
    *,
    stacked: bool,
    width: int = 900,
    height: int = 340,
) -> Chart:
    """Vertical bars, one group (or stack) per category, one colour per series.

    Negative values are drawn as no bar (the table shows them); the axis starts at 0.
    """
    for s in series:
        if len(s.values) != len(categories):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(categories)}")
    left, right, top, bottom = 72.0, 16.0, 40.0, 48.0
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(categories)
    values = [[max(0.0, v) for v in s.values] for s in series]
    heights = [sum(col) for col in zip(*values, strict=True)] if stacked and values else []
    peak = max(heights if stacked else [v for vs in values for v in vs], default=0.0)
    axis_max, step = _axis(peak, unit)

    def y(v: float) -> float:
        return top + plot_h - v / axis_max * plot_h

    bars: list[Bar] = []
    band = plot_w / n if n else plot_w
    group = band * 0.7
    for i, category in enumerate(categories):
        x0 = left + i * band + (band - group) / 2
        base = 0.0
        for j, s in enumerate(series):
            v = values[j][i]
            fill = PALETTE[j % len(PALETTE)]
            tip = f"{category}, {s.name}: {fmt(s.values[i], unit)}"
            if stacked:
                bars.append(
                    Bar(_r(x0), _r(y(base + v)), _r(group), _r(y(base) - y(base + v)), fill, tip)
                )
                base += v
            else:
                w = group / len(series)
                x = _r(x0 + j * w)
                bars.append(Bar(x, _r(y(v)), _r(w), _r(y(0) - y(v)), fill, tip))
    texts, rules = _y_axis(left, width - right, y, axis_max, step, unit)
    every = max(
        1, math.ceil(n * (max((len(c) for c in categories), default=1) * TEXT_WIDTH + 8) / plot_w)
    )
    texts += [
        Text(_r(left + (i + 0.5) * band), height - bottom + 18, c)
        for i, c in enumerate(categories)
        if i % every == 0
    ]
    if not n:
        texts.append(Text(left + plot_w / 2, top + plot_h / 2, "No data for these filters"))
    rules.append(Rule(left, _r(y(0)), width - right, _r(y(0))))
    return Chart(
        width,
        height,
        title,
        _summary(title, categories, series, stacked),
        tuple(bars),
        tuple(texts),
        tuple(rules),
        _legend(series, left, 8.0),
        axis_max,
    )


def hbar_chart(
    title: str, categories: Sequence[str], values: Sequence[float], unit: Unit, width: int = 900
) -> Chart:
    """Horizontal bars (long labels such as drug codes), the first category on top."""
    if len(values) != len(categories):
        raise ValueError(f"{len(values)} values for {len(categories)} categories")
    label_w = max((len(c) for c in categories), default=8) * TEXT_WIDTH + 16
    left, right, top, row = max(96.0, label_w), 24.0, 16.0, 24.0
    height = int(top + max(1, len(categories)) * row + 40)
    plot_w = width - left - right
    axis_max, step = _axis(max(values, default=0.0), unit)
    bars, texts = [], []
    for i, (c, v) in enumerate(zip(categories, values, strict=True)):
        y = top + i * row
        bar_w = max(0.0, v) / axis_max * plot_w
        bars.append(Bar(left, _r(y + 4), _r(bar_w), row - 8, PALETTE[0], f"{c}: {fmt(v, unit)}"))
        texts.append(Text(left - 8, _r(y + row / 2 + 4), c, "end"))
    if not categories:
        texts.append(Text(left + plot_w / 2, top + row / 2 + 4, "No data for these filters"))
    rules = []
    for k in range(_steps(axis_max, step) + 1):
        x = _r(left + k * step / axis_max * plot_w)
        rules.append(Rule(x, top, x, height - 32))
        texts.append(Text(x, height - 14, fmt(k * step, unit, tick=True)))
    series = (Series(title, tuple(values)),)
    return Chart(
        width,
        height,
        title,
        _summary(title, categories, series, False),
        tuple(bars),
        tuple(texts),
        tuple(rules),
        (),
        axis_max,
    )


def _y_axis(
    left: float, right: float, y: Callable[[float], float], axis_max: float, step: float, unit: Unit
) -> tuple[list[Text], list[Rule]]:
    texts, rules = [], []
    for k in range(_steps(axis_max, step) + 1):
        v = k * step
        yy = _r(y(v))
        rules.append(Rule(left, yy, right, yy))
        texts.append(Text(left - 8, yy + 4, fmt(v, unit, tick=True), "end"))
    return texts, rules


def _steps(axis_max: float, step: float) -> int:
    """How many steps the axis has (bounded: the axis is a whole number of steps)."""
    return min(20, round(axis_max / step))


def _legend(series: Sequence[Series], left: float, top: float) -> tuple[Swatch, ...]:
    if len(series) < 2:
        return ()
    out, x = [], left
    for j, s in enumerate(series):
        out.append(Swatch(_r(x), top, PALETTE[j % len(PALETTE)], s.name))
        x += 24 + len(s.name) * TEXT_WIDTH + 16
    return tuple(out)


def _summary(title: str, categories: Sequence[str], series: Sequence[Series], stacked: bool) -> str:
    if not categories:
        return f"{title}: no data for these filters."
    shape = "stacked" if stacked and len(series) > 1 else "bars"
    names = ", ".join(s.name for s in series)
    return (
        f"{title}: {shape} for {len(categories)} categories, from {categories[0]} to "
        f"{categories[-1]} ({names}). The table below has every value."
    )


def number(value: Decimal | int | None) -> float:
    """A table cell as a chart value (an empty cell draws no bar)."""
    return 0.0 if value is None else float(value)
