"""What the Claim, ChargeItems and Task of one encounter share, worked out once (`Facts`): the
claim id, `created` (the end of care, D24), the setting, held or not, the diagnosis pointers.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.core.charges import CodedEncounter, Outcome
from adapter.core.emit.datatypes import fhir_datetime
from adapter.core.ids import claim_id
from adapter.core.mappings import Setting

MAX_DIAGNOSIS_POINTERS = 4  # a professional claim line points to at most four diagnoses


@dataclass(frozen=True, slots=True)
class Facts:
    """What every resource of one encounter shares, worked out once."""

    coded: CodedEncounter
    claim_id: str
    created: str
    institutional: bool
    held: bool
    pointers: tuple[int, ...]

    @staticmethod
    def of(coded: CodedEncounter) -> Facts:
        count = min(MAX_DIAGNOSIS_POINTERS, len(coded.diagnoses))
        return Facts(
            coded=coded,
            claim_id=claim_id(coded.encounter_key),
            created=_created(coded),
            institutional=coded.setting == Setting.HOSPITAL_OUTPATIENT,
            held=coded.outcome is Outcome.HELD,
            pointers=tuple(range(1, count + 1)),
        )


def _created(coded: CodedEncounter) -> str:
    """Claim.created and friends: the end of care, never the wall clock (D24)."""
    if coded.period_end is not None:
        return fhir_datetime(coded.period_end)
    if coded.period_start is not None:
        return fhir_datetime(coded.period_start)
    dates = [line.service_date for line in coded.lines]
    if dates:
        return max(dates).isoformat()
    raise ValueError(f"encounter {coded.encounter_key!r} has no period and no lines")
