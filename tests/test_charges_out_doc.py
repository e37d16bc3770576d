"""docs/charges-out.md shows real builder output: each example block must equal what the
DFT builder makes today for the same scenario and profile, so the doc cannot rot.

Regenerate after a deliberate change with `UPDATE_GOLDEN=1 make test` and review the diff.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from adapter.hl7.dft import Dft, DftVisit, NoDft, build_dft
from tests.dft_support import POSTED_AT, mappings, only_encounter, profile

DOC = Path(__file__).parent.parent / "docs" / "charges-out.md"
_BLOCK = re.compile(r"<!-- dft-example: (?P<name>[\w.-]+) -->\n```text\n(?P<body>.*?)```", re.S)


def _sent(result: Dft | NoDft) -> Dft:
    assert isinstance(result, Dft), result
    return result


def _readable(text: str) -> str:
    """One segment per line, as an analyst pastes it into an interface engine."""
    return text.replace("\r", "\n")


def examples() -> dict[str, str]:
    """Every example of the doc, built from the scenario fixtures."""
    labels = mappings().code_labels
    generic, practice = profile("generic-2.5.1"), profile("cpt-in-ft1-7-2.3")
    encounter, coded = only_encounter("S17")
    visit = DftVisit.of(encounter)
    first = _sent(build_dft(coded, visit, generic, version=1, posted_at=POSTED_AT, labels=labels))
    drug = coded.lines[-1]
    fewer = replace(coded, lines=(*coded.lines[:-1], replace(drug, units=drug.units - 20)))
    correction = _sent(
        build_dft(
            fewer, visit, generic, version=2, posted_at=POSTED_AT, previous=first.posting,
            labels=labels,
        )
    )  # fmt: skip
    office, office_coded = only_encounter("S16")
    third = build_dft(
        office_coded, DftVisit.of(office), practice, version=1, posted_at=POSTED_AT, labels=labels
    )
    return {
        "generic-2.5.1": _readable(first.text),
        "generic-2.5.1-correction": _readable(correction.text),
        "cpt-in-ft1-7-2.3": _readable(_sent(third).text),
    }


def test_every_example_in_charges_out_md_is_the_builders_output() -> None:
    text = DOC.read_text(encoding="utf-8")
    built = examples()
    found = {m["name"]: m["body"] for m in _BLOCK.finditer(text)}
    if os.environ.get("UPDATE_GOLDEN") == "1":
        updated = _BLOCK.sub(
            lambda m: f"<!-- dft-example: {m['name']} -->\n```text\n{built[m['name']]}```", text
        )
        DOC.write_text(updated, encoding="utf-8")
        pytest.skip("docs/charges-out.md examples rewritten")
    assert sorted(found) == sorted(built)
    for name, body in built.items():
        assert found[name] == body, f"example {name} is stale: UPDATE_GOLDEN=1 make test"
