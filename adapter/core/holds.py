"""Hold reasons (D22): why an encounter goes to a human instead of a payer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from adapter.core.model import Code


class HoldReason(StrEnum):
    """The D22 vocabulary, plus the few reasons the feed itself can force."""

    MISSING_STOP_TIME = "missing-stop-time"
    UNKNOWN_DRUG = "unknown-drug"
    INVALID_TIMES = "invalid-times"
    CONCURRENT_CHEMOTHERAPY = "concurrent-chemotherapy"
    MISSING_DIAGNOSIS = "missing-diagnosis"
    INVALID_DIAGNOSIS = "invalid-diagnosis"
    WASTE_UNDETERMINED = "waste-undetermined"
    ADMINISTRATION_IN_PROGRESS = "administration-in-progress"
    INFUSION_STOPPED_EARLY = "infusion-stopped-early"
    SEPARATE_ACCESS_REVIEW = "separate-access-review"
    UNKNOWN_ROUTE = "unknown-route"
    MISSING_DOSE = "missing-dose"


@dataclass(frozen=True, slots=True)
class Hold:
    """One reason, with the administration it concerns and a detail a biller can act on.

    `detail` never carries PHI: it names codes, NDCs and source ids only. `codes` are the
    drug codes an unknown-drug hold could not match (NDC, RxNorm, local), kept as values so
    the Claim carries them and a report counts them without reading `detail` back.
    """

    reason: HoldReason
    detail: str
    source_id: str = ""
    codes: tuple[Code, ...] = ()
