"""The workbench pages, wired into the service's aiohttp app: login, the worklist of held
encounters, one encounter and its release.

Server-rendered (Jinja2 through aiohttp-jinja2), forms that work without JavaScript, every
asset served by this app (no CDN: it runs inside a hospital network). One module per page
under `adapter.web.routes`; what they share (render, refuse, redirect) in `adapter.web.pages`.

Security, in one place (docs/workbench.md, docs/security.md):
- With auth on, a browser logs in once with a bearer token (`/ui/login`, one field named
  `token`); a session cookie (HttpOnly, SameSite=Strict, Secure under TLS, path /ui) then
  stands for it until logout or the idle expiry (`adapter.web.middleware`). Failed logins
  are limited per address and logged without the token. Read-only token names see every
  page but no action buttons, and their POSTs are 403.
- Every form carries the session's CSRF token; a POST without it (or with another) is 403.
- Headers: a Content-Security-Policy with no inline script or style, frame-ancestors 'none';
  no-store caching, nosniff, no referrer.
- No PHI in URLs or logs: links use claim ids; patient references are shown only to a
  logged-in user, or when auth is off (the API is open then too, and a banner says so).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from adapter.config import Settings
from adapter.errors import EXIT_CONFIG, StartupError
from adapter.setting_names import SettingName
from adapter.web.middleware import ui_middleware
from adapter.web.pages import HERE, LIMITER, PREFIX, RULES, SESSIONS, is_ui
from adapter.web.routes import coded, encounter, login, refused, reports, worklist
from adapter.web.rule_statements import RuleStatementError, load_rule_statements
from adapter.web.sessions import LoginLimiter, Sessions

__all__ = ["is_ui", "setup_ui"]


def setup_ui(app: web.Application, settings: Settings) -> None:
    """Templates, the static folder, the session store, the middleware and the routes.

    The rule statements are read and validated here, once: a bad file stops the start-up
    (StartupError naming the file and line), like the other tables."""
    try:
        app[RULES] = load_rule_statements(Path(settings.mappings_dir))
    except RuleStatementError as exc:
        raise StartupError(f"mapping tables: {exc}", SettingName.MAPPINGS_DIR, EXIT_CONFIG) from exc
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app[SESSIONS] = Sessions(timedelta(minutes=settings.ui_session_idle_minutes))
    app[LIMITER] = LoginLimiter(login.LOGIN_ATTEMPTS, login.LOGIN_WINDOW)
    app.middlewares.append(ui_middleware)
    router = app.router
    router.add_static(f"{PREFIX}/static", HERE / "static", append_version=False)
    router.add_get(PREFIX, worklist.worklist)
    router.add_get(f"{PREFIX}/coded", coded.coded_list)
    router.add_post(f"{PREFIX}/coded", coded.coded_search)
    router.add_get(f"{PREFIX}/refused", refused.refused_list)
    router.add_get(f"{PREFIX}/login", login.login_form)
    router.add_post(f"{PREFIX}/login", login.login)
    router.add_post(f"{PREFIX}/logout", login.logout)
    router.add_get(PREFIX + "/encounters/{claim_id}", encounter.encounter_page)
    router.add_post(PREFIX + "/encounters/{claim_id}/{action}", encounter.encounter_action)
    reports.add_routes(router)
