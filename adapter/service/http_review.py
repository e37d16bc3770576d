"""The review worklist: held encounters, and the two ways a biller releases one.

A held encounter has a draft Claim, planned ChargeItems and a requested Task whose inputs
say why (D22). The biller either fixes the source and asks for a re-code (`recode`: the
encounter is coded again from its stored messages, and may well stay held), or accepts
the draft as it is (`override`, with a note saying why): the Claim becomes active, its
ChargeItems billable and the Task completed, each as a new version queued for delivery.
Both are audited with the actor: with auth on, the authenticated client (the token's
name); an `actor` in the body is then only recorded as "<client> on behalf of <actor>".
A later message for the encounter re-codes it as usual, which replaces an override: the
source changed, so the decision has to be made again.

The review id is the Claim id: stable across re-codes and free of PHI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from adapter.core.fhir_output import HOLD_REASON
from adapter.core.ids import claim_id, is_fhir_id, task_id
from adapter.service.app import STATE, AppState
from adapter.service.http_fhir import parse_json
from adapter.service.operation_outcome import (
    FHIR_JSON_TYPES,
    JSON,
    ApiError,
    read_body,
    require_content_type,
)
from adapter.service.security import principal_of
from adapter.store.base import (
    AuditEntry,
    EncounterRow,
    EncounterState,
    ResourceRow,
    SearchQuery,
    Store,
)

log = structlog.get_logger()

EXT_OVERRIDE_NOTE = "https://charge-adapter.org/fhir/StructureDefinition/override-note"
TASK_OUTPUT = "https://charge-adapter.org/fhir/CodeSystem/task-output"
ACTIONS = ("recode", "override")
AUDIT_ACTION = {"recode": "release-recode", "override": "override"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_TEXT = 2000  # note and actor: a sentence or a paragraph, not a document
_PAGE = 500
_BEFORE_EXTENSION = ("resourceType", "id", "meta", "implicitRules", "language", "text",
                     "contained")  # fmt: skip
RELEASE_LOCK = web.AppKey("review_release_lock", asyncio.Lock)


def setup_review(app: web.Application) -> None:
    """One release at a time per process: check-then-act on the encounter state."""
    app[RELEASE_LOCK] = asyncio.Lock()


# --- worklist -------------------------------------------------------------------------


async def list_review(request: web.Request) -> web.Response:
    """`GET /review[?limit=N]`: held encounters with their reasons, newest changes first."""
    state = request.app[STATE]
    limit = _limit(request.query.get("limit"))
    rows = await state.store.encounters_in_state(EncounterState.HELD, limit)
    base = str(request.url.origin())
    items = [await review_item(state.store, row, base) for row in rows]
    log.info("http.review_list", held=len(items))
    return web.json_response(items)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) == 0:
        raise ApiError.of(400, "invalid", "limit must be a positive integer")
    return min(int(raw), MAX_LIMIT)


async def review_item(store: Store, row: EncounterRow, base: str) -> JSON:
    """One worklist line: ids, reasons with their sentences, when, and where to look."""
    cid = claim_id(row.key)
    return {
        "id": cid,
        "claimId": cid,
        "encounterKey": row.key,
        "patient": row.patient_key,
        "state": row.state.value,
        "holdReasons": await hold_reasons(store, row),
        "lastUpdated": row.updated_at.isoformat(),
        "links": _links(base, row.key),
    }


def _links(base: str, key: str) -> JSON:
    cid = claim_id(key)
    return {
        "claim": f"{base}/fhir/Claim/{cid}",
        "task": f"{base}/fhir/Task/{task_id(key)}",
        "chargeItems": f"{base}/fhir/ChargeItem?encounter={quote(key, safe='')}",
        "release": f"{base}/review/{cid}/release",
    }


async def hold_reasons(store: Store, row: EncounterRow) -> list[JSON]:
    """Reasons from the current Task's inputs (code + sentence); the bare codes otherwise."""
    task = await store.read_resource("Task", task_id(row.key))
    if task is not None and task.status == "requested":
        reasons = [_reason(i) for i in json.loads(task.body).get("input", [])]
        found = [r for r in reasons if r is not None]
        if found:
            return found
    return [{"code": code, "text": ""} for code in row.outcome_detail.split() if code]


