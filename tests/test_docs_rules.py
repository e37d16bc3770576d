"""docs/coding-rules.md and docs/decisions.md cannot rot.

The rule trace on every Claim item, the hold texts and the code cite rule and decision ids
(R18, D17...); a user looks them up in docs/. These tests fail when the code cites an id the
docs do not define, when the docs name a module or a test that does not exist (renamed,
moved), or when a hold reason has no row.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from adapter.cli.main import main
from adapter.core.holds import HoldReason

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "docs" / "coding-rules.md", REPO / "docs" / "decisions.md")

# The team's rule set: R1-R45 and D1-D27 with the two lettered decisions.
EXPECTED_IDS = {f"R{n}" for n in range(1, 46)} | {f"D{n}" for n in range(1, 28)} | {"D10a", "D18a"}
# An id in prose or code: not part of a longer word, an ICD-10-CM code (D64.81) or a range
# of codes (C00-D49).
_ID = re.compile(r"(?<![\w.-])([RD][0-9]{1,2}a?)(?![\w.])")
# A test named after its rule: test_..._r18_d9, test_..._d10a.
_TEST_ID = re.compile(r"_([rd][0-9]{1,2}a?)(?=_|$)")
_ROW = re.compile(r"^\|\s*([RD][0-9]{1,2}a?)\s*\|", re.MULTILINE)
_QUOTED = re.compile(r"`([^`\s]+)`")
_PATH_ROOTS = ("adapter/", "scripts/", "mappings/", "tests/", "fixtures/", "docs/", "deploy/")


def _text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def defined_ids() -> set[str]:
    """Ids with a row of their own in the docs' tables."""
    return set(_ROW.findall(_text()))


def _code_files() -> list[Path]:
    files = sorted((REPO / "adapter").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
    return files + sorted((REPO / "mappings").glob("*.csv"))


def _cited_in_code() -> dict[str, set[str]]:
    """Id -> files citing it: the code, the generator and the tables (hold sentences)."""
    cited: dict[str, set[str]] = {}
    for path in _code_files():
        for found in _ID.findall(path.read_text(encoding="utf-8")):
            cited.setdefault(found, set()).add(str(path.relative_to(REPO)))
    return cited


def _cited_in_test_names() -> dict[str, set[str]]:
    cited: dict[str, set[str]] = {}
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for name in _definitions(path):
            if name.startswith("test_"):
                for found in _TEST_ID.findall(name):
                    key = found[0].upper() + found[1:]
                    cited.setdefault(key, set()).add(f"{path.name}::{name}")
    return cited


@cache
def _definitions(path: Path) -> frozenset[str]:
    """Names of the classes and functions a test file defines, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, kinds))


def _named_paths() -> set[str]:
    """Repository paths the docs name in backticks (`adapter/core/x.py`, `tests/t.py::test_y`)."""
    return {q for q in _QUOTED.findall(_text()) if q.startswith(_PATH_ROOTS)}


def test_the_docs_define_every_rule_and_decision_once() -> None:
    rows = _ROW.findall(_text())
    assert sorted(set(rows)) == sorted(EXPECTED_IDS)
    assert len(rows) == len(set(rows)), "an id has two rows"


def test_every_id_the_code_and_the_hold_texts_cite_is_in_the_docs() -> None:
    missing = {i: sorted(f) for i, f in _cited_in_code().items() if i not in defined_ids()}
    assert not missing, f"cited but not in docs/coding-rules.md or docs/decisions.md: {missing}"


def test_every_id_a_test_is_named_after_is_in_the_docs() -> None:
    names = _cited_in_test_names()
    missing = {i: sorted(t) for i, t in names.items() if i not in defined_ids()}
    assert not missing, f"tests named after ids the docs do not define: {missing}"


def test_every_id_the_docs_mention_has_its_own_row() -> None:
    mentioned = set(_ID.findall(_text()))
    assert mentioned <= defined_ids(), sorted(mentioned - defined_ids())


@pytest.mark.parametrize("named", sorted(_named_paths()))
def test_every_module_table_and_test_the_docs_name_exists(named: str) -> None:
    file, *parts = named.split("::")
    path = REPO / file
    assert path.exists(), f"docs name {file}, which does not exist"
    for part in parts:
        assert part in _definitions(path), f"docs name {named}: no {part} in {file}"


def test_every_hold_reason_has_a_row_naming_its_decision() -> None:
    text = (REPO / "docs" / "decisions.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\|\s*`([a-z-]+)`\s*\|\s*([^|]+?)\s*\|", text, re.MULTILINE))
    assert sorted(rows) == sorted(r.value for r in HoldReason)
    for reason, raised_by in rows.items():
        assert _ID.search(raised_by), f"{reason}: no decision named"


@pytest.mark.parametrize("argv", [["--help"], ["code", "--help"]])
def test_cli_help_says_where_the_rule_ids_are_explained(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for doc in ("docs/coding-rules.md", "docs/decisions.md"):
        assert doc in text
        assert (REPO / doc).is_file()


@pytest.mark.parametrize(
    "path", ["README.md", "mappings/README.md", "mappings/hold_reasons.csv", "adapter/cli/main.py"]
)
def test_what_users_read_cites_the_docs_not_the_team_reference(path: str) -> None:
    """The team's reference beside the checkout is not something a user of the repo has."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert "shared/domain/coding-rules" not in text
    assert "shared/domain/decisions" not in text
