"""HCPCS drug lines: units (R33, R34, D15, D16) and waste modifiers (R35-R38, D17-D18a)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from adapter.core.drug_lines import least_waste
from adapter.core.holds import HoldReason
from adapter.core.mappings import Setting
from adapter.core.model import Code, CodeSystem, Ingredient, Method, Route
from tests.coding_support import admin, code, lines, ndc_of, push, quantity

HOPD = Setting.HOSPITAL_OUTPATIENT


def drug_lines(coded) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in lines(coded).items() if k[0].isalpha() and not k.startswith("G")}


def test_s03_irinotecan_342_mg_bills_18_units_and_one_jw_unit_from_300_40_40_vials_r34_r36() -> (
    None
):
    """342/20 = 17.1 -> 18; least-waste vials 300+40+40 = 380 -> floor(19) - 18 = 1 JW."""
    coded = code(admin("J9206", "342 mg", "09:00", "10:30", ndc=None))
    assert drug_lines(coded) == {"J9206": 18, "J9206-JW": 1}


def test_waste_from_the_administered_ndc_package_size_fewest_whole_packages_d17() -> None:
    """342 mg from the 100 mg NDC: 4 vials = 400 mg -> floor(400/20)=20 - 18 = 2 JW."""
    coded = code(admin("J9206", "342 mg", "09:00", "10:30", ndc=1))
    assert drug_lines(coded) == {"J9206": 18, "J9206-JW": 2}


def test_s16_documented_waste_wins_over_computed_waste_d17() -> None:
    coded = code(admin("J9299", "210 mg", "10:00", "10:30", wasted="30 mg"), diagnoses=("C43.9",))
    assert drug_lines(coded) == {"J9299": 210, "J9299-JW": 30}


def test_s18_waste_smaller_than_one_billing_unit_takes_jz_r37() -> None:
    """S10's diphenhydramine: 25 mg from a 50 mg vial, unit 'up to 50 mg' -> 1 unit JZ."""
    coded = code(admin("J9206", "342 mg", "09:00", "10:30"), push("J1200", "25 mg", "08:50"))
    assert drug_lines(coded)["J1200-JZ"] == 1


def test_s01_full_single_dose_vial_takes_jz_r37() -> None:
    coded = code(admin("J3489", "4 mg", "10:00", "10:15"), diagnoses=("C79.51", "C50.911"))
    assert drug_lines(coded) == {"J3489-JZ": 4}


@pytest.mark.parametrize(
    ("given", "expected"),
    [("70", {"J9201": 1, "J9201-JW": 4}), ("1800", {"J9201": 9, "J9201-JW": 1})],
)
def test_jw_units_round_the_dose_up_and_the_waste_down_r36(
    given: str, expected: dict[str, int]
) -> None:
    """gemcitabine 200 mg units, 1000 mg SDV: 70 mg -> 1 + JW 4; 1800 (2 vials) -> 9 + JW 1."""
    coded = code(admin("J9201", f"{given} mg", "09:00", "09:30"), diagnoses=("C25.9",))
    assert drug_lines(coded) == expected


def test_s10_multiple_dose_vials_take_neither_jw_nor_jz_r35_d18() -> None:
    coded = code(admin("J9267", "315 mg", "09:30", "12:30"), admin("J9045", "600 mg", "12:35", "13:05"),
                 push("J1100", "12 mg", "09:00"), diagnoses=("C56.9",))  # fmt: skip
    assert drug_lines(coded) == {"J9267": 315, "J9045": 12, "J1100": 12}


def test_s11_packaged_hospital_drugs_take_no_modifier_d18() -> None:
    coded = code(push("J2469", "0.25 mg", "09:05"), push("J1200", "25 mg", "09:10"),
                 admin("J9267", "315 mg", "09:30", "12:30"), setting=HOPD, diagnoses=("C56.9",))  # fmt: skip
    assert drug_lines(coded) == {"J2469": 10, "J1200": 1, "J9267": 315}


def test_s17_separately_payable_hospital_drug_keeps_jz_d17() -> None:
    coded = code(
        admin("J9299", "480 mg", "10:00", "10:30", ndc=3), setting=HOPD, diagnoses=("C64.1",)
    )
    assert drug_lines(coded) == {"J9299-JZ": 480}


