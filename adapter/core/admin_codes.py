"""Drug-administration CPT codes: the initial / sequential / concurrent hierarchy.

One initial service per encounter and vascular access (R13, R16), chosen by
the facility hierarchy whatever the clock order (R14, D3): chemotherapy over
therapeutic over hydration, infusion over push. Everything else is an add-on:
sequential infusions (R19), concurrent 96368 once (R25, D6), pushes (R23,
R24), hydration only for time not concurrent with a drug (R21, R25).
Injections (R28) and pumps (R26, R27) stand outside the hierarchy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from decimal import Decimal

from adapter.core.catalog import DrugClass
from adapter.core.charges import ChargeLine, LineKind
from adapter.core.classify import Classified, Kind
from adapter.core.holds import Hold, HoldReason
from adapter.core.infusion_time import (
    Interval,
    additional_hours,
    hydration_reportable,
    local_date,
    overlap_minutes,
    subsequent_hydration_units,
    subtract,
    total_minutes,
    unit_dates,
)
from adapter.core.mappings import Setting
from adapter.core.options import CodingOptions, MidnightDating

REPEAT_PUSH_MINUTES = 30  # R24: 96376 only for the same drug pushed more than 30 minutes later


@dataclass(frozen=True, slots=True)
class AdminCoding:
    """Administration lines, the holds found while coding them, and the billable fluids."""

    lines: tuple[ChargeLine, ...]
    holds: tuple[Hold, ...]
    reported_hydration: frozenset[str]  # source ids whose fluid bag may be billed (R38)


@dataclass
class _Group:
    """One vascular access: its own initial service (R16), its own add-on bookkeeping."""

    items: list[Classified]
    modifiers: tuple[str, ...] = ()
    lines: list[ChargeLine] = field(default_factory=list)


@dataclass
class _Encounter:
    """Encounter-wide state: 96368 is once per encounter (R25), whatever the access."""

    setting: str
    options: CodingOptions
    site_tz: tzinfo
    concurrent_billed: bool = False
    holds: list[Hold] = field(default_factory=list)
    reported_hydration: set[str] = field(default_factory=set)


def code_administrations(
    items: Sequence[Classified], setting: str, options: CodingOptions, site_tz: tzinfo
) -> AdminCoding:
    """CPT lines for the administrations of one encounter."""
    state = _Encounter(setting, options, site_tz)
    iv = [c for c in items if c.kind in _IV_KINDS and c.interval is not None]
    lines: list[ChargeLine] = []
    for group in _access_groups(iv, state):
        lines.extend(_code_group(group, state))
    for c in items:
        lines.extend(_outside_hierarchy(c, state))
    return AdminCoding(merge_lines(lines), tuple(state.holds), frozenset(state.reported_hydration))


_IV_KINDS = (Kind.INFUSION, Kind.PUSH, Kind.HYDRATION)


def _access_groups(iv: list[Classified], state: _Encounter) -> list[_Group]:
    """Split by documented access site only when infusions at different sites overlap (D10a)."""
    timed = [c for c in iv if c.kind is not Kind.PUSH]
    crossing = [
        (a, b)
        for i, a in enumerate(timed)
        for b in timed[i + 1 :]
        if a.admin.access_site
        and b.admin.access_site
        and a.admin.access_site != b.admin.access_site
        and _overlaps(a, b)
    ]
    if not crossing:
        return [_Group(iv)] if iv else []
    for a, b in crossing:
        detail = (
            f"infusions at access sites '{a.admin.access_site}' and '{b.admin.access_site}' "
            "overlap; a second initial service needs documented medical necessity"
        )
        state.holds.append(Hold(HoldReason.SEPARATE_ACCESS_REVIEW, detail, b.admin.source_id))
    return _split_by_site(iv, state.options.second_access_modifier)


def _split_by_site(iv: list[Classified], modifier: str) -> list[_Group]:
    """Items without a documented site join the first site's group ("no site = same access")."""
    ordered = sorted(iv, key=lambda c: c.admin.start)
    sites: list[str] = []
    for c in ordered:
        if c.admin.access_site and c.admin.access_site not in sites:
            sites.append(c.admin.access_site)
    groups = {site: _Group([]) for site in sites}
    for c in ordered:
        groups[c.admin.access_site or sites[0]].items.append(c)
    result = list(groups.values())
    for g in result[1:]:
        g.modifiers = (modifier,)
    return result


def _overlaps(a: Classified, b: Classified) -> bool:
    assert a.interval and b.interval
    return overlap_minutes(a.interval, b.interval) > 0


