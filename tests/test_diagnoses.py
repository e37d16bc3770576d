"""ICD-10-CM order and validity (R39-R43, D19-D21)."""

from __future__ import annotations

import pytest

from adapter.core.diagnoses import normalize
from adapter.core.holds import HoldReason
from adapter.core.options import CodingOptions, ZOrder
from tests.coding_support import admin, code, push


def test_chemotherapy_visit_lists_z51_11_first_then_the_cancer_r39_d19() -> None:
    coded = code(admin("J9206", "342 mg", "09:00", "10:30"), diagnoses=("C18.7",))
    assert coded.diagnoses == ("Z51.11", "C18.7")


def test_immunotherapy_visit_lists_z51_12_first_r43_d19() -> None:
    coded = code(admin("J9271", "200 mg", "09:00", "09:30"), diagnoses=("C34.90",))
    assert coded.diagnoses == ("Z51.12", "C34.90")


def test_both_chemo_and_immunotherapy_put_z51_11_first_by_default_r39() -> None:
    coded = code(admin("J9271", "200 mg", "09:00", "09:30"), admin("J9045", "500 mg", "09:50", "10:20"),
                 diagnoses=("C34.90",))  # fmt: skip
    assert coded.diagnoses == ("Z51.11", "Z51.12", "C34.90")


def test_z_order_tie_break_is_a_setting_r39() -> None:
    options = CodingOptions(setting_override="office", z_order=ZOrder.IMMUNO_FIRST)
    coded = code(admin("J9271", "200 mg", "09:00", "09:30"), admin("J9045", "500 mg", "09:50", "10:20"),
                 diagnoses=("C34.90",), options=options)  # fmt: skip
    assert coded.diagnoses[:2] == ("Z51.12", "Z51.11")


def test_neoplasms_follow_in_source_rank_then_complications_r40_d19() -> None:
    coded = code(admin("J9201", "1800 mg", "09:00", "09:30"), diagnoses=("E86.0", "C25.9", "C78.7"))
    assert coded.diagnoses == ("Z51.11", "C25.9", "C78.7", "E86.0")


def test_supportive_only_visit_keeps_source_order_without_z51_r43_d20() -> None:
    coded = code(admin("J7030", "1000 mL", "09:00", "11:10", indicated=True),
                 diagnoses=("E86.0", "T45.1X5A", "C18.7"))  # fmt: skip
    assert coded.diagnoses == ("E86.0", "T45.1X5A", "C18.7")


def test_s01_metastatic_site_first_when_the_source_ranks_it_first_r41() -> None:
    coded = code(admin("J3489", "4 mg", "10:00", "10:15"), diagnoses=("C79.51", "C50.911"))
    assert coded.diagnoses == ("C79.51", "C50.911")


def test_non_billable_category_code_is_held_as_invalid_diagnosis_d21() -> None:
    coded = code(admin("J9206", "342 mg", "09:00", "10:30"), diagnoses=("C18",))
    assert HoldReason.INVALID_DIAGNOSIS in {h.reason for h in coded.holds}


def test_chemotherapy_without_a_neoplasm_code_is_held_as_missing_diagnosis_r42_d21() -> None:
    coded = code(admin("J9206", "342 mg", "09:00", "10:30"), diagnoses=("M32.9",))
    assert {h.reason for h in coded.holds} == {HoldReason.MISSING_DIAGNOSIS}


def test_duplicate_source_diagnoses_are_listed_once_d19() -> None:
    coded = code(push("J2405", "8 mg", "09:00"), diagnoses=("C18.7", "C187", "Z51.11"))
    assert coded.diagnoses == ("C18.7", "Z51.11")


@pytest.mark.parametrize(("raw", "dotted"), [("C509", "C50.9"), ("z5111", "Z51.11"), ("C61", "C61"),
                                             ("T45.1X5A", "T45.1X5A")])  # fmt: skip
def test_icd10cm_codes_are_normalized_to_the_dotted_form(raw: str, dotted: str) -> None:
    assert normalize(raw) == dotted
