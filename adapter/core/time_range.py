"""The instants a feed may carry: years 1900 to 2200, as written.

Why a range at all: Python's datetime stops at years 1 and 9999, and an instant near either
end (`99991231235959-1200`, `0001-01-01T00:00:00+14:00`) cannot be moved to the site time
zone or to UTC without an OverflowError. The readers refuse such values as input errors
located at their field, so the core (encounter keys, service dates, cutoffs) and the search
API never see an instant they cannot convert.

Why these years: no administration, visit or diagnosis an EHR sends predates 1900, and none
is dated centuries ahead; what falls outside is a placeholder (`0001-01-01`, `1899-12-30`,
`9999-12-31` "open-ended") or a typo, which an interface analyst should see rather than a
claim dated in year 9999. Both ends are far enough from datetime's limits that any UTC
offset, site zone or day arithmetic on them stays representable.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["EARLIEST_YEAR", "LATEST_YEAR", "RANGE_TEXT", "parse_since", "year_in_range"]

EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
RANGE_TEXT = f"{EARLIEST_YEAR}-{LATEST_YEAR}"


def year_in_range(year: int) -> bool:
    """Whether a year, as written in the value (before any offset is applied), is accepted."""
    return EARLIEST_YEAR <= year <= LATEST_YEAR


def parse_since(text: str) -> datetime:
    """An operator's lower time bound (`replay --since`, `dead-letters --since`,
    `GET /admin/dead-letters?since=`): an ISO date-time, read as UTC when it has no offset.

    Why one function: the CLIs and the API must agree on what "since 09:00" means; a bound
    read in the server's local zone by one and in UTC by the other would list different
    messages. Raises ValueError for anything that is not ISO 8601.
    """
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
