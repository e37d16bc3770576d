"""Read and check every table in `mappings/` once, at start-up, into one `Mappings` value.

Why here and strictly: a bad row found while coding a claim is a wrong bill or
a crash in the middle of a batch; found at start-up it is one clear message.
So every row is validated (types, enums, positive Decimal amounts, 11-digit
NDCs, cross-references between tables) and the first fault stops loading with
`MappingError("<file> line <n>: <problem>")`.

Rules of this file: the only module that reads `mappings/`; no table is read
twice; the result is immutable; no coding logic (that lives in the core).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from adapter.core.catalog import Ambiguity, Catalog, Container, Drug, DrugClass, Product
from adapter.core.holds import HoldReason
from adapter.core.mappings import (
    HoldReasonText,
    LocationRule,
    Mappings,
    Setting,
    TableVersion,
    table_key,
)
from adapter.core.model import Method, Route
from adapter.core.price_tables import (
    AspLimit,
    OppsRate,
    PfsRate,
    PriceSource,
    PriceTable,
    PriceTables,
)

__all__ = ["MappingError", "default_mappings_dir", "load_mappings"]


class MappingError(ValueError):
    """A table in `mappings/` is wrong; the message names the file, the line and the fault."""


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

_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
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
_EARLIER_COLUMNS: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType(
    {LOCAL: (("local_code", "target", "note"),)}
)
# What an overlay row may say about its target NDC's container (JW/JZ, D17/D18).
_OVERLAY_CONTAINERS = (
    Container.SINGLE_DOSE.value,
    Container.MULTIPLE_DOSE.value,
    Container.PHARMACY_BULK.value,
)

BILLING_UNITS = ("mg", "mcg", "g", "mL", "units")
OBSERVATION_MEANINGS = ("discarded-amount",)
# A route table entry that maps to "unknown" would only hide a missing row.
_TABLE_ROUTES = tuple(r.value for r in Route if r is not Route.UNKNOWN)

_HCPCS = re.compile(r"[A-Z][0-9]{4}")
_PROCEDURE = re.compile(r"[A-Z0-9]{5}")  # CPT (96413) or HCPCS (J9271, G0498)
_FAMILY = re.compile(r"[A-Z0-9]{1,4}\*")  # what Mappings.revenue_code looks up
_NDC11 = re.compile(r"[0-9]{11}")
_RXCUI = re.compile(r"[0-9]*")  # blank when not verified
_STATUS_INDICATOR = re.compile(r"[A-Z][0-9]?")
_REVENUE = re.compile(r"[0-9]{4}")
_POS = re.compile(r"[0-9]{2}")
_PFS_STATUS = re.compile(r"[A-Z]")
_APC = re.compile(r"[0-9]{4}|")

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


def default_mappings_dir() -> Path:
    """`ADAPTER_MAPPINGS_DIR` when set (containers install the package as a wheel and put
    the tables elsewhere), else the `mappings/` directory next to the `adapter` package."""
    configured = os.environ.get("ADAPTER_MAPPINGS_DIR", "")
    return Path(configured) if configured else Path(__file__).parent.parent / "mappings"


# ---------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class _Row:
    """One data line of a table: its cells by column and where it came from."""

    path: Path
    line: int  # 1-based physical line, the header being line 1
    cells: Mapping[str, str]

    def __getitem__(self, column: str) -> str:
        return self.cells[column]

    @property
    def where(self) -> str:
        return f"{self.path} line {self.line}"

    def error(self, problem: str) -> MappingError:
        return MappingError(f"{self.where}: {problem}")


def _read(directory: Path, name: str) -> tuple[_Row, ...]:
    """Every non-blank row of one table, after checking its header and field count."""
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8-sig")  # a site may save it from a spreadsheet
    except FileNotFoundError:
        raise MappingError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = _numbered(text, path)
    columns = _COLUMNS[name]
    header = tuple(next(lines, (1, []))[1])
    if header in _EARLIER_COLUMNS.get(name, ()):
        rows = (_row(path, line, cells, header) for line, cells in lines if any(cells))
        return tuple(_Row(r.path, r.line, {c: r.cells.get(c, "") for c in columns}) for r in rows)
    _check_header(list(header), path, columns)
    return tuple(_row(path, line, cells, columns) for line, cells in lines if any(cells))


def _numbered(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """CSV records with their line numbers (a quoted cell may span lines), cells stripped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for cells in reader:
            yield reader.line_num, [cell.strip() for cell in cells]
    except csv.Error as exc:
        raise MappingError(f"{path} line {reader.line_num}: {exc}") from None


