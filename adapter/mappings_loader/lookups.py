"""The lookup tables: OPPS status, table versions, routes, methods, locations, revenue codes,
hold reason sentences, code labels, observation codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from adapter.core.holds import HoldReason
from adapter.core.mappings import SETTINGS, HoldReasonText, LocationRule, TableVersion
from adapter.core.model import Method, Route
from adapter.mappings_loader.rows import (
    MappingError,
    Row,
    by_key,
    enum_cell,
    iso_date,
    matching,
    nonempty,
    one_of,
    read_only,
    upper_code,
    vocabulary_code,
)
from adapter.mappings_loader.tables import DRUGS, PROCEDURE, STATUS_INDICATOR

OBSERVATION_MEANINGS = ("discarded-amount",)


# A route table entry that maps to "unknown" would only hide a missing row.
_TABLE_ROUTES = tuple(r.value for r in Route if r is not Route.UNKNOWN)


_FAMILY = re.compile(r"[A-Z0-9]{1,4}\*")  # what Mappings.revenue_code looks up


_REVENUE = re.compile(r"[0-9]{4}")


_POS = re.compile(r"[0-9]{2}")


def read_opps(rows: Iterable[Row]) -> Mapping[str, str]:
    keyed = by_key(rows, lambda r: matching(r, "hcpcs", PROCEDURE, "a CPT/HCPCS code"), "code")
    return read_only(
        {
            code: matching(row, "status_indicator", STATUS_INDICATOR, "an OPPS status indicator")
            for code, row in keyed.items()
        }
    )


def read_table_versions(rows: Iterable[Row]) -> tuple[TableVersion, ...]:
    keyed = by_key(rows, lambda r: nonempty(r, "name"), "table name")
    return tuple(table_version(row) for row in keyed.values())


def table_version(row: Row) -> TableVersion:
    start, end = iso_date(row, "effective_start"), iso_date(row, "effective_end")
    if end < start:
        raise row.error(f"effective_end {end} is before effective_start {start}")
    return TableVersion(row["name"], start, end)


def read_routes(rows: Iterable[Row]) -> Mapping[str, Route]:
    keyed = by_key(rows, vocabulary_code, "route code")
    return read_only(
        {
            code: enum_cell(row, "route", Route, "route", _TABLE_ROUTES)
            for code, row in keyed.items()
        }
    )


def read_methods(rows: Iterable[Row]) -> Mapping[str, Method]:
    keyed = by_key(rows, vocabulary_code, "method code")
    return read_only(
        {code: enum_cell(row, "method", Method, "method") for code, row in keyed.items()}
    )


def read_locations(rows: Iterable[Row]) -> Mapping[str, LocationRule]:
    keyed = by_key(rows, upper_code, "location code")
    return read_only({code: _location(code, row) for code, row in keyed.items()})


def _location(code: str, row: Row) -> LocationRule:
    setting = one_of(row, "setting", SETTINGS, "setting")
    pos = row["place_of_service"]
    if pos:
        matching(row, "place_of_service", _POS, "a 2-digit place of service")
    return LocationRule(code, setting, pos)


def read_revenue_codes(rows: Iterable[Row]) -> Mapping[str, str]:
    keyed = by_key(rows, _revenue_key, "code")
    return read_only(
        {
            code: matching(row, "revenue_code", _REVENUE, "a 4-digit revenue code")
            for code, row in keyed.items()
        }
    )


def _revenue_key(row: Row) -> str:
    code = upper_code(row)
    if not (PROCEDURE.fullmatch(code) or _FAMILY.fullmatch(code)):
        raise row.error(
            f"code {code!r} is neither a 5-character CPT/HCPCS code nor a family "
            "such as 9641* (1 to 4 characters then *)"
        )
    return code


def read_hold_reasons(rows: Iterable[Row], where: Path) -> Mapping[str, HoldReasonText]:
    """Every hold reason needs a sentence: a hold a biller cannot read is not actionable."""
    allowed = [reason.value for reason in HoldReason]
    keyed = by_key(rows, lambda r: one_of(r, "code", allowed, "hold reason"), "hold reason")
    missing = [reason for reason in allowed if reason not in keyed]
    if missing:
        raise MappingError(f"{where}: no sentence for hold reason(s) {', '.join(missing)}")
    return read_only(
        {code: HoldReasonText(code, nonempty(row, "sentence")) for code, row in keyed.items()}
    )


def read_labels(rows: Iterable[Row], drug_labels: Mapping[str, str]) -> Mapping[str, str]:
    """code_labels.csv plus the drug labels of drugs.csv, one label per code."""
    keyed = by_key(rows, upper_code, "code")
    labels = {code: nonempty(row, "label") for code, row in keyed.items()}
    for code, row in keyed.items():
        if code in drug_labels:
            raise row.error(f"{code} already has a label in {DRUGS}")
    return read_only(labels | dict(drug_labels))


def read_observation_codes(rows: Iterable[Row]) -> Mapping[str, str]:
    keyed = by_key(rows, upper_code, "observation code")
    return read_only(
        {
            code: one_of(row, "meaning", OBSERVATION_MEANINGS, "observation meaning")
            for code, row in keyed.items()
        }
    )
