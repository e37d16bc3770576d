#!/usr/bin/env python3
"""Regenerate the CMS-derived tables in `mappings/` from the copies in `mappings/reference/`.

Run it when CMS publishes a new quarter (`make mappings`). Why a script and not
hand edits: the drug catalog, the OPPS status indicators and the table
periods must match the CMS files row for row, and a byte-for-byte reproducible
output lets a test prove the committed tables were not edited by hand.

Rules of this file: stdlib only; the output is deterministic (sorted rows, `\\n`
line ends, canonical decimals); it writes only the generated tables and never
touches the hand-written ones (`drug_catalog_local.csv`, `routes.csv`, ...).

Inputs (under `--reference`, by default the repository's `mappings/reference/`, so a
fresh clone builds alone; `mappings/reference/SOURCES.md` says where each came from):
- `drug-catalog-seed.csv`: authoritative rows (class, container, RxNorm) per HCPCS + NDC;
- `cms_asp_ndc_hcpcs_crosswalk_<YYYY>Q<n>.csv`: adds the NDCs of the
  product-specific and biosimilar codes in `_EXTRA_CODES` (container `unknown`);
- `cms_opps_addendum_b_<YYYY><mon>_*.csv`: status indicators;
- `cms_hcpcs_level2_<YYYY><mon>_*.csv`: its period, and the product names
  that tell product-specific codes apart in `drugs.csv` labels.

`--shared DIR` (a directory laid out like the team's reference, `DIR/drug-catalog-seed.csv`
and `DIR/reference/cms_*.csv`) first copies the newest file of each kind, including the
run-time price tables (`cms_asp_payment_limits_*`, `cms_pfs_rvu_*`), into `--reference`,
removing the older period of that kind, then builds from `--reference`: a new quarter is
taken in with one command and the repository stays able to rebuild itself.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

CATALOG_COLUMNS = (
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
)
DRUG_COLUMNS = ("hcpcs", "drug", "class", "billing_unit_amount", "billing_unit", "label")
OPPS_COLUMNS = ("hcpcs", "status_indicator")
VERSION_COLUMNS = ("name", "effective_start", "effective_end")
PRICE_PFS_COLUMNS = (
    "hcpcs",
    "status",
    "work_rvu",
    "nonfacility_pe_rvu",
    "nonfacility_na",
    "mp_rvu",
    "conversion_factor",
)
PRICE_ASP_COLUMNS = ("hcpcs", "billing_unit_amount", "billing_unit", "payment_limit")
PRICE_OPPS_COLUMNS = ("hcpcs", "status_indicator", "apc", "payment_rate")
PRICE_VERSION_COLUMNS = ("name", "effective_start", "effective_end", "source")

CHEMOTHERAPY = "chemotherapy"
IMMUNOTHERAPY = "immunotherapy"
HORMONAL = "hormonal-antineoplastic"
THERAPEUTIC = "therapeutic"


class BuildError(Exception):
    """An input file is not what this script was written for: stop rather than guess."""


@dataclass(frozen=True, slots=True)
class ExtraCode:
    """A crosswalk code the seed leaves out, whose class is certain from the drug name.

    `check` must appear in the crosswalk's description or product name: if CMS
    ever reuses the code for another product, the build stops instead of
    filing that product under the wrong class.
    """

    hcpcs: str
    drug: str
    drug_class: str
    check: str


_EXTRA_CODES: tuple[ExtraCode, ...] = (
    ExtraCode("J9292", "pemetrexed dipotassium", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9294", "pemetrexed", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9296", "pemetrexed", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9297", "pemetrexed", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9304", "pemetrexed", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9314", "pemetrexed", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9323", "pemetrexed ditromethamine", CHEMOTHERAPY, "pemetrexed"),
    ExtraCode("J9049", "bortezomib", CHEMOTHERAPY, "bortezomib"),
    ExtraCode("J9054", "bortezomib", CHEMOTHERAPY, "bortezomib"),
    ExtraCode("J9172", "docetaxel", CHEMOTHERAPY, "docetaxel"),
    ExtraCode("J9196", "gemcitabine", CHEMOTHERAPY, "gemcitabine"),
    ExtraCode("J1456", "fosaprepitant", THERAPEUTIC, "fosaprepitant"),
    ExtraCode("J2468", "palonosetron", THERAPEUTIC, "palonosetron"),
    ExtraCode("J0641", "levoleucovorin", THERAPEUTIC, "levoleucovorin"),
    ExtraCode("J1627", "granisetron extended-release", THERAPEUTIC, "granisetron"),
    ExtraCode("J9024", "atezolizumab and hyaluronidase-tqjs", IMMUNOTHERAPY, "hybreza"),
    ExtraCode("J9289", "nivolumab and hyaluronidase-nvhy", IMMUNOTHERAPY, "nivolumab"),
    ExtraCode("J9311", "rituximab and hyaluronidase", IMMUNOTHERAPY, "rituximab"),
    ExtraCode("Q5107", "bevacizumab-awwb", IMMUNOTHERAPY, "mvasi"),
    ExtraCode("Q5118", "bevacizumab-bvzr", IMMUNOTHERAPY, "zirabev"),
    ExtraCode("Q5126", "bevacizumab-maly", IMMUNOTHERAPY, "alymsys"),
    ExtraCode("Q5129", "bevacizumab-adcd", IMMUNOTHERAPY, "vegzelma"),
    ExtraCode("Q5112", "trastuzumab-dttb", IMMUNOTHERAPY, "ontruzant"),
    ExtraCode("Q5113", "trastuzumab-pkrb", IMMUNOTHERAPY, "herzuma"),
    ExtraCode("Q5114", "trastuzumab-dkst", IMMUNOTHERAPY, "ogivri"),
    ExtraCode("Q5116", "trastuzumab-qyyp", IMMUNOTHERAPY, "trazimera"),
    ExtraCode("Q5117", "trastuzumab-anns", IMMUNOTHERAPY, "kanjinti"),
    ExtraCode("Q5146", "trastuzumab-strf", IMMUNOTHERAPY, "hercessi"),
    ExtraCode("Q5119", "rituximab-pvvr", IMMUNOTHERAPY, "ruxience"),
    ExtraCode("Q5123", "rituximab-arrx", IMMUNOTHERAPY, "riabni"),
    ExtraCode("Q5136", "denosumab-bbdz", THERAPEUTIC, "denosumab-bbdz"),
    ExtraCode("J1950", "leuprolide", HORMONAL, "leuprolide"),
    ExtraCode("J1952", "leuprolide", HORMONAL, "camcevi"),
    ExtraCode("J1954", "leuprolide", HORMONAL, "lutr"),
)

# CMS "HCPCS dosage" unit words -> the catalog's unit names (mg, mcg, g, mL, units).
_UNIT_WORDS = {"MG": "mg", "MCG": "mcg", "GM": "g", "G": "g", "ML": "mL", "CC": "mL"}
_UNIT_WORDS |= {"UNIT": "units", "UNITS": "units"}
_DOSAGE = re.compile(r"^\s*(?:UP TO\s+)?([0-9]+(?:\.[0-9]+)?)\s*([A-Z]+)\b")
_OPPS_DRUG_CODE = re.compile(r"^[JQAC][0-9]{4}$")
_ADMIN_CPT = range(96360, 96550)
_ADMIN_HCPCS = frozenset({"G0498"})
_PARENTHESIS = re.compile(r"\(([a-z][a-z .'/-]*)\)")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """One HCPCS + NDC row of `drug_catalog.csv`, every field already canonical text."""

    hcpcs: str
    drug: str
    drug_class: str
    unit_amount: str
    unit: str
    ndc: str
    package_amount: str
    container: str
    rxnorm: str
    labeler: str

    def cells(self) -> tuple[str, ...]:
        return (
            self.hcpcs,
            self.drug,
            self.drug_class,
            self.unit_amount,
            self.unit,
            self.ndc,
            self.package_amount,
            self.container,
            self.rxnorm,
            self.labeler,
        )


@dataclass(frozen=True, slots=True)
class Sources:
    """The reference files one build reads, chosen by the period in their names."""

    seed: Path
    crosswalk: Path
    opps: Path
    hcpcs: Path
    asp: Path  # payment limits (price_asp.csv)
    pfs: Path  # PFS RVUs of the administration codes (price_pfs.csv)


# ---------------------------------------------------------------- reading


def _read_csv(path: Path) -> list[dict[str, str]]:
    """All rows of a CMS/seed CSV as dicts; CMS files sometimes carry a BOM."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _canonical_decimal(text: str, where: str) -> str:
    """One spelling per amount ("600", "0.5"), so regenerated files diff cleanly."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation as exc:
        raise BuildError(f"{where}: not a number: {text!r}") from exc
    return _format_decimal(value)


def _format_decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _ndc11(dashed: str, where: str) -> str:
    """The 5-4-2 crosswalk/seed NDC as 11 digits without dashes."""
    digits = dashed.strip().replace("-", "")
    if len(digits) != 11 or not digits.isdigit():
        raise BuildError(f"{where}: NDC {dashed!r} is not an 11-digit 5-4-2 NDC")
    return digits


def parse_dosage(dosage: str, where: str) -> tuple[str, str]:
    """Billing unit from the crosswalk "HCPCS dosage" column, e.g. "10 MG (rituximab)"."""
    match = _DOSAGE.match(dosage.upper())
    if match is None or match.group(2) not in _UNIT_WORDS:
        raise BuildError(f"{where}: cannot read a billing unit from HCPCS dosage {dosage!r}")
    return _canonical_decimal(match.group(1), where), _UNIT_WORDS[match.group(2)]


# ---------------------------------------------------------------- catalog


def seed_rows(path: Path) -> list[CatalogRow]:
    """The seed is authoritative: its rows are copied, only normalized."""
    rows = []
    for number, raw in enumerate(_read_csv(path), start=2):
        where = f"{path.name} line {number}"
        rows.append(
            CatalogRow(
                hcpcs=raw["hcpcs"].strip(),
                drug=raw["drug"].strip(),
                drug_class=raw["class"].strip(),
                unit_amount=_canonical_decimal(raw["billing_unit_amount"], where),
                unit=raw["billing_unit"].strip(),
                ndc=_ndc11(raw["ndc"], where),
                package_amount=_optional_decimal(raw["package_amount"], where),
                container=raw["container"].strip(),
                rxnorm=raw["rxnorm_ingredient"].strip(),
                labeler=raw["labeler"].strip(),
            )
        )
    return rows


def _optional_decimal(text: str, where: str) -> str:
    return _canonical_decimal(text, where) if text.strip() else ""


def crosswalk_rows(
    crosswalk: list[dict[str, str]], code_column: str, extra: ExtraCode
) -> list[CatalogRow]:
    """The crosswalk NDCs of one extra code; container unknown, RxNorm left blank.

    RxNorm stays blank on purpose: a biosimilar has its own RxNorm ingredient,
    and a product-specific pemetrexed code must not make the ingredient code
    ambiguous and so lose the NOS code's RxNorm match.
    """
    rows = []
    for raw in crosswalk:
        if raw[code_column].strip() != extra.hcpcs:
            continue
        where = f"crosswalk {extra.hcpcs} {raw['NDC2']}"
        _check_product(raw, extra, where)
        amount, unit = parse_dosage(raw["HCPCS dosage"], where)
        package = Decimal(_canonical_decimal(raw["BILLUNITS"], where)) * Decimal(amount)
        rows.append(
            CatalogRow(
                hcpcs=extra.hcpcs,
                drug=extra.drug,
                drug_class=extra.drug_class,
                unit_amount=amount,
                unit=unit,
                ndc=_ndc11(raw["NDC2"], where),
                package_amount=_format_decimal(package),
                container="unknown",
                rxnorm="",
                labeler=raw["LABELER NAME"].strip(),
            )
        )
    return rows


def _code_column(raw: dict[str, str]) -> str:
    """The HCPCS column is named after the year (`_2026_CODE`): find it for any year."""
    for name in raw:
        if re.fullmatch(r"_\d{4}_CODE", name):
            return name
    raise BuildError("crosswalk has no _<year>_CODE column")


def _check_product(raw: dict[str, str], extra: ExtraCode, where: str) -> None:
    text = f"{raw['Short Description']} {raw['Drug Name']}".lower()
    if extra.check not in text:
        raise BuildError(
            f"{where}: expected a {extra.check!r} product, found {text.strip()!r}; "
            "review _EXTRA_CODES before regenerating"
        )


def build_catalog(sources: Sources, warn: list[str]) -> list[CatalogRow]:
    """Seed rows plus the extra codes' crosswalk rows, sorted by HCPCS then NDC."""
    crosswalk = _read_csv(sources.crosswalk)
    if not crosswalk:
        raise BuildError(f"{sources.crosswalk.name}: no rows")
    code_column = _code_column(crosswalk[0])
    rows = seed_rows(sources.seed)
    listed = {(r[code_column].strip(), _digits(r["NDC2"])) for r in crosswalk}
    warn.extend(
        f"seed row {row.hcpcs} {row.ndc} is not in {sources.crosswalk.name}"
        for row in rows
        if (row.hcpcs, row.ndc) not in listed
    )
    rows.extend(_extra_rows(crosswalk, code_column, {(r.hcpcs, r.ndc) for r in rows}, warn))
    return sorted(rows, key=lambda r: (r.hcpcs, r.ndc))


