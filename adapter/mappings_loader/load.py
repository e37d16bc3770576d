"""The entry point: where `mappings/` is, and every table read, checked and assembled once."""

from __future__ import annotations

import os
from pathlib import Path

from adapter.core.mappings import Mappings
from adapter.core.price_tables import PriceTables
from adapter.mappings_loader.drugs import read_catalog
from adapter.mappings_loader.lookups import (
    read_hold_reasons,
    read_labels,
    read_locations,
    read_methods,
    read_observation_codes,
    read_opps,
    read_revenue_codes,
    read_routes,
    read_table_versions,
)
from adapter.mappings_loader.prices import read_price_tables
from adapter.mappings_loader.rows import MappingError, read_table
from adapter.mappings_loader.tables import (
    COLUMNS,
    HOLDS,
    LABELS,
    LOCATIONS,
    METHODS,
    OBSERVATIONS,
    OPPS,
    PRICE_FILES,
    REVENUE,
    ROUTES,
    VERSIONS,
)
from adapter.setting_names import SettingName


def default_mappings_dir() -> Path:
    """`ADAPTER_MAPPINGS_DIR` when set (containers install the package as a wheel and put
    the tables elsewhere), else the `mappings/` directory next to the `adapter` package
    (this file is adapter/mappings_loader/load.py)."""
    configured = os.environ.get(SettingName.MAPPINGS_DIR, "")
    return Path(configured) if configured else Path(__file__).parents[2] / "mappings"


def load_mappings(directory: Path) -> Mappings:
    """Read, check and assemble every table of `directory` (normally `mappings/`)."""
    present = _price_files_present(directory)
    tables = {
        name: read_table(directory, name) for name in COLUMNS if name not in PRICE_FILES or present
    }
    catalog, drug_labels = read_catalog(tables)
    opps_status = read_opps(tables[OPPS])
    return Mappings(
        catalog=catalog,
        opps_status=opps_status,
        routes=read_routes(tables[ROUTES]),
        methods=read_methods(tables[METHODS]),
        locations=read_locations(tables[LOCATIONS]),
        revenue_codes=read_revenue_codes(tables[REVENUE]),
        hold_reasons=read_hold_reasons(tables[HOLDS], directory / HOLDS),
        code_labels=read_labels(tables[LABELS], drug_labels),
        observation_codes=read_observation_codes(tables[OBSERVATIONS]),
        table_versions=read_table_versions(tables[VERSIONS]),
        prices=(
            read_price_tables(tables, directory, catalog.drugs, opps_status)
            if present
            else PriceTables()
        ),
    )


def _price_files_present(directory: Path) -> bool:
    """Whether `directory` carries the price tables: all four, or none of them.

    Nothing is priced on a page or API yet (docs/pricing.md), so a site directory
    copied before the price tables existed must still start; it only cannot price.
    Some but not all of them is a half-copied quarter and is refused.
    """
    found = [name for name in PRICE_FILES if (directory / name).exists()]
    if found and len(found) < len(PRICE_FILES):
        missing = ", ".join(n for n in PRICE_FILES if n not in found)
        raise MappingError(f"{directory}: price tables incomplete, missing {missing}")
    return bool(found)
