"""ICD-10-CM validity (D21), via simple-icd-10-cm: billable means a valid leaf code."""

from __future__ import annotations

from functools import lru_cache

import simple_icd_10_cm as _icd

from adapter.core.diagnoses import normalize


@lru_cache(maxsize=65536)
def is_billable(code: str) -> bool:
    """A code can go on a claim only when it is a leaf of the ICD-10-CM tabular list."""
    dotted = normalize(code)
    return bool(_icd.is_valid_item(dotted) and _icd.is_leaf(dotted))
