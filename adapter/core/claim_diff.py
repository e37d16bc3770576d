"""What a Claim bills, and how two versions of it differ: lines added, removed, changed.

Two uses, one definition of "the same lines": a re-code after a review override keeps the
override only when it bills the same (`same_billing`), and the review worklist and
`replay --dry-run` show the difference a biller has to look at (`diff_claims`).

A line is what a payer sees of a Claim item: code, modifiers, units, service date, NDC.
Two lines with the same code and service date but other units, modifiers or NDC are one
line *changed*; what has no counterpart is *added* or *removed*. Diagnoses count too: a
Claim whose lines stay but whose diagnoses change bills something else (R36-R39).
Pure: Claim JSON in, values out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"


@dataclass(frozen=True, slots=True, order=True)
class BilledLine:
    code: str
    service_date: str
    units: str  # as written on the Claim (an integer or a decimal)
    modifiers: tuple[str, ...] = ()
    ndc: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.code, self.service_date

    def __str__(self) -> str:
        mods = "-" + "-".join(self.modifiers) if self.modifiers else ""
        ndc = f" NDC {self.ndc}" if self.ndc else ""
        return f"{self.code}{mods} x{self.units} {self.service_date}{ndc}"

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "modifiers": list(self.modifiers),
            "units": self.units,
            "servicedDate": self.service_date,
            "ndc": self.ndc,
        }


@dataclass(frozen=True, slots=True)
class LineChange:
    before: BilledLine
    after: BilledLine

    def __str__(self) -> str:
        return f"{self.before} -> {self.after}"


@dataclass(frozen=True, slots=True)
class ClaimDiff:
    added: tuple[BilledLine, ...] = ()
    removed: tuple[BilledLine, ...] = ()
    changed: tuple[LineChange, ...] = ()
    diagnoses_added: tuple[str, ...] = ()
    diagnoses_removed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.diagnoses_added
            or self.diagnoses_removed
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "added": [line.as_json() for line in self.added],
            "removed": [line.as_json() for line in self.removed],
            "changed": [
                {"from": c.before.as_json(), "to": c.after.as_json()} for c in self.changed
            ],
            "diagnosesAdded": list(self.diagnoses_added),
            "diagnosesRemoved": list(self.diagnoses_removed),
        }

    def lines(self) -> list[str]:
        """One short line per difference, for a terminal."""
        out = [f"+ {line}" for line in self.added]
        out += [f"- {line}" for line in self.removed]
        out += [f"~ {change}" for change in self.changed]
        out += [f"+ diagnosis {code}" for code in self.diagnoses_added]
        out += [f"- diagnosis {code}" for code in self.diagnoses_removed]
        return out


def billed_lines(claim: Mapping[str, Any] | None) -> tuple[BilledLine, ...]:
    """The Claim's items as billed lines, in item order."""
    if claim is None:
        return ()
    return tuple(_line(item) for item in claim.get("item", ()) if isinstance(item, Mapping))


def claim_diagnoses(claim: Mapping[str, Any] | None) -> tuple[str, ...]:
    if claim is None:
        return ()
    codes = []
    for dx in claim.get("diagnosis", ()):
        concept = dx.get("diagnosisCodeableConcept", {}) if isinstance(dx, Mapping) else {}
        codes.extend(_codes(concept))
    return tuple(codes)


def same_billing(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """True when both Claims bill the same lines and the same diagnoses (order aside)."""
    return diff_claims(before, after).empty


def diff_claims(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> ClaimDiff:
    old, new = Counter(billed_lines(before)), Counter(billed_lines(after))
    common = old & new
    gone, came = sorted((old - common).elements()), sorted((new - common).elements())
    changed: list[LineChange] = []
    for line in list(gone):
        partner = next((n for n in came if n.key == line.key), None)
        if partner is not None:
            changed.append(LineChange(line, partner))
            gone.remove(line)
            came.remove(partner)
    dx_old, dx_new = set(claim_diagnoses(before)), set(claim_diagnoses(after))
    return ClaimDiff(
        added=tuple(came),
        removed=tuple(gone),
        changed=tuple(changed),
        diagnoses_added=tuple(sorted(dx_new - dx_old)),
        diagnoses_removed=tuple(sorted(dx_old - dx_new)),
    )


def _line(item: Mapping[str, Any]) -> BilledLine:
    codes = _codes(item.get("productOrService", {}))
    modifiers = tuple(c for m in item.get("modifier", ()) for c in _codes(m))
    quantity = item.get("quantity", {})
    units = quantity.get("value", "") if isinstance(quantity, Mapping) else ""
    return BilledLine(
        code=codes[0] if codes else "",
        service_date=str(item.get("servicedDate", "")),
        units=str(units),
        modifiers=modifiers,
        ndc=_ndc(item.get("detail", ())),
    )


def _ndc(details: Iterable[Any]) -> str:
    for detail in details:
        if not isinstance(detail, Mapping):
            continue
        for coding in detail.get("productOrService", {}).get("coding", ()):
            if coding.get("system") == NDC_SYSTEM:
                return str(coding.get("code", ""))
    return ""


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    return [str(c.get("code", "")) for c in concept.get("coding", ()) if isinstance(c, Mapping)]
