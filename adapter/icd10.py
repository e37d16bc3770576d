"""ICD-10-CM validity (D21): a code can go on a claim only when it is a billable leaf.

The code list is the one simple-icd-10-cm ships (the CMS April 2026 release).
Importing simple-icd-10-cm itself parses the whole tabular XML: measured here
1.5 s and ~190 MB of RSS per process, for the one question we ask it. So the
adapter reads the package's flat code list (pre-order: every code is followed
by its children) and keeps the set of leaves: ~0.1 s and a few MB.
`tests/test_icd10.py` checks the set against simple-icd-10-cm's own `is_leaf`
for every code in the release.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from adapter.core.diagnoses import normalize

PACKAGE_NAME = "simple_icd_10_cm"
CODE_LIST = "code-list-April-2026.txt"
RELEASE = "ICD-10-CM April 2026 (CMS), as shipped by simple-icd-10-cm"


@cache
def billable_codes() -> frozenset[str]:
    """Every leaf of the tabular list, in dotted form (C50.911)."""
    text = _code_list().read_text(encoding="utf-8")
    codes = [line.strip() for line in text.splitlines() if line.strip()]
    leaves = set()
    for i, code in enumerate(codes):
        if code.isdigit() or "-" in code:
            continue  # chapters and blocks are headings, never codes
        following = codes[i + 1] if i + 1 < len(codes) else ""
        if not following.startswith(code):
            leaves.add(normalize(code))
    return frozenset(leaves)


def _code_list() -> Path:
    """Locate the package's data without importing it (its import parses the XML)."""
    spec = importlib.util.find_spec(PACKAGE_NAME)
    if spec is None or spec.origin is None:
        raise RuntimeError("simple-icd-10-cm is not installed")
    return Path(spec.origin).parent / "data" / CODE_LIST


def is_billable(code: str) -> bool:
    return normalize(code) in billable_codes()
