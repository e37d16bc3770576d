"""What counts as "the same billing" for a kept override and a dry run's diff (table)."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.core.claim_diff import diff_claims, same_billing


def item(code: str, units: int = 1, day: str = "2026-01-23", mods: tuple[str, ...] = ()) -> Any:
    out: dict[str, Any] = {
        "productOrService": {"coding": [{"code": code}]},
        "servicedDate": day,
        "quantity": {"value": units},
    }
    if mods:
        out["modifier"] = [{"coding": [{"code": m}]} for m in mods]
    return out


def claim(*items: Any, dx: tuple[str, ...] = ("C56.9",)) -> dict[str, Any]:
    diagnoses = [{"diagnosisCodeableConcept": {"coding": [{"code": c}]}} for c in dx]
    return {"resourceType": "Claim", "item": list(items), "diagnosis": diagnoses}


BASE = claim(item("96413"), item("J9045", 10, mods=("JZ",)))

CASES = [
    (
        "same lines in another order",
        claim(item("J9045", 10, mods=("JZ",)), item("96413")),
        ([], [], [], [], []),
    ),
    (
        "units of a drug line changed",
        claim(item("96413"), item("J9045", 12, mods=("JZ",))),
        ([], [], ["J9045"], [], []),
    ),
    (
        "waste modifier changed",
        claim(item("96413"), item("J9045", 10, mods=("JW",))),
        ([], [], ["J9045"], [], []),
    ),
    (
        "an add-on hour added",
        claim(item("96413"), item("96415"), item("J9045", 10, mods=("JZ",))),
        (["96415"], [], [], [], []),
    ),
    ("a line removed", claim(item("96413")), ([], ["J9045"], [], [], [])),
    (
        "a line moved to another day is removed and added",
        claim(item("96413", day="2026-01-24"), item("J9045", 10, mods=("JZ",))),
        (["96413"], ["96413"], [], [], []),
    ),
    (
        "a diagnosis added",
        claim(item("96413"), item("J9045", 10, mods=("JZ",)), dx=("C56.9", "Z51.11")),
        ([], [], [], ["Z51.11"], []),
    ),
]


@pytest.mark.parametrize(("name", "after", "expected"), CASES, ids=[c[0] for c in CASES])
def test_claim_diff_names_lines_added_removed_and_changed(
    name: str, after: dict[str, Any], expected: tuple[list[str], ...]
) -> None:
    diff = diff_claims(BASE, after)
    got = (
        [line.code for line in diff.added],
        [line.code for line in diff.removed],
        [c.after.code for c in diff.changed],
        list(diff.diagnoses_added),
        list(diff.diagnoses_removed),
    )
    assert got == expected
    assert same_billing(BASE, after) is (expected == ([], [], [], [], []))


def test_a_claim_that_did_not_exist_adds_every_line() -> None:
    diff = diff_claims(None, BASE)
    assert [str(line) for line in diff.added] == ["96413 x1 2026-01-23", "J9045-JZ x10 2026-01-23"]
    assert diff_claims(BASE, None).removed == diff.added
