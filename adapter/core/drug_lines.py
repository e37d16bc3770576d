"""HCPCS drug lines: billing units and the JW/JZ waste modifiers.

Units are the day's total per HCPCS divided by the billing unit, rounded up
(R34, D16). Waste follows "round the dose up, round the waste down" (R36):
JW units = floor(opened ÷ unit) − administered units, on its own line when at
least one; otherwise JZ on the administered line (R37). Only single-dose
containers of separately payable drugs take either modifier (R35, D17, D18).
IV fluid bags bill by bag (D18a), and only for reportable hydration (R38).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from decimal import Decimal
from itertools import combinations_with_replacement

from adapter.core.catalog import Catalog, Container, Drug, DrugClass, Product
from adapter.core.charges import ChargeLine, LineKind
from adapter.core.classify import Classified, Kind, Resolved
from adapter.core.holds import Hold, HoldReason
from adapter.core.mappings import Setting
from adapter.core.model import IngredientRole
from adapter.core.units import ceil_div, convert, floor_div

PACKAGED = "N"  # OPPS status indicator: payment packaged, no JW/JZ (R35, D18)
MAX_VIALS = 12  # least-waste search depth; more vials than this is not a realistic dose
FLUID_BAGS = (("J7050", Decimal(250)), ("J7040", Decimal(500)), ("J7030", Decimal(1000)))


@dataclass(frozen=True, slots=True)
class DrugCoding:
    lines: tuple[ChargeLine, ...]
    holds: tuple[Hold, ...]
    classes_given: frozenset[DrugClass]


@dataclass
class _Dose:
    """Everything given under one HCPCS on one service date."""

    drug: Drug
    day: date
    amount: Decimal = Decimal(0)
    wasted: Decimal | None = None
    products: list[Product] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def code_drugs(
    items: Sequence[Classified],
    reported_hydration: frozenset[str],
    catalog: Catalog,
    opps_status: Mapping[str, str],
    setting: str,
    site_tz: tzinfo,
) -> DrugCoding:
    """Drug and fluid lines for one encounter."""
    holds: list[Hold] = []
    doses: dict[tuple[str, date], _Dose] = {}
    lines: list[ChargeLine] = []
    classes: set[DrugClass] = set()
    for c in items:
        day = c.admin.start.astimezone(site_tz).date()
        if c.kind is Kind.HYDRATION:
            if c.admin.source_id in reported_hydration:
                lines.extend(_fluid_lines(c, catalog, opps_status, setting, day, holds))
            continue
        if c.kind is Kind.CARRIER:
            continue
        for r in _billable_ingredients(c):
            classes.add(r.match.drug.drug_class)  # type: ignore[union-attr]
            _add_dose(doses, c, r, day, holds)
    for dose in doses.values():
        lines.extend(_dose_lines(dose, catalog, opps_status, setting, holds))
    return DrugCoding(tuple(lines), tuple(holds), frozenset(classes))


def _billable_ingredients(c: Classified) -> Iterable[Resolved]:
    """Active, catalogued, non-fluid ingredients: carrier fluid in a drug bag is never billed."""
    for r in c.ingredients:
        if r.ingredient.role is not IngredientRole.ACTIVE or r.match is None:
            continue
        if r.match.drug.drug_class is DrugClass.HYDRATION:
            continue
        yield r


def _add_dose(
    doses: dict[tuple[str, date], _Dose],
    c: Classified,
    r: Resolved,
    day: date,
    holds: list[Hold],
) -> None:
    assert r.match
    drug = r.match.drug
    amount = convert(r.ingredient.amount, drug.unit) if r.ingredient.amount else None
    if amount is None:
        given = r.ingredient.amount.unit if r.ingredient.amount else "nothing"
        detail = f"{drug.hcpcs}: dose in {given} cannot be billed in {drug.unit}"
        holds.append(Hold(HoldReason.MISSING_DOSE, detail, c.admin.source_id))
        return
    dose = doses.setdefault((drug.hcpcs, day), _Dose(drug, day))
    dose.amount += amount
    dose.sources.append(c.admin.source_id)
    if r.match.product:
        dose.products.append(r.match.product)
    wasted = convert(c.admin.wasted, drug.unit) if c.admin.wasted else None
    if wasted is not None:
        dose.wasted = (dose.wasted or Decimal(0)) + wasted


def _drug_line(
    dose: _Dose,
    units: int,
    modifiers: tuple[str, ...],
    rules: tuple[str, ...],
    kind: LineKind = LineKind.DRUG,
    amount: Decimal | None = None,
) -> ChargeLine:
    return ChargeLine(
        kind=kind,
        code=dose.drug.hcpcs,
        units=units,
        service_date=dose.day,
        rules=rules,
        sources=tuple(dict.fromkeys(dose.sources)),
        modifiers=modifiers,
        ndc=dose.products[0].ndc if dose.products else "",
        drug_amount=dose.amount if amount is None else amount,
        drug_unit=dose.drug.unit,
    )


def _dose_lines(
    dose: _Dose,
    catalog: Catalog,
    opps_status: Mapping[str, str],
    setting: str,
    holds: list[Hold],
) -> list[ChargeLine]:
    unit = dose.drug.unit_amount
    units = ceil_div(dose.amount, unit)
    rules = ("R33", "R34", "D15", "D16")
    container = _container(dose, catalog)
    if not _separately_payable(dose.drug.hcpcs, opps_status, setting):
        return [_drug_line(dose, units, (), (*rules, "R35", "D18"))]
    if container in (Container.MULTIPLE_DOSE, Container.PHARMACY_BULK):
        return [_drug_line(dose, units, (), (*rules, "R35", "D18"))]
    opened = _opened_amount(dose, catalog) if container is Container.SINGLE_DOSE else None
    if opened is None:
        detail = _waste_detail(dose, container)
        holds.append(Hold(HoldReason.WASTE_UNDETERMINED, detail, dose.sources[0]))
        return [_drug_line(dose, units, (), (*rules, "D17"))]
    waste_units = floor_div(opened, unit) - units
    if waste_units >= 1:
        wasted = opened - dose.amount
        return [
            _drug_line(dose, units, (), (*rules, "R36", "D17")),
            _drug_line(dose, waste_units, ("JW",), ("R36", "D17"), LineKind.WASTE, wasted),
        ]
    return [_drug_line(dose, units, ("JZ",), (*rules, "R37", "D17"))]


def _waste_detail(dose: _Dose, container: Container) -> str:
    """What the catalog lacks to decide JW/JZ, and the overlay row that supplies it."""
    hcpcs, unit = dose.drug.hcpcs, dose.drug.unit
    if not dose.products:
        return (
            f"{hcpcs}: no NDC was documented and the catalog's NDCs for {hcpcs} do not settle "
            "the container type or size; document the NDC given"
        )
    ndc = dose.products[0].ndc
    missing = "container type" if container is Container.UNKNOWN else "package amount"
    return (
        f"{hcpcs}: {missing} of NDC {ndc} unknown; add a row to "
        f"mappings/drug_catalog_local.csv: local_code {ndc}, target {ndc}, container "
        f"single-dose or multiple-dose, package_amount in {unit} per container"
    )


def _separately_payable(hcpcs: str, opps_status: Mapping[str, str], setting: str) -> bool:
    """Office: always; hospital outpatient: unless OPPS packages the drug (SI N)."""
    if setting != Setting.HOSPITAL_OUTPATIENT:
        return True
    return opps_status.get(hcpcs, "") != PACKAGED


def _container(dose: _Dose, catalog: Catalog) -> Container:
    """The administered NDC's container; without an NDC, the HCPCS's if all its NDCs agree."""
    if dose.products:
        return dose.products[0].container
    kinds = {p.container for p in catalog.products_of(dose.drug.hcpcs)}
    return kinds.pop() if len(kinds) == 1 else Container.UNKNOWN


def _opened_amount(dose: _Dose, catalog: Catalog) -> Decimal | None:
    """Documented waste wins; else whole packages of the given NDC; else least-waste vials (D17)."""
    if dose.wasted is not None:
        return dose.amount + dose.wasted
    if dose.products and dose.products[0].package_amount:
        size = dose.products[0].package_amount
        return size * ceil_div(dose.amount, size)
    sizes = sorted(
        {
            p.package_amount
            for p in catalog.products_of(dose.drug.hcpcs)
            if p.package_amount and p.container is Container.SINGLE_DOSE
        }
    )
    return least_waste(dose.amount, tuple(sizes)) if sizes else None


def least_waste(amount: Decimal, sizes: tuple[Decimal, ...]) -> Decimal | None:
    """Smallest total of vial sizes covering the dose; fewer vials break ties."""
    best: tuple[Decimal, int] | None = None
    most = min(MAX_VIALS, ceil_div(amount, max(sizes)) + 2)
    for count in range(1, most + 1):
        for combo in combinations_with_replacement(sizes, count):
            total = sum(combo, Decimal(0))
            if total >= amount and (best is None or total < best[0]):
                best = (total, count)
        if best is not None and best[0] == amount:
            break
    return best[0] if best else None


def _fluid_lines(
    c: Classified,
    catalog: Catalog,
    opps_status: Mapping[str, str],
    setting: str,
    day: date,
    holds: list[Hold],
) -> list[ChargeLine]:
    """One bag of reportable hydration fluid: HCPCS by bag volume, units = bags (D18a, R38)."""
    fluid = next((r for r in c.ingredients if r.match), None)
    assert fluid and fluid.match
    volume = _bag_volume(fluid, c)
    if volume is None:
        detail = "hydration bag volume unknown: no NDC package size or documented volume"
        holds.append(Hold(HoldReason.MISSING_DOSE, detail, c.admin.source_id))
        return []
    hcpcs, size = next(((h, s) for h, s in FLUID_BAGS if volume <= s), FLUID_BAGS[-1])
    drug = catalog.drugs.get(hcpcs, fluid.match.drug)
    bags = ceil_div(volume, size)
    rules = ("R38", "D18a")
    payable = _separately_payable(hcpcs, opps_status, setting)
    product = fluid.match.product
    dose = _Dose(drug, day, volume, None, [product] if product else [], [c.admin.source_id])
    return [_drug_line(dose, bags, ("JZ",) if payable else (), rules)]


def _bag_volume(fluid: Resolved, c: Classified) -> Decimal | None:
    product = fluid.match.product if fluid.match else None
    if product and product.package_amount and fluid.match and fluid.match.drug.unit == "mL":
        return product.package_amount
    for quantity in (fluid.ingredient.amount, c.admin.volume):
        if quantity is not None:
            value = convert(quantity, "mL")
            if value is not None:
                return value
    return None