def _check_header(header: list[str], path: Path, columns: tuple[str, ...]) -> None:
    """Columns are matched by name and order, so a shifted column cannot load silently."""
    if tuple(header) != columns:
        found = ",".join(header) if header else "nothing"
        raise MappingError(f"{path} line 1: header must be {','.join(columns)} (found {found})")


def _row(path: Path, line: int, cells: list[str], columns: tuple[str, ...]) -> _Row:
    if len(cells) != len(columns):
        raise MappingError(
            f"{path} line {line}: expected {len(columns)} fields ({','.join(columns)}), "
            f"found {len(cells)}"
        )
    return _Row(path, line, dict(zip(columns, cells, strict=True)))


# ---------------------------------------------------------------- cell checks


def _text(row: _Row, column: str) -> str:
    value = row[column]
    if not value:
        raise row.error(f"{column} is empty")
    return value


def _match(row: _Row, column: str, pattern: re.Pattern[str], what: str) -> str:
    value = row[column]
    if not pattern.fullmatch(value):
        raise row.error(f"{column} {value!r} is not {what}")
    return value


def _choice(row: _Row, column: str, allowed: Sequence[str], what: str) -> str:
    value = row[column]
    if value not in allowed:
        raise row.error(f"unknown {what} {value!r} (expected one of {', '.join(allowed)})")
    return value


def _enum(row: _Row, column: str, enum: type[E], what: str, allowed: Sequence[str] = ()) -> E:
    return enum(_choice(row, column, allowed or [e.value for e in enum], what))


