"""The CMS price tables (national Medicare rates), as immutable values for `adapter.core.pricing`.

The shell (`adapter.mappings_loader`) reads `mappings/price_*.csv` once, validates every
row and builds `PriceTables`; nothing here reads files. The tables are slim copies of the
CMS files in `mappings/reference/`, made by `scripts/build_mappings.py`: only the codes the
catalog and the administration codes (96360-96549, G0498) need, each with its period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from adapter.core.periods import TableVersion


class PriceTable(StrEnum):
    """Which CMS table a figure comes from (the `name` column of `price_versions.csv`)."""

    PFS = "pfs"  # Physician Fee Schedule national RVUs + conversion factor (office)
    ASP = "asp"  # Part B drug ASP payment limits (office drugs)
    OPPS = "opps"  # OPPS Addendum B (hospital outpatient)


@dataclass(frozen=True, slots=True)
class PfsRate:
    """One PFS row: national RVUs of a code, its payment status and the conversion factor."""

    code: str
    status: str  # PFS status indicator: A active, T paid only alone, C carrier-priced, X ...
    work_rvu: Decimal
    nonfacility_pe_rvu: Decimal
    nonfacility_na: bool  # CMS "NA": no non-facility (office) payment for this code
    mp_rvu: Decimal
    conversion_factor: Decimal

    @property
    def nonfacility_rvu(self) -> Decimal:
        """Work + non-facility practice expense + malpractice RVUs."""
        return self.work_rvu + self.nonfacility_pe_rvu + self.mp_rvu


@dataclass(frozen=True, slots=True)
class AspLimit:
    """One ASP payment limit: dollars per billing unit (the same unit as `drugs.csv`)."""

    code: str
    unit_amount: Decimal
    unit: str
    payment_limit: Decimal


@dataclass(frozen=True, slots=True)
class OppsRate:
    """One Addendum B row: status indicator, APC and national payment rate (None: no rate)."""

    code: str
    status_indicator: str
    apc: str
    payment_rate: Decimal | None


@dataclass(frozen=True, slots=True)
class PriceSource:
    """A price table's period and the CMS file it was built from (for the figure's label)."""

    table: PriceTable
    version: TableVersion
    source_file: str


@dataclass(frozen=True)
class PriceTables:
    """The three price tables and their periods, validated (empty: nothing can be priced)."""

    pfs: Mapping[str, PfsRate] = field(default_factory=lambda: MappingProxyType({}))
    asp: Mapping[str, AspLimit] = field(default_factory=lambda: MappingProxyType({}))
    opps: Mapping[str, OppsRate] = field(default_factory=lambda: MappingProxyType({}))
    sources: Mapping[PriceTable, PriceSource] = field(default_factory=lambda: MappingProxyType({}))
