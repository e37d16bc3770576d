"""The FHIR REST endpoints: inbound resources in, coded Claims, ChargeItems and Tasks out.

Inbound (`POST /fhir`, `POST /fhir/{type}`, `PUT /fhir/{type}/{id}`) hands the raw body to
the ingestor, which keeps it before anything is answered; these handlers only check what
the HTTP contract needs (content type, one JSON document, the right type and id) and
translate the ingestor's per-resource result into FHIR responses. A body the contract
refuses is kept as a dead letter before the 4xx is answered (`refusals_kept`), like any
input the ingestor cannot read. Outbound (read, vread, history, search) serves the versions
the coder stored, as stored.

Search is strict: a parameter this server does not implement is a 400, because silently
ignoring it would return more Claims than the caller asked for. `Prefer: handling=lenient`
asks for the FHIR lenient behaviour instead (unknown parameters ignored and reported in a
`search.mode=outcome` entry).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import web
from multidict import MultiMapping

from adapter.core.ids import is_fhir_id
from adapter.core.model import InputError
from adapter.core.refusals import Refusal, RefusalReason
from adapter.core.time_range import RANGE_TEXT, year_in_range
from adapter.readers.fhir import load_json, read_fhir
from adapter.service.ingest import FhirEntryResult, FhirResult, refusal_for
from adapter.store.base import ResourceRow, SearchQuery
from adapter.web.outcome import (
    FHIR_JSON_TYPES,
    JSON,
    ApiError,
    Issue,
    fhir_bytes,
    fhir_response,
    information,
    operation_outcome,
    read_body,
    require_content_type,
)
from adapter.web.state import STATE, AppState

log = structlog.get_logger()

INBOUND_TYPES = ("MedicationAdministration", "Encounter", "Condition", "Patient", "Coverage")
OUTPUT_TYPES = ("Claim", "ChargeItem", "Task")
SEARCH_PARAMS = ("patient", "encounter", "status", "_lastUpdated", "_count", "_offset")
RESULT_PARAMS = frozenset({"_count", "_offset", "_format"})
DEFAULT_COUNT = 50
MAX_COUNT = 500  # a larger _count is served as this many (FHIR lets the server page less)
MAX_OFFSET = 1_000_000_000  # far above any table here, far below the stores' 2**63 limit
ORIGIN = "http"  # prefixes the readers' error locations and dead-letter details

_RESPONSE_TYPE = {
    "batch": "batch-response",
    "transaction": "transaction-response",
    "collection": "batch-response",
}
_STATUS_LINE = {200: "200 OK", 201: "201 Created"}
_UNPROCESSABLE = "422 Unprocessable Entity"
_MAX_BUNDLE_DEPTH = 4  # as the reader: deeper Bundles are one error
_RESOLUTION_ONLY = frozenset({"Medication"})  # the reader reads these through references only
_ENTRY_INDEX = re.compile(r"^Bundle\.entry\[(\d+)\]")  # over the reader's typed JSON path
_NOT_JSON = Refusal(RefusalReason.NOT_JSON)
_SHAPE = Refusal(RefusalReason.WRONG_SHAPE)


def _shape(element: str) -> Refusal:
    """The body's shape is wrong at one of our own element names (never input text)."""
    return Refusal(RefusalReason.WRONG_SHAPE, element)


_JSON_FORMATS = frozenset({"json", *FHIR_JSON_TYPES})


# --- inbound ------------------------------------------------------------------------------


async def post_bundle(request: web.Request) -> web.Response:
    """`POST /fhir`: a batch, transaction or collection Bundle, kept as one message.

    A transaction is all or nothing: with any unreadable entry nothing is accepted (the
    payload is kept as a dead letter) and the whole request is answered 422.
    """
    state = request.app[STATE]
    raw = await read_body(request)
    async with refusals_kept(state, raw):
        require_content_type(request, FHIR_JSON_TYPES, "POST /fhir")
        bundle_type, entries = _bundle_parts(parse_json(raw))
    if bundle_type == "transaction":
        await _refuse_unreadable_transaction(state, raw)
    result = await state.ingestor.receive_fhir(raw, ORIGIN)
    groups = _group_by_entry(entries, result.entries)
    answer = {
        "resourceType": "Bundle",
        "type": _RESPONSE_TYPE[bundle_type],
        "entry": [_response_entry(group, result) for group in groups],
    }
    log.info(
        "http.fhir_bundle",
        bundle_type=bundle_type,
        entries=len(entries),
        rejected=sum(1 for r in result.entries if r.error is not None),
        duplicate=result.duplicate,
    )
    return fhir_response(answer)


