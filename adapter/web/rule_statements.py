"""The one-line statement of each coding rule and decision id (R18, D17...), shown beside the
rule trace of every Claim line on the encounter page.

Shipped as data (`mappings/rule_statements.csv`, columns `rule,statement`), so a site can
reword them; read once at start-up and validated: a malformed id, an id twice, an empty or
multi-line statement stop the service with the file and line (like the other tables). The
full rules, with sources, are in docs/coding-rules.md and docs/decisions.md.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

FILE = "rule_statements.csv"
RULE_ID = re.compile(r"[RD][0-9]{1,2}a?")
MAX_STATEMENT = 300


class RuleStatementError(ValueError):
    """`rule_statements.csv` is wrong: the message names the file, the line and the fault."""


def load_rule_statements(mappings_dir: Path) -> Mapping[str, str]:
    """Rule id -> its statement, from `<mappings_dir>/rule_statements.csv`."""
    path = mappings_dir / FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleStatementError(f"{path}: cannot be read ({exc.strerror})") from exc
    return parse_rule_statements(text, str(path))


def parse_rule_statements(text: str, name: str = FILE) -> Mapping[str, str]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames != ["rule", "statement"]:
        raise RuleStatementError(f"{name}: the header must be 'rule,statement'")
    statements: dict[str, str] = {}
    for row in reader:
        line = reader.line_num
        rule, statement = (row.get("rule") or "").strip(), (row.get("statement") or "").strip()
        if not RULE_ID.fullmatch(rule):
            raise RuleStatementError(f"{name} line {line}: {rule!r} is not a rule id (R18, D10a)")
        if rule in statements:
            raise RuleStatementError(f"{name} line {line}: {rule} has a statement already")
        if not statement or "\n" in statement or len(statement) > MAX_STATEMENT:
            raise RuleStatementError(
                f"{name} line {line}: the statement of {rule} must be one line "
                f"of 1-{MAX_STATEMENT} characters"
            )
        statements[rule] = statement
    return MappingProxyType(statements)
