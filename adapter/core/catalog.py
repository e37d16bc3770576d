"""The drug catalog: which HCPCS a documented drug bills under, its class and its containers.

Values only: the shell loads `mappings/drug_catalog.csv` (generated from the CMS
NDC-HCPCS crosswalk and the seed) and hands a `Catalog` to the core. Matching
follows D15: NDC in any of its printed forms, RxNorm, HCPCS given directly, a
site-local code; the caller passes every code the feed carried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from adapter.core.model import Code, CodeSystem


class DrugClass(StrEnum):
    """Decides the administration family (R4-R7, D11) and the Z51.1x code (D19)."""

    CHEMOTHERAPY = "chemotherapy"
    IMMUNOTHERAPY = "immunotherapy"
    HORMONAL = "hormonal-antineoplastic"
    THERAPEUTIC = "therapeutic"
    HYDRATION = "hydration"

    @property
    def is_complex(self) -> bool:
        """Chemotherapy/complex administration codes (964xx) apply."""
        return self in (DrugClass.CHEMOTHERAPY, DrugClass.IMMUNOTHERAPY, DrugClass.HORMONAL)


class Container(StrEnum):
    """Label fact that decides JW/JZ (R35, D17, D18)."""

    SINGLE_DOSE = "single-dose"
    MULTIPLE_DOSE = "multiple-dose"
    PHARMACY_BULK = "pharmacy-bulk"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "n/a"  # IV fluid bags: single-dose by D18a


@dataclass(frozen=True, slots=True)
class Drug:
    """One HCPCS code: billing unit and class."""

    hcpcs: str
    name: str
    drug_class: DrugClass
    unit_amount: Decimal
    unit: str  # mg, mcg, g, mL, units


@dataclass(frozen=True, slots=True)
class Product:
    """One NDC under one HCPCS: the amount in one container and its type."""

    ndc: str  # 11 digits, no dashes
    hcpcs: str
    package_amount: Decimal | None  # in the drug's billing unit terms (mg, mL...)
    container: Container


@dataclass(frozen=True, slots=True)
class Ambiguity:
    """An RxNorm ingredient that bills under several HCPCS codes: it cannot pick one."""

    rows: int  # catalog rows (NDCs) carrying it
    hcpcs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DrugMatch:
    """A catalog hit: the drug and, when the feed named an NDC, the product."""

    drug: Drug
    product: Product | None
    matched_by: str  # which code matched, e.g. "ndc:00006302602"


def ndc_candidates(raw: str) -> tuple[str, ...]:
    """All 11-digit forms a printed NDC may stand for (D15).

    Dashed 10-digit forms pad the short segment; an undashed 10-digit NDC is
    ambiguous, so all three paddings are returned and the catalog decides.
    """
    text = raw.strip()
    parts = text.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        a, b, c = parts
        if (len(a), len(b), len(c)) in ((5, 4, 2), (4, 4, 2), (5, 3, 2), (5, 4, 1)):
            return (a.zfill(5) + b.zfill(4) + c.zfill(2),)
        return ()
    digits = text.replace("-", "")
    if not digits.isdigit():
        return ()
    if len(digits) == 11:
        return (digits,)
    if len(digits) == 10:
        return (
            "0" + digits,
            digits[:5] + "0" + digits[5:],
            digits[:9] + "0" + digits[9:],
        )
    return ()


K = TypeVar("K")
V = TypeVar("V")


def _freeze(items: Iterable[tuple[K, V]]) -> Mapping[K, V]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class Catalog:
    """Read-only lookups over the catalog rows; built once at start-up."""

    drugs: Mapping[str, Drug]
    products: Mapping[str, tuple[Product, ...]]  # by 11-digit NDC; saline NDCs sit under 3 codes
    rxnorm: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    local: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ambiguous_rxnorm: Mapping[str, Ambiguity] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def build(
        drugs: Iterable[Drug],
        products: Iterable[Product],
        rxnorm: Iterable[tuple[str, str]] = (),
        local: Iterable[tuple[str, str]] = (),
        ambiguous_rxnorm: Iterable[tuple[str, Ambiguity]] = (),
    ) -> Catalog:
        by_ndc: dict[str, list[Product]] = {}
        for product in products:
            by_ndc.setdefault(product.ndc, []).append(product)
        return Catalog(
            drugs=_freeze((d.hcpcs, d) for d in drugs),
            products=_freeze((k, tuple(v)) for k, v in by_ndc.items()),
            rxnorm=_freeze(rxnorm),
            local=_freeze((k.upper(), v) for k, v in local),
            ambiguous_rxnorm=_freeze(ambiguous_rxnorm),
        )

    def products_of(self, hcpcs: str) -> tuple[Product, ...]:
        """Every NDC listed under one HCPCS: the vial sizes for D17's least-waste combination."""
        return tuple(p for ps in self.products.values() for p in ps if p.hcpcs == hcpcs)

    def ambiguity(self, code: Code) -> Ambiguity | None:
        """Why an RxNorm code found nothing: it names an ingredient billed under several codes."""
        if code.system != CodeSystem.RXNORM:
            return None
        return self.ambiguous_rxnorm.get(code.code.strip())

    def match(self, codes: Iterable[Code]) -> DrugMatch | None:
        """First catalog hit over the codes, NDC before RxNorm before HCPCS before local."""
        ordered = sorted(codes, key=_match_priority)
        for code in ordered:
            hit = self._match_one(code)
            if hit is not None:
                return hit
        return None

    def _match_one(self, code: Code) -> DrugMatch | None:
        value = code.code.strip()
        if not value:
            return None
        if code.system == CodeSystem.NDC or _looks_like_ndc(value):
            for ndc in ndc_candidates(value):
                products = self.products.get(ndc)
                if products:
                    product = products[0]
                    return DrugMatch(self.drugs[product.hcpcs], product, f"ndc:{ndc}")
        if code.system == CodeSystem.RXNORM and value in self.rxnorm:
            return DrugMatch(self.drugs[self.rxnorm[value]], None, f"rxnorm:{value}")
        if value.upper() in self.drugs and code.system in (CodeSystem.HCPCS, "HCPCS", "HCPC"):
            return DrugMatch(self.drugs[value.upper()], None, f"hcpcs:{value.upper()}")
        local = self.local.get(value.upper())
        if local is not None:
            return self._local_hit(local, value)
        return None

    def _local_hit(self, target: str, value: str) -> DrugMatch | None:
        """A local code maps to an NDC (preferred: container known) or to a HCPCS."""
        for ndc in ndc_candidates(target):
            products = self.products.get(ndc)
            if products:
                return DrugMatch(self.drugs[products[0].hcpcs], products[0], f"local:{value}")
        drug = self.drugs.get(target.upper())
        return DrugMatch(drug, None, f"local:{value}") if drug else None


def _looks_like_ndc(value: str) -> bool:
    return bool(ndc_candidates(value)) and (len(value.replace("-", "")) in (10, 11))


def _match_priority(code: Code) -> int:
    return _PRIORITY.get(code.system, 3)


_PRIORITY: Mapping[str, int] = MappingProxyType(
    {CodeSystem.NDC.value: 0, CodeSystem.RXNORM.value: 1, CodeSystem.HCPCS.value: 2}
)
