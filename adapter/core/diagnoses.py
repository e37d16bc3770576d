"""ICD-10-CM on the claim: validity and order (R39-R43, D19-D21).

Z51.11 (chemotherapy) and Z51.12 (immunotherapy) are added by the adapter from
the drug classes given and go first (both: Z51.11 first by default, R39); the
neoplasm codes follow in the order the source ranked them, then the rest. A
visit with only supportive drugs or hydration keeps the source order (D20).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from adapter.core.catalog import DrugClass
from adapter.core.holds import Hold, HoldReason
from adapter.core.model import Diagnosis
from adapter.core.options import ZOrder

CHEMO = "Z51.11"
IMMUNO = "Z51.12"
ENCOUNTER_FOR_THERAPY = ("Z51.0", CHEMO, IMMUNO)  # radiotherapy / chemo / immunotherapy


@dataclass(frozen=True, slots=True)
class DiagnosisCoding:
    codes: tuple[str, ...]
    holds: tuple[Hold, ...]
    rules: tuple[str, ...]


def normalize(code: str) -> str:
    """`C509` → `C50.9`; ICD-10-CM puts the dot after the category (3 characters)."""
    raw = code.strip().upper().replace(".", "")
    return raw if len(raw) <= 3 else f"{raw[:3]}.{raw[3:]}"


def is_neoplasm(code: str) -> bool:
    """Chapter 2 (C00-D49): the codes Z51.1x must be accompanied by (R39, R42)."""
    return code[:1] == "C" or (code[:1] == "D" and code[1:3].isdigit() and int(code[1:3]) <= 49)


def order_diagnoses(
    source: Iterable[Diagnosis],
    classes_given: frozenset[DrugClass],
    z_order: ZOrder,
    is_billable: Callable[[str], bool],
) -> DiagnosisCoding:
    ranked = sorted(source, key=lambda d: (d.rank is None, d.rank or 0, d.order))
    codes = list(dict.fromkeys(normalize(d.code) for d in ranked if d.code.strip()))
    holds = [
        Hold(HoldReason.INVALID_DIAGNOSIS, f"{c} is not a valid billable ICD-10-CM code")
        for c in codes
        if not is_billable(c)
    ]
    added = _therapy_codes(classes_given, z_order)
    if not added:
        rules = ("R43", "D20", "D21")
        if not codes:
            holds.append(Hold(HoldReason.MISSING_DIAGNOSIS, "the encounter has no diagnosis"))
        return DiagnosisCoding(tuple(codes), tuple(holds), rules)
    therapy = [c for c in ENCOUNTER_FOR_THERAPY if c in added or c in codes]
    therapy.sort(key=lambda c: added.index(c) if c in added else len(added))
    neoplasms = [c for c in codes if is_neoplasm(c)]
    rest = [c for c in codes if c not in therapy and c not in neoplasms]
    if not neoplasms:
        detail = "chemotherapy/immunotherapy given but no neoplasm (C00-D49) diagnosis in the feed"
        holds.append(Hold(HoldReason.MISSING_DIAGNOSIS, detail))
    ordered = tuple(dict.fromkeys([*therapy, *neoplasms, *rest]))
    return DiagnosisCoding(ordered, tuple(holds), ("R39", "R40", "R43", "D19", "D21"))


def _therapy_codes(classes: frozenset[DrugClass], z_order: ZOrder) -> list[str]:
    added = []
    if DrugClass.CHEMOTHERAPY in classes:
        added.append(CHEMO)
    if DrugClass.IMMUNOTHERAPY in classes:
        added.append(IMMUNO)
    if z_order is ZOrder.IMMUNO_FIRST:
        added.reverse()
    return added
