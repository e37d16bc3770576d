"""The billable-code set agrees with simple-icd-10-cm for every code of the release (D21)."""

from __future__ import annotations

import pytest

from adapter.icd10 import billable_codes, is_billable


def test_leaf_set_matches_simple_icd_10_cm_for_every_code_in_the_release() -> None:
    import simple_icd_10_cm as icd

    every = icd.get_all_codes(with_dots=True)
    # A one-category block (B20, F99, Z66...) shares its name with the billable category.
    headings = {c for c in every if icd.is_chapter(c) or "-" in c}
    expected = {c for c in every if c not in headings and icd.is_leaf(c)}
    assert billable_codes() == expected


@pytest.mark.parametrize(
    ("code", "billable"),
    [("Z51.11", True), ("Z5112", True), ("C50.911", True), ("C61", True), ("C50", False),
     ("C50.91", False), ("C83.3", False), ("T45.1X5A", True), ("T45.1X5", False), ("XYZ", False)],
)  # fmt: skip
def test_only_valid_leaf_codes_are_billable_d21(code: str, billable: bool) -> None:
    assert is_billable(code) is billable
