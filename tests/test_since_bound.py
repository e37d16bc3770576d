"""`--since` and `?since=`: one reading of an operator's lower time bound for the CLIs and the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapter.core.time_range import parse_since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-15T09:00:00+00:00", datetime(2026, 1, 15, 9, tzinfo=UTC)),
        (
            "2026-01-15T09:00:00-05:00",
            datetime(2026, 1, 15, 9, tzinfo=timezone(timedelta(hours=-5))),
        ),
        ("2026-01-15T09:00", datetime(2026, 1, 15, 9, tzinfo=UTC)),  # no offset: UTC
        ("2026-01-15", datetime(2026, 1, 15, tzinfo=UTC)),  # a date is its midnight, UTC
    ],
)
def test_a_since_bound_without_an_offset_is_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_since(text) == expected
    assert parse_since(text).tzinfo is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "15/01/2026"])
def test_a_since_bound_that_is_not_an_iso_date_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_since(text)
