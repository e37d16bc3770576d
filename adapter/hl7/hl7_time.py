"""HL7 v2 TS/DTM values to aware datetimes.

A timestamp without a UTC offset is site-local time (D25): the reader never
produces a naive datetime, so everything downstream can compare times. Years outside
1900-2200 are refused as input errors (why: `time_range`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from adapter.core.time_range import RANGE_TEXT, year_in_range

__all__ = ["TimestampError", "parse_ts"]

_TS = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?\Z",
    re.ASCII,
)


class TimestampError(ValueError):
    """Not an HL7 timestamp; the message never repeats the value (it may be a birth date)."""


def parse_ts(text: str, site_tz: tzinfo) -> datetime:
    """`YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`; missing parts are the start of the period."""
    match = _TS.match(text.strip())
    if match is None:
        raise TimestampError("not an HL7 timestamp (YYYYMMDDHHMMSS[+/-ZZZZ])")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if not year_in_range(int(year)):
        raise TimestampError(f"timestamp out of range (year outside {RANGE_TEXT})")
    tz = _offset(sign, off_h, off_m) if sign else site_tz
    try:
        return datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise TimestampError("timestamp out of range (month, day, hour or minute)") from exc


@lru_cache(maxsize=64)
def _offset(sign: str, hours: str, minutes: str) -> timezone:
    """A fixed offset; cached because a feed uses one or two offsets all day."""
    h, m = int(hours), int(minutes)
    if h > 14 or m > 59:
        raise TimestampError("UTC offset out of range")
    delta = timedelta(hours=h, minutes=m)
    return timezone(-delta if sign == "-" else delta)