def _extra_rows(
    crosswalk: list[dict[str, str]], code_column: str, seeded: set[tuple[str, str]], warn: list[str]
) -> list[CatalogRow]:
    """Crosswalk rows of `_EXTRA_CODES`; a pair the seed already has keeps the seed's row."""
    rows: list[CatalogRow] = []
    for extra in _EXTRA_CODES:
        found = crosswalk_rows(crosswalk, code_column, extra)
        if not found:
            warn.append(f"{extra.hcpcs} ({extra.drug}) has no NDC in the crosswalk")
        rows.extend(row for row in found if (row.hcpcs, row.ndc) not in seeded)
    return rows


def _digits(text: str) -> str:
    return text.strip().replace("-", "")


# ---------------------------------------------------------------- drugs


def build_drugs(
    catalog: Sequence[CatalogRow], descriptors: Mapping[str, str]
) -> list[tuple[str, ...]]:
    """One row per HCPCS; the catalog must agree with itself on name, class and unit."""
    firsts: dict[str, CatalogRow] = {}
    for row in catalog:
        first = firsts.setdefault(row.hcpcs, row)
        if _billing_key(first) != _billing_key(row):
            raise BuildError(f"{row.hcpcs}: NDC {row.ndc} disagrees with NDC {first.ndc}")
    shared = _shared_billing_units(firsts.values())
    return [
        (*_billing_key(row), _label(row, shared, descriptors.get(code, "")))
        for code, row in sorted(firsts.items())
    ]


