"""The drug tables: drugs.csv, drug_catalog.csv and the site's drug_catalog_local.csv
(local codes and the container/package overlay) into one `Catalog`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal

from adapter.core.catalog import Ambiguity, Catalog, Container, Drug, DrugClass, Product
from adapter.mappings_loader.rows import (
    Row,
    by_key,
    enum_cell,
    matching,
    nonempty,
    one_of,
    positive_decimal,
)
from adapter.mappings_loader.tables import BILLING_UNITS, CATALOG, DRUGS, LOCAL

# What an overlay row may say about its target NDC's container (JW/JZ, D17/D18).
_OVERLAY_CONTAINERS = (
    Container.SINGLE_DOSE.value,
    Container.MULTIPLE_DOSE.value,
    Container.PHARMACY_BULK.value,
)


_HCPCS = re.compile(r"[A-Z][0-9]{4}")


_NDC11 = re.compile(r"[0-9]{11}")


_RXCUI = re.compile(r"[0-9]*")  # blank when not verified


def _drugs(rows: Iterable[Row]) -> dict[str, tuple[Drug, str]]:
    """drugs.csv: each HCPCS with its billing unit, class and our label."""
    keyed = by_key(rows, lambda r: matching(r, "hcpcs", _HCPCS, "a HCPCS code"), "HCPCS code")
    return {code: (_drug(row), nonempty(row, "label")) for code, row in keyed.items()}


def _drug(row: Row) -> Drug:
    return Drug(
        hcpcs=row["hcpcs"],
        name=nonempty(row, "drug"),
        drug_class=enum_cell(row, "class", DrugClass, "drug class"),
        unit_amount=positive_decimal(row, "billing_unit_amount"),
        unit=one_of(row, "billing_unit", BILLING_UNITS, "billing unit"),
    )


def _products(rows: Iterable[Row], drugs: Mapping[str, Drug]) -> tuple[Product, ...]:
    """drug_catalog.csv: one product per HCPCS + NDC, consistent with drugs.csv."""
    by_key(rows, lambda r: f"{r['hcpcs']} {r['ndc']}", "HCPCS + NDC pair")
    return tuple(_product(row, drugs) for row in rows)


def _product(row: Row, drugs: Mapping[str, Drug]) -> Product:
    drug = drugs.get(matching(row, "hcpcs", _HCPCS, "a HCPCS code"))
    if drug is None:
        raise row.error(f"HCPCS {row['hcpcs']!r} is not in {DRUGS}")
    _same_as_drug(row, drug)
    package = row["package_amount"]
    matching(row, "rxnorm_ingredient", _RXCUI, "an RxNorm RxCUI (digits) or empty")
    return Product(
        ndc=matching(row, "ndc", _NDC11, "an 11-digit NDC without dashes"),
        hcpcs=drug.hcpcs,
        package_amount=positive_decimal(row, "package_amount") if package else None,
        container=enum_cell(row, "container", Container, "container"),
    )


def _same_as_drug(row: Row, drug: Drug) -> None:
    """A catalog row repeats drugs.csv facts so it reads alone; they must agree."""
    facts = (row["drug"], row["class"], row["billing_unit"])
    if facts != (drug.name, drug.drug_class.value, drug.unit) or (
        positive_decimal(row, "billing_unit_amount") != drug.unit_amount
    ):
        raise row.error(
            f"{row['hcpcs']} disagrees with {DRUGS}: expected {drug.name}, {drug.drug_class}, "
            f"{drug.unit_amount} {drug.unit}"
        )


def _rxnorm_pairs(
    rows: Iterable[Row],
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, Ambiguity], ...]]:
    """RxCUI -> HCPCS only where the ingredient bills under exactly one code.

    An ingredient with product-specific codes (cyclophosphamide) cannot pick
    one from RxNorm alone, so it is left to the NDC; those RxCUIs are returned
    apart, with their row count and codes, so a hold can say "ambiguous".
    """
    codes: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        if row["rxnorm_ingredient"]:
            codes.setdefault(row["rxnorm_ingredient"], set()).add(row["hcpcs"])
            counts[row["rxnorm_ingredient"]] = counts.get(row["rxnorm_ingredient"], 0) + 1
    ordered = sorted(codes.items())
    single = tuple((rxcui, min(hcpcs)) for rxcui, hcpcs in ordered if len(hcpcs) == 1)
    several = tuple(
        (rxcui, Ambiguity(counts[rxcui], tuple(sorted(hcpcs))))
        for rxcui, hcpcs in ordered
        if len(hcpcs) > 1
    )
    return single, several


def _local_pairs(
    rows: Iterable[Row], drugs: Mapping[str, Drug], ndcs: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """drug_catalog_local.csv: site codes, each resolving to a catalog NDC or HCPCS."""
    keyed = by_key(rows, lambda r: nonempty(r, "local_code").upper(), "local code")
    return tuple((code, _local_target(row, drugs, ndcs)) for code, row in keyed.items())


def _local_target(row: Row, drugs: Mapping[str, Drug], ndcs: frozenset[str]) -> str:
    target = nonempty(row, "target").upper()
    if _NDC11.fullmatch(target):
        if target not in ndcs:
            raise row.error(f"target NDC {target} is not in {CATALOG}")
        return target
    if _HCPCS.fullmatch(target):
        if target not in drugs:
            raise row.error(f"target HCPCS {target} is not in {DRUGS}")
        return target
    raise row.error(f"target {target!r} is neither an 11-digit NDC (no dashes) nor a HCPCS code")


def _overlay(rows: Iterable[Row], products: tuple[Product, ...]) -> tuple[Product, ...]:
    """The container and package amount a site records for an NDC the catalog leaves unknown.

    The `waste-undetermined` hold names this fix (JW/JZ need the container, D17/D18);
    the generated catalog must not be edited by hand, so the overlay carries it.
    """
    known = {p.ndc for p in products}
    facts: dict[str, tuple[Container | None, Decimal | None]] = {}
    for row in rows:
        container, amount = row["container"], row["package_amount"]
        if not container and not amount:
            continue
        target = nonempty(row, "target").upper()
        if not _NDC11.fullmatch(target) or target not in known:
            raise row.error("container and package_amount need a target NDC of drug_catalog.csv")
        facts[target] = (
            Container(one_of(row, "container", _OVERLAY_CONTAINERS, "container"))
            if container
            else None,
            positive_decimal(row, "package_amount") if amount else None,
        )
    return tuple(_with_facts(p, facts.get(p.ndc)) for p in products)


def _with_facts(product: Product, facts: tuple[Container | None, Decimal | None] | None) -> Product:
    if facts is None:
        return product
    container, amount = facts
    return replace(
        product,
        container=container or product.container,
        package_amount=amount or product.package_amount,
    )


def read_catalog(tables: Mapping[str, tuple[Row, ...]]) -> tuple[Catalog, dict[str, str]]:
    """The Catalog, plus the drug labels (they join the other code labels)."""
    drugs = _drugs(tables[DRUGS])
    by_code = {code: drug for code, (drug, _label) in drugs.items()}
    products = _overlay(tables[LOCAL], _products(tables[CATALOG], by_code))
    local = _local_pairs(tables[LOCAL], by_code, frozenset(p.ndc for p in products))
    single, several = _rxnorm_pairs(tables[CATALOG])
    catalog = Catalog.build(by_code.values(), products, single, local, several)
    return catalog, {code: label for code, (_drug, label) in drugs.items()}
