"""`/ui/login` and `/ui/logout`: a browser session on an existing bearer token.

The token is checked against the same tokens as the API; a new session id replaces the
anonymous one (no fixation). Failed logins are limited per address and logged without the
token.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from aiohttp import web

from adapter.web.pages import LIMITER, PREFIX, SESSION, SESSIONS, now, refused, render, see_other
from adapter.web.security import AUTH

log = structlog.get_logger()

LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = timedelta(minutes=5)


async def login_form(request: web.Request) -> web.StreamResponse:
    """`GET /ui/login`: the token form (straight to the worklist when auth is off)."""
    if not request.app[AUTH].required:
        return see_other(PREFIX)
    return render(request, "login.html", {"error": ""})


async def login(request: web.Request) -> web.StreamResponse:
    """`POST /ui/login` with `token`: a new logged-in session, or the form again (401/429)."""
    if not request.app[AUTH].required:
        return see_other(PREFIX)
    limiter, at, address = request.app[LIMITER], now(request), request.remote or ""
    if limiter.blocked(address, at):
        refused(request, "login_rate_limited")
        text = "Too many failed logins from this address; wait a few minutes and try again."
        return render(request, "login.html", {"error": text}, status=429)
    token = (await request.post()).get("token")
    client = request.app[AUTH].identify(token.strip()) if isinstance(token, str) else None
    if client is None:
        limiter.failed(address, at)
        refused(request, "login_failed")
        return render(request, "login.html", {"error": "That token is not valid."}, status=401)
    limiter.succeeded(address)
    session = request.app[SESSIONS].log_in(request[SESSION], client.name, client.read_only, at)
    request[SESSION] = session
    log.info("ui.login", client=client.name, read_only=client.read_only, remote=address)
    return see_other(PREFIX)


async def logout(request: web.Request) -> web.StreamResponse:
    """`POST /ui/logout`: the session is dropped; a new anonymous one replaces the cookie."""
    old = request[SESSION]
    request.app[SESSIONS].drop(old.id)
    request[SESSION] = request.app[SESSIONS].new(now(request))
    if old.client is not None:
        log.info("ui.logout", client=old.client)
    return see_other(f"{PREFIX}/login" if request.app[AUTH].required else PREFIX)
