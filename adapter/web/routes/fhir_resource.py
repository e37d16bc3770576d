"""`POST /fhir/{type}`, `PUT /fhir/{type}/{id}`: one inbound resource, kept, then answered.

The raw body goes to the ingestor, which keeps it before anything is answered; this module
checks only what the HTTP contract needs (content type, one JSON object, the type and id of
the URL) and translates the ingestor's result into FHIR's create/update answer (201/200,
Location, ETag, `Prefer: return=`). A body the contract refuses is kept as a dead letter
before the 4xx (`bodies.refusals_kept`). The resource is also kept as a readable version, so
`GET /fhir/{type}/{id}` serves it back (`fhir_read`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from adapter.core.ids import is_fhir_id
from adapter.store.base import ResourceRow
from adapter.usecases.ingest import FhirResult
from adapter.web.bodies import (
    NOT_JSON,
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
    fhir_bytes,
    fhir_response,
    information,
    input_issue,
)
from adapter.web.routes.fhir_read import etag, fhir_base, http_date
from adapter.web.state import STATE, AppState

log = structlog.get_logger()

INBOUND_TYPES = ("MedicationAdministration", "Encounter", "Condition", "Patient", "Coverage")


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
            raise ApiError.of(
                400, "invalid", "the id in the URL is not a FHIR id", refusal=WRONG_SHAPE
            )
        resource = _resource_object(parse_json(raw), rtype)
        body_id = _checked_id(resource, url_id)
    if not body_id:  # create without an id: the server assigns one, as FHIR create does
        resource, raw = with_assigned_id(resource)
        body_id = resource["id"]
    result = await state.ingestor.receive_fhir(raw, ORIGIN)
    errors = [input_issue(entry.error) for entry in result.entries if entry.error is not None]
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


def _resource_object(document: object, rtype: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        problem = "the body must be a JSON object (one resource)"
        raise ApiError.of(400, "structure", problem, refusal=NOT_JSON)
    actual = document.get("resourceType")
    if actual != rtype:
        shown = actual if isinstance(actual, str) and is_fhir_id(actual) else "missing or invalid"
        raise ApiError.of(
            400, "invalid", f"resourceType {shown} does not match the URL type {rtype}",
            "resourceType", refusal=wrong_shape("resourceType"),
        )  # fmt: skip
    return document


def _checked_id(resource: Mapping[str, Any], url_id: str | None) -> str:
    """The body's id; on PUT it must be present and equal the URL's (FHIR update rules)."""
    body_id = resource.get("id")
    if url_id is not None and body_id != url_id:
        problem = "missing" if body_id is None else "different from the id in the URL"
        text = f"resource id {problem} (PUT needs both, equal)"
        raise ApiError.of(400, "invalid", text, "id", refusal=wrong_shape("id"))
    return body_id if isinstance(body_id, str) else ""
