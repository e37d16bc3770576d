"""The tables of `mappings/`: file names, their columns (and earlier layouts still read),
and the formats shared by several tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

DRUGS = "drugs.csv"


CATALOG = "drug_catalog.csv"


LOCAL = "drug_catalog_local.csv"


OPPS = "opps_status.csv"


VERSIONS = "table_versions.csv"


ROUTES = "routes.csv"


METHODS = "methods.csv"


LOCATIONS = "locations.csv"


REVENUE = "revenue_codes.csv"


HOLDS = "hold_reasons.csv"


LABELS = "code_labels.csv"


OBSERVATIONS = "observation_codes.csv"


PRICE_PFS = "price_pfs.csv"


PRICE_ASP = "price_asp.csv"


PRICE_OPPS = "price_opps.csv"


PRICE_VERSIONS = "price_versions.csv"


# Optional as a set: a directory without any of them loads with nothing priceable.
PRICE_FILES = (PRICE_PFS, PRICE_ASP, PRICE_OPPS, PRICE_VERSIONS)


COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        DRUGS: ("hcpcs", "drug", "class", "billing_unit_amount", "billing_unit", "label"),
        CATALOG: (
            "hcpcs",
            "drug",
            "class",
            "billing_unit_amount",
            "billing_unit",
            "ndc",
            "package_amount",
            "container",
            "rxnorm_ingredient",
            "labeler",
        ),
        LOCAL: ("local_code", "target", "container", "package_amount", "note"),
        OPPS: ("hcpcs", "status_indicator"),
        VERSIONS: ("name", "effective_start", "effective_end"),
        ROUTES: ("code", "route"),
        METHODS: ("code", "method"),
        LOCATIONS: ("code", "setting", "place_of_service"),
        REVENUE: ("code", "revenue_code"),
        HOLDS: ("code", "sentence"),
        LABELS: ("code", "label"),
        OBSERVATIONS: ("code", "meaning"),
        PRICE_PFS: (
            "hcpcs",
            "status",
            "work_rvu",
            "nonfacility_pe_rvu",
            "nonfacility_na",
            "mp_rvu",
            "conversion_factor",
        ),
        PRICE_ASP: ("hcpcs", "billing_unit_amount", "billing_unit", "payment_limit"),
        PRICE_OPPS: ("hcpcs", "status_indicator", "apc", "payment_rate"),
        PRICE_VERSIONS: ("name", "effective_start", "effective_end", "source"),
    }
)


# Earlier layouts a site's file may still have: read with the missing columns empty.
EARLIER_COLUMNS: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType(
    {LOCAL: (("local_code", "target", "note"),)}
)


BILLING_UNITS = ("mg", "mcg", "g", "mL", "units")


PROCEDURE = re.compile(r"[A-Z0-9]{5}")  # CPT (96413) or HCPCS (J9271, G0498)


STATUS_INDICATOR = re.compile(r"[A-Z][0-9]?")