def _billing_key(row: CatalogRow) -> tuple[str, str, str, str, str]:
    return (row.hcpcs, row.drug, row.drug_class, row.unit_amount, row.unit)


def _shared_billing_units(rows: Iterable[CatalogRow]) -> set[tuple[str, str, str]]:
    """(drug, amount, unit) triples billed under more than one HCPCS code."""
    counts: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (row.drug, row.unit_amount, row.unit)
        counts[key] = counts.get(key, 0) + 1
    return {key for key, count in counts.items() if count > 1}


def _label(row: CatalogRow, shared: set[tuple[str, str, str]], descriptor: str) -> str:
    """Our own short label: generic name and billing unit, not a CMS/AMA descriptor.

    When several codes bill the same drug in the same unit (product-specific
    codes), the product or labeler name that CMS puts in parentheses tells
    them apart, e.g. "pemetrexed, per 10 mg (Hospira)".
    """
    label = f"{row.drug}, per {row.unit_amount} {row.unit}"
    qualifier = _product_qualifier(descriptor)
    if (row.drug, row.unit_amount, row.unit) in shared and qualifier:
        return f"{label} ({qualifier})"
    return label


def _product_qualifier(descriptor: str) -> str:
    """The product name in a HCPCS descriptor ("(dr. reddy's)"), or "not otherwise specified".

    Parentheses that describe the form ("(for depot suspension)", "(for
    non-esrd use)") or hold numbers are not product names.
    """
    text = descriptor.lower()
    for match in _PARENTHESIS.finditer(text):
        words = match.group(1)
        if not words.startswith("for ") and "esrd" not in words:
            return " ".join(w[:1].upper() + w[1:] for w in words.split())
    return "not otherwise specified" if "not otherwise specified" in text else ""