async def create(request: web.Request) -> web.Response:
    """`POST /fhir/{type}`: one inbound resource."""
    return await _ingest_resource(request, None)


async def update(request: web.Request) -> web.Response:
    """`PUT /fhir/{type}/{id}`: one inbound resource under the id the sender assigned."""
    return await _ingest_resource(request, request.match_info["id"])


async def _ingest_resource(request: web.Request, url_id: str | None) -> web.Response:
    rtype = request.match_info["type"]
    verb = "PUT" if url_id is not None else "POST"
    state = request.app[STATE]
    raw = await read_body(request)
    async with refusals_kept(state, raw):
        require_content_type(request, FHIR_JSON_TYPES, f"{verb} /fhir/{rtype}")
        if url_id is not None and not is_fhir_id(url_id):
            raise ApiError.of(400, "invalid", "the id in the URL is not a FHIR id", refusal=_SHAPE)
        resource = _resource_object(parse_json(raw), rtype)
        body_id = _checked_id(resource, url_id)
    if not body_id:  # create without an id: the server assigns one, as FHIR create does
        resource, raw = with_assigned_id(resource)
        body_id = resource["id"]
    result = await state.ingestor.receive_fhir(raw, ORIGIN)
    errors = [issue for entry in result.entries for issue in _error_issues(entry)]
    if errors:
        log.info("http.fhir_resource", type=rtype, status=422, issues=len(errors))
        raise ApiError(422, errors)
    row, created = None, not result.duplicate
    if is_fhir_id(body_id):
        row, created = await _keep_for_read(state, rtype, body_id, resource)
    status = 201 if created and not result.duplicate else 200
    headers = {}
    if row is not None:
        location = f"{fhir_base(request)}/{rtype}/{row.resource_id}/_history/{row.version}"
        headers = {
            "Location": location,
            "ETag": etag(row.version),
            "Last-Modified": http_date(row.last_updated),
        }
    log.info("http.fhir_resource", type=rtype, status=status)
    outcome = information(_stored_text(rtype, result))
    return _prefer_return(request, row, outcome, status, headers)