def _reason(task_input: Mapping[str, Any]) -> JSON | None:
    concept = task_input.get("valueCodeableConcept") or {}
    coding = next((c for c in concept.get("coding", []) if c.get("system") == HOLD_REASON), None)
    if coding is None:
        return None
    return {"code": coding.get("code", ""), "text": concept.get("text", "")}


# --- release ------------------------------------------------------------------------------


async def release(request: web.Request) -> web.Response:
    """`POST /review/{claim_id}/release` with `{"action": "recode"|"override", ...}`."""
    require_content_type(request, FHIR_JSON_TYPES, "POST /review")
    state = request.app[STATE]
    cid = request.match_info["claim_id"]
    principal = principal_of(request)
    body = _release_body(parse_json(await read_body(request)), actor_required=principal is None)
    action, note = body["action"], body["note"]
    actor = audit_actor(principal, body["actor"])
    async with request.app[RELEASE_LOCK]:
        key = await held_encounter(state.store, cid)
        if action == "recode":
            answer = await recode(state, key, actor, note)
        else:
            answer = await override(state, key, actor, note)
    answer["links"] = _links(str(request.url.origin()), key)
    log.info("review.released", claim=cid, action=action, outcome=answer["outcome"])
    return web.json_response(answer)


def _release_body(document: object, actor_required: bool = True) -> dict[str, str]:
    """action, actor (who, for the audit) and note (required to override), as 422s."""
    if not isinstance(document, dict):
        raise ApiError.of(400, "structure", "the body must be a JSON object")
    action = document.get("action")
    if action not in ACTIONS:
        raise ApiError.of(422, "invalid", "action must be 'recode' or 'override'", "action")
    actor = _text(document, "actor", required=actor_required)
    note = _text(document, "note", required=action == "override")
    return {"action": str(action), "actor": actor, "note": note}


def _text(document: Mapping[str, Any], name: str, required: bool) -> str:
    value = document.get(name, "")
    if not isinstance(value, str):
        raise ApiError.of(422, "invalid", f"{name} must be a string", name)
    value = value.strip()
    if required and not value:
        raise ApiError.of(422, "required", f"{name} is required and must not be empty", name)
    if len(value) > MAX_TEXT:
        raise ApiError.of(422, "too-long", f"{name} is longer than {MAX_TEXT} characters", name)
    return value


def audit_actor(principal: str | None, claimed: str) -> str:
    """Who the audit names: the authenticated client when there is one, never the body alone.

    A client name has no spaces, so the principal is always the audit actor's first word.
    """
    if principal is None:
        return claimed
    if not claimed or claimed == principal:
        return principal
    return f"{principal} on behalf of {claimed}"


async def held_encounter(store: Store, cid: str) -> str:
    """The encounter key behind a review id: 404 unknown, 409 not (or no longer) held."""
    claim = await store.read_resource("Claim", cid) if is_fhir_id(cid) else None
    if claim is None:
        raise ApiError.of(404, "not-found", f"no Claim {cid} to review")
    row = await store.get_encounter(claim.encounter_key)
    if row is None:
        raise ApiError.of(404, "not-found", f"Claim {cid} has no encounter")
    if row.state is not EncounterState.HELD:
        raise ApiError.of(
            409, "conflict", f"encounter of Claim {cid} is {row.state.value}, not held"
        )
    return row.key


async def recode(state: AppState, key: str, actor: str, note: str) -> JSON:
    """Code the encounter again now, from its stored messages and the current tables."""
    now = state.clock()
    await state.store.set_state(key, EncounterState.DIRTY, now)
    await state.store.add_audit(AuditEntry(now, actor, AUDIT_ACTION["recode"], key, note))
    await state.coder.run_once()
    row = await state.store.get_encounter(key)
    answer: JSON = {"claimId": claim_id(key), "encounterKey": key, "action": "recode"}
    if row is None or row.state in (EncounterState.DIRTY, EncounterState.OPEN):
        answer["outcome"] = "pending"  # another worker holds the lease: it will code it
        return answer
    answer["outcome"] = row.state.value
    if row.state is EncounterState.HELD:
        answer["holdReasons"] = await hold_reasons(state.store, row)
    return answer