def read_descriptors(path: Path) -> dict[str, str]:
    """HCPCS Level II long descriptors by code (read only for product names in labels)."""
    return {r["hcpcs"].strip(): r["long_description"] for r in _read_csv(path)}


# ---------------------------------------------------------------- OPPS status


def build_opps(path: Path) -> list[tuple[str, str]]:
    """Status indicators of drug codes (J/Q/A/C) and administration codes (96360-96549, G0498)."""
    rows: dict[str, str] = {}
    for raw in _read_csv(path):
        code = raw["HCPCS Code"].strip().upper()
        status = raw["SI"].strip()
        if status and _wanted_opps_code(code):
            rows[code] = status
    return sorted(rows.items())


def _wanted_opps_code(code: str) -> bool:
    if _OPPS_DRUG_CODE.match(code) or code in _ADMIN_HCPCS:
        return True
    return code.isdigit() and len(code) == 5 and int(code) in _ADMIN_CPT


# ---------------------------------------------------------------- price tables


def _wanted_admin_code(code: str) -> bool:
    return code in _ADMIN_HCPCS or (code.isdigit() and len(code) == 5 and int(code) in _ADMIN_CPT)


def build_price_pfs(path: Path) -> list[tuple[str, ...]]:
    """National PFS RVUs of 96360-96549 and G0498 (global rows only), with the conversion factor.

    Only the non-facility inputs are kept: the office is priced at the non-facility
    amount, and the hospital outpatient figure is the facility's OPPS payment.
    """
    rows: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(_read_csv(path), start=2):
        code = raw["HCPCS"].strip().upper()
        if raw["MOD"].strip() or not _wanted_admin_code(code):
            continue
        where = f"{path.name} line {number}"
        na = raw["NONFAC_NA"].strip().upper()
        if na not in ("", "NA"):
            raise BuildError(f"{where}: NONFAC_NA {na!r} is neither empty nor NA")
        rows[code] = (
            code,
            raw["STATUS"].strip().upper(),
            _canonical_decimal(raw["WORK_RVU"], where),
            _canonical_decimal(raw["NONFAC_PE_RVU"], where),
            na,
            _canonical_decimal(raw["MP_RVU"], where),
            _canonical_decimal(raw["CONV_FACTOR"], where),
        )
    if len({row[-1] for row in rows.values()}) > 1:
        raise BuildError(f"{path.name}: more than one conversion factor")
    return sorted(rows.values())


