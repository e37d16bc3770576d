"""The period of a CMS table and where a service date falls in it (D27).

One definition for the coder (crosswalk, OPPS status, HCPCS) and for pricing (PFS, ASP,
OPPS rates), so that "past its period" means the same thing on a Claim and on a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class PeriodStatus(StrEnum):
    """Where a service date falls against a table's effective period."""

    IN_PERIOD = "in-period"
    PAST_PERIOD = "past-period"  # D27: the newest table is used, and said
    BEFORE_PERIOD = "before-period"  # the shipped table is newer than the service


@dataclass(frozen=True, slots=True)
class TableVersion:
    """Which quarter of a CMS table is loaded (D27: chosen by date of service)."""

    name: str
    effective_start: date
    effective_end: date

    def status_on(self, service_date: date) -> PeriodStatus:
        """D27's test (`service_date > effective_end`), plus the other side of the period."""
        if service_date > self.effective_end:
            return PeriodStatus.PAST_PERIOD
        if service_date < self.effective_start:
            return PeriodStatus.BEFORE_PERIOD
        return PeriodStatus.IN_PERIOD