async def override(state: AppState, key: str, actor: str, note: str) -> JSON:
    """Accept the held draft as billed: new versions of the ChargeItems, Claim and Task.

    ChargeItems go first and the encounter state last, so an interruption leaves it held
    and a retry finishes the job (already-billable items are not rewritten).
    """
    store, now = state.store, state.clock()
    destination = state.settings.fhir_base_url or None
    versions: JSON = {"ChargeItem": {}}
    for item in await _charge_items(store, key):
        if item.status == "planned":
            body = _without_meta(item.body) | {"status": "billable"}
            written = await store.put_resource_version(
                "ChargeItem", item.resource_id, "billable", _dumps(body), now, destination
            )
            versions["ChargeItem"][item.resource_id] = written.version
    claim = await store.read_resource("Claim", claim_id(key))
    if claim is not None:
        body = _with_extension(_without_meta(claim.body) | {"status": "active"}, note)
        written = await store.put_resource_version(
            "Claim", claim.resource_id, "active", _dumps(body), now, destination
        )
        versions["Claim"] = written.version
    task = await store.read_resource("Task", task_id(key))
    if task is not None:
        body = _completed_task(_without_meta(task.body), note, now.isoformat(timespec="seconds"))
        written = await store.put_resource_version(
            "Task", task.resource_id, "completed", _dumps(body), now, destination
        )
        versions["Task"] = written.version
    await state.store.set_state(key, EncounterState.CODED, now)
    await state.store.add_audit(AuditEntry(now, actor, AUDIT_ACTION["override"], key, note))
    return {
        "claimId": claim_id(key),
        "encounterKey": key,
        "action": "override",
        "outcome": EncounterState.CODED.value,
        "versions": versions,
    }


async def _charge_items(store: Store, key: str) -> list[ResourceRow]:
    """Every current ChargeItem of the encounter (paged through the store's search)."""
    items: list[ResourceRow] = []
    while True:
        query = SearchQuery("ChargeItem", encounter=key, count=_PAGE, offset=len(items))
        rows, total = await store.search(query)
        items += rows
        if not rows or len(items) >= total:
            return items


def _without_meta(body: str) -> dict[str, Any]:
    """The stored JSON without versionId/lastUpdated: the store sets them on the new version."""
    resource: dict[str, Any] = json.loads(body)
    meta = resource.pop("meta", None)
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        resource = _with_meta(resource, kept) if kept else resource
    return resource


def _with_meta(resource: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Other meta elements (profile, tag) stay, right after id."""
    out: dict[str, Any] = {}
    for name, value in resource.items():
        out[name] = value
        if name == "id":
            out["meta"] = meta
    return out


def _with_extension(resource: Mapping[str, Any], note: str) -> dict[str, Any]:
    """The override note as an extension, in the R4 element position (after id/meta/text)."""
    note_ext = {"url": EXT_OVERRIDE_NOTE, "valueString": note}
    others = [e for e in resource.get("extension", []) if e.get("url") != EXT_OVERRIDE_NOTE]
    out = {k: v for k, v in resource.items() if k in _BEFORE_EXTENSION}
    out["extension"] = [*others, note_ext]
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out


def _completed_task(task: Mapping[str, Any], note: str, when: str) -> dict[str, Any]:
    """Task completed, lastModified now, and the note as its output (R4 element order)."""
    out: dict[str, Any] = {}
    for name, value in task.items():
        if name in ("lastModified", "output"):
            continue
        out[name] = "completed" if name == "status" else value
        if name == "authoredOn":
            out["lastModified"] = when
    out.setdefault("lastModified", when)
    out["output"] = [
        {
            "type": {"coding": [{"system": TASK_OUTPUT, "code": "override-note"}]},
            "valueString": note,
        }
    ]
    return out


def _dumps(resource: Mapping[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