def build_price_asp(
    path: Path, drugs: Sequence[Sequence[str]], warn: list[str]
) -> list[tuple[str, ...]]:
    """ASP payment limits of the catalog's drug codes, in the catalog's billing unit.

    A limit is per billing unit: a code whose CMS unit differs from ours (1 mg vs 10 mg)
    would be priced ten times off, so the build stops instead.
    """
    limits = {r["HCPCS Code"].strip().upper(): (n, r) for n, r in enumerate(_read_csv(path), 2)}
    rows = []
    for code, _drug, _class, amount, unit, _label in drugs:
        found = limits.get(code)
        if found is None or not found[1]["Payment Limit"].strip():
            warn.append(f"{code} has no ASP payment limit in {path.name}")
            continue
        number, raw = found
        where = f"{path.name} line {number}"
        if parse_dosage(raw["HCPCS Code Dosage"], where) != (amount, unit):
            raise BuildError(
                f"{where}: {code} is priced per {raw['HCPCS Code Dosage']!r}, "
                f"the catalog bills it per {amount} {unit}"
            )
        rows.append((code, amount, unit, _canonical_decimal(raw["Payment Limit"], where)))
    return rows


def build_price_opps(path: Path, drug_codes: Iterable[str]) -> list[tuple[str, ...]]:
    """Addendum B status indicator, APC and payment rate of the catalog's drug codes and the
    administration codes; the rate is empty where CMS publishes none (packaged, `N`)."""
    wanted = set(drug_codes)
    rows: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(_read_csv(path), start=2):
        code = raw["HCPCS Code"].strip().upper()
        if code not in wanted and not _wanted_admin_code(code):
            continue
        where = f"{path.name} line {number}"
        rate = raw["Payment Rate"].strip().lstrip("$")
        rows[code] = (
            code,
            raw["SI"].strip(),
            raw["APC"].strip(),
            _canonical_decimal(rate, where) if rate else "",
        )
    return sorted(rows.values())


