"""The review worklist: held encounters, and the two ways a biller releases one.

A held encounter has a draft Claim, planned ChargeItems and a requested Task whose inputs
say why (D22). The biller either fixes the source and asks for a re-code (`recode`: the
encounter is coded again from its stored messages, and may well stay held), or accepts
the draft as it is (`override`, with a note saying why): the Claim becomes active, its
ChargeItems billable and the Task completed, each as a new version queued for delivery.
Both are audited with the actor: with auth on, the authenticated client (the token's
name); an `actor` in the body is then only recorded as "<client> on behalf of <actor>".
A later message for the encounter re-codes it as usual. When the re-code bills the same
lines and diagnoses (an interface engine resending the visit under new MSH-10s), the
override stands and nothing is rewritten; when it bills something else the encounter is
back on the worklist, with the difference from the overridden Claim
(`changesSinceOverride`): the source changed, so the decision has to be made again.

The review id is the Claim id: stable across re-codes and free of PHI. These are the HTTP
edges; the release itself (one transaction with its audit entry) is the use case
`adapter/usecases/review.py`, which the workbench's form calls through `release_held` too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from adapter.core.claim_diff import diff_claims
from adapter.core.emit.urls import HOLD_REASON
from adapter.core.ids import claim_id, task_id
from adapter.core.review_decision import is_override
from adapter.store.ports import EncounterRow, EncounterState, Resources
from adapter.usecases import review
from adapter.usecases.review import ReleaseAction, Released
from adapter.web.bodies import parse_json, read_body, require_content_type
from adapter.web.outcome import FHIR_JSON_TYPES, JSON, ApiError
from adapter.web.security import principal_of
from adapter.web.state import STATE, AppState

log = structlog.get_logger()

ACTIONS = tuple(a.value for a in ReleaseAction)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_TEXT = 2000  # note and actor: a sentence or a paragraph, not a document
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


async def review_item(store: Resources, row: EncounterRow, base: str) -> JSON:
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
    } | await changes_since_override(store, cid)


async def changes_since_override(store: Resources, cid: str) -> JSON:
    """`changesSinceOverride` when a biller had overridden this Claim and a re-code that
    bills something else put it back on hold: the lines (and diagnoses) added, removed and
    changed since the overridden version, which is named. Nothing otherwise."""
    versions = await store.history("Claim", cid)
    if not versions:
        return {}
    current = json.loads(versions[0].body)
    for row in versions[1:]:
        body = json.loads(row.body)
        if is_override(body):
            diff = diff_claims(body, current)
            return {"changesSinceOverride": {"overriddenVersion": row.version} | diff.as_json()}
    return {}


def _links(base: str, key: str) -> JSON:
    cid = claim_id(key)
    return {
        "claim": f"{base}/fhir/Claim/{cid}",
        "task": f"{base}/fhir/Task/{task_id(key)}",
        "chargeItems": f"{base}/fhir/ChargeItem?encounter={quote(key, safe='')}",
        "release": f"{base}/review/{cid}/release",
    }


async def hold_reasons(store: Resources, row: EncounterRow) -> list[JSON]:
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
    body = release_body(parse_json(await read_body(request)), actor_required=principal is None)
    action, note = body["action"], body["note"]
    actor = audit_actor(principal, body["actor"])
    answer = await release_held(state, request.app[RELEASE_LOCK], cid, action, actor, note)
    answer["links"] = _links(str(request.url.origin()), answer["encounterKey"])
    log.info("review.released", claim=cid, action=action, outcome=answer["outcome"])
    return web.json_response(answer)


def release_body(document: object, actor_required: bool = True) -> dict[str, str]:
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


async def release_held(
    state: AppState, lock: asyncio.Lock, cid: str, action: str, actor: str, note: str
) -> JSON:
    """The release use case for one HTTP request (the API's or the workbench's form), one
    at a time per process (`lock`); its answer as JSON, its refusals as ApiErrors."""
    try:
        async with lock:
            done = await review.release(
                state.store,
                state.coder.run_once,
                cid,
                ReleaseAction(action),
                actor,
                note,
                state.clock(),
                state.settings.fhir_base_url or None,
            )
    except review.NotUnderReview as exc:
        raise ApiError.of(404, "not-found", exc.text) from exc
    except review.NotHeld as exc:
        raise ApiError.of(409, "conflict", exc.text) from exc
    return await released_json(state.store, done)


async def released_json(store: Resources, done: Released) -> JSON:
    """The release's answer: ids, action, outcome; the reasons a re-code is held for, or
    the versions an override wrote."""
    answer: JSON = {
        "claimId": done.claim_id,
        "encounterKey": done.encounter_key,
        "action": done.action.value,
        "outcome": done.outcome,
    }
    if done.action is ReleaseAction.OVERRIDE:
        answer["versions"] = dict(done.versions)
    elif done.encounter is not None and done.encounter.state is EncounterState.HELD:
        answer["holdReasons"] = await hold_reasons(store, done.encounter)
    return answer
