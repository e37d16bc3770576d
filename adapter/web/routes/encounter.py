"""`/ui/encounters/{claim id}`: one encounter, and its release (code again / bill as coded).

The release reuses the review API's use cases (`adapter.web.routes.review`): the same
held-encounter check, the same re-code and override, the same audit entry; only the
rendering is here. Read-only clients are refused (403) before anything is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import structlog
from aiohttp import web

from adapter.core import timeline
from adapter.core.ids import is_fhir_id
from adapter.store.base import EncounterRow, EncounterState
from adapter.web import claim_view
from adapter.web.history_view import claim_history
from adapter.web.outcome import ApiError
from adapter.web.pages import (
    PREFIX,
    RULES,
    SESSION,
    forbidden,
    not_found,
    reason_texts,
    refused,
    render,
    see_other,
    visible_patient,
)
from adapter.web.payment_view import expected_payment
from adapter.web.routes import review
from adapter.web.security import AUTH
from adapter.web.sources_view import read_sources, source_label
from adapter.web.state import STATE

log = structlog.get_logger()

AUDIT_WORDS = {"override": "billed as coded", "release-recode": "coded again"}


async def encounter_page(request: web.Request) -> web.StreamResponse:
    """`GET /ui/encounters/{claim id}`: the Claim lines, the hold reasons, the actions."""
    return await _encounter(request, error="", status=200)


async def _encounter(request: web.Request, error: str, status: int) -> web.StreamResponse:
    state = request.app[STATE]
    cid = request.match_info["claim_id"]
    claim_row = await state.store.read_resource("Claim", cid) if is_fhir_id(cid) else None
    row = await state.store.get_encounter(claim_row.encounter_key) if claim_row else None
    if claim_row is None or row is None:
        return not_found(request, "No such encounter.")
    claim = json.loads(claim_row.body)
    held = row.state is EncounterState.HELD
    session = request[SESSION]
    lines = claim_view.claim_lines(claim)
    pictured, messages_of = await _timeline(request, row, lines)
    statements = request.app[RULES]
    diagnoses = claim_view.diagnoses(claim)
    for line in lines:
        line["diagnosis_codes"] = [
            diagnoses[int(n) - 1]
            for n in line["diagnosis_order"]
            if n.isdigit() and 0 < int(n) <= len(diagnoses)
        ]
        line["rule_words"] = [(r, statements.get(r, "")) for r in line["rules"]]
        line["source_words"] = [
            {"administration": source_label(s), "messages": messages_of.get(s, ())}
            for s in line["sources"]
        ]
    cited = dict.fromkeys(r for line in lines for r in line["rules"])
    return render(
        request,
        "encounter.html",
        {
            "claim_id": cid,
            "version": claim_row.version,
            "state": row.state.value,
            "held": held,
            "patient": visible_patient(request, claim),
            "service_date": claim_view.service_date(claim),
            "location": claim_view.location(claim),
            "setting": claim_view.setting(claim),
            "lines": lines,
            "timeline": pictured,
            "rules_cited": [(r, statements.get(r, "")) for r in cited],
            "versions": claim_history(await state.store.history("Claim", cid)),
            "payment": expected_payment(claim, state.mappings.prices),
            "diagnoses": diagnoses,
            "reasons": _with_details(
                await review.hold_reasons(state.store, row) if held else [],
                reason_texts(state),
            ),
            "history": [
                {
                    "at": e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                    "actor": e.actor,
                    "action": AUDIT_WORDS.get(e.action, e.action),
                    "note": e.note,
                }
                for e in await state.store.audit_for(row.key)
            ],
            "can_act": held and not session.read_only,
            "ask_actor": not request.app[AUTH].required,
            "error": error,
        },
        status=status,
    )


async def _timeline(
    request: web.Request, row: EncounterRow, lines: Sequence[Mapping[str, Any]]
) -> tuple[timeline.Timeline, Mapping[str, tuple[str, ...]]]:
    """The encounter's administrations, read again from its messages, laid out; and the
    messages each administration came from."""
    state = request.app[STATE]
    stored = await state.store.messages_for_encounter(row.key, row.patient_key)
    sources = read_sources(row.key, stored, state.mappings, state.settings.tz)
    codes: dict[str, list[str]] = {}
    for line in lines:
        for source in line["sources"]:
            known = codes.setdefault(source, [])
            if line["code"] not in known:
                known.append(line["code"])
    catalog = state.mappings.catalog
    given = [timeline.given_from(a, codes, catalog) for a in sources.administrations]
    return timeline.layout(given, state.settings.tz), sources.messages_of


def _with_details(
    reasons: Sequence[Mapping[str, Any]], sentences: Mapping[str, str]
) -> list[dict[str, str]]:
    """Each reason's sentence (the site's words) and what the coder found, said once."""
    out = []
    for reason in reasons:
        code, text = str(reason.get("code", "")), str(reason.get("text", ""))
        sentence = sentences.get(code, "")
        detail = text.removeprefix(sentence).strip() if sentence else text
        out.append({"code": code, "sentence": sentence or text, "detail": detail})
    return out


async def encounter_action(request: web.Request) -> web.StreamResponse:
    """`POST /ui/encounters/{claim id}/override|recode`: the review API's release, from a form.

    Read-only clients are refused (403) before anything is read; a missing note or actor
    shows the page again with the reason (422), as the API would refuse it.
    """
    action = request.match_info["action"]
    if action not in review.ACTIONS:
        return not_found(request, "No such action.")
    session = request[SESSION]
    if session.read_only:
        refused(request, "read_only", session.client or "")
        return forbidden(request, f"{session.client} may only read; ask for a write token")
    form = await request.post()
    fields = {name: str(form.get(name, "")) for name in ("note", "actor")}
    state, cid = request.app[STATE], request.match_info["claim_id"]
    try:
        body = review.release_body(
            {"action": action, **fields}, actor_required=session.client is None
        )
        actor = review.audit_actor(session.client, body["actor"])
        lock = request.app[review.RELEASE_LOCK]
        answer = await review.release_held(state, lock, cid, action, actor, body["note"])
    except ApiError as exc:
        text = exc.issues[0].diagnostics if exc.issues else "refused"
        return await _encounter(request, error=text, status=exc.status)
    log.info("ui.released", claim=cid, action=action, outcome=answer["outcome"])
    return see_other(f"{PREFIX}/encounters/{cid}")
