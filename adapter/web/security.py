"""Transport security and API authentication: one TLS context for both listeners, bearer tokens.

Why one module: the posture of the service (encrypted or not, who may call it, who may
write) should be readable in one place, and checked at start-up before a socket opens.

- TLS: `tls_cert_file` + `tls_key_file` turn TLS on for the MLLP listener AND the HTTP
  API (HTTPS); `tls_client_ca_file` makes both require a client certificate signed by
  that CA (mutual TLS). Nothing below `tls_min_version` (TLSv1.2 by default) is spoken.
- Auth: bearer tokens, each with a client name (`billing-ui:<token>`). When auth is on,
  every HTTP route needs a known token except the probes, `/metrics` and
  `GET /fhir/metadata`; clients named in `auth_read_only_names` may only read. The
  client name becomes the request's principal (the audit actor of review releases).

Loading the files and parsing the tokens is `adapter.credentials` (the settings check loads
them once, `Credentials`); here is what aiohttp needs: the app keys, `install`, the middleware
and the posture line.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from adapter.config import Settings
from adapter.credentials import BEARER_TOKEN, AuthPolicy, Credentials
from adapter.web.outcome import ApiError, Issue, route_name

log = structlog.get_logger()

REALM = "charge-adapter"
CHALLENGE = f'Bearer realm="{REALM}"'
READ_METHODS = frozenset({"GET", "HEAD"})
# Route templates anyone may GET: probes and scrapes carry no PHI, and a FHIR client reads
# the CapabilityStatement before it knows how to authenticate.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/fhir/metadata"})
# The workbench pages check their own browser session against the same tokens
# (adapter/web/middleware.py): a browser cannot send a bearer header from a form.
UI_ROUTES_PREFIX = "/ui"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


AUTH = web.AppKey("auth", AuthPolicy)
SERVER_TLS = web.AppKey("server_tls", ssl.SSLContext)
PRINCIPAL = web.RequestKey("principal", str)


# --- start-up and posture -------------------------------------------------------------


def install(app: web.Application, settings: Settings, credentials: Credentials) -> None:
    """Put the loaded TLS context and tokens into the app (before it starts); log the posture."""
    if credentials.server_tls is not None:
        app[SERVER_TLS] = credentials.server_tls
    app[AUTH] = credentials.auth
    _log_posture(settings, credentials.auth)


def server_tls_of(app: web.Application) -> ssl.SSLContext | None:
    """The context `install` loaded: what the HTTP site must be served with."""
    return app.get(SERVER_TLS)


def _log_posture(settings: Settings, policy: AuthPolicy) -> None:
    """One line saying how the service is protected; a warning for each open door."""
    tls = bool(settings.tls_cert_file)
    log.info(
        "security.posture",
        tls=tls,
        mutual_tls=tls and bool(settings.tls_client_ca_file),
        tls_min_version=settings.tls_min_version if tls else None,
        auth="required" if policy.required else "off",
        clients=sorted({c.name for c in policy.clients}),
        read_only=sorted({c.name for c in policy.clients if c.read_only}),
    )
    if not policy.required:
        log.warning(
            "security.http_api_open",
            reason="auth_required=false" if policy.clients else "no auth token configured",
            detail="anyone who reaches the HTTP port can read claims and release reviews",
        )
    elif not tls:
        log.warning("security.tokens_in_clear", detail="auth is on but TLS is off")


# --- the middleware -------------------------------------------------------------------


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 without a known bearer token, 403 for a read-only client's write; else on.

    Runs after routing, so the exemption is by route template and method: a POST to
    /fhir/metadata is not a read of the CapabilityStatement and needs a token.
    """
    policy = request.app[AUTH]
    route = route_name(request)
    if (
        not policy.required
        or (request.method in READ_METHODS and route in OPEN_ROUTES)
        or route == UI_ROUTES_PREFIX
        or route.startswith(UI_ROUTES_PREFIX + "/")
    ):
        return await handler(request)
    client = policy.identify(_bearer_token(request))
    if client is None:
        _refuse(request, "unknown_token")
        raise _unauthorized("unknown", "the bearer token is not valid", 'error="invalid_token"')
    if client.read_only and request.method not in READ_METHODS:
        _refuse(request, "read_only", client.name)
        text = f"client {client.name} may only read; {request.method} needs a write token"
        challenge = f'{CHALLENGE}, error="insufficient_scope"'
        raise ApiError(403, (Issue("forbidden", text),), {"WWW-Authenticate": challenge})
    request[PRINCIPAL] = client.name
    return await handler(request)


def principal_of(request: web.Request) -> str | None:
    """The authenticated client name, or None when auth is off."""
    return request.get(PRINCIPAL)


def _bearer_token(request: web.Request) -> str:
    """The token of exactly one `Authorization: Bearer <token>` header, or a 401."""
    values = request.headers.getall("Authorization", [])
    if not values:
        _refuse(request, "missing")
        raise _unauthorized("login", "this endpoint needs 'Authorization: Bearer <token>'")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if len(values) > 1 or scheme.lower() != "bearer" or not BEARER_TOKEN.fullmatch(token):
        _refuse(request, "malformed")
        raise _unauthorized("login", "the Authorization header must be 'Bearer <token>'")
    return token


def _unauthorized(code: str, text: str, error: str = "") -> ApiError:
    challenge = f"{CHALLENGE}, {error}" if error else CHALLENGE
    return ApiError(401, (Issue(code, text),), {"WWW-Authenticate": challenge})


def _refuse(request: web.Request, reason: str, client: str = "") -> None:
    log_refusal("http.auth_refused", request, reason, client)


def log_refusal(event: str, request: web.Request, reason: str, client: str = "") -> None:
    """One refused request: route template and address only (paths can carry patient ids),
    never the token or the header's value. The API and the workbench pages both log this way."""
    log.warning(
        event,
        reason=reason,
        method=request.method,
        route=route_name(request),
        remote=request.remote or "",
        **({"client": client} if client else {}),
    )
