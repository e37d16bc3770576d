"""The workbench pages: login, the worklist of held encounters, one encounter and its release.

Server-rendered (Jinja2 through aiohttp-jinja2), forms that work without JavaScript, every
asset served by this app (no CDN: it runs inside a hospital network). The pages reuse the
review API's use cases (`adapter.service.http_review`): the same held-encounter check, the
same re-code and override, the same audit entry; only the rendering is here.

Security, in one place (docs/workbench.md, docs/security.md):
- With auth on, a browser logs in once with a bearer token (`/ui/login`, one field named
  `token`); a session cookie (HttpOnly, SameSite=Strict, Secure under TLS, path /ui) then
  stands for it until logout or the idle expiry. Failed logins are limited per address and
  logged without the token. Read-only token names see every page but no action buttons, and
  their POSTs are 403.
- Every form carries the session's CSRF token; a POST without it (or with another) is 403.
- Headers: a Content-Security-Policy with no inline script or style, frame-ancestors 'none';
  no-store caching, nosniff, no referrer.
- No PHI in URLs or logs: links use claim ids; patient references are shown only to a
  logged-in user, or when auth is off (the API is open then too, and a banner says so).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web

from adapter.config import Settings
from adapter.core.ids import claim_id, is_fhir_id
from adapter.service import http_review
from adapter.service.operation_outcome import ApiError, route_name
from adapter.service.security import AUTH, Handler, log_refusal
from adapter.service.state import STATE, AppState
from adapter.store.base import EncounterState, HeldItem, HeldQuery
from adapter.web.sessions import LoginLimiter, Session, Sessions

log = structlog.get_logger()

HERE = Path(__file__).resolve().parent
PREFIX = "/ui"
COOKIE = "adapter_session"
PAGE_SIZE = 50
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = timedelta(minutes=5)
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
SETTING_NAMES = {"professional": "office", "institutional": "hospital outpatient"}
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes"
NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"

AUDIT_WORDS = {"override": "billed as coded", "release-recode": "coded again"}

SESSIONS = web.AppKey("ui_sessions", Sessions)
LIMITER = web.AppKey("ui_login_limiter", LoginLimiter)
SESSION = web.RequestKey("ui_session", Session)


def setup_ui(app: web.Application, settings: Settings) -> None:
    """Templates, the static folder, the session store, the middleware and the routes."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app[SESSIONS] = Sessions(timedelta(minutes=settings.ui_session_idle_minutes))
    app[LIMITER] = LoginLimiter(LOGIN_ATTEMPTS, LOGIN_WINDOW)
    app.middlewares.append(ui_middleware)
    router = app.router
    router.add_static(f"{PREFIX}/static", HERE / "static", append_version=False)
    router.add_get(PREFIX, worklist)
    router.add_get(f"{PREFIX}/login", login_form)
    router.add_post(f"{PREFIX}/login", login)
    router.add_post(f"{PREFIX}/logout", logout)
    router.add_get(PREFIX + "/encounters/{claim_id}", encounter_page)
    router.add_post(PREFIX + "/encounters/{claim_id}/{action}", encounter_action)


