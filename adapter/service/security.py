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

Token values are secrets: they are held only as SHA-256 digests, compared in constant
time, and never logged or echoed in an error (errors name the entry or the line).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from adapter.config import Settings, SettingsError
from adapter.service.operation_outcome import ApiError, Issue, route_name

log = structlog.get_logger()

TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
MIN_TOKEN_CHARS = 16
REALM = "charge-adapter"
CHALLENGE = f'Bearer realm="{REALM}"'
READ_METHODS = frozenset({"GET", "HEAD"})
# Route templates anyone may GET: probes and scrapes carry no PHI, and a FHIR client reads
# the CapabilityStatement before it knows how to authenticate.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/fhir/metadata"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # no spaces: it is the audit actor
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 b64token: what a Bearer header carries

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- TLS ------------------------------------------------------------------------------


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server-side context both listeners share; None when TLS is off.

    Raises SettingsError naming the setting whose file is missing or will not load, so a
    bad certificate stops start-up instead of surfacing as failed handshakes later.
    """
    problems = _tls_file_problems(settings)
    if problems:
        raise SettingsError("; ".join(problems))
    if not settings.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[settings.tls_min_version]
    context.options |= ssl.OP_NO_RENEGOTIATION  # no client-initiated renegotiation (DoS)
    _load_certificate(context, settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file:
        _require_client_certificates(context, settings.tls_client_ca_file)
    return context


def _tls_file_problems(settings: Settings) -> list[str]:
    """Both-or-neither, the version name, and files that exist: checked before loading."""
    problems: list[str] = []
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        problems.append("tls_cert_file and tls_key_file: set both (TLS on) or neither (off)")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        problems.append("tls_client_ca_file: needs tls_cert_file and tls_key_file (TLS on)")
    if settings.tls_min_version not in TLS_VERSIONS:
        problems.append(f"tls_min_version={settings.tls_min_version}: TLSv1.2 or TLSv1.3")
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            problems.append(f"{name}={path}: no such file")
    return problems


def _load_certificate(context: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    """Certificate first (alone), then the pair: the error names the file at fault."""
    try:
        ssl.create_default_context(cafile=cert_file)  # parses every certificate in the file
    except (ssl.SSLError, OSError) as exc:
        text = f"tls_cert_file={cert_file}: not a PEM certificate ({_why(exc)})"
        raise SettingsError(text) from None
    encrypted = False

    def no_password() -> bytes:  # never let OpenSSL prompt on a terminal at start-up
        nonlocal encrypted
        encrypted = True
        return b""

    try:
        context.load_cert_chain(cert_file, key_file, password=no_password)
    except (ssl.SSLError, OSError) as exc:
        reason = "the key is encrypted; give an unencrypted key" if encrypted else _why(exc)
        raise SettingsError(
            f"tls_key_file={key_file}: cannot be loaded with tls_cert_file ({reason})"
        ) from None


def _require_client_certificates(context: ssl.SSLContext, ca_file: str) -> None:
    """Mutual TLS: a client without a certificate signed by this CA bundle fails the handshake."""
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        text = f"tls_client_ca_file={ca_file}: not a PEM CA bundle ({_why(exc)})"
        raise SettingsError(text) from None
    context.verify_mode = ssl.CERT_REQUIRED


def _why(exc: BaseException) -> str:
    """OpenSSL's reason without file contents (ssl errors never echo key material)."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason or type(exc).__name__).lower().replace("_", " ")


# --- tokens ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """One configured token: who it names, its digest, and whether it may only read."""

    name: str
    digest: bytes
    read_only: bool

    def __repr__(self) -> str:  # a digest is not the token, but keep it out of reprs anyway
        return f"Client({self.name!r}, read_only={self.read_only})"


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Whether HTTP requests need a token, and the tokens that are known."""

    required: bool
    clients: tuple[Client, ...]

    @staticmethod
    def from_settings(settings: Settings) -> AuthPolicy:
        """Parse `auth_tokens` and `auth_tokens_file`; SettingsError on any bad entry."""
        entries = _token_entries(settings)
        read_only = _read_only_names(settings, {name for name, _, _ in entries})
        clients = tuple(Client(n, _digest(token), n in read_only) for n, token, _ in entries)
        required = bool(clients) if settings.auth_required is None else settings.auth_required
        if required and not clients:
            raise SettingsError("auth_required=true: no token configured (auth_tokens[_file])")
        return AuthPolicy(required, clients)

    def identify(self, token: str) -> Client | None:
        """The client holding this token: every digest compared, in constant time each."""
        presented = _digest(token)
        found: Client | None = None
        for client in self.clients:  # no early exit: the time taken says nothing of the match
            if hmac.compare_digest(presented, client.digest):
                found = client
        return found


AUTH = web.AppKey("auth", AuthPolicy)
SERVER_TLS = web.AppKey("server_tls", ssl.SSLContext)
PRINCIPAL = web.RequestKey("principal", str)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _token_entries(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, token, where) from both sources; all problems reported at once."""
    raw = list(_env_entries(settings.auth_tokens))
    if settings.auth_tokens_file:
        raw += _file_entries(settings.auth_tokens_file)
    problems = [p for entry in raw for p in _entry_problems(*entry)]
    owners: dict[str, str] = {}
    for name, token, where in raw:
        if owners.setdefault(token, name) != name:
            problems.append(f"{where}: same token as client '{owners[token]}'")
    if problems:
        raise SettingsError("; ".join(problems))
    return raw