def test_units_sum_per_hcpcs_per_date_before_rounding_r34() -> None:
    """Two 4 mg ondansetron pushes of a 1 mg unit -> 8 units; two 25 mg diphenhydramine -> 1."""
    coded = code(admin("J9206", "342 mg", "08:00", "08:50"), push("J1200", "25 mg", "09:00"),
                 push("J1200", "25 mg", "09:40"), setting=HOPD)  # fmt: skip
    assert drug_lines(coded)["J1200"] == 1


def test_s31_bortezomib_2_6_mg_from_3_5_mg_vial_bills_26_and_jw_9() -> None:
    coded = code(admin("J9041", "2.6 mg", "10:00", route=Route.SC), diagnoses=("C90.00",))
    assert drug_lines(coded) == {"J9041": 26, "J9041-JW": 9}


def test_s29_premixed_bag_bills_each_drug_but_one_administration_r8() -> None:
    dex = Ingredient((Code(CodeSystem.NDC, ndc_of("J1100")),), quantity("12 mg"))
    coded = code(admin("J2469", "0.25 mg", "09:00", "09:20", extra=(dex,)),
                 admin("J9267", "150 mg", "09:30", "10:30"), diagnoses=("C56.9",))  # fmt: skip
    assert lines(coded)["96367"] == 1
    assert drug_lines(coded) == {"J2469-JZ": 10, "J1100": 12, "J9267": 150}


def test_dose_in_micrograms_converts_to_the_billing_unit_d16() -> None:
    coded = code(push("J2469", "250 mcg", "09:00"), diagnoses=("C56.9",))
    assert drug_lines(coded) == {"J2469-JZ": 10}


def test_unknown_container_for_a_payable_drug_is_held_naming_the_ndc_d17() -> None:
    coded = code(admin("J9171", "20 mg", "09:00", "10:00", ndc=1))
    assert {h.reason for h in coded.holds} == {HoldReason.WASTE_UNDETERMINED}
    assert ndc_of("J9171", 1) in coded.holds[0].detail


def test_drug_matched_without_ndc_uses_the_hcpcs_container_when_all_ndcs_agree_d17() -> None:
    coded = code(admin("J9267", "315 mg", "09:30", "12:30", ndc=None))
    assert drug_lines(coded) == {"J9267": 315}


def test_office_hydration_bag_bills_by_volume_with_jz_d18a() -> None:
    coded = code(admin("J7030", "1000 mL", "09:00", "10:30", indicated=True), diagnoses=("E86.0",))
    assert drug_lines(coded) == {"J7030-JZ": 1}


def test_hospital_hydration_bag_is_packaged_without_modifier_d18a() -> None:
    coded = code(admin("J7030", "250 mL", "09:00", "10:30", indicated=True, ndc=1), setting=HOPD,
                 diagnoses=("E86.0",))  # fmt: skip
    assert drug_lines(coded) == {"J7050": 1}


def test_pump_drug_is_billed_with_its_units_s20_r34() -> None:
    coded = code(
        push("J9190", "800 mg", "11:40"), admin("J9190", "4800 mg", "11:50", method=Method.PUMP)
    )
    assert drug_lines(coded) == {"J9190": 12}


@pytest.mark.parametrize(
    ("amount", "sizes", "opened"),
    [("342", ("40", "100", "300"), "380"), ("210", ("40", "100", "120", "240"), "220"),
     ("100", ("100",), "100"), ("101", ("100",), "200")],
)  # fmt: skip
def test_least_waste_vial_combination_d17(amount: str, sizes: tuple[str, ...], opened: str) -> None:
    assert least_waste(Decimal(amount), tuple(Decimal(s) for s in sizes)) == Decimal(opened)


@pytest.mark.parametrize("dose", ["5 mL", None], ids=["volume-for-a-mg-drug", "no-amount"])
def test_dose_that_cannot_be_counted_in_billing_units_is_held_as_missing_dose_d16(
    dose: str | None,
) -> None:
    """Carboplatin bills per 50 mg: a charted 5 mL, or no amount at all, counts no unit."""
    given = admin("J9045", "500 mg", "10:00", "10:30")
    drug = replace(given.ingredients[0], amount=quantity(dose) if dose else None)
    coded = code(replace(given, ingredients=(drug,)))
    assert [h.reason for h in coded.holds] == [HoldReason.MISSING_DOSE]
    assert "J9045" in coded.holds[0].detail
    assert "J9045" not in drug_lines(coded)
