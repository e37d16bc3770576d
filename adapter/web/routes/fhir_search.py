"""`GET /fhir/{Claim|ChargeItem|Task}?...`: search, strict, paged, as a searchset Bundle.

Search is strict: a parameter this server does not implement is a 400, because silently
ignoring it would return more Claims than the caller asked for. `Prefer: handling=lenient`
asks for the FHIR lenient behaviour instead (unknown parameters ignored and reported in a
`search.mode=outcome` entry). The limits here are what the CapabilityStatement states
(`routes/api.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from urllib.parse import urlencode

import structlog
from aiohttp import web
from multidict import MultiMapping

from adapter.core.time_range import RANGE_TEXT, year_in_range
from adapter.store.base import ResourceRow, SearchQuery
from adapter.web.outcome import (
    FHIR_JSON_TYPES,
    JSON,
    ApiError,
    Issue,
    fhir_response,
    operation_outcome,
)
from adapter.web.routes.fhir_read import fhir_base
from adapter.web.state import STATE

log = structlog.get_logger()

SEARCH_PARAMS = ("patient", "encounter", "status", "_lastUpdated", "_count", "_offset")
DEFAULT_COUNT = 50
MAX_COUNT = 500  # a larger _count is served as this many (FHIR lets the server page less)
MAX_OFFSET = 1_000_000_000  # far above any table here, far below the stores' 2**63 limit
_JSON_FORMATS = frozenset({"json", *FHIR_JSON_TYPES})


async def search(request: web.Request) -> web.Response:
    """`GET /fhir/{Claim|ChargeItem|Task}?...`: a searchset Bundle, paged."""
    rtype = request.match_info["type"]
    state = request.app[STATE]
    lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "")
    parsed = parse_search(rtype, request.query, state.settings.tz, lenient)
    rows, total = await state.store.search(parsed.query)
    log.info("http.fhir_search", type=rtype, total=total, returned=len(rows))
    return fhir_response(searchset(fhir_base(request), parsed, rows, total))


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    """The store query, plus what the self/next links repeat and what lenient mode ignored."""

    query: SearchQuery
    echo: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...]


def parse_search(
    rtype: str, params: MultiMapping[str], site_tz: tzinfo, lenient: bool = False
) -> ParsedSearch:
    """Validate and translate the query string (400 on anything not understood, unless lenient)."""
    values: dict[str, str] = {}
    echo: list[tuple[str, str]] = []
    ignored: list[str] = []
    lower: list[datetime] = []
    upper: list[datetime] = []
    for name, value in params.items():
        if name not in SEARCH_PARAMS and name != "_format":
            if not lenient:
                raise _unknown_parameter(rtype, name)
            ignored.append(name)
        elif name == "_format":
            _check_format(value)
        elif name == "_lastUpdated":
            low, high = date_bounds(value, site_tz)
            lower += [low] if low else []
            upper += [high] if high else []
            echo.append((name, value))
        elif value.strip():
            _check_single(name, value, values)
            values[name] = value.strip()
    query = SearchQuery(
        resource_type=rtype,
        patient=_patient(values.get("patient")),
        encounter=_encounter(values.get("encounter")),
        status=values.get("status"),
        last_updated_ge=max(lower, default=None),
        last_updated_le=min(upper, default=None),
        count=_count(values),
        offset=_offset(values),
    )
    echo += [(k, values[k]) for k in ("patient", "encounter", "status") if k in values]
    return ParsedSearch(query, tuple(echo), tuple(ignored))


def _unknown_parameter(rtype: str, name: str) -> ApiError:
    supported = ", ".join(SEARCH_PARAMS)
    return ApiError.of(
        400, "not-supported", f"unknown search parameter '{name}' for {rtype} (strict "
        f"handling; supported: {supported}; or send Prefer: handling=lenient)"
    )  # fmt: skip


def _check_format(value: str) -> None:
    if value not in _JSON_FORMATS:
        raise ApiError.of(400, "not-supported", "_format: only JSON is served")


def _check_single(name: str, value: str, seen: Mapping[str, str]) -> None:
    if name in seen:
        raise ApiError.of(400, "not-supported", f"{name}: repeating a parameter is not supported")
    if "," in value and name in ("patient", "encounter", "status"):
        raise ApiError.of(400, "not-supported", f"{name}: several values (a,b) are not supported")


def _count(values: Mapping[str, str]) -> int:
    """`_count`, at most MAX_COUNT (a larger page size asked for is served as the largest)."""
    raw = values.get("_count")
    return DEFAULT_COUNT if raw is None else _non_negative("_count", raw, MAX_COUNT)


def _offset(values: Mapping[str, str]) -> int:
    """`_offset`, refused past MAX_OFFSET: the stores cannot take a number of any size."""
    offset = _non_negative("_offset", values.get("_offset", "0"), MAX_OFFSET + 1)
    if offset > MAX_OFFSET:
        raise ApiError.of(400, "invalid", f"_offset must be at most {MAX_OFFSET}")
    return offset


def _non_negative(name: str, raw: str, ceiling: int) -> int:
    """The number, or `ceiling` when it is larger.

    ASCII digits only: `str.isdigit` also takes '²', which `int` refuses. A number with
    more digits than the ceiling is the ceiling without parsing it (`int` refuses over
    4300 digits, and has no reason to read them).
    """
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError.of(400, "invalid", f"{name} must be a non-negative integer")
    digits = raw.lstrip("0")
    return ceiling if len(digits) > len(str(ceiling)) else min(int(digits or "0"), ceiling)


def _patient(value: str | None) -> str | None:
    """`Patient/<id>` (an absolute URL is cut to it) or a patient identifier value as stored."""
    if value is None:
        return None
    index = value.rfind("/Patient/")
    if index >= 0 and value.startswith(("http://", "https://")):
        return value[index + 1 :]
    return value


def _encounter(value: str | None) -> str | None:
    """The encounter key (`visit:<id>`, `day:...`); `Encounter/<id>` means `visit:<id>`."""
    if value is not None and value.startswith("Encounter/"):
        return "visit:" + value.removeprefix("Encounter/")
    return value


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?(?P<z>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_PREFIXES = ("eq", "ge", "gt", "le", "lt")


def date_bounds(value: str, site_tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """`_lastUpdated` with a prefix → inclusive (lower, upper) instants.

    A value stands for the whole range of its precision (`2026-01` is all of January);
    without a zone it is read in the site time zone. `ne`, `sa`, `eb`, `ap` are refused, and
    so are years outside the range the readers accept (adapter.core.time_range): nothing
    is stored outside it, and near datetime's own limits the bounds would overflow.
    """
    text = value.strip().replace(" ", "+")  # an unescaped '+' in a query string is a space
    prefix = text[:2] if text[:2].isalpha() else "eq"
    if prefix not in _PREFIXES:
        raise ApiError.of(400, "not-supported", f"_lastUpdated: prefix '{prefix}' not supported")
    start, end = _date_range(text[2:] if text[:2].isalpha() else text, site_tz)
    last = end - timedelta(microseconds=1)
    return {
        "eq": (start, last),
        "ge": (start, None),
        "gt": (end, None),
        "le": (None, last),
        "lt": (None, start - timedelta(microseconds=1)),
    }[prefix]


def _date_range(text: str, site_tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a FHIR date/dateTime at its own precision."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ApiError.of(400, "invalid", "_lastUpdated: not a FHIR date or dateTime")
    parts = {k: int(v) for k, v in match.groupdict().items() if v and k not in ("f", "z")}
    if not year_in_range(parts["y"]):
        raise ApiError.of(400, "invalid", f"_lastUpdated: year outside {RANGE_TEXT}")
    zone = _zone(match["z"], site_tz)
    try:
        start = datetime(
            parts["y"], parts.get("m", 1), parts.get("d", 1), parts.get("H", 0),
            parts.get("M", 0), parts.get("S", 0), _micros(match["f"]), tzinfo=zone,
        )  # fmt: skip
    except ValueError:
        raise ApiError.of(400, "invalid", "_lastUpdated: not a valid date") from None
    return start, _range_end(start, match)


def _micros(fraction: str | None) -> int:
    return int((fraction or ".0")[1:].ljust(6, "0")[:6])


def _zone(text: str | None, site_tz: tzinfo) -> tzinfo:
    """The value's zone; an offset beyond ±14:00 (FHIR's range) or with 60+ minutes is a 400."""
    if text is None:
        return site_tz
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        raise ApiError.of(400, "invalid", "_lastUpdated: UTC offset out of range")
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _range_end(start: datetime, match: re.Match[str]) -> datetime:
    if match["f"]:
        return start + timedelta(microseconds=1)
    if match["S"]:
        return start + timedelta(seconds=1)
    if match["M"]:
        return start + timedelta(minutes=1)
    if match["d"]:
        return start + timedelta(days=1)
    if match["m"]:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


def searchset(base: str, parsed: ParsedSearch, rows: Sequence[ResourceRow], total: int) -> JSON:
    """The searchset Bundle: total, self/next/previous links, entries with search.mode."""
    query = parsed.query
    url = f"{base}/{query.resource_type}"
    entries: list[JSON] = [_match_entry(base, row) for row in rows]
    if parsed.ignored:
        note = f"ignored unknown parameter(s): {', '.join(sorted(set(parsed.ignored)))}"
        outcome = operation_outcome((Issue("not-supported", note, severity="warning"),))
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    links = [_link(url, "self", parsed.echo, query.count, query.offset)]
    if query.count and query.offset + len(rows) < total:
        links.append(_link(url, "next", parsed.echo, query.count, query.offset + query.count))
    if query.offset > 0:
        previous = max(query.offset - max(query.count, 1), 0)
        links.append(_link(url, "previous", parsed.echo, query.count, previous))
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    }


def _match_entry(base: str, row: ResourceRow) -> JSON:
    return {
        "fullUrl": f"{base}/{row.resource_type}/{row.resource_id}",
        "resource": json.loads(row.body),
        "search": {"mode": "match"},
    }


def _link(
    url: str, relation: str, echo: Iterable[tuple[str, str]], count: int, offset: int
) -> JSON:
    params = [*echo, ("_count", str(count)), ("_offset", str(offset))]
    return {"relation": relation, "url": f"{url}?{urlencode(params)}"}
