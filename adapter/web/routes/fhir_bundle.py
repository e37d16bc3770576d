"""`POST /fhir`: a batch, transaction or collection Bundle in, its response Bundle out.

The whole body is one message to the ingestor, kept before anything is answered; the
ingestor's results (one per resource read) are then grouped back per Bundle entry, each
answered with its own status. A transaction is all or nothing: it is read first, and any
unreadable entry refuses the whole of it (422, kept as a dead letter). A body the HTTP
contract refuses is kept before the 4xx (`bodies.refusals_kept`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import structlog
from aiohttp import web

from adapter.core.ids import is_fhir_id
from adapter.readers.fhir import read_fhir
from adapter.usecases.ingest import FhirEntryResult, FhirResult, refusal_for
from adapter.web.bodies import (
    ORIGIN,
    WRONG_SHAPE,
    parse_json,
    read_body,
    refusals_kept,
    require_content_type,
    wrong_shape,
)
from adapter.web.outcome import (
    FHIR_JSON_TYPES,
    JSON,
    ApiError,
    Issue,
    fhir_response,
    information,
    input_issue,
    operation_outcome,
)
from adapter.web.routes.fhir_read import STATUS_LINE
from adapter.web.state import STATE, AppState

log = structlog.get_logger()

_RESPONSE_TYPE = {
    "batch": "batch-response",
    "transaction": "transaction-response",
    "collection": "batch-response",
}
_UNPROCESSABLE = "422 Unprocessable Entity"
_MAX_BUNDLE_DEPTH = 4  # as the reader: deeper Bundles are one error
_RESOLUTION_ONLY = frozenset({"Medication"})  # the reader reads these through references only
_ENTRY_INDEX = re.compile(r"^Bundle\.entry\[(\d+)\]")  # over the reader's typed JSON path


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


def _bundle_parts(document: object) -> tuple[str, list[object]]:
    """The Bundle's type and entries, or the request-level error."""
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        problem = "POST /fhir takes a Bundle (batch or transaction)"
        raise ApiError.of(400, "invalid", problem, refusal=WRONG_SHAPE)
    bundle_type = document.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in _RESPONSE_TYPE:
        problem = "Bundle.type must be batch, transaction or collection"
        raise ApiError.of(
            422, "invalid", problem, "Bundle.type", refusal=wrong_shape("Bundle.type")
        )
    entries = document.get("entry", [])
    if not isinstance(entries, list):
        problem = "Bundle.entry must be an array"
        raise ApiError.of(
            422, "structure", problem, "Bundle.entry", refusal=wrong_shape("Bundle.entry")
        )
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
    issues = [input_issue(m.error) for m in bad if m.error]
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
        return {"response": {"status": STATUS_LINE[200 if result.duplicate else 201]}}
    issues = [input_issue(item.error) for item in group if item.error is not None]
    if issues:
        return {"response": {"status": _UNPROCESSABLE, "outcome": operation_outcome(issues)}}
    unchanged = not group or result.duplicate or all(item.status == 200 for item in group)
    response: JSON = {"status": STATUS_LINE[200 if unchanged else 201]}
    if len(group) == 1 and group[0].resource_type and is_fhir_id(group[0].resource_id):
        response["location"] = f"{group[0].resource_type}/{group[0].resource_id}"
    notes = sorted({item.skip_reason for item in group if item.skip_reason})
    if not group:
        notes = ["read through references from other entries; not coded on its own"]
    if notes:
        response["outcome"] = information("not used for coding: " + "; ".join(notes))
    return {"response": response}