def _amount(row: _Row, column: str) -> Decimal:
    """A Decimal > 0: billing units are money-adjacent, so never a float."""
    value = row[column]
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise row.error(f"{column} {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise row.error(f"{column} {value!r} must be a number greater than 0")
    return amount


def _money(row: _Row, column: str) -> Decimal:
    """A rate or RVU: a Decimal >= 0 (an RVU of 0 is real: carrier-priced codes carry it)."""
    value = row[column]
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise row.error(f"{column} {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise row.error(f"{column} {value!r} must be a number of 0 or more")
    return amount


def _date(row: _Row, column: str) -> date:
    value = row[column]
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise row.error(f"{column} {value!r} is not a date (YYYY-MM-DD)") from None


def _keyed(rows: Iterable[_Row], key: Callable[[_Row], str], what: str) -> dict[str, _Row]:
    """Rows by key; a second row with the same key is an error, not a silent override."""
    seen: dict[str, _Row] = {}
    for row in rows:
        value = key(row)
        if value in seen:
            raise row.error(f"duplicate {what} {value!r} (first on line {seen[value].line})")
        seen[value] = row
    return seen


def _upper_code(row: _Row) -> str:
    """Lookup codes are matched case-insensitively, so they are stored upper-case."""
    return _text(row, "code").upper()


def _vocabulary_code(row: _Row) -> str:
    """Route and method rows are matched as `Mappings.route` looks them up (`table_key`):
    two rows that differ only in case or spacing are the same row, and refused as such."""
    return table_key(_text(row, "code"))


def _frozen(items: Mapping[str, T]) -> Mapping[str, T]:
    return MappingProxyType(dict(items))


# ---------------------------------------------------------------- drug tables


def _drugs(rows: Iterable[_Row]) -> dict[str, tuple[Drug, str]]:
    """drugs.csv: each HCPCS with its billing unit, class and our label."""
    keyed = _keyed(rows, lambda r: _match(r, "hcpcs", _HCPCS, "a HCPCS code"), "HCPCS code")
    return {code: (_drug(row), _text(row, "label")) for code, row in keyed.items()}


def _drug(row: _Row) -> Drug:
    return Drug(
        hcpcs=row["hcpcs"],
        name=_text(row, "drug"),
        drug_class=_enum(row, "class", DrugClass, "drug class"),
        unit_amount=_amount(row, "billing_unit_amount"),
        unit=_choice(row, "billing_unit", BILLING_UNITS, "billing unit"),
    )


def _products(rows: Iterable[_Row], drugs: Mapping[str, Drug]) -> tuple[Product, ...]:
    """drug_catalog.csv: one product per HCPCS + NDC, consistent with drugs.csv."""
    _keyed(rows, lambda r: f"{r['hcpcs']} {r['ndc']}", "HCPCS + NDC pair")
    return tuple(_product(row, drugs) for row in rows)


def _product(row: _Row, drugs: Mapping[str, Drug]) -> Product:
    drug = drugs.get(_match(row, "hcpcs", _HCPCS, "a HCPCS code"))
    if drug is None:
        raise row.error(f"HCPCS {row['hcpcs']!r} is not in {DRUGS}")
    _same_as_drug(row, drug)
    package = row["package_amount"]
    _match(row, "rxnorm_ingredient", _RXCUI, "an RxNorm RxCUI (digits) or empty")
    return Product(
        ndc=_match(row, "ndc", _NDC11, "an 11-digit NDC without dashes"),
        hcpcs=drug.hcpcs,
        package_amount=_amount(row, "package_amount") if package else None,
        container=_enum(row, "container", Container, "container"),
    )


def _same_as_drug(row: _Row, drug: Drug) -> None:
    """A catalog row repeats drugs.csv facts so it reads alone; they must agree."""
    facts = (row["drug"], row["class"], row["billing_unit"])
    if facts != (drug.name, drug.drug_class.value, drug.unit) or (
        _amount(row, "billing_unit_amount") != drug.unit_amount
    ):
        raise row.error(
            f"{row['hcpcs']} disagrees with {DRUGS}: expected {drug.name}, {drug.drug_class}, "
            f"{drug.unit_amount} {drug.unit}"
        )


def _rxnorm_pairs(
    rows: Iterable[_Row],
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
    rows: Iterable[_Row], drugs: Mapping[str, Drug], ndcs: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """drug_catalog_local.csv: site codes, each resolving to a catalog NDC or HCPCS."""
    keyed = _keyed(rows, lambda r: _text(r, "local_code").upper(), "local code")
    return tuple((code, _local_target(row, drugs, ndcs)) for code, row in keyed.items())


def _local_target(row: _Row, drugs: Mapping[str, Drug], ndcs: frozenset[str]) -> str:
    target = _text(row, "target").upper()
    if _NDC11.fullmatch(target):
        if target not in ndcs:
            raise row.error(f"target NDC {target} is not in {CATALOG}")
        return target
    if _HCPCS.fullmatch(target):
        if target not in drugs:
            raise row.error(f"target HCPCS {target} is not in {DRUGS}")
        return target
    raise row.error(f"target {target!r} is neither an 11-digit NDC (no dashes) nor a HCPCS code")


def _overlay(rows: Iterable[_Row], products: tuple[Product, ...]) -> tuple[Product, ...]:
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
        target = _text(row, "target").upper()
        if not _NDC11.fullmatch(target) or target not in known:
            raise row.error("container and package_amount need a target NDC of drug_catalog.csv")
        facts[target] = (
            Container(_choice(row, "container", _OVERLAY_CONTAINERS, "container"))
            if container
            else None,
            _amount(row, "package_amount") if amount else None,
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


def _catalog(tables: Mapping[str, tuple[_Row, ...]]) -> tuple[Catalog, dict[str, str]]:
    """The Catalog, plus the drug labels (they join the other code labels)."""
    drugs = _drugs(tables[DRUGS])
    by_code = {code: drug for code, (drug, _label) in drugs.items()}
    products = _overlay(tables[LOCAL], _products(tables[CATALOG], by_code))
    local = _local_pairs(tables[LOCAL], by_code, frozenset(p.ndc for p in products))
    single, several = _rxnorm_pairs(tables[CATALOG])
    catalog = Catalog.build(by_code.values(), products, single, local, several)
    return catalog, {code: label for code, (_drug, label) in drugs.items()}


# ---------------------------------------------------------------- lookup tables


def _opps(rows: Iterable[_Row]) -> Mapping[str, str]:
    keyed = _keyed(rows, lambda r: _match(r, "hcpcs", _PROCEDURE, "a CPT/HCPCS code"), "code")
    return _frozen(
        {
            code: _match(row, "status_indicator", _STATUS_INDICATOR, "an OPPS status indicator")
            for code, row in keyed.items()
        }
    )


def _versions(rows: Iterable[_Row]) -> tuple[TableVersion, ...]:
    keyed = _keyed(rows, lambda r: _text(r, "name"), "table name")
    return tuple(_version(row) for row in keyed.values())


def _version(row: _Row) -> TableVersion:
    start, end = _date(row, "effective_start"), _date(row, "effective_end")
    if end < start:
        raise row.error(f"effective_end {end} is before effective_start {start}")
    return TableVersion(row["name"], start, end)


def _routes(rows: Iterable[_Row]) -> Mapping[str, Route]:
    keyed = _keyed(rows, _vocabulary_code, "route code")
    return _frozen(
        {code: _enum(row, "route", Route, "route", _TABLE_ROUTES) for code, row in keyed.items()}
    )


def _methods(rows: Iterable[_Row]) -> Mapping[str, Method]:
    keyed = _keyed(rows, _vocabulary_code, "method code")
    return _frozen({code: _enum(row, "method", Method, "method") for code, row in keyed.items()})


def _locations(rows: Iterable[_Row]) -> Mapping[str, LocationRule]:
    keyed = _keyed(rows, _upper_code, "location code")
    return _frozen({code: _location(code, row) for code, row in keyed.items()})


def _location(code: str, row: _Row) -> LocationRule:
    setting = _choice(row, "setting", Setting.ALL, "setting")
    pos = row["place_of_service"]
    if pos:
        _match(row, "place_of_service", _POS, "a 2-digit place of service")
    return LocationRule(code, setting, pos)


def _revenue(rows: Iterable[_Row]) -> Mapping[str, str]:
    keyed = _keyed(rows, _revenue_key, "code")
    return _frozen(
        {
            code: _match(row, "revenue_code", _REVENUE, "a 4-digit revenue code")
            for code, row in keyed.items()
        }
    )


def _revenue_key(row: _Row) -> str:
    code = _upper_code(row)
    if not (_PROCEDURE.fullmatch(code) or _FAMILY.fullmatch(code)):
        raise row.error(
            f"code {code!r} is neither a 5-character CPT/HCPCS code nor a family "
            "such as 9641* (1 to 4 characters then *)"
        )
    return code


def _holds(rows: Iterable[_Row], where: Path) -> Mapping[str, HoldReasonText]:
    """Every hold reason needs a sentence: a hold a biller cannot read is not actionable."""
    allowed = [reason.value for reason in HoldReason]
    keyed = _keyed(rows, lambda r: _choice(r, "code", allowed, "hold reason"), "hold reason")
    missing = [reason for reason in allowed if reason not in keyed]
    if missing:
        raise MappingError(f"{where}: no sentence for hold reason(s) {', '.join(missing)}")
    return _frozen(
        {code: HoldReasonText(code, _text(row, "sentence")) for code, row in keyed.items()}
    )


def _labels(rows: Iterable[_Row], drug_labels: Mapping[str, str]) -> Mapping[str, str]:
    """code_labels.csv plus the drug labels of drugs.csv, one label per code."""
    keyed = _keyed(rows, _upper_code, "code")
    labels = {code: _text(row, "label") for code, row in keyed.items()}
    for code, row in keyed.items():
        if code in drug_labels:
            raise row.error(f"{code} already has a label in {DRUGS}")
    return _frozen(labels | dict(drug_labels))


def _observations(rows: Iterable[_Row]) -> Mapping[str, str]:
    keyed = _keyed(rows, _upper_code, "observation code")
    return _frozen(
        {
            code: _choice(row, "meaning", OBSERVATION_MEANINGS, "observation meaning")
            for code, row in keyed.items()
        }
    )


# ---------------------------------------------------------------- price tables


def _price_tables(
    tables: Mapping[str, tuple[_Row, ...]],
    directory: Path,
    drugs: Mapping[str, Drug],
    opps: Mapping[str, str],
) -> PriceTables:
    """price_*.csv: national rates, each table with its period (D27 flags use it)."""
    return PriceTables(
        pfs=_frozen({r.code: r for r in map(_pfs_rate, _keyed_codes(tables[PRICE_PFS]).values())}),
        asp=_frozen(
            {c: _asp_limit(row, drugs) for c, row in _keyed_codes(tables[PRICE_ASP]).items()}
        ),
        opps=_frozen(
            {c: _opps_rate(row, opps) for c, row in _keyed_codes(tables[PRICE_OPPS]).items()}
        ),
        sources=_price_sources(tables[PRICE_VERSIONS], directory / PRICE_VERSIONS),
    )


def _keyed_codes(rows: Iterable[_Row]) -> dict[str, _Row]:
    return _keyed(rows, lambda r: _match(r, "hcpcs", _PROCEDURE, "a CPT/HCPCS code"), "code")


def _pfs_rate(row: _Row) -> PfsRate:
    return PfsRate(
        code=row["hcpcs"],
        status=_match(row, "status", _PFS_STATUS, "a PFS status (one letter)"),
        work_rvu=_money(row, "work_rvu"),
        nonfacility_pe_rvu=_money(row, "nonfacility_pe_rvu"),
        nonfacility_na=_choice(row, "nonfacility_na", ("", "NA"), "nonfacility_na") == "NA",
        mp_rvu=_money(row, "mp_rvu"),
        conversion_factor=_amount(row, "conversion_factor"),
    )


def _asp_limit(row: _Row, drugs: Mapping[str, Drug]) -> AspLimit:
    """A limit is per billing unit: it must be the unit the coder counts units in."""
    limit = AspLimit(
        code=row["hcpcs"],
        unit_amount=_amount(row, "billing_unit_amount"),
        unit=_choice(row, "billing_unit", BILLING_UNITS, "billing unit"),
        payment_limit=_money(row, "payment_limit"),
    )
    drug = drugs.get(limit.code)
    if drug is not None and (drug.unit_amount, drug.unit) != (limit.unit_amount, limit.unit):
        raise row.error(
            f"{limit.code} is priced per {limit.unit_amount} {limit.unit} but {DRUGS} bills it "
            f"per {drug.unit_amount} {drug.unit}"
        )
    return limit


def _opps_rate(row: _Row, opps: Mapping[str, str]) -> OppsRate:
    """The status indicator must be the one coding used (JW/JZ follow it, D17)."""
    status = _match(row, "status_indicator", _STATUS_INDICATOR, "an OPPS status indicator")
    if row["hcpcs"] in opps and opps[row["hcpcs"]] != status:
        raise row.error(
            f"status indicator {status} of {row['hcpcs']} disagrees with {OPPS} "
            f"({opps[row['hcpcs']]})"
        )
    return OppsRate(
        code=row["hcpcs"],
        status_indicator=status,
        apc=_match(row, "apc", _APC, "a 4-digit APC or empty"),
        payment_rate=_money(row, "payment_rate") if row["payment_rate"] else None,
    )


def _price_sources(rows: Iterable[_Row], where: Path) -> Mapping[PriceTable, PriceSource]:
    """One period per price table, each named; a table without its period is refused."""
    names = [t.value for t in PriceTable]
    keyed = _keyed(rows, lambda r: _choice(r, "name", names, "price table"), "price table")
    sources = {
        PriceTable(name): PriceSource(PriceTable(name), _version(row), _text(row, "source"))
        for name, row in keyed.items()
    }
    missing = [name for name in names if name not in keyed]
    if missing:
        raise MappingError(f"{where}: no period for price table(s) {', '.join(missing)}")
    return MappingProxyType(sources)


# ---------------------------------------------------------------- entry point


def load_mappings(directory: Path) -> Mappings:
    """Read, check and assemble every table of `directory` (normally `mappings/`)."""
    present = _price_files_present(directory)
    tables = {
        name: _read(directory, name) for name in _COLUMNS if name not in PRICE_FILES or present
    }
    catalog, drug_labels = _catalog(tables)
    opps_status = _opps(tables[OPPS])
    return Mappings(
        catalog=catalog,
        opps_status=opps_status,
        routes=_routes(tables[ROUTES]),
        methods=_methods(tables[METHODS]),
        locations=_locations(tables[LOCATIONS]),
        revenue_codes=_revenue(tables[REVENUE]),
        hold_reasons=_holds(tables[HOLDS], directory / HOLDS),
        code_labels=_labels(tables[LABELS], drug_labels),
        observation_codes=_observations(tables[OBSERVATIONS]),
        table_versions=_versions(tables[VERSIONS]),
        prices=(
            _price_tables(tables, directory, catalog.drugs, opps_status)
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