def with_assigned_id(resource: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The resource with a server-assigned id (right after resourceType), and its bytes.

    The id is derived from the business identifier when there is one, else from the
    content, so a re-sent create gets the same id (and stays one administration), and a
    later PUT to that id updates it instead of adding a second one.
    """
    identifiers = resource.get("identifier")
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else None
    if isinstance(first, dict) and isinstance(first.get("value"), str):
        basis = f"identifier|{first.get('system', '')}|{first['value']}"
    else:
        basis = "content|" + json.dumps(resource, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{resource['resourceType']}|{basis}".encode()).hexdigest()[:32]
    out = {"resourceType": resource["resourceType"], "id": digest}
    out.update((k, v) for k, v in resource.items() if k not in ("resourceType", "id"))
    return out, json.dumps(out, ensure_ascii=False).encode("utf-8")


async def _keep_for_read(
    state: AppState, rtype: str, rid: str, resource: Mapping[str, Any]
) -> tuple[ResourceRow, bool]:
    """Keep the resource as a readable version (`GET /fhir/{type}/{id}`), after the raw
    message is committed; an unchanged resend keeps the current version. True when this
    created the resource (its version 1)."""
    current = await state.store.read_resource(rtype, rid)
    body = {k: v for k, v in resource.items() if k != "meta"}
    if current is not None and _without_version_meta(json.loads(current.body)) == body:
        return current, False
    status = resource.get("status")
    row = await state.store.put_resource_version(
        rtype,
        rid,
        status if isinstance(status, str) else "",
        json.dumps(body, ensure_ascii=False),
        state.clock(),
        None,  # inbound resources are read back here, never delivered downstream
    )
    return row, current is None


def _without_version_meta(body: dict[str, Any]) -> dict[str, Any]:
    """A stored body as it was given: meta (which the store sets) removed."""
    return {k: v for k, v in body.items() if k != "meta"}


def _prefer_return(
    request: web.Request,
    row: ResourceRow | None,
    outcome: JSON,
    status: int,
    headers: Mapping[str, str],
) -> web.Response:
    """`Prefer: return=minimal|representation|OperationOutcome` (FHIR RESTful API 3.1.0.5).

    Without a Prefer header the stored resource is returned (what clients such as fhirpy
    read the server-assigned id and version from)."""
    prefer = _prefer_value(request.headers.get("Prefer", ""), "return")
    if prefer == "minimal":
        return web.Response(status=status, headers=headers)
    if prefer == "OperationOutcome" or row is None:
        return fhir_response(outcome, status, headers)
    return fhir_bytes(row.body.encode("utf-8"), status, headers)


def _prefer_value(header: str, name: str) -> str:
    for part in header.split(","):
        for token in part.split(";"):
            key, _, value = token.strip().partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"')
    return ""


def _stored_text(rtype: str, result: FhirResult) -> str:
    what = "already stored; nothing changed" if result.duplicate else "stored"
    skips = sorted({e.skip_reason for e in result.entries if e.skip_reason})
    if skips:
        return f"{rtype} {what}; not used for coding: {'; '.join(skips)}"
    return f"{rtype} {what}"


@contextlib.asynccontextmanager
async def refusals_kept(state: AppState, raw: bytes, fmt: str = "fhir") -> AsyncIterator[None]:
    """Keep the body as a dead letter when the checks run inside refuse it (`ApiError`).

    Every bad input is kept for reprocessing (`charge-adapter replay`), also when the HTTP
    contract refuses it before the ingestor reads it: a wrong Content-Type (415), a body
    that is not one JSON document (400; NDJSON included, which the batch reader would
    accept: answering 400 must never leave resources accepted), or JSON of the wrong shape
    for the URL. A body over the size limit (413) is not kept: aiohttp stops reading it
    at the limit, and a truncated prefix could not be reprocessed.
    """
    try:
        yield
    except ApiError as error:
        await _keep_refused(state, raw, fmt, error)
        raise


async def _keep_refused(state: AppState, raw: bytes, fmt: str, error: ApiError) -> None:
    """One dead letter per distinct refused body (keyed by its hash, as the ingestor's); a
    blank body is not kept, there is nothing in it to reprocess."""
    if not raw.strip():
        return
    refusal = error.refusal
    if refusal is None:  # not a refusal of the body (a limit): nothing to reprocess
        return
    reasons = "; ".join(issue.diagnostics for issue in error.issues)
    kind = "Bundle" if fmt == "fhir" else "unknown"  # as the ingestor names its dead letters
    result = await state.ingestor.keep_refused(
        raw, fmt, kind, f"{ORIGIN}: refused {error.status}: {reasons}", refusal
    )
    state.metrics.message(fmt, "payload", "rejected")
    log.info(
        "http.refused_kept",
        format=fmt,
        status=error.status,
        message_id=result.message_id,
        duplicate=result.duplicate,
        reason=refusal.reason.value,
        location=refusal.location,
    )


def parse_json(raw: bytes) -> object:
    """One JSON document, or a 400 naming line and column (never echoing content: it can be
    PHI). Several documents (NDJSON) are a 400 too: a FHIR REST body is one resource."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"body is not UTF-8 text (byte {exc.start})"
        raise ApiError.of(400, "structure", problem, refusal=_NOT_JSON) from None
    if not text.strip():
        problem = "empty body: a FHIR JSON resource is required"
        raise ApiError.of(400, "structure", problem, refusal=_NOT_JSON)
    try:
        return load_json(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        problem = f"invalid JSON at {where}: {exc.msg}"
        raise ApiError.of(400, "structure", problem, refusal=_NOT_JSON) from None
    except (ValueError, RecursionError):
        problem = "invalid JSON: NaN/Infinity, a number out of range or nesting too deep"
        raise ApiError.of(400, "structure", problem, refusal=_NOT_JSON) from None


def _resource_object(document: object, rtype: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        problem = "the body must be a JSON object (one resource)"
        raise ApiError.of(400, "structure", problem, refusal=_NOT_JSON)
    actual = document.get("resourceType")
    if actual != rtype:
        shown = actual if isinstance(actual, str) and is_fhir_id(actual) else "missing or invalid"
        raise ApiError.of(
            400, "invalid", f"resourceType {shown} does not match the URL type {rtype}",
            "resourceType", refusal=_shape("resourceType"),
        )  # fmt: skip
    return document


def _checked_id(resource: Mapping[str, Any], url_id: str | None) -> str:
    """The body's id; on PUT it must be present and equal the URL's (FHIR update rules)."""
    body_id = resource.get("id")
    if url_id is not None and body_id != url_id:
        problem = "missing" if body_id is None else "different from the id in the URL"
        text = f"resource id {problem} (PUT needs both, equal)"
        raise ApiError.of(400, "invalid", text, "id", refusal=_shape("id"))
    return body_id if isinstance(body_id, str) else ""


def _bundle_parts(document: object) -> tuple[str, list[object]]:
    """The Bundle's type and entries, or the request-level error."""
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        problem = "POST /fhir takes a Bundle (batch or transaction)"
        raise ApiError.of(400, "invalid", problem, refusal=_SHAPE)
    bundle_type = document.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in _RESPONSE_TYPE:
        problem = "Bundle.type must be batch, transaction or collection"
        raise ApiError.of(422, "invalid", problem, "Bundle.type", refusal=_shape("Bundle.type"))
    entries = document.get("entry", [])
    if not isinstance(entries, list):
        problem = "Bundle.entry must be an array"
        raise ApiError.of(422, "structure", problem, "Bundle.entry", refusal=_shape("Bundle.entry"))
    return bundle_type, entries


async def _refuse_unreadable_transaction(state: AppState, raw: bytes) -> None:
    """Read the transaction before keeping it: any bad entry refuses the whole of it.

    The ingestor would accept the readable part of a payload; a transaction must not be
    half-accepted, so the payload goes to the dead letters as the ingestor keeps them.
    """
    messages = read_fhir(raw, state.mappings, state.settings.tz, ORIGIN)
    bad = [m for m in messages if m.error is not None]
    if not bad:
        return
    detail = "; ".join(f"{m.error.location}: {m.error.message}" for m in bad if m.error)
    await state.ingestor.keep_refused(raw, "fhir", "Bundle", detail, refusal_for("fhir", bad))
    state.metrics.message("fhir", "payload", "rejected")
    issues = [_issue(m.error) for m in bad if m.error]
    log.info("http.fhir_transaction_refused", issues=len(issues))
    summary = Issue("processing", "transaction refused: nothing was accepted")
    raise ApiError(422, [summary, *issues])


def _group_by_entry(
    entries: Sequence[object], results: Sequence[FhirEntryResult]
) -> list[list[FhirEntryResult] | None]:
    """The ingestor's results (one per resource read, in input order) per Bundle entry.

    A Medication entry yields no result (it is read through references), a nested Bundle
    one per resource inside. If the counts disagree (an input shape the reader treats
    differently), errors are placed by their `Bundle.entry[i]` path and the other entries
    are left unattributed (None): they get the payload's overall status.
    """
    counts = [_results_for(entry, 1) for entry in entries]
    if sum(counts) == len(results):
        groups: list[list[FhirEntryResult] | None] = []
        start = 0
        for count in counts:
            groups.append(list(results[start : start + count]))
            start += count
        return groups
    located: list[list[FhirEntryResult] | None] = [None for _ in entries]
    for result in results:
        match = _ENTRY_INDEX.match(result.error.path) if result.error else None
        if match and int(match[1]) < len(located):
            located[int(match[1])] = [*(located[int(match[1])] or []), result]
    return located


def _results_for(entry: object, depth: int) -> int:
    """How many results the reader gives for one entry (mirrors adapter.readers.fhir)."""
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict):
        return 1
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):  # an array or object is not hashable: the reader's one error
        return 1
    if rtype in _RESOLUTION_ONLY:
        return 0
    if rtype != "Bundle" or depth >= _MAX_BUNDLE_DEPTH:
        return 1
    nested = resource.get("entry")
    if nested is None:
        return 0
    if not isinstance(nested, list):
        return 1
    return sum(_results_for(item, depth + 1) for item in nested)


def _response_entry(group: Sequence[FhirEntryResult] | None, result: FhirResult) -> JSON:
    """One batch/transaction-response entry for one input entry (None: not attributable)."""
    if group is None:
        return {"response": {"status": _STATUS_LINE[200 if result.duplicate else 201]}}
    issues = [issue for item in group for issue in _error_issues(item)]
    if issues:
        return {"response": {"status": _UNPROCESSABLE, "outcome": operation_outcome(issues)}}
    unchanged = not group or result.duplicate or all(item.status == 200 for item in group)
    response: JSON = {"status": _STATUS_LINE[200 if unchanged else 201]}
    if len(group) == 1 and group[0].resource_type and is_fhir_id(group[0].resource_id):
        response["location"] = f"{group[0].resource_type}/{group[0].resource_id}"
    notes = sorted({item.skip_reason for item in group if item.skip_reason})
    if not group:
        notes = ["read through references from other entries; not coded on its own"]
    if notes:
        response["outcome"] = information("not used for coding: " + "; ".join(notes))
    return {"response": response}


def _error_issues(result: FhirEntryResult) -> list[Issue]:
    if result.error is None:
        return []
    return [_issue(result.error)]


def _issue(error: InputError) -> Issue:
    """The reader's JSON path as `expression` (typed: `InputError.path`), else its location."""
    if error.path:
        return Issue("invalid", f"{error.path}: {error.message}", error.path)
    return Issue("structure", f"{error.location}: {error.message}")


# --- read, vread, history ---------------------------------------------------------------


async def read(request: web.Request) -> web.Response:
    """`GET /fhir/{type}/{id}`: the current version, with ETag and Last-Modified."""
    rtype, rid = request.match_info["type"], request.match_info["id"]
    row = await request.app[STATE].store.read_resource(rtype, rid) if is_fhir_id(rid) else None
    if row is None:
        raise ApiError.of(404, "not-found", f"{rtype}/{rid} is not known")
    return _resource_response(row)


async def vread(request: web.Request) -> web.Response:
    """`GET /fhir/{type}/{id}/_history/{vid}`: one stored version."""
    rtype, rid, vid = (request.match_info[k] for k in ("type", "id", "vid"))
    row = None
    if is_fhir_id(rid) and vid.isdigit():
        row = await request.app[STATE].store.read_resource(rtype, rid, int(vid))
    if row is None:
        raise ApiError.of(404, "not-found", f"{rtype}/{rid} has no version {vid}")
    return _resource_response(row)


async def history(request: web.Request) -> web.Response:
    """`GET /fhir/{type}/{id}/_history`: every version, newest first."""
    rtype, rid = request.match_info["type"], request.match_info["id"]
    rows = await request.app[STATE].store.history(rtype, rid) if is_fhir_id(rid) else []
    if not rows:
        raise ApiError.of(404, "not-found", f"{rtype}/{rid} is not known")
    base = fhir_base(request)
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(rows),
        "link": [{"relation": "self", "url": f"{base}/{rtype}/{rid}/_history"}],
        "entry": [_history_entry(row, base) for row in rows],
    }
    return fhir_response(bundle)


def _history_entry(row: ResourceRow, base: str) -> JSON:
    """R4 history entries carry the request that made the version and its response."""
    local = f"{row.resource_type}/{row.resource_id}"
    first = row.version == 1
    return {
        "fullUrl": f"{base}/{local}",
        "resource": json.loads(row.body),
        "request": {"method": "POST" if first else "PUT", "url": row.resource_type if first
                    else local},
        "response": {
            "status": _STATUS_LINE[201 if first else 200],
            "etag": etag(row.version),
            "lastModified": fhir_instant(row.last_updated),
        },
    }  # fmt: skip


def _resource_response(row: ResourceRow) -> web.Response:
    headers = {"ETag": etag(row.version), "Last-Modified": http_date(row.last_updated)}
    return fhir_bytes(row.body.encode("utf-8"), 200, headers)


def etag(version: int) -> str:
    return f'W/"{version}"'


def http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def fhir_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fhir_base(request: web.Request) -> str:
    """Absolute base of this server's FHIR endpoint, as the client reached it."""
    return f"{request.url.origin()}/fhir"


# --- search -------------------------------------------------------------------------------


async def search(request: web.Request) -> web.Response:
    """`GET /fhir/{Claim|ChargeItem|Task}?...`: a searchset Bundle, paged."""
    rtype = request.match_info["type"]
    state = request.app[STATE]
    lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "")
    parsed = parse_search(rtype, request.query, state.settings.tz, lenient)
    rows, total = await state.store.search(parsed.query)
    log.info("http.fhir_search", type=rtype, total=total, returned=len(rows))
    return fhir_response(searchset(fhir_base(request), parsed, rows, total))


class ParsedSearch:
    """The store query, plus what the self/next links repeat and what lenient mode ignored."""

    def __init__(self, query: SearchQuery, echo: list[tuple[str, str]], ignored: list[str]):
        self.query = query
        self.echo = echo
        self.ignored = ignored


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
    return ParsedSearch(query, echo, ignored)


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