def build_price_versions(sources: Sources) -> list[tuple[str, str, str, str]]:
    """Each price table's period, read from its file name like `table_versions.csv`."""
    periods = {
        "asp": (crosswalk_period(sources.asp), sources.asp),
        "opps": (opps_period(sources.opps), sources.opps),
        "pfs": (_release_period(sources.pfs), sources.pfs),
    }
    return [
        (name, s.isoformat(), e.isoformat(), path.name)
        for name, ((s, e), path) in sorted(periods.items())
    ]


# ---------------------------------------------------------------- versions


def _quarter_end(start: date) -> date:
    month = start.month + 3
    year = start.year + (month > 12)
    return date(year, (month - 1) % 12 + 1, 1) - timedelta(days=1)


def crosswalk_period(path: Path) -> tuple[date, date]:
    """`..._2026Q1.csv`: the ASP quarter, January-March."""
    match = re.search(r"_(\d{4})Q([1-4])", path.name)
    if match is None:
        raise BuildError(f"{path.name}: no <year>Q<n> in the file name")
    start = date(int(match.group(1)), 3 * int(match.group(2)) - 2, 1)
    return start, _quarter_end(start)


def _month_start(path: Path) -> date:
    match = re.search(r"_(\d{4})(" + "|".join(_MONTHS) + r")", path.name.lower())
    if match is None:
        raise BuildError(f"{path.name}: no <year><month> (e.g. 2025oct) in the file name")
    return date(int(match.group(1)), _MONTHS.index(match.group(2)) + 1, 1)


def opps_period(path: Path) -> tuple[date, date]:
    """Addendum B is a quarterly update: in force for its quarter."""
    start = _month_start(path)
    return start, _quarter_end(start)


def hcpcs_period(path: Path) -> tuple[date, date]:
    """The HCPCS file is read as valid to the end of its year, when the annual file replaces it."""
    start = _month_start(path)
    return start, date(start.year, 12, 31)


def build_versions(sources: Sources) -> list[tuple[str, str, str]]:
    periods = {
        "crosswalk": crosswalk_period(sources.crosswalk),
        "hcpcs": hcpcs_period(sources.hcpcs),
        "opps": opps_period(sources.opps),
    }
    return [(name, s.isoformat(), e.isoformat()) for name, (s, e) in sorted(periods.items())]


# ---------------------------------------------------------------- sources and output


