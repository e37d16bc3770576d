"""`mappings/rule_statements.csv`: one statement per rule id, for every id the coder can emit.

The encounter page shows each Claim line's rule trace in words from this table; a rule id
without a statement would show as a bare code to a biller. Two checks that can fail
independently: every rule-id literal in the pure core (where the traces are built), and every
id on every line the coder actually produces for the scenario fixtures.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from adapter.cli.main import main
from adapter.errors import StartupError
from adapter.web.app import create_app
from adapter.web.rule_statements import (
    RULE_ID,
    RuleStatementError,
    load_rule_statements,
    parse_rule_statements,
)
from tests.service_fixtures import make_settings

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "mappings"
CORE = REPO / "adapter" / "core"
SCENARIOS = REPO / "fixtures" / "scenarios"
# The team's rule set (as tests/test_docs_rules.py): R1-R45, D1-D27 and two lettered ones.
EXPECTED = {f"R{n}" for n in range(1, 46)} | {f"D{n}" for n in range(1, 28)} | {"D10a", "D18a"}


@pytest.fixture(scope="module")
def statements() -> dict[str, str]:
    return dict(load_rule_statements(MAPPINGS))


def test_every_rule_and_decision_id_has_one_statement(statements: dict[str, str]) -> None:
    assert set(statements) == EXPECTED


def core_rule_literals() -> dict[str, set[str]]:
    """Every string constant of adapter/core that is a rule id, and the modules citing it."""
    found: dict[str, set[str]] = {}
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if literal and RULE_ID.fullmatch(node.value):  # type: ignore[attr-defined]
                found.setdefault(node.value, set()).add(path.name)  # type: ignore[attr-defined]
    return found


def test_every_rule_id_the_coder_can_emit_has_a_statement(statements: dict[str, str]) -> None:
    literals = core_rule_literals()
    assert len(literals) > 40  # the scan sees the traces (admin_codes, classify, drug_lines...)
    missing = {rule: sorted(files) for rule, files in literals.items() if rule not in statements}
    assert missing == {}


def test_every_rule_on_a_coded_scenario_line_has_a_statement(
    statements: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    files = sorted(str(p) for p in SCENARIOS.glob("S*.hl7"))
    assert main(["code", *files]) == 0
    bundle = json.loads(capsys.readouterr().out)
    cited = {
        rule
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Claim"
        for item in entry["resource"].get("item", ())
        for ext in item.get("extension", ())
        if ext["url"].endswith("/coding-trace")
        for rule in ext["valueString"].split()
    }
    assert len(cited) > 30
    assert cited - set(statements) == set()


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        pytest.param("id,statement\nR1,x\n", "header must be 'rule,statement'", id="header"),
        pytest.param("rule,statement\nR1x,x\n", "line 2: 'R1x' is not a rule id", id="bad-id"),
        pytest.param("rule,statement\nR1,a\nR1,b\n", "line 3: R1 has a statement", id="twice"),
        pytest.param("rule,statement\nR1,\n", "line 2: the statement of R1 must be", id="empty"),
        pytest.param('rule,statement\nR1,"a\nb"\n', "statement of R1 must be one line", id="lines"),
        pytest.param(f"rule,statement\nR1,{'x' * 301}\n", "must be one line of 1-300", id="long"),
    ],
)
def test_a_malformed_statements_file_names_the_line_and_the_fault(text: str, fault: str) -> None:
    with pytest.raises(RuleStatementError, match=re.escape(fault)):
        parse_rule_statements(text)


def test_the_service_refuses_to_start_on_a_bad_statements_file(tmp_path: Path) -> None:
    tables = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, tables)
    (tables / "rule_statements.csv").write_text("rule,statement\nR1,\n", encoding="utf-8")
    with pytest.raises(StartupError, match=r"rule_statements\.csv line 2") as refused:
        create_app(make_settings(tmp_path, mappings_dir=str(tables)))
    assert refused.value.setting == "ADAPTER_MAPPINGS_DIR"
