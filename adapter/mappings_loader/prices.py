"""The price tables price_*.csv: PFS, ASP and OPPS national rates, each with its period."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from adapter.core.catalog import Drug
from adapter.core.price_tables import (
    AspLimit,
    OppsRate,
    PfsRate,
    PriceSource,
    PriceTable,
    PriceTables,
)
from adapter.mappings_loader.lookups import table_version
from adapter.mappings_loader.rows import (
    MappingError,
    Row,
    by_key,
    matching,
    nonempty,
    nonnegative_decimal,
    one_of,
    positive_decimal,
    read_only,
)
from adapter.mappings_loader.tables import (
    BILLING_UNITS,
    DRUGS,
    OPPS,
    PRICE_ASP,
    PRICE_OPPS,
    PRICE_PFS,
    PRICE_VERSIONS,
    PROCEDURE,
    STATUS_INDICATOR,
)

_PFS_STATUS = re.compile(r"[A-Z]")


_APC = re.compile(r"[0-9]{4}|")


def read_price_tables(
    tables: Mapping[str, tuple[Row, ...]],
    directory: Path,
    drugs: Mapping[str, Drug],
    opps: Mapping[str, str],
) -> PriceTables:
    """price_*.csv: national rates, each table with its period (D27 flags use it)."""
    return PriceTables(
        pfs=read_only(
            {r.code: r for r in map(_pfs_rate, _keyed_codes(tables[PRICE_PFS]).values())}
        ),
        asp=read_only(
            {c: _asp_limit(row, drugs) for c, row in _keyed_codes(tables[PRICE_ASP]).items()}
        ),
        opps=read_only(
            {c: _opps_rate(row, opps) for c, row in _keyed_codes(tables[PRICE_OPPS]).items()}
        ),
        sources=_price_sources(tables[PRICE_VERSIONS], directory / PRICE_VERSIONS),
    )


def _keyed_codes(rows: Iterable[Row]) -> dict[str, Row]:
    return by_key(rows, lambda r: matching(r, "hcpcs", PROCEDURE, "a CPT/HCPCS code"), "code")


def _pfs_rate(row: Row) -> PfsRate:
    return PfsRate(
        code=row["hcpcs"],
        status=matching(row, "status", _PFS_STATUS, "a PFS status (one letter)"),
        work_rvu=nonnegative_decimal(row, "work_rvu"),
        nonfacility_pe_rvu=nonnegative_decimal(row, "nonfacility_pe_rvu"),
        nonfacility_na=one_of(row, "nonfacility_na", ("", "NA"), "nonfacility_na") == "NA",
        mp_rvu=nonnegative_decimal(row, "mp_rvu"),
        conversion_factor=positive_decimal(row, "conversion_factor"),
    )


def _asp_limit(row: Row, drugs: Mapping[str, Drug]) -> AspLimit:
    """A limit is per billing unit: it must be the unit the coder counts units in."""
    limit = AspLimit(
        code=row["hcpcs"],
        unit_amount=positive_decimal(row, "billing_unit_amount"),
        unit=one_of(row, "billing_unit", BILLING_UNITS, "billing unit"),
        payment_limit=nonnegative_decimal(row, "payment_limit"),
    )
    drug = drugs.get(limit.code)
    if drug is not None and (drug.unit_amount, drug.unit) != (limit.unit_amount, limit.unit):
        raise row.error(
            f"{limit.code} is priced per {limit.unit_amount} {limit.unit} but {DRUGS} bills it "
            f"per {drug.unit_amount} {drug.unit}"
        )
    return limit


def _opps_rate(row: Row, opps: Mapping[str, str]) -> OppsRate:
    """The status indicator must be the one coding used (JW/JZ follow it, D17)."""
    status = matching(row, "status_indicator", STATUS_INDICATOR, "an OPPS status indicator")
    if row["hcpcs"] in opps and opps[row["hcpcs"]] != status:
        raise row.error(
            f"status indicator {status} of {row['hcpcs']} disagrees with {OPPS} "
            f"({opps[row['hcpcs']]})"
        )
    return OppsRate(
        code=row["hcpcs"],
        status_indicator=status,
        apc=matching(row, "apc", _APC, "a 4-digit APC or empty"),
        payment_rate=nonnegative_decimal(row, "payment_rate") if row["payment_rate"] else None,
    )


def _price_sources(rows: Iterable[Row], where: Path) -> Mapping[PriceTable, PriceSource]:
    """One period per price table, each named; a table without its period is refused."""
    names = [t.value for t in PriceTable]
    keyed = by_key(rows, lambda r: one_of(r, "name", names, "price table"), "price table")
    sources = {
        PriceTable(name): PriceSource(PriceTable(name), table_version(row), nonempty(row, "source"))
        for name, row in keyed.items()
    }
    missing = [name for name in names if name not in keyed]
    if missing:
        raise MappingError(f"{where}: no period for price table(s) {', '.join(missing)}")
    return MappingProxyType(sources)
