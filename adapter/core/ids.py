"""Deterministic output ids (D24).

Every id is a truncated sha256 of a namespace and the identity of what it names, so
reprocessing the same input yields the same ids, and a correction (re-coded encounter,
changed units) yields a new *version* of the same resource instead of a second one.
Ids carry no PHI in clear: an encounter key may contain a patient id, its hash does not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

from adapter.core.charges import ChargeLine

_NAMESPACE = "charge-adapter/v1"
_HEX_CHARS = 32  # 128 bits: collisions are not a practical concern at any feed volume
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _digest(kind: str, *parts: str) -> str:
    """Hash a JSON list, so no choice of separator can make two different keys collide."""
    canonical = json.dumps([_NAMESPACE, kind, *parts], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_HEX_CHARS]


def is_fhir_id(value: str) -> bool:
    """True when `value` is a legal FHIR R4 id (the `id` datatype's regex)."""
    return _FHIR_ID.fullmatch(value) is not None


def claim_id(encounter_key: str) -> str:
    """One Claim per encounter: corrections re-emit the same id with new content."""
    return f"clm-{_digest('claim', encounter_key)}"


def task_id(encounter_key: str) -> str:
    """One review Task per held encounter, so a re-held encounter updates its Task."""
    return f"tsk-{_digest('task', encounter_key)}"


def line_identity(line: ChargeLine) -> tuple[str, ...]:
    """What makes a line the same line across corrections: not units, not NDC amounts.

    Modifiers are sorted: their order on the line carries no meaning, so it must not
    change the id.
    """
    return (
        line.kind.value,
        line.code,
        "+".join(sorted(line.modifiers)),
        line.service_date.isoformat(),
    )


def charge_item_id(encounter_key: str, line: ChargeLine, occurrence: int = 0) -> str:
    """A ChargeItem id stable under unit corrections (D24).

    `occurrence` tells apart lines of one encounter that share an identity (the n-th
    such line, counting from 0); the first keeps the plain id.
    """
    parts = (encounter_key, *line_identity(line))
    if occurrence:
        parts = (*parts, str(occurrence))
    return f"chg-{_digest('charge-item', *parts)}"


def bundle_id(encounter_keys: Iterable[str]) -> str:
    """A Bundle id for a set of encounters, independent of the order they were coded in."""
    return f"bdl-{_digest('bundle', *sorted(set(encounter_keys)))}"
