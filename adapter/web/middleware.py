"""The workbench middleware: security headers, a session on every request, login, CSRF.

For /ui only. With auth on, a page without a logged-in session redirects to the login form
(a POST is 403); every POST must carry the session's CSRF token. Static files get the
headers but no session (they are not personal).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from adapter.web.outcome import route_name
from adapter.web.pages import (
    COOKIE,
    PREFIX,
    SESSION,
    SESSIONS,
    forbidden,
    is_ui,
    now,
    refused,
    see_other,
)
from adapter.web.security import AUTH, Handler
from adapter.web.sessions import Session

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
PUBLIC_ROUTES = (f"{PREFIX}/login", f"{PREFIX}/logout")


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
    sessions, at = request.app[SESSIONS], now(request)
    session = sessions.touch(request.cookies.get(COOKIE), at)
    fresh = session is None
    if session is None:
        session = sessions.new(at)
    request[SESSION] = session
    auth_on = request.app[AUTH].required
    public = route_name(request) in PUBLIC_ROUTES
    if auth_on and session.client is None and not public:
        if request.method == "POST":
            response: web.StreamResponse = forbidden(request, "log in first")
        else:
            response = see_other(f"{PREFIX}/login")
    elif request.method == "POST" and not await _csrf_ok(request, session):
        refused(request, "csrf")
        response = forbidden(request, "the form is out of date; reload the page and try again")
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
