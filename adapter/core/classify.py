"""Classify each administration: what kind of service it was, for how long, and what blocks it.

This is where a documented event becomes a codable fact: an infusion of 15
minutes or less is a push (R9, D4), a fluid without an indication is a carrier
(D12), a chemotherapy pump is 96416 (D13), a missing stop time is computed from
rate and volume or held (D5), impossible times are held (D10). The hierarchy
and the code choice come later (admin_codes); this module only looks at one
administration at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from adapter.core.catalog import Catalog, DrugClass, DrugMatch
from adapter.core.holds import Hold, HoldReason
from adapter.core.infusion_time import Interval, is_push_by_time, running_minutes
from adapter.core.model import (
    Administration,
    AdminStatus,
    Ingredient,
    IngredientRole,
    Method,
    Quantity,
    Route,
)
from adapter.core.options import CodingOptions
from adapter.core.units import convert

PUMP_MIN_MINUTES = 8 * 60  # R26: prolonged infusion "more than 8 hours"


class Kind(StrEnum):
    INFUSION = "infusion"
    PUSH = "push"
    HYDRATION = "hydration"  # indicated fluid (D12)
    CARRIER = "carrier"  # fluid without indication: never billed (R7, D12)
    INJECTION = "injection"  # SC / IM (R28)
    PUMP = "pump"  # 96416 / G0498 (R26, R27, D13)
    UNCODED = "uncoded"  # no administration code (oral, unknown route, unknown drug...)


CLASS_RANK = {
    DrugClass.CHEMOTHERAPY: 3,
    DrugClass.IMMUNOTHERAPY: 3,
    DrugClass.HORMONAL: 3,
    DrugClass.THERAPEUTIC: 2,
    DrugClass.HYDRATION: 1,
}


@dataclass(frozen=True, slots=True)
class Resolved:
    """An ingredient and its catalog hit (None: unknown drug)."""

    ingredient: Ingredient
    match: DrugMatch | None


@dataclass(frozen=True, slots=True)
class Classified:
    """One administration, classified. `interval` is None when its time cannot be coded."""

    admin: Administration
    kind: Kind
    drug_class: DrugClass | None
    substance: str  # what "the same drug" means for R23/R24: HCPCS of the main ingredient
    interval: Interval | None
    ingredients: tuple[Resolved, ...]
    holds: tuple[Hold, ...]
    rules: tuple[str, ...]

    @property
    def minutes(self) -> int:
        return self.interval.minutes if self.interval else 0

    @property
    def rank(self) -> tuple[int, int]:
        """R14 hierarchy: class first, then infusion over push."""
        class_rank = CLASS_RANK[self.drug_class] if self.drug_class else 0
        return class_rank, 2 if self.kind in (Kind.INFUSION, Kind.HYDRATION) else 1

    @property
    def is_complex(self) -> bool:
        return self.drug_class is not None and self.drug_class.is_complex


def classify(admin: Administration, catalog: Catalog, options: CodingOptions) -> Classified:
    """Classify one administration that was (at least partly) given."""
    resolved = tuple(Resolved(i, catalog.match(i.codes)) for i in admin.ingredients)
    holds = list(_status_holds(admin)) + list(_unknown_drug_holds(admin, resolved, catalog))
    actives = [r for r in resolved if r.ingredient.role is IngredientRole.ACTIVE and r.match]
    drug_class = _main_class(actives)
    substance = _substance(actives, admin)
    base = Classified(admin, Kind.UNCODED, drug_class, substance, None, resolved, (), ())
    if drug_class is None:
        return _with(base, holds=holds, rules=("D14",) if holds else ())
    if drug_class is DrugClass.HYDRATION:
        return _fluid(base, holds, options)
    return _drug(base, holds, options)


def _with(
    c: Classified,
    *,
    kind: Kind | None = None,
    interval: Interval | None = None,
    holds: list[Hold] | tuple[Hold, ...] = (),
    rules: tuple[str, ...] = (),
) -> Classified:
    return Classified(
        c.admin,
        kind or c.kind,
        c.drug_class,
        c.substance,
        interval,
        c.ingredients,
        tuple(holds),
        rules,
    )


def _status_holds(admin: Administration) -> list[Hold]:
    if admin.status is AdminStatus.PARTIAL:
        detail = "administration documented as stopped early / partially given"
        return [Hold(HoldReason.INFUSION_STOPPED_EARLY, detail, admin.source_id)]
    if admin.status is AdminStatus.IN_PROGRESS:
        detail = "administration still in progress when the encounter closed"
        return [Hold(HoldReason.ADMINISTRATION_IN_PROGRESS, detail, admin.source_id)]
    return []


def _unknown_drug_holds(
    admin: Administration, resolved: tuple[Resolved, ...], catalog: Catalog
) -> list[Hold]:
    holds = []
    for r in resolved:
        if r.match is None and r.ingredient.role is IngredientRole.ACTIVE:
            detail = _unknown_drug_detail(r.ingredient, catalog)
            codes = r.ingredient.codes
            holds.append(Hold(HoldReason.UNKNOWN_DRUG, detail, admin.source_id, codes))
    return holds


def _unknown_drug_detail(ingredient: Ingredient, catalog: Catalog) -> str:
    """No catalog entry, or an RxNorm ingredient billed under several codes: say which.

    The fix named is one the overlay can express: a `drug_catalog_local.csv` row whose
    local_code is the code the feed sent and whose target is an NDC or HCPCS.
    """
    codes = ingredient.codes
    for code in codes:
        ambiguity = catalog.ambiguity(code)
        if ambiguity is not None:
            return (
                f"RxNorm {code.code} is ambiguous: {ambiguity.rows} catalog rows under "
                f"{', '.join(ambiguity.hcpcs)}; name the NDC given, or add a row to "
                f"mappings/drug_catalog_local.csv with local_code {code.code} and the "
                "NDC or HCPCS it stands for at this site"
            )
    if not codes:
        return "the drug was sent as text only, with no code; document its NDC, RxNorm or HCPCS"
    named = ", ".join(f"{c.code} ({c.system})" for c in codes)
    return (
        f"no catalog entry for {named}; add a row to mappings/drug_catalog_local.csv with "
        f"local_code {codes[0].code} and the NDC or HCPCS it stands for"
    )


def _main_class(actives: list[Resolved]) -> DrugClass | None:
    """A premixed bag is coded by its highest-ranking drug (R8, R14)."""
    classes = [r.match.drug.drug_class for r in actives if r.match]
    if not classes:
        return None
    return max(classes, key=lambda c: CLASS_RANK[c])


def _substance(actives: list[Resolved], admin: Administration) -> str:
    hcpcs = sorted({r.match.drug.hcpcs for r in actives if r.match})
    return "+".join(hcpcs) or admin.source_id


def _fluid(c: Classified, holds: list[Hold], options: CodingOptions) -> Classified:
    """A bag of fluid is hydration only with an indication (D12); otherwise a carrier."""
    if not c.admin.indications:
        return _with(c, kind=Kind.CARRIER, holds=holds, rules=("R7", "D12"))
    if (unmapped := _unmapped_route(c.admin)) is not None:
        return _with(c, kind=Kind.UNCODED, holds=[*holds, unmapped], rules=())
    if c.admin.route not in (Route.IV, Route.UNKNOWN):  # no route at all: a bag runs IV
        return _with(c, kind=Kind.UNCODED, holds=holds, rules=("R7",))
    interval, time_holds, time_rules = _running_interval(c.admin, options)
    return _with(
        c,
        kind=Kind.HYDRATION,
        interval=interval,
        holds=holds + time_holds,
        rules=("R7", "D12", *time_rules),
    )


def _drug(c: Classified, holds: list[Hold], options: CodingOptions) -> Classified:
    admin = c.admin
    if admin.route in (Route.SC, Route.IM):
        return _with(c, kind=Kind.INJECTION, holds=holds, rules=("R28",))
    if admin.route is Route.ORAL:
        return _with(c, kind=Kind.UNCODED, holds=holds, rules=())
    if (unmapped := _unmapped_route(admin)) is not None:
        return _with(c, kind=Kind.UNCODED, holds=[*holds, unmapped], rules=())
    if admin.route is not Route.IV and admin.method is Method.UNSPECIFIED:
        hold = Hold(HoldReason.UNKNOWN_ROUTE, _route_detail(admin), admin.source_id)
        return _with(c, kind=Kind.UNCODED, holds=[*holds, hold], rules=())
    if _is_pump(c, admin):
        return _with(c, kind=Kind.PUMP, holds=holds, rules=("R26", "D13"))
    if admin.method is Method.PUSH:
        return _with(
            c,
            kind=Kind.PUSH,
            interval=Interval(admin.start, admin.start),
            holds=holds,
            rules=("R9", "D4"),
        )
    interval, time_holds, time_rules = _running_interval(admin, options)
    if interval is None:
        return _with(c, kind=Kind.INFUSION, holds=holds + time_holds, rules=time_rules)
    if is_push_by_time(interval.minutes):
        return _with(
            c, kind=Kind.PUSH, interval=interval, holds=holds, rules=("R9", "D4", *time_rules)
        )
    return _with(c, kind=Kind.INFUSION, interval=interval, holds=holds, rules=time_rules)


def _unmapped_route(admin: Administration) -> Hold | None:
    """A route the feed sent that the route table does not know: held naming it, whatever
    the method says (a method does not tell what the unknown route meant)."""
    if admin.route is not Route.UNKNOWN or not admin.route_text:
        return None
    detail = f"route '{admin.route_text}' not in mappings/routes.csv"
    return Hold(HoldReason.UNKNOWN_ROUTE, detail, admin.source_id)


def _route_detail(admin: Administration) -> str:
    """Why a drug without an IV route and without a method cannot be coded."""
    if admin.route is Route.UNKNOWN:
        return "no route documented and no method (push or infusion)"
    sent = f"'{admin.route_text}' " if admin.route_text else ""
    return (
        f"route {sent}reads as '{admin.route.value}' in mappings/routes.csv, which has no "
        "administration code"
    )


def _is_pump(c: Classified, admin: Administration) -> bool:
    """D13: a chemotherapy infusion by pump, or ordered to run more than 8 hours."""
    if not c.is_complex:
        return False
    long_order = (admin.expected_minutes or 0) > PUMP_MIN_MINUTES
    return admin.method is Method.PUMP or long_order


def _running_interval(
    admin: Administration, options: CodingOptions
) -> tuple[Interval | None, list[Hold], tuple[str, ...]]:
    """Start to stop; a missing stop is computed from volume ÷ rate (D5) or held."""
    end = admin.end
    rules: tuple[str, ...] = ("R10",)
    if end is None:
        end = _computed_end(admin)
        if end is None:
            detail = _missing_stop_detail(admin)
            return (
                None,
                [Hold(HoldReason.MISSING_STOP_TIME, detail, admin.source_id)],
                ("R32", "D5"),
            )
        rules = ("R10", "R32", "D5")
    minutes = running_minutes(admin.start, end)
    if end < admin.start or minutes > options.max_infusion_minutes:
        detail = f"stop time is before the start or the infusion runs {minutes} minutes"
        return None, [Hold(HoldReason.INVALID_TIMES, detail, admin.source_id)], ("D10",)
    return Interval(admin.start, end), [], rules


def _missing_stop_detail(admin: Administration) -> str:
    """Exactly what is missing: the stop, and which half of D5's rate and volume.

    Never just "no stop time" when a rate (or a volume) was documented: the biller
    must see which one to ask the nurse for.
    """
    stop = admin.stop_note or "no stop time documented"
    rate, volume = admin.rate, admin.volume
    if rate is None and volume is None:
        return f"{stop}; no rate and no infused volume either, so D5 cannot compute the stop"
    if volume is None:
        return f"{stop}; rate {_shown(rate)} documented but no infused volume (D5 needs both)"
    if rate is None:
        return f"{stop}; infused volume {_shown(volume)} documented but no rate (D5 needs both)"
    if rate.value <= 0:
        return f"{stop}; rate {_shown(rate)} is not positive, so D5 cannot compute the stop"
    if rate.unit not in ("mL/h", "mL/min"):
        return f"{stop}; rate {_shown(rate)} is not a volume per time (mL/h), so D5 cannot use it"
    return f"{stop}; infused volume {_shown(volume)} is not a volume, so D5 cannot use it"


def _shown(quantity: Quantity | None) -> str:
    if quantity is None:
        return ""
    return f"{quantity.value.normalize():f} {quantity.unit}"


def _computed_end(admin: Administration) -> datetime | None:
    """Stop = start + infused volume ÷ rate, both documented by nursing (R32, D5)."""
    if admin.rate is None or admin.volume is None or admin.rate.value <= 0:
        return None
    volume = convert(admin.volume, "mL")
    if volume is None or admin.rate.unit not in ("mL/h", "mL/min"):
        return None
    per_minute = admin.rate.value / (Decimal(60) if admin.rate.unit == "mL/h" else Decimal(1))
    minutes = volume / per_minute
    return admin.start + timedelta(minutes=float(minutes))
