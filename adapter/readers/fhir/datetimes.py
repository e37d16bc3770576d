"""FHIR date, dateTime and instant values (and Period), read as aware datetimes (D25)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from adapter.core.time_range import RANGE_TEXT, year_in_range
from adapter.readers.fhir.elements import JsonObject, ReadError, get_object, get_str

_DATETIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_SHOWABLE = re.compile(r"[0-9TZ:+\-./ ]{1,40}")


def parse_datetime(text: str, path: str, site_tz: tzinfo) -> datetime:
    """A FHIR date, dateTime or instant as an aware datetime.

    Partial dates (`2025`, `2025-03`, `2025-03-01`) mean their first instant;
    anything without an offset is local to the site (D25). Seconds are optional
    because real feeds drop them even though FHIR requires them. Years outside
    1900-2200 are refused (why: `time_range`).
    """
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ReadError(path, _invalid_datetime(text))
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if not year_in_range(int(year)):
        raise ReadError(path, f"dateTime out of range (year outside {RANGE_TEXT})")
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
        )
        zone = _offset(offset) if offset else site_tz
    except ValueError:
        raise ReadError(path, _invalid_datetime(text)) from None
    return moment.replace(tzinfo=zone)


def _offset(text: str) -> tzinfo:
    """A fixed UTC offset; `Z` is UTC."""
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes >= 60:
        raise ValueError(text)
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _invalid_datetime(text: str) -> str:
    """Show the bad value only when it looks like a timestamp, never free text."""
    if _SHOWABLE.fullmatch(text):
        return f"invalid dateTime '{text}'"
    return "invalid dateTime (value not shown: not date-like)"


def get_datetime(node: JsonObject, key: str, path: str, site_tz: tzinfo) -> datetime | None:
    """An optional dateTime element."""
    text = get_str(node, key, path)
    return None if text is None else parse_datetime(text, f"{path}.{key}", site_tz)


@dataclass(frozen=True, slots=True)
class Period:
    """A FHIR Period, read."""

    start: datetime | None
    end: datetime | None


def get_period(node: JsonObject, key: str, path: str, site_tz: tzinfo) -> Period | None:
    """An optional Period element."""
    period = get_object(node, key, path)
    if period is None:
        return None
    inner = f"{path}.{key}"
    return Period(
        get_datetime(period, "start", inner, site_tz), get_datetime(period, "end", inner, site_tz)
    )