def _code_group(group: _Group, state: _Encounter) -> list[ChargeLine]:
    initial = _choose_initial(group.items, state)
    if initial is None:
        return _hydration_lines(group, None, state)
    lines = _initial_lines(initial, group, state)
    primaries = [initial] if initial.kind is Kind.INFUSION else []
    others = [c for c in group.items if c is not initial]
    infusions = sorted(
        (c for c in others if c.kind is Kind.INFUSION),
        key=lambda c: (-c.rank[0], c.admin.start),
    )
    for c in infusions:
        lines.extend(_infusion_addon(c, primaries, group, state))
    lines.extend(_push_lines(initial, [c for c in others if c.kind is Kind.PUSH], group, state))
    lines.extend(_hydration_lines(group, initial, state))
    return lines


def _choose_initial(items: list[Classified], state: _Encounter) -> Classified | None:
    """R14: highest class, then infusion over push; clock order only breaks ties."""
    candidates = [
        c
        for c in items
        if c.kind is not Kind.HYDRATION or hydration_reportable(_hydration_minutes(c, items))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c.rank, -c.admin.start.timestamp(), c.minutes))


def _line(
    c: Classified | Sequence[Classified],
    code: str,
    units: int,
    day: date,
    rules: Iterable[str],
    modifiers: tuple[str, ...] = (),
) -> ChargeLine:
    sources = (c,) if isinstance(c, Classified) else tuple(c)
    trace = tuple(dict.fromkeys([*rules, *(r for s in sources for r in s.rules)]))
    return ChargeLine(
        kind=LineKind.ADMINISTRATION,
        code=code,
        units=units,
        service_date=day,
        rules=trace,
        sources=tuple(s.admin.source_id for s in sources),
        modifiers=modifiers,
    )


def _start_date(c: Classified, state: _Encounter) -> date:
    return local_date(c.admin.start, state.site_tz)


def _initial_lines(c: Classified, group: _Group, state: _Encounter) -> list[ChargeLine]:
    mods = group.modifiers
    rules = ("R13", "R14", "D3") + (("R16", "D10a") if mods else ())
    day = _start_date(c, state)
    if c.kind is Kind.HYDRATION:
        segments = _hydration_segments(c, group.items)
        state.reported_hydration.add(c.admin.source_id)
        head = _line(c, "96360", 1, day, (*rules, "R20"), mods)
        return [head, *_addon_hours(c, "96361", segments, 1, ("R20", "D9"), state, mods)]
    if c.kind is Kind.PUSH:
        code = "96409" if c.is_complex else "96374"
        return [_line(c, code, 1, day, (*rules, "R23" if c.is_complex else "R24"), mods)]
    code, addon = ("96413", "96415") if c.is_complex else ("96365", "96366")
    assert c.interval
    head = _line(c, code, 1, day, (*rules, "R18"), mods)
    return [head, *_addon_hours(c, addon, (c.interval,), 1, ("R18", "D9"), state, mods)]


def _addon_hours(
    c: Classified,
    code: str,
    segments: tuple[Interval, ...],
    first_block: int,
    rules: tuple[str, ...],
    state: _Encounter,
    modifiers: tuple[str, ...] = (),
) -> list[ChargeLine]:
    """Add-on hour units (R18 ADD), each dated by the block it begins in (D9)."""
    minutes = total_minutes(segments)
    units = additional_hours(minutes) if first_block else subsequent_hydration_units(minutes)
    if units <= 0:
        return []
    dates = unit_dates(segments, first_block, units, state.site_tz)
    if state.options.midnight_dating is MidnightDating.START_DATE:
        dates = tuple(_start_date(c, state) for _ in dates)
    return [_line(c, code, 1, d, rules, modifiers) for d in dates]


def _infusion_addon(
    c: Classified, primaries: list[Classified], group: _Group, state: _Encounter
) -> list[ChargeLine]:
    """Sequential (R19) or concurrent (R25, D6): decided by overlap with the running primaries."""
    assert c.interval
    minimum = state.options.concurrent_overlap_minutes
    overlapping = [
        p for p in primaries if p.interval and overlap_minutes(p.interval, c.interval) >= minimum
    ]
    if overlapping and c.is_complex and any(p.is_complex for p in overlapping):
        detail = "two chemotherapy/immunotherapy infusions ran concurrently; CPT has no code for it"
        state.holds.append(Hold(HoldReason.CONCURRENT_CHEMOTHERAPY, detail, c.admin.source_id))
        return _sequential(c, primaries, group, state, extra=("D7",))
    if overlapping and not c.is_complex:
        return _concurrent(c, group, state)
    return _sequential(c, primaries, group, state)


def _sequential(
    c: Classified,
    primaries: list[Classified],
    group: _Group,
    state: _Encounter,
    extra: tuple[str, ...] = (),
) -> list[ChargeLine]:
    assert c.interval
    primaries.append(c)
    code, addon = ("96417", "96415") if c.is_complex else ("96367", "96366")
    head = _line(c, code, 1, _start_date(c, state), ("R13", "R19", *extra), group.modifiers)
    hours = _addon_hours(c, addon, (c.interval,), 1, ("R19", "D9"), state, group.modifiers)
    return [head, *hours]