SEED_NAME = "drug-catalog-seed.csv"


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of vendored reference file: its name pattern and how its period is read."""

    pattern: str
    period: Callable[[Path], tuple[date, date]]


def _release_period(path: Path) -> tuple[date, date]:
    """`..._2025a_...`: the PFS RVU release letter (a-d) of a year, read as its quarter."""
    match = re.search(r"_(\d{4})([a-d])_", path.name.lower())
    if match is None:
        raise BuildError(f"{path.name}: no <year><release letter> (e.g. 2025a) in the file name")
    start = date(int(match.group(1)), 3 * "abcd".index(match.group(2)) + 1, 1)
    return start, _quarter_end(start)


KINDS: Mapping[str, Kind] = {
    "crosswalk": Kind("cms_asp_ndc_hcpcs_crosswalk_*.csv", crosswalk_period),
    "opps": Kind("cms_opps_addendum_b_*.csv", opps_period),
    "hcpcs": Kind("cms_hcpcs_level2_*.csv", hcpcs_period),
    # The price tables (price_asp.csv, price_pfs.csv) for expected payment at run time.
    "asp_payment_limits": Kind("cms_asp_payment_limits_*.csv", crosswalk_period),
    "pfs_rvu": Kind("cms_pfs_rvu_*.csv", _release_period),
}


def find_sources(reference: Path) -> Sources:
    """The seed and the newest file of each kind the build reads, all in one directory."""
    seed = reference / SEED_NAME
    if not seed.is_file():
        raise BuildError(f"{seed}: missing")
    return Sources(
        seed=seed,
        crosswalk=_newest(reference, KINDS["crosswalk"]),
        opps=_newest(reference, KINDS["opps"]),
        hcpcs=_newest(reference, KINDS["hcpcs"]),
        asp=_newest(reference, KINDS["asp_payment_limits"]),
        pfs=_newest(reference, KINDS["pfs_rvu"]),
    )


def _newest(directory: Path, kind: Kind) -> Path:
    candidates = sorted(directory.glob(kind.pattern), key=lambda p: (kind.period(p), p.name))
    if not candidates:
        raise BuildError(f"{directory}: no file matches {kind.pattern}")
    return candidates[-1]


def take_in(shared: Path, reference: Path) -> list[str]:
    """Copy the seed and the newest file of each kind from a team-layout directory.

    An older file of the same kind is removed, so that `reference` always holds one
    period per kind and what the build read is what the repository keeps. Returns one
    line per change for the operator (who then updates `SOURCES.md`).
    """
    chosen = [shared / SEED_NAME] + [_newest(shared / "reference", k) for k in KINDS.values()]
    if not chosen[0].is_file():
        raise BuildError(f"{chosen[0]}: missing")
    reference.mkdir(parents=True, exist_ok=True)
    changes: list[str] = []
    for kind in KINDS.values():
        for old in reference.glob(kind.pattern):
            if old.name not in {c.name for c in chosen}:
                old.unlink()
                changes.append(f"removed {old}")
    for source in chosen:
        target = reference / source.name
        data = source.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
            changes.append(f"copied {source} -> {target}")
    return changes


def render(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """CSV text with `\\n` line ends and minimal quoting: the byte-exact form tests compare."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def build(reference: Path) -> tuple[dict[str, bytes], list[str]]:
    """Every generated file's bytes by file name, plus warnings for the operator."""
    sources = find_sources(reference)
    warnings: list[str] = []
    catalog = build_catalog(sources, warnings)
    drugs = build_drugs(catalog, read_descriptors(sources.hcpcs))
    files = {
        "drug_catalog.csv": render(CATALOG_COLUMNS, (r.cells() for r in catalog)),
        "drugs.csv": render(DRUG_COLUMNS, drugs),
        "opps_status.csv": render(OPPS_COLUMNS, build_opps(sources.opps)),
        "table_versions.csv": render(VERSION_COLUMNS, build_versions(sources)),
        "price_asp.csv": render(PRICE_ASP_COLUMNS, build_price_asp(sources.asp, drugs, warnings)),
        "price_opps.csv": render(
            PRICE_OPPS_COLUMNS, build_price_opps(sources.opps, (row[0] for row in drugs))
        ),
        "price_pfs.csv": render(PRICE_PFS_COLUMNS, build_price_pfs(sources.pfs)),
        "price_versions.csv": render(PRICE_VERSION_COLUMNS, build_price_versions(sources)),
    }
    return files, warnings


REPO = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        default=REPO / "mappings" / "reference",
        help="directory of the seed and the CMS files (default: the repository's copies)",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        metavar="DIR",
        default=None,
        help="take in a new quarter first: copy the newest files from DIR/drug-catalog-seed.csv "
        "and DIR/reference/ into --reference",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=REPO / "mappings",
        help="where the generated tables go (default: the repository's mappings/)",
    )
    args = parser.parse_args(argv)
    try:
        changes = take_in(args.shared, args.reference) if args.shared else []
        files, warnings = build(args.reference)
    except (BuildError, KeyError, OSError) as exc:
        print(f"build_mappings: {exc}", file=sys.stderr)
        return 1
    for change in changes:
        print(change)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (args.out / name).write_bytes(content)
        rows = content.count(b"\n") - 1
        print(f"wrote {args.out / name} ({rows} rows)")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if changes:
        print("reference files changed: update mappings/reference/SOURCES.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