def is_ui(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


# --- the middleware: headers, session, login, CSRF --------------------------------------


@web.middleware
async def ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For /ui only: a session on every request, login when auth is on, CSRF on POST."""
    if not is_ui(request):
        return await handler(request)
    if request.path.startswith(f"{PREFIX}/static/"):
        response = await handler(request)
    else:
        response = await _with_session(request, handler)
    response.headers.update(SECURITY_HEADERS)
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


async def _with_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    sessions, now = request.app[SESSIONS], _now(request)
    session = sessions.touch(request.cookies.get(COOKIE), now)
    fresh = session is None
    if session is None:
        session = sessions.new(now)
    request[SESSION] = session
    auth_on = request.app[AUTH].required
    public = route_name(request) in (f"{PREFIX}/login", f"{PREFIX}/logout")
    if auth_on and session.client is None and not public:
        if request.method == "POST":
            response: web.StreamResponse = _forbidden(request, "log in first")
        else:
            response = _see_other(f"{PREFIX}/login")
    elif request.method == "POST" and not await _csrf_ok(request, session):
        _refused(request, "csrf")
        response = _forbidden(request, "the form is out of date; reload the page and try again")
    else:
        response = await handler(request)
    current = request.get(SESSION, session)  # login and logout replace it
    if fresh or current.id != session.id:
        _set_cookie(request, response, current)
    return response


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    form = await request.post()
    sent = form.get("csrf")
    return isinstance(sent, str) and hmac.compare_digest(sent, session.csrf)


def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def _now(request: web.Request) -> datetime:
    return request.app[STATE].clock()


# --- login and logout ---------------------------------------------------------------------


async def login_form(request: web.Request) -> web.StreamResponse:
    """`GET /ui/login`: the token form (straight to the worklist when auth is off)."""
    if not request.app[AUTH].required:
        return _see_other(PREFIX)
    return _render(request, "login.html", {"error": ""})


async def login(request: web.Request) -> web.StreamResponse:
    """`POST /ui/login` with `token`: a new logged-in session, or the form again (401/429)."""
    if not request.app[AUTH].required:
        return _see_other(PREFIX)
    limiter, now, address = request.app[LIMITER], _now(request), request.remote or ""
    if limiter.blocked(address, now):
        _refused(request, "login_rate_limited")
        text = "Too many failed logins from this address; wait a few minutes and try again."
        return _render(request, "login.html", {"error": text}, status=429)
    token = (await request.post()).get("token")
    client = request.app[AUTH].identify(token.strip()) if isinstance(token, str) else None
    if client is None:
        limiter.failed(address, now)
        _refused(request, "login_failed")
        return _render(request, "login.html", {"error": "That token is not valid."}, status=401)
    limiter.succeeded(address)
    session = request.app[SESSIONS].log_in(request[SESSION], client.name, client.read_only, now)
    request[SESSION] = session
    log.info("ui.login", client=client.name, read_only=client.read_only, remote=address)
    return _see_other(PREFIX)


async def logout(request: web.Request) -> web.StreamResponse:
    """`POST /ui/logout`: the session is dropped; a new anonymous one replaces the cookie."""
    old = request[SESSION]
    request.app[SESSIONS].drop(old.id)
    request[SESSION] = request.app[SESSIONS].new(_now(request))
    if old.client is not None:
        log.info("ui.logout", client=old.client)
    return _see_other(f"{PREFIX}/login" if request.app[AUTH].required else PREFIX)


# --- the worklist ---------------------------------------------------------------------------


SETTING_CODES = {name: code for code, name in SETTING_NAMES.items()}
REASON_CODE = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True, slots=True)
class Filters:
    """The worklist's query string, read leniently: a value that is not one is ignored
    (and said so on the page), never a 400 to a biller who edited the address."""

    reason: str = ""
    location: str = ""
    setting: str = ""  # office | hospital outpatient
    service_from: str = ""
    service_to: str = ""
    page: int = 1
    ignored: tuple[str, ...] = ()

    @staticmethod
    def of(query: Mapping[str, str]) -> Filters:
        ignored: list[str] = []
        reason = query.get("reason", "").strip()
        if reason and not REASON_CODE.fullmatch(reason):
            ignored.append("reason")
            reason = ""
        setting = query.get("setting", "").strip()
        if setting and setting not in SETTING_CODES:
            ignored.append("setting")
            setting = ""
        dates = {}
        for name in ("service_from", "service_to"):
            dates[name] = query.get(name, "").strip()
            if dates[name] and not _is_date(dates[name]):
                ignored.append(name)
                dates[name] = ""
        page = query.get("page", "1")
        return Filters(
            reason,
            query.get("location", "").strip()[:200],
            setting,
            dates["service_from"],
            dates["service_to"],
            int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1,
            tuple(ignored),
        )

    def store_query(self) -> HeldQuery:
        return HeldQuery(
            reason=self.reason,
            location=self.location,
            setting=SETTING_CODES.get(self.setting, ""),
            service_from=self.service_from,
            service_to=self.service_to,
            limit=PAGE_SIZE,
            offset=(self.page - 1) * PAGE_SIZE,
        )

    def url(self, **changes: str) -> str:
        """This worklist with some filters changed (page back to 1 unless given)."""
        current = {
            "reason": self.reason,
            "location": self.location,
            "setting": self.setting,
            "service_from": self.service_from,
            "service_to": self.service_to,
        }
        query = {k: v for k, v in (current | {"page": "1"} | changes).items() if v}
        if query.get("page") == "1":
            del query["page"]
        return f"{PREFIX}?{urlencode(query)}" if query else PREFIX


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


async def worklist(request: web.Request) -> web.StreamResponse:
    """`GET /ui`: held encounters, oldest first, filtered and paged by the store, with the
    counts per reason over all of them."""
    state = request.app[STATE]
    filters = Filters.of(request.query)
    held = await state.store.held_worklist(filters.store_query())
    now = state.clock()
    items = [_worklist_item(request, item, now) for item in held.items]
    log.info("ui.worklist", matching=held.total, shown=len(items))
    pages = max(1, -(-held.total // PAGE_SIZE))
    return _render(
        request,
        "worklist.html",
        {
            "items": items,
            "total": held.total,
            "held": held.held,
            "counts": held.reason_counts,
            "locations": held.locations,
            "settings": list(SETTING_CODES),
            "reason_text": _reason_texts(state),
            "filters": filters,
            "page": filters.page,
            "pages": pages,
            "prev_url": filters.url(page=str(filters.page - 1)) if filters.page > 1 else "",
            "next_url": filters.url(page=str(filters.page + 1)) if filters.page < pages else "",
        },
    )


def _reason_texts(state: AppState) -> dict[str, str]:
    return {code: text.sentence for code, text in state.mappings.hold_reasons.items()}


def _worklist_item(request: web.Request, item: HeldItem, now: datetime) -> dict[str, Any]:
    row = item.encounter
    claim = json.loads(item.claim_body) if item.claim_body else {}
    cid = claim_id(row.key)
    return {
        "claim_id": cid,
        "patient": _patient(request, claim),
        "service_date": _service_date(claim),
        "location": _location(claim),
        "setting": _setting(claim),
        "reasons": row.outcome_detail.split(),
        "held_for": held_for(now - row.updated_at),
        "held_since": row.updated_at.isoformat(timespec="minutes"),
    }


def held_for(age: timedelta) -> str:
    """How long a row has waited, in the unit a biller reads at a glance."""
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


# --- one encounter --------------------------------------------------------------------------


async def encounter_page(request: web.Request) -> web.StreamResponse:
    """`GET /ui/encounters/{claim id}`: the Claim lines, the hold reasons, the actions."""
    return await _encounter(request, error="", status=200)


async def _encounter(request: web.Request, error: str, status: int) -> web.StreamResponse:
    state = request.app[STATE]
    cid = request.match_info["claim_id"]
    claim_row = await state.store.read_resource("Claim", cid) if is_fhir_id(cid) else None
    row = await state.store.get_encounter(claim_row.encounter_key) if claim_row else None
    if claim_row is None or row is None:
        return _render(request, "missing.html", {"what": "No such encounter."}, status=404)
    claim = json.loads(claim_row.body)
    held = row.state is EncounterState.HELD
    session = request[SESSION]
    return _render(
        request,
        "encounter.html",
        {
            "claim_id": cid,
            "version": claim_row.version,
            "state": row.state.value,
            "held": held,
            "patient": _patient(request, claim),
            "service_date": _service_date(claim),
            "location": _location(claim),
            "setting": _setting(claim),
            "lines": claim_lines(claim),
            "diagnoses": _diagnoses(claim),
            "reasons": _with_details(
                await http_review.hold_reasons(state.store, row) if held else [],
                _reason_texts(state),
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
    if action not in http_review.ACTIONS:
        return _render(request, "missing.html", {"what": "No such action."}, status=404)
    session = request[SESSION]
    if session.read_only:
        _refused(request, "read_only", session.client or "")
        return _forbidden(request, f"{session.client} may only read; ask for a write token")
    form = await request.post()
    fields = {name: str(form.get(name, "")) for name in ("note", "actor")}
    state, cid = request.app[STATE], request.match_info["claim_id"]
    try:
        body = http_review.release_body(
            {"action": action, **fields}, actor_required=session.client is None
        )
        actor = http_review.audit_actor(session.client, body["actor"])
        async with request.app[http_review.RELEASE_LOCK]:
            key = await http_review.held_encounter(state.store, cid)
            if action == "recode":
                answer = await http_review.recode(state, key, actor, body["note"])
            else:
                answer = await http_review.override(state, key, actor, body["note"])
    except ApiError as exc:
        text = exc.issues[0].diagnostics if exc.issues else "refused"
        return await _encounter(request, error=text, status=exc.status)
    log.info("ui.released", claim=cid, action=action, outcome=answer["outcome"])
    return _see_other(f"{PREFIX}/encounters/{cid}")


# --- reading a Claim body -------------------------------------------------------------------


def claim_lines(claim: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each Claim item as a biller reads it: code, modifiers, units, revenue code or POS, NDC."""
    return [_line(item) for item in claim.get("item", ())]


def _line(item: Mapping[str, Any]) -> dict[str, Any]:
    coding = _first_coding(item.get("productOrService"))
    ndc = [
        _first_coding(d.get("productOrService")).get("code", "")
        for d in item.get("detail", ())
        if _first_coding(d.get("productOrService")).get("system") == NDC_SYSTEM
    ]
    pos = _first_coding(item.get("locationCodeableConcept"))
    return {
        "sequence": item.get("sequence", ""),
        "code": coding.get("code", ""),
        "display": coding.get("display", ""),
        "modifiers": [_first_coding(m).get("code", "") for m in item.get("modifier", ())],
        "units": item.get("quantity", {}).get("value", ""),
        "revenue": _first_coding(item.get("revenue")).get("code", ""),
        "pos": pos.get("code", "") if str(pos.get("system", "")).startswith(POS_SYSTEM) else "",
        "ndc": ndc,
        "date": item.get("servicedDate", ""),
        "trace": _trace(item),
    }


def _trace(item: Mapping[str, Any]) -> str:
    for ext in item.get("extension", ()):
        if str(ext.get("url", "")).endswith("/coding-trace"):
            return str(ext.get("valueString", ""))
    return ""


def _first_coding(concept: object) -> dict[str, Any]:
    if not isinstance(concept, Mapping):
        return {}
    codings: Sequence[Any] = concept.get("coding", ())
    return dict(codings[0]) if codings else {}


def _diagnoses(claim: Mapping[str, Any]) -> list[str]:
    return [
        _first_coding(d.get("diagnosisCodeableConcept")).get("code", "")
        for d in claim.get("diagnosis", ())
    ]


def _patient(request: web.Request, claim: Mapping[str, Any]) -> str:
    """The patient reference, only to a logged-in user or when auth is off."""
    if request.app[AUTH].required and request[SESSION].client is None:
        return ""
    identifier = claim.get("patient", {}).get("identifier", {})
    return str(identifier.get("value", ""))


def _service_date(claim: Mapping[str, Any]) -> str:
    return str(claim.get("billablePeriod", {}).get("start", ""))[:10]


def _location(claim: Mapping[str, Any]) -> str:
    return str(claim.get("provider", {}).get("display", ""))


def _setting(claim: Mapping[str, Any]) -> str:
    code = str(_first_coding(claim.get("type")).get("code", ""))
    return SETTING_NAMES.get(code, code)


# --- responses ------------------------------------------------------------------------------


def _render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    session = request[SESSION]
    auth_on = request.app[AUTH].required
    base = {
        "auth_on": auth_on,
        "client": session.client,
        "read_only": session.read_only,
        "csrf": session.csrf,
        "logged_in": session.client is not None,
    }
    response = aiohttp_jinja2.render_template(template, request, base | context, status=status)
    return response


def _forbidden(request: web.Request, text: str) -> web.Response:
    return _render(request, "missing.html", {"what": f"Not allowed: {text}"}, status=403)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _refused(request: web.Request, reason: str, client: str = "") -> None:
    log_refusal("ui.refused", request, reason, client)
