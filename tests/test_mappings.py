"""The shipped `mappings/` tables: they load, they hold the facts the coding rules rely on,
a bad row stops loading with its file and line, and the generated files are reproducible.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from adapter.core.catalog import Container, DrugClass
from adapter.core.holds import HoldReason
from adapter.core.mappings import Mappings, Setting
from adapter.core.model import Code, CodeSystem, Method, Route
from adapter.mappings_loader import MappingError, default_mappings_dir, load_mappings

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "mappings" / "reference"
GENERATED = (
    "drug_catalog.csv",
    "drugs.csv",
    "opps_status.csv",
    "table_versions.csv",
    "price_asp.csv",
    "price_opps.csv",
    "price_pfs.csv",
    "price_versions.csv",
)


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(default_mappings_dir())


def ndc(value: str) -> Code:
    return Code(CodeSystem.NDC.value, value)


class TestShippedTables:
    """The committed tables load and cover every vocabulary the core uses."""

    def test_default_dir_is_the_repo_mappings(self) -> None:
        assert default_mappings_dir().resolve() == REPO / "mappings"

    def test_every_table_has_rows(self, mappings: Mappings) -> None:
        assert len(mappings.catalog.drugs) >= 45
        assert len(mappings.catalog.products) >= 800
        for table in (
            mappings.opps_status,
            mappings.routes,
            mappings.methods,
            mappings.locations,
            mappings.revenue_codes,
            mappings.code_labels,
            mappings.observation_codes,
        ):
            assert table
        assert {v.name for v in mappings.table_versions} == {"crosswalk", "opps", "hcpcs"}

    def test_every_hold_reason_has_a_sentence(self, mappings: Mappings) -> None:
        assert set(mappings.hold_reasons) == {reason.value for reason in HoldReason}
        assert all(text.sentence.endswith(".") for text in mappings.hold_reasons.values())

    def test_every_drug_has_a_revenue_code_and_label(self, mappings: Mappings) -> None:
        for code in mappings.catalog.drugs:
            assert mappings.revenue_code(code) in ("0636", "0258"), code
            assert mappings.code_labels[code].startswith(mappings.catalog.drugs[code].name)

    @pytest.mark.parametrize(
        "code",
        [
            "96360", "96361", "96365", "96366", "96367", "96368", "96372", "96374", "96375",
            "96376", "96401", "96402", "96409", "96411", "96413", "96415", "96416", "96417",
            "96521", "96522", "96523", "G0498", "JW", "JZ", "59", "XU",
        ],
    )  # fmt: skip
    def test_administration_codes_and_modifiers_have_labels(
        self, mappings: Mappings, code: str
    ) -> None:
        assert mappings.code_labels[code]

    def test_crosswalk_period(self, mappings: Mappings) -> None:
        crosswalk = next(v for v in mappings.table_versions if v.name == "crosswalk")
        assert (crosswalk.effective_start.isoformat(), crosswalk.effective_end.isoformat()) == (
            "2026-01-01",
            "2026-03-31",
        )


class TestPriceTables:
    """The price tables hold the CMS rows as published (values read off mappings/reference/)."""

    def test_each_price_table_has_its_period_and_source_file(self, mappings: Mappings) -> None:
        periods = {
            table.value: (
                s.version.effective_start.isoformat(),
                s.version.effective_end.isoformat(),
                s.source_file,
            )
            for table, s in mappings.prices.sources.items()
        }
        assert periods == {
            "asp": ("2026-01-01", "2026-03-31", "cms_asp_payment_limits_2026Q1.csv"),
            "opps": ("2025-10-01", "2025-12-31", "cms_opps_addendum_b_2025oct_no_cpt_desc.csv"),
            "pfs": ("2025-01-01", "2025-03-31", "cms_pfs_rvu_2025a_drug_admin.csv"),
        }

    def test_pfs_row_of_96413_and_the_conversion_factor(self, mappings: Mappings) -> None:
        """cms_pfs_rvu_2025a_drug_admin.csv: 96413,,A,0.28,3.35,,3.35,NA,0.06,...,32.3465."""
        rate = mappings.prices.pfs["96413"]
        assert (rate.status, rate.work_rvu, rate.nonfacility_pe_rvu, rate.mp_rvu) == (
            "A",
            Decimal("0.28"),
            Decimal("3.35"),
            Decimal("0.06"),
        )
        assert rate.nonfacility_rvu == Decimal("3.69")
        assert rate.conversion_factor == Decimal("32.3465")

    def test_every_administration_code_of_the_pfs_file_is_kept(self, mappings: Mappings) -> None:
        assert len(mappings.prices.pfs) == 43
        assert mappings.prices.pfs["96547"].nonfacility_na
        assert mappings.prices.pfs["G0498"].status == "C"

    def test_asp_limit_is_per_catalog_billing_unit(self, mappings: Mappings) -> None:
        """cms_asp_payment_limits_2026Q1.csv: J9271,Inj pembrolizumab,1 MG,59.726; J7050 250 CC."""
        assert mappings.prices.asp["J9271"].payment_limit == Decimal("59.726")
        saline = mappings.prices.asp["J7050"]
        assert (saline.unit_amount, saline.unit, saline.payment_limit) == (
            Decimal(250),
            "mL",
            Decimal("0.664"),
        )
        assert set(mappings.prices.asp) == set(mappings.catalog.drugs)

    def test_opps_rates_of_a_drug_an_administration_and_a_packaged_code(
        self, mappings: Mappings
    ) -> None:
        """Addendum B: J9271 K 1490 $60.291; 96413 S 5694 $331.690; J1100 N (no rate)."""
        opps = mappings.prices.opps
        assert (opps["J9271"].status_indicator, opps["J9271"].payment_rate) == (
            "K",
            Decimal("60.291"),
        )
        assert (opps["96413"].apc, opps["96413"].payment_rate) == ("5694", Decimal("331.69"))
        assert (opps["J1100"].status_indicator, opps["J1100"].payment_rate) == ("N", None)
        assert opps["J1950"].payment_rate == Decimal("1730.324")  # "$1,730.324" in the file

    def test_price_status_indicators_agree_with_the_coders(self, mappings: Mappings) -> None:
        for code, rate in mappings.prices.opps.items():
            assert mappings.opps_status[code] == rate.status_indicator, code


class TestDrugFacts:
    """Billing units and classes of coding-rules.md §3 and the scenarios."""

    @pytest.mark.parametrize(
        ("hcpcs", "amount", "unit", "drug_class"),
        [
            ("J9271", "1", "mg", DrugClass.IMMUNOTHERAPY),
            ("J9299", "1", "mg", DrugClass.IMMUNOTHERAPY),
            ("J9022", "10", "mg", DrugClass.IMMUNOTHERAPY),
            ("J9035", "10", "mg", DrugClass.IMMUNOTHERAPY),
            ("J9355", "10", "mg", DrugClass.IMMUNOTHERAPY),
            ("J9312", "10", "mg", DrugClass.IMMUNOTHERAPY),
            ("Q5115", "10", "mg", DrugClass.IMMUNOTHERAPY),
            ("J9045", "50", "mg", DrugClass.CHEMOTHERAPY),
            ("J9267", "1", "mg", DrugClass.CHEMOTHERAPY),
            ("J9190", "500", "mg", DrugClass.CHEMOTHERAPY),
            ("J9305", "10", "mg", DrugClass.CHEMOTHERAPY),
            ("J9263", "0.5", "mg", DrugClass.CHEMOTHERAPY),
            ("J9206", "20", "mg", DrugClass.CHEMOTHERAPY),
            ("J9201", "200", "mg", DrugClass.CHEMOTHERAPY),
            ("J9171", "1", "mg", DrugClass.CHEMOTHERAPY),
            ("J9060", "10", "mg", DrugClass.CHEMOTHERAPY),
            ("J9000", "10", "mg", DrugClass.CHEMOTHERAPY),
            ("J9041", "0.1", "mg", DrugClass.CHEMOTHERAPY),
            ("J9370", "1", "mg", DrugClass.CHEMOTHERAPY),
            ("J9217", "7.5", "mg", DrugClass.HORMONAL),
            ("J1100", "1", "mg", DrugClass.THERAPEUTIC),
            ("J2405", "1", "mg", DrugClass.THERAPEUTIC),
            ("J2469", "25", "mcg", DrugClass.THERAPEUTIC),
            ("J1453", "1", "mg", DrugClass.THERAPEUTIC),
            ("J1200", "50", "mg", DrugClass.THERAPEUTIC),
            ("J3489", "1", "mg", DrugClass.THERAPEUTIC),
            ("J0897", "1", "mg", DrugClass.THERAPEUTIC),
            ("J0640", "50", "mg", DrugClass.THERAPEUTIC),
            ("J7030", "1000", "mL", DrugClass.HYDRATION),
            ("J7040", "500", "mL", DrugClass.HYDRATION),
            ("J7050", "250", "mL", DrugClass.HYDRATION),
        ],
    )
    def test_billing_unit_and_class(
        self, mappings: Mappings, hcpcs: str, amount: str, unit: str, drug_class: DrugClass
    ) -> None:
        drug = mappings.catalog.drugs[hcpcs]
        assert (drug.unit_amount, drug.unit, drug.drug_class) == (Decimal(amount), unit, drug_class)

    def test_retired_codes_are_absent(self, mappings: Mappings) -> None:
        """J9070, J2505 and J2780 have no NDCs in the 2026Q1 crosswalk (seed notes)."""
        assert not {"J9070", "J2505", "J2780"} & set(mappings.catalog.drugs)

    @pytest.mark.parametrize(
        ("hcpcs", "drug_class"),
        [
            ("J9294", DrugClass.CHEMOTHERAPY),
            ("J9049", DrugClass.CHEMOTHERAPY),
            ("J1456", DrugClass.THERAPEUTIC),
            ("J9311", DrugClass.IMMUNOTHERAPY),
            ("Q5107", DrugClass.IMMUNOTHERAPY),
            ("Q5146", DrugClass.IMMUNOTHERAPY),
            ("Q5136", DrugClass.THERAPEUTIC),
            ("J1950", DrugClass.HORMONAL),
        ],
    )
    def test_crosswalk_codes_added_with_unknown_container(
        self, mappings: Mappings, hcpcs: str, drug_class: DrugClass
    ) -> None:
        products = mappings.catalog.products_of(hcpcs)
        assert mappings.catalog.drugs[hcpcs].drug_class is drug_class
        assert products
        assert {p.container for p in products} == {Container.UNKNOWN}

    def test_pembrolizumab_vial(self, mappings: Mappings) -> None:
        (product,) = mappings.catalog.products["00006302602"]
        assert (product.hcpcs, product.package_amount, product.container) == (
            "J9271",
            Decimal(100),
            Container.SINGLE_DOSE,
        )

    def test_saline_bag_sits_under_three_codes(self, mappings: Mappings) -> None:
        products = mappings.catalog.products["00338004904"]
        assert [p.hcpcs for p in products] == ["J7030", "J7040", "J7050"]
        assert {p.package_amount for p in products} == {Decimal(1000)}

    def test_carboplatin_is_multiple_dose(self, mappings: Mappings) -> None:
        assert {p.container for p in mappings.catalog.products_of("J9045")} == {
            Container.MULTIPLE_DOSE
        }


class TestCatalogMatch:
    """D15: every printed NDC form, RxNorm, HCPCS and local codes reach the catalog."""

    @pytest.mark.parametrize(
        ("printed", "hcpcs", "ndc11"),
        [
            pytest.param("00006-3026-02", "J9271", "00006302602", id="11-digit-dashed"),
            pytest.param("00006302602", "J9271", "00006302602", id="11-digit"),
            pytest.param("0006-3026-02", "J9271", "00006302602", id="4-4-2"),
            pytest.param("0006302602", "J9271", "00006302602", id="10-digit-4-4-2"),
            pytest.param("50242-060-01", "J9035", "50242006001", id="5-3-2"),
            pytest.param("5024206001", "J9035", "50242006001", id="10-digit-5-3-2"),
            pytest.param("60505-6282-1", "J9045", "60505628201", id="5-4-1"),
            pytest.param("6050562821", "J9045", "60505628201", id="10-digit-5-4-1"),
            pytest.param(" 63459-0104-50 ", "Q5115", "63459010450", id="padded"),
        ],
    )
    def test_ndc_forms(self, mappings: Mappings, printed: str, hcpcs: str, ndc11: str) -> None:
        hit = mappings.catalog.match([ndc(printed)])
        assert hit is not None
        assert hit.drug.hcpcs == hcpcs
        assert hit.product is not None and hit.product.ndc == ndc11

    def test_unknown_ndc_does_not_match(self, mappings: Mappings) -> None:
        assert mappings.catalog.match([ndc("99999-9999-99")]) is None

    def test_rxnorm_ingredient(self, mappings: Mappings) -> None:
        hit = mappings.catalog.match([Code(CodeSystem.RXNORM.value, "1547545")])
        assert hit is not None and hit.drug.hcpcs == "J9271"

    def test_rxnorm_keeps_the_nos_code_when_product_codes_exist(self, mappings: Mappings) -> None:
        hit = mappings.catalog.match([Code(CodeSystem.RXNORM.value, "68446")])
        assert hit is not None and hit.drug.hcpcs == "J9305"

    def test_ambiguous_rxnorm_ingredient_is_left_out(self, mappings: Mappings) -> None:
        """Cyclophosphamide bills under six product-specific codes: RxNorm cannot choose."""
        assert "3002" not in mappings.catalog.rxnorm

    def test_hcpcs_given_directly(self, mappings: Mappings) -> None:
        hit = mappings.catalog.match([Code(CodeSystem.HCPCS.value, "j9045")])
        assert hit is not None and hit.drug.hcpcs == "J9045" and hit.product is None

    @pytest.mark.parametrize(
        ("local", "hcpcs", "ndc11"),
        [
            ("ERX12345", "J9271", "00006302602"),
            ("erx12345", "J9271", "00006302602"),
            ("LOCAL-NS1000", "J7030", "00338004904"),
            ("CDM-CARBO50", "J9045", None),
        ],
    )
    def test_local_codes(
        self, mappings: Mappings, local: str, hcpcs: str, ndc11: str | None
    ) -> None:
        hit = mappings.catalog.match([Code(CodeSystem.LOCAL.value, local)])
        assert hit is not None and hit.drug.hcpcs == hcpcs
        assert (hit.product.ndc if hit.product else None) == ndc11


class TestLookups:
    """The small vocabularies, through the Mappings accessors the core calls."""

    @pytest.mark.parametrize(
        ("code", "route"),
        [
            ("IV", Route.IV),
            ("iv", Route.IV),
            ("IVP", Route.IV),
            ("47625008", Route.IV),
            ("255560000", Route.IV),
            ("C38276", Route.IV),
            ("SQ", Route.SC),
            ("subq", Route.SC),
            ("34206005", Route.SC),
            ("78421000", Route.IM),
            ("C28161", Route.IM),
            ("IT", Route.INTRATHECAL),
            ("72607000", Route.INTRATHECAL),
            ("PO", Route.ORAL),
            ("26643006", Route.ORAL),
            ("IA", Route.OTHER),
            ("NS", Route.OTHER),
            ("XX", Route.UNKNOWN),
        ],
    )
    def test_route(self, mappings: Mappings, code: str, route: Route) -> None:
        assert mappings.route(code) is route

    @pytest.mark.parametrize(
        ("code", "method"),
        [
            ("IVP", Method.PUSH),
            ("420620005", Method.PUSH),
            ("IVPB", Method.INFUSION),
            ("iv", Method.INFUSION),
            ("PUMP", Method.PUMP),
            ("CADD", Method.PUMP),
            ("CH", Method.UNSPECIFIED),
        ],
    )
    def test_method(self, mappings: Mappings, code: str, method: Method) -> None:
        assert mappings.method(code) is method

    @pytest.mark.parametrize(
        ("code", "revenue"),
        [
            ("96413", "0335"),
            ("96409", "0335"),
            ("96417", "0335"),
            ("96401", "0331"),
            ("96402", "0331"),
            ("96360", "0260"),
            ("96375", "0260"),
            ("96372", "0260"),
            ("J9271", "0636"),
            ("Q5115", "0636"),
            ("J7030", "0258"),
            ("99213", ""),
        ],
    )
    def test_revenue_code(self, mappings: Mappings, code: str, revenue: str) -> None:
        assert mappings.revenue_code(code) == revenue

    def test_location(self, mappings: Mappings) -> None:
        rule = mappings.location(None, "nowhere", "oncinf")
        assert rule is not None
        assert (rule.setting, rule.place_of_service) == (Setting.HOSPITAL_OUTPATIENT, "22")
        office = mappings.location("ONC-OFFICE")
        assert office is not None and office.setting == Setting.OFFICE

    def test_opps_status(self, mappings: Mappings) -> None:
        assert mappings.opps_status["J9271"] == "K"
        assert mappings.opps_status["J2469"] == "N"
        assert mappings.opps_status["96413"] == "S"
        assert mappings.opps_status["G0498"] == "S"

    def test_observation_codes(self, mappings: Mappings) -> None:
        assert mappings.observation_codes["WASTE"] == "discarded-amount"


# ---------------------------------------------------------------- corrupt tables

Edit = Callable[[list[str]], tuple[list[str], int]]


def append(line: str) -> Edit:
    """Add a row at the end; returns the new lines and the 1-based line number of the row."""
    return lambda lines: ([*lines, line], len(lines) + 1)


def replace(prefix: str, new: Callable[[str], str]) -> Edit:
    """Rewrite the first row starting with `prefix`."""

    def edit(lines: list[str]) -> tuple[list[str], int]:
        index = next(i for i, line in enumerate(lines) if line.startswith(prefix))
        return [*lines[:index], new(lines[index]), *lines[index + 1 :]], index + 1

    return edit


def field(number: int, value: str) -> Callable[[str], str]:
    """Replace one comma-separated field of an unquoted CSV line."""

    def change(line: str) -> str:
        cells = line.split(",")
        cells[number] = value
        return ",".join(cells)

    return change


@pytest.fixture
def copy_of_mappings(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_mappings_dir(), target)
    return target


@pytest.mark.parametrize(
    ("table", "edit", "problem"),
    [
        pytest.param("routes.csv", append("XX-BAD,XX"), "unknown route 'XX'", id="route"),
        pytest.param("routes.csv", append("ZZ,unknown"), "unknown route 'unknown'", id="route-unk"),
        pytest.param("routes.csv", append("sc,SC"), "duplicate route code 'SC'", id="duplicate"),
        pytest.param("methods.csv", append("SLOW,drip"), "unknown method 'drip'", id="method"),
        pytest.param("methods.csv", append("A,push,extra"), "expected 2 fields", id="fields"),
        pytest.param(
            "drugs.csv", replace("J9271,", field(3, "0")), "greater than 0", id="amount-zero"
        ),
        pytest.param(
            "drugs.csv", replace("J9271,", field(3, "one")), "not a number", id="amount-text"
        ),
        pytest.param(
            "drugs.csv", replace("J9045,", field(2, "cytotoxic")), "unknown drug class", id="class"
        ),
        pytest.param(
            "drugs.csv", replace("J9045,", field(4, "vials")), "unknown billing unit", id="unit"
        ),
        pytest.param(
            "drug_catalog.csv",
            replace("J9271,", field(5, "0006302602")),
            "not an 11-digit NDC",
            id="ndc-10",
        ),
        pytest.param(
            "drug_catalog.csv",
            replace("J9271,", field(7, "vial")),
            "unknown container 'vial'",
            id="container",
        ),
        pytest.param(
            "drug_catalog.csv",
            replace("J9271,", field(6, "-100")),
            "greater than 0",
            id="package-negative",
        ),
        pytest.param(
            "drug_catalog.csv",
            replace("J9271,", field(0, "J9999")),
            "'J9999' is not in drugs.csv",
            id="hcpcs-not-in-drugs",
        ),
        pytest.param(
            "drug_catalog.csv",
            replace("J9271,", field(2, "chemotherapy")),
            "disagrees with drugs.csv",
            id="class-disagrees",
        ),
        pytest.param(
            "drug_catalog_local.csv",
            append("ERX99999,00006302699,,,no such NDC"),
            "not in drug_catalog.csv",
            id="local-ndc",
        ),
        pytest.param(
            "drug_catalog_local.csv",
            append("ERX99999,0006-3026-02,,,dashed"),
            "neither an 11-digit NDC",
            id="local-dashed",
        ),
        pytest.param(
            "drug_catalog_local.csv",
            append("erx12345,J9271,,,same code"),
            "duplicate local code 'ERX12345'",
            id="local-duplicate",
        ),
        pytest.param(
            "locations.csv", append("WARD9,inpatient,21"), "unknown setting", id="setting"
        ),
        pytest.param("locations.csv", append("WARD9,office,1"), "place of service", id="pos"),
        pytest.param("revenue_codes.csv", append("96413,335"), "4-digit revenue", id="revenue"),
        pytest.param("revenue_codes.csv", append("96*1,0335"), "family", id="revenue-family"),
        pytest.param(
            "hold_reasons.csv", append("lunch-break,Go eat."), "unknown hold reason", id="hold"
        ),
        pytest.param("code_labels.csv", append("NEW1,"), "label is empty", id="label"),
        pytest.param("code_labels.csv", append("J9271,mine"), "already has a label", id="label2"),
        pytest.param(
            "observation_codes.csv", append("WASTE2,volume"), "unknown observation", id="obx"
        ),
        pytest.param("opps_status.csv", append("J9271X,K"), "not a CPT/HCPCS", id="opps-code"),
        pytest.param(
            "table_versions.csv",
            replace("opps,", field(2, "2025-09-30")),
            "before effective_start",
            id="period",
        ),
        pytest.param(
            "table_versions.csv",
            replace("opps,", field(1, "2025-13-01")),
            "not a date",
            id="date",
        ),
        pytest.param(
            "price_pfs.csv", replace("96413,", field(3, "-1")), "0 or more", id="rvu-negative"
        ),
        pytest.param(
            "price_pfs.csv", replace("96413,", field(6, "0")), "greater than 0", id="cf-zero"
        ),
        pytest.param(
            "price_pfs.csv", replace("96413,", field(4, "N/A")), "nonfacility_na", id="pfs-na"
        ),
        pytest.param(
            "price_asp.csv", replace("J9271,", field(1, "10")), "bills it per 1 mg", id="asp-unit"
        ),
        pytest.param(
            "price_asp.csv", replace("J9271,", field(3, "$59.726")), "not a number", id="asp-$"
        ),
        pytest.param(
            "price_opps.csv", replace("J9271,", field(1, "N")), "disagrees with", id="opps-si"
        ),
        pytest.param("price_opps.csv", replace("96413,", field(2, "56")), "APC", id="opps-apc"),
        pytest.param(
            "price_opps.csv", append("96413,S,5694,331.69"), "duplicate code", id="opps-dup"
        ),
        pytest.param(
            "price_versions.csv", append("mpfs,2026-01-01,2026-12-31,x.csv"), "price table", id="pv"
        ),
        pytest.param(
            "price_versions.csv",
            replace("asp,", field(2, "2025-12-31")),
            "before effective_start",
            id="price-period",
        ),
        pytest.param("routes.csv", replace("code,", lambda _: "code;route"), "header", id="header"),
        pytest.param("methods.csv", append('"IVP,push'), "expected 2 fields", id="open-quote"),
    ],
)
def test_bad_row_names_file_and_line(
    copy_of_mappings: Path, table: str, edit: Edit, problem: str
) -> None:
    path = copy_of_mappings / table
    lines, line_number = edit(path.read_text(encoding="utf-8").splitlines())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_mappings(copy_of_mappings)
    message = str(caught.value)
    assert message.startswith(f"{path} line {line_number}: "), message
    assert problem in message


def test_missing_hold_reason_is_refused(copy_of_mappings: Path) -> None:
    path = copy_of_mappings / "hold_reasons.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(ln for ln in lines if "missing-dose" not in ln) + "\n")
    with pytest.raises(MappingError, match=r"hold_reasons\.csv: no sentence .*missing-dose"):
        load_mappings(copy_of_mappings)


def test_price_table_without_its_period_is_refused(copy_of_mappings: Path) -> None:
    path = copy_of_mappings / "price_versions.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(ln for ln in lines if not ln.startswith("pfs,")) + "\n")
    with pytest.raises(MappingError, match=r"price_versions\.csv: no period .*pfs"):
        load_mappings(copy_of_mappings)


def test_missing_table_is_refused(copy_of_mappings: Path) -> None:
    (copy_of_mappings / "methods.csv").unlink()
    with pytest.raises(MappingError, match=r"methods\.csv: file is missing"):
        load_mappings(copy_of_mappings)


def test_site_directory_from_before_the_price_tables_still_loads_with_nothing_priceable(
    copy_of_mappings: Path,
) -> None:
    for name in ("price_pfs.csv", "price_asp.csv", "price_opps.csv", "price_versions.csv"):
        (copy_of_mappings / name).unlink()

    loaded = load_mappings(copy_of_mappings)

    assert not loaded.prices.pfs and not loaded.prices.asp and not loaded.prices.opps
    assert loaded.catalog.drugs  # the coding tables are all there


def test_half_copied_price_tables_are_refused_naming_the_missing_ones(
    copy_of_mappings: Path,
) -> None:
    (copy_of_mappings / "price_opps.csv").unlink()
    with pytest.raises(MappingError, match=r"price tables incomplete, missing price_opps\.csv"):
        load_mappings(copy_of_mappings)


def test_blank_lines_and_spreadsheet_bom_are_accepted(copy_of_mappings: Path) -> None:
    path = copy_of_mappings / "routes.csv"
    path.write_text("\ufeff" + path.read_text(encoding="utf-8") + "\n \n", encoding="utf-8")
    assert load_mappings(copy_of_mappings).route("IV") is Route.IV


def test_mapping_error_is_a_value_error() -> None:
    assert issubclass(MappingError, ValueError)


# ---------------------------------------------------------------- generator


def _run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    script = REPO / "scripts" / "build_mappings.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )


def test_generator_reproduces_committed_tables_from_the_repository_alone(tmp_path: Path) -> None:
    """The generated tables are exactly what the script makes from mappings/reference/."""
    out = tmp_path / "mappings"
    result = _run_generator("--reference", str(REFERENCE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(GENERATED)
    for name in GENERATED:
        assert (out / name).read_bytes() == (default_mappings_dir() / name).read_bytes(), name


def test_every_vendored_reference_file_is_attributed_in_sources_md() -> None:
    """A file dropped into mappings/reference/ without its origin, or a stale row, fails."""
    text = (REFERENCE / "SOURCES.md").read_text(encoding="utf-8")
    quoted = set(re.findall(r"`([\w.-]+\.csv)`", text))
    named = {n for n in quoted if n.startswith("cms_") or n == "drug-catalog-seed.csv"}
    present = {p.name for p in REFERENCE.iterdir() if p.suffix == ".csv"}
    assert present == named


def test_reference_holds_one_period_of_each_kind_and_the_price_tables() -> None:
    """The build reads the newest of each kind; an older one left behind would only confuse."""
    build_mappings = _load_generator()
    for name, kind in build_mappings.KINDS.items():
        assert len(list(REFERENCE.glob(kind.pattern))) == 1, name
    assert {"asp_payment_limits", "pfs_rvu"} <= set(build_mappings.KINDS)


def test_taking_in_a_new_quarter_replaces_the_old_file_and_rebuilds(tmp_path: Path) -> None:
    """`--shared` copies the newest file of each kind in, drops the older one, then builds."""
    team = tmp_path / "team"
    (team / "reference").mkdir(parents=True)
    shutil.copy(REFERENCE / "drug-catalog-seed.csv", team)
    for path in REFERENCE.glob("cms_*.csv"):
        shutil.copy(path, team / "reference")
    newer = "cms_asp_ndc_hcpcs_crosswalk_2026Q2.csv"
    shutil.copy(REFERENCE / "cms_asp_ndc_hcpcs_crosswalk_2026Q1.csv", team / "reference" / newer)
    reference = tmp_path / "reference"
    shutil.copytree(REFERENCE, reference)
    out = tmp_path / "out"

    result = _run_generator("--shared", str(team), "--reference", str(reference), "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert (reference / newer).is_file()
    assert not (reference / "cms_asp_ndc_hcpcs_crosswalk_2026Q1.csv").exists()
    assert "update mappings/reference/SOURCES.md" in result.stderr
    versions = (out / "table_versions.csv").read_text(encoding="utf-8")
    assert "crosswalk,2026-04-01,2026-06-30" in versions


def test_generator_stops_when_cms_prices_a_drug_in_another_unit_than_the_catalog(
    tmp_path: Path,
) -> None:
    """A per-10-mg limit applied to 1-mg units would price pembrolizumab ten times over."""
    reference = tmp_path / "reference"
    shutil.copytree(REFERENCE, reference)
    limits = reference / "cms_asp_payment_limits_2026Q1.csv"
    text = limits.read_text(encoding="utf-8")
    assert "J9271,Inj pembrolizumab,1 MG," in text
    limits.write_text(
        text.replace("J9271,Inj pembrolizumab,1 MG,", "J9271,Inj pembrolizumab,10 MG,")
    )

    result = _run_generator("--reference", str(reference), "--out", str(tmp_path / "out"))

    assert result.returncode == 1
    assert "J9271 is priced per '10 MG', the catalog bills it per 1 mg" in result.stderr


def test_generator_without_its_reference_files_fails_naming_the_missing_file(
    tmp_path: Path,
) -> None:
    result = _run_generator("--reference", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "drug-catalog-seed.csv: missing" in result.stderr
    assert not (tmp_path / "out").exists()


def _load_generator() -> ModuleType:
    """The generator script as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "build_mappings", REPO / "scripts" / "build_mappings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
