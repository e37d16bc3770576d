"""What every workbench page shares: the paths, the keys, and how a page is answered.

One module so the middleware and each route render, refuse and redirect alike: the base
context (auth banner, who is signed in, the CSRF token) is added here, never by a route.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from adapter.web.claim_view import patient_reference
from adapter.web.security import AUTH, log_refusal
from adapter.web.sessions import LoginLimiter, Session, Sessions
from adapter.web.state import STATE, AppState

HERE = Path(__file__).resolve().parent
PREFIX = "/ui"
COOKIE = "adapter_session"

SESSIONS = web.AppKey("ui_sessions", Sessions)
LIMITER = web.AppKey("ui_login_limiter", LoginLimiter)
SESSION = web.RequestKey("ui_session", Session)
RULES = web.AppKey("ui_rule_statements", Mapping[str, str])


def is_ui(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def now(request: web.Request) -> datetime:
    return request.app[STATE].clock()


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """The template with the base context every page needs (banner, account, CSRF)."""
    session = request[SESSION]
    base = {
        "auth_on": request.app[AUTH].required,
        "client": session.client,
        "read_only": session.read_only,
        "csrf": session.csrf,
        "logged_in": session.client is not None,
    }
    return aiohttp_jinja2.render_template(template, request, base | context, status=status)


def forbidden(request: web.Request, text: str) -> web.Response:
    return render(request, "missing.html", {"what": f"Not allowed: {text}"}, status=403)


def not_found(request: web.Request, what: str) -> web.Response:
    return render(request, "missing.html", {"what": what}, status=404)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def refused(request: web.Request, reason: str, client: str = "") -> None:
    log_refusal("ui.refused", request, reason, client)


def visible_patient(request: web.Request, claim: Mapping[str, Any]) -> str:
    """The patient reference, only to a logged-in user or when auth is off."""
    if request.app[AUTH].required and request[SESSION].client is None:
        return ""
    return patient_reference(claim)


def reason_texts(state: AppState) -> dict[str, str]:
    """Each hold reason code's sentence, in the site's words (`hold_reasons.csv`)."""
    return {code: text.sentence for code, text in state.mappings.hold_reasons.items()}
