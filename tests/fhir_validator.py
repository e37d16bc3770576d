"""Run the independent FHIR R4 validator (tests/validator/validate.mjs, @medplum/core).

A second opinion on our output that shares no code with it: medplum's validator reads the
official R4 StructureDefinitions, where fhir.resources is generated from them. One node
process validates a whole batch, because starting node and indexing the definitions costs
about a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

VALIDATOR_DIR = Path(__file__).resolve().parent / "validator"
SCRIPT = VALIDATOR_DIR / "validate.mjs"
ERROR_SEVERITIES = frozenset({"error", "fatal"})
_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class ValidationResult:
    """The validator's verdict on one resource: its OperationOutcome issues."""

    id: str | None
    resource_type: str | None
    issues: tuple[dict[str, Any], ...]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Issues that make the resource non-conformant (warnings and information do not)."""
        return [i for i in self.issues if i.get("severity") in ERROR_SEVERITIES]

    def describe(self) -> str:
        """One line per error, for an assertion message a developer can act on."""
        lines = [f"{self.resource_type}/{self.id}:"]
        for issue in self.errors:
            where = ", ".join(issue.get("expression", []))
            lines.append(f"  {where}: {issue.get('details', {}).get('text', issue)}")
        return "\n".join(lines)


def unavailable_reason() -> str | None:
    """Why the validator cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (VALIDATOR_DIR / "node_modules" / "@medplum" / "core").is_dir():
        return f"{VALIDATOR_DIR / 'node_modules'} is missing (npm install was not run)"
    return None


def require_medplum() -> None:
    """Skip the calling test, loudly, when node or the validator's packages are missing."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(
            f"FHIR CONFORMANCE NOT CHECKED: {reason}. "
            "Install node (>= 20) and run `make install` (or `cd tests/validator && npm install`)."
        )


def validate_with_medplum(resources: Sequence[Mapping[str, Any]]) -> list[ValidationResult]:
    """Validate a batch in one node process; results come back in input order."""
    completed = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(list(resources), ensure_ascii=False),
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=VALIDATOR_DIR,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"validate.mjs failed ({completed.returncode}): {completed.stderr}")
    raw = json.loads(completed.stdout)
    if len(raw) != len(resources):
        raise RuntimeError(f"validate.mjs returned {len(raw)} results for {len(resources)}")
    return [ValidationResult(r["id"], r["resourceType"], tuple(r["issues"])) for r in raw]
