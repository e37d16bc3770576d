"""`GET /admin/outbox?state=rejected`: the outbound dead letters.

A version its destination refused for good (a sink's rejected result, e.g. a DFT answered
AR) is kept in the outbox, never retried and never dropped; this lists them for the
interface analyst with the destination's reason, oldest first, one page at a time. No PHI
in the list beyond what the destination wrote in its reason; behind the bearer tokens like
every route that is not a probe.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiMapping

from adapter.store.base import Delivery
from adapter.web.outcome import ApiError
from adapter.web.state import STATE

DEFAULT_COUNT = 50
MAX_COUNT = 500
STATES = ("rejected",)
NO_STORE = {"Cache-Control": "no-store"}


async def list_outbox(request: web.Request) -> web.Response:
    params = request.query
    allowed = {"state", "_count", "_offset"}
    for name in params:
        if name not in allowed:
            raise ApiError.of(
                400, "not-supported", f"unknown parameter (allowed: {sorted(allowed)})"
            )
    if params.get("state") not in STATES:
        raise ApiError.of(400, "invalid", f"state: one of {', '.join(STATES)}", "state")
    count = min(_number(params, "_count", DEFAULT_COUNT), MAX_COUNT)
    offset = _number(params, "_offset", 0)
    items, total = await request.app[STATE].store.rejected_deliveries(count, offset)
    answer: dict[str, object] = {
        "state": "rejected",
        "total": total,
        "offset": offset,
        "count": len(items),
        "items": [outbox_json(item) for item in items],
    }
    if offset + len(items) < total:
        query = [(k, v) for k, v in params.items() if k != "_offset"]
        query.append(("_offset", str(offset + len(items))))
        answer["next"] = str(request.url.with_query(query))
    return web.json_response(answer, headers=NO_STORE)


def outbox_json(item: Delivery) -> dict[str, object]:
    return {
        "id": item.id,
        "destination": item.destination,
        "resource": f"{item.resource_type}/{item.resource_id}",
        "version": item.version,
        "attempts": item.attempts,
        "rejected_at": None if item.rejected_at is None else item.rejected_at.isoformat(),
        "reason": item.last_error,
    }


def _number(params: MultiMapping[str], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise ApiError.of(400, "invalid", f"{name}: a whole number", name)
    return int(value)