def _env_entries(value: str) -> Iterator[tuple[str, str, str]]:
    """`name:token,name:token`; blank entries are skipped."""
    for number, item in enumerate(value.split(","), start=1):
        if item.strip():
            yield (*_name_and_token(item), f"auth_tokens entry {number}")


def _file_entries(path: str) -> Iterator[tuple[str, str, str]]:
    """One `name:token` per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"auth_tokens_file={path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"auth_tokens_file={path}: not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield (*_name_and_token(line), f"auth_tokens_file line {number}")


def _name_and_token(entry: str) -> tuple[str, str]:
    """Split at the first colon; without a colon or a token, the name is dropped too.

    Why drop it: an entry without a separator may be a bare token, and the name is quoted
    in error messages.
    """
    name, colon, token = entry.strip().partition(":")
    if not (colon and token.strip()):
        return "", ""
    return name.strip(), token.strip()


def _entry_problems(name: str, token: str, where: str) -> list[str]:
    """What is wrong with one entry, without ever quoting the token."""
    if not _NAME.fullmatch(name):
        return [f"{where}: 'name:token' with a name of letters, digits, . _ @ - (max 64)"]
    if len(token) < MIN_TOKEN_CHARS:
        return [f"{where} ({name}): token shorter than {MIN_TOKEN_CHARS} characters"]
    if not _TOKEN.fullmatch(token):
        return [f"{where} ({name}): token has characters a Bearer header cannot carry"]
    return []


def _read_only_names(settings: Settings, known: set[str]) -> frozenset[str]:
    """A name that matches no token is a typo that would leave a client with write access."""
    names = frozenset(n.strip() for n in settings.auth_read_only_names.split(",") if n.strip())
    unknown = sorted(names - known)
    if unknown:
        raise SettingsError(f"auth_read_only_names: no token named {', '.join(unknown)}")
    return names


# --- start-up checks and posture -------------------------------------------------------


def settings_problems(settings: Settings) -> list[str]:
    """Every TLS and token problem, by loading what start-up will load (for load_settings)."""
    problems: list[str] = []
    for check in (server_ssl_context, AuthPolicy.from_settings):
        try:
            check(settings)
        except SettingsError as exc:
            problems.append(str(exc))
    return problems


def install(app: web.Application, settings: Settings) -> ssl.SSLContext | None:
    """Load the TLS context and the tokens into the app (before it starts); log the posture."""
    context = server_ssl_context(settings)
    if context is not None:
        app[SERVER_TLS] = context
    policy = AuthPolicy.from_settings(settings)
    app[AUTH] = policy
    _log_posture(settings, policy)
    return context


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
    if not policy.required or (
        request.method in READ_METHODS and route_name(request) in OPEN_ROUTES
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
    if len(values) > 1 or scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        _refuse(request, "malformed")
        raise _unauthorized("login", "the Authorization header must be 'Bearer <token>'")
    return token


def _unauthorized(code: str, text: str, error: str = "") -> ApiError:
    challenge = f"{CHALLENGE}, {error}" if error else CHALLENGE
    return ApiError(401, (Issue(code, text),), {"WWW-Authenticate": challenge})


def _refuse(request: web.Request, reason: str, client: str = "") -> None:
    """Route template only (paths can carry patient ids); never the header's value."""
    log.warning(
        "http.auth_refused",
        reason=reason,
        method=request.method,
        route=route_name(request),
        remote=request.remote or "",
        **({"client": client} if client else {}),
    )
