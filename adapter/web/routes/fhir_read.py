"""`GET /fhir/{type}/{id}`, `.../_history`, `.../_history/{vid}`: stored versions, as stored.

Served for the coder's output (Claim, ChargeItem, Task) and for the inbound resources kept one
by one (`fhir_resource`). How a version is named on the wire (ETag, Last-Modified, the base URL
the client reached) is here too: create answers with the same names a read gives back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from adapter.core.ids import is_fhir_id
from adapter.store.base import ResourceRow
from adapter.web.outcome import JSON, ApiError, fhir_bytes, fhir_response
from adapter.web.state import STATE

OUTPUT_TYPES = ("Claim", "ChargeItem", "Task")
STATUS_LINE = {200: "200 OK", 201: "201 Created"}


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
            "status": STATUS_LINE[201 if first else 200],
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
