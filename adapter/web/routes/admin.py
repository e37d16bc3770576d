"""Operator routes under `/admin`: what an interface analyst does to a running service.

`GET /admin/dead-letters` is the worklist of refused messages (no PHI); `GET
/admin/dead-letters/{id}/raw` one of them as received (PHI: never cached).

`POST /admin/reload-mappings` loads the site tables again without a restart (as SIGHUP
does): validated first, the old tables kept when the new ones fail, the answer naming
the file and line. Behind the bearer tokens like every route that is not a probe; a
read-only client may not reload (it is a write).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from multidict import MultiMapping

from adapter.core.refusals import RefusalReason
from adapter.core.time_range import parse_since
from adapter.usecases import dead_letters
from adapter.web.outcome import FHIR_JSON, ApiError, Issue
from adapter.web.security import principal_of
from adapter.web.state import STATE

log = structlog.get_logger()


async def reload_mappings(request: web.Request) -> web.Response:
    """200 with the directory when the new tables are in use; 422 naming the bad row."""
    state = request.app[STATE]
    error = await state.reload_mappings()
    if error is not None:
        text = f"mapping tables not reloaded, the previous ones stay in use: {error}"
        raise ApiError(422, [Issue("invalid", text)])
    return web.json_response(
        {"result": "reloaded", "directory": state.settings.mappings_dir},
        headers={"Cache-Control": "no-store"},
    )


async def list_dead_letters(request: web.Request) -> web.Response:
    """`GET /admin/dead-letters?since=&reason=&_count=&_offset=`: one page of the worklist.

    No PHI in it (see adapter.usecases.dead_letters); oldest first; `next` links the page
    after this one while there is one.
    """
    query = _dead_letter_query(request.query)
    items, total = await dead_letters.list_dead_letters(request.app[STATE].store, query)
    answer: dict[str, object] = {
        "total": total,
        "offset": query.offset,
        "count": len(items),
        "items": [item.to_json() for item in items],
    }
    if query.offset + len(items) < total:
        params = [(k, v) for k, v in request.query.items() if k != "_offset"]
        params.append(("_offset", str(query.offset + len(items))))
        answer["next"] = str(request.url.with_query(params))
    return web.json_response(answer, headers=NO_STORE)


async def dead_letter_raw(request: web.Request) -> web.Response:
    """`GET /admin/dead-letters/{id}/raw`: the bytes as received. PHI: behind the tokens
    when auth is on, never cached, offered as a download (never rendered by a browser)."""
    text = request.match_info["id"]
    state = request.app[STATE]
    message = await dead_letters.dead_letter_raw(state.store, int(text)) if _digits(text) else None
    if message is None:
        raise ApiError.of(404, "not-found", f"no dead letter {text if _digits(text) else ''}")
    log.info("dead_letter.raw_read", message_id=message.id, client=principal_of(request) or "")
    extension, content_type = (
        ("hl7", "x-application/hl7-v2+er7") if message.format == "hl7" else ("json", FHIR_JSON)
    )
    headers = {
        **NO_STORE,
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="dead-letter-{message.id}.{extension}"',
    }
    response = web.Response(body=message.raw, headers=headers)
    response.content_type = content_type
    return response


NO_STORE = {"Cache-Control": "no-store"}


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18


def _dead_letter_query(params: MultiMapping[str]) -> dead_letters.DeadLetterQuery:
    """The worklist filters, or a 400 naming the parameter."""
    allowed = {"since", "reason", "_count", "_offset"}
    for name in params:
        if name not in allowed:
            raise ApiError.of(
                400, "not-supported", f"unknown parameter (allowed: {sorted(allowed)})"
            )
    since = None
    if "since" in params:
        try:
            since = parse_since(params["since"])
        except ValueError:
            raise ApiError.of(400, "invalid", "since: an ISO date-time", "since") from None
    reasons = []
    for value in params.getall("reason", []):
        for code in value.split(","):
            try:
                reasons.append(RefusalReason(code.strip()))
            except ValueError:
                known = ", ".join(r.value for r in RefusalReason)
                raise ApiError.of(400, "invalid", f"reason: one of {known}", "reason") from None
    count, offset = (
        _number(params, "_count", dead_letters.DEFAULT_COUNT),
        _number(params, "_offset", 0),
    )
    return dead_letters.DeadLetterQuery(
        since, tuple(reasons), min(count, dead_letters.MAX_COUNT), offset
    )


def _number(params: MultiMapping[str], name: str, default: int) -> int:
    if name not in params:
        return default
    value = params[name]
    if not _digits(value):
        raise ApiError.of(400, "invalid", f"{name}: a whole number", name)
    return int(value)