def _concurrent(c: Classified, group: _Group, state: _Encounter) -> list[ChargeLine]:
    """96368 once per encounter however many concurrent infusions (R25)."""
    if state.concurrent_billed:
        return []
    state.concurrent_billed = True
    day = _start_date(c, state)
    return [_line(c, "96368", 1, day, ("R25", "D6"), group.modifiers)]


def _push_lines(
    initial: Classified, pushes: list[Classified], group: _Group, state: _Encounter
) -> list[ChargeLine]:
    """R23 (chemo pushes: 96411 per new substance) and R24 (96375 new drug, 96376 repeat)."""
    lines: list[ChargeLine] = []
    last_push: dict[str, Classified] = {}
    if initial.kind is Kind.PUSH:
        last_push[initial.substance] = initial
    for c in sorted(pushes, key=lambda p: p.admin.start):
        line = _one_push(c, last_push.get(c.substance), group, state)
        if line is not None:
            lines.append(line)
            last_push[c.substance] = c
    return lines


def _one_push(
    c: Classified, previous: Classified | None, group: _Group, state: _Encounter
) -> ChargeLine | None:
    day = _start_date(c, state)
    mods = group.modifiers
    if c.is_complex:
        return None if previous else _line(c, "96411", 1, day, ("R13", "R23"), mods)
    if previous is None:
        return _line(c, "96375", 1, day, ("R13", "R24"), mods)
    gap = (c.admin.start - previous.admin.start).total_seconds() / 60
    facility = state.setting == Setting.HOSPITAL_OUTPATIENT
    if gap > REPEAT_PUSH_MINUTES and facility:
        return _line(c, "96376", 1, day, ("R24",), mods)
    return None


def _hydration_segments(c: Classified, items: list[Classified]) -> tuple[Interval, ...]:
    """Hydration time minus every other infusion on the line (R25, NCCI B.5)."""
    assert c.interval
    segments: tuple[Interval, ...] = (c.interval,)
    for other in items:
        if other is c or other.interval is None or other.kind is Kind.PUSH:
            continue
        if other.kind is Kind.HYDRATION and other.admin.start >= c.admin.start:
            continue  # of two fluids, the earlier keeps the shared time
        segments = subtract(segments, other.interval)
    return segments


def _hydration_minutes(c: Classified, items: list[Classified]) -> int:
    return total_minutes(_hydration_segments(c, items))


def _hydration_lines(
    group: _Group, initial: Classified | None, state: _Encounter
) -> list[ChargeLine]:
    """96361 for each indicated fluid after another initial service (R21)."""
    lines: list[ChargeLine] = []
    for c in group.items:
        if c.kind is not Kind.HYDRATION or c is initial:
            continue
        segments = _hydration_segments(c, group.items)
        added = _addon_hours(c, "96361", segments, 0, ("R21", "R25", "D9"), state, group.modifiers)
        if initial is None:
            added = []  # no reportable initial service at all: 30 minutes or less (R20)
        if added:
            state.reported_hydration.add(c.admin.source_id)
        lines.extend(added)
    return lines


def _outside_hierarchy(c: Classified, state: _Encounter) -> list[ChargeLine]:
    """Injections (R28) and pumps (R26, R27): not initial, sequential or concurrent."""
    day = _start_date(c, state)
    if c.kind is Kind.INJECTION:
        if c.drug_class is DrugClass.HORMONAL:
            return [_line(c, "96402", 1, day, ("R28",))]
        code = "96401" if c.is_complex else "96372"
        return [_line(c, code, 1, day, ("R28",))]
    if c.kind is Kind.PUMP:
        office = state.setting == Setting.OFFICE
        if office and state.options.pump_code_g0498:
            return [_line(c, "G0498", 1, day, ("R27",))]
        return [_line(c, "96416", 1, day, ("R26",))]
    return []


def merge_lines(lines: Iterable[ChargeLine]) -> tuple[ChargeLine, ...]:
    """One line per code, modifiers and date: units add up, traces and sources are unioned."""
    merged: dict[tuple[str, str, tuple[str, ...], date], ChargeLine] = {}
    for line in lines:
        key = (line.kind.value, line.code, line.modifiers, line.service_date)
        old = merged.get(key)
        if old is None:
            merged[key] = line
            continue
        merged[key] = ChargeLine(
            kind=old.kind,
            code=old.code,
            units=old.units + line.units,
            service_date=old.service_date,
            rules=tuple(dict.fromkeys(old.rules + line.rules)),
            sources=tuple(dict.fromkeys(old.sources + line.sources)),
            modifiers=old.modifiers,
            ndc=old.ndc,
            drug_amount=_add(old.drug_amount, line.drug_amount),
            drug_unit=old.drug_unit,
        )
    return tuple(merged.values())


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None or b is None:
        return a if b is None else b
    return a + b
