"""TLS context and API tokens, loaded from the security settings: once, at start-up.

Why apart from `adapter.web.security` (the aiohttp side: the app keys, the middleware,
the posture log line): `adapter.config` validates these settings by loading them, and keeps
what it loaded (`Credentials`) for start-up to use, so no file is read twice. It must not
import the service to do so. This module knows the settings only as the `SecuritySettings`
shape, so the arrow goes one way: config -> credentials.

Token values are secrets: they are held only as SHA-256 digests, compared in constant
time, and never logged or echoed in an error (errors name the entry or the line).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adapter.errors import SettingsError

__all__ = [
    "BEARER_TOKEN",
    "MIN_TOKEN_CHARS",
    "TLS_VERSIONS",
    "AuthPolicy",
    "Client",
    "Credentials",
    "SecuritySettings",
    "load_credentials",
    "loaded_or_problems",
    "server_ssl_context",
]

TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # no spaces: it is the audit actor
# RFC 6750 b64token: what a Bearer header carries
BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


class SecuritySettings(Protocol):
    """The settings this module reads (`adapter.config.Settings` has them all)."""

    @property
    def tls_cert_file(self) -> str: ...
    @property
    def tls_key_file(self) -> str: ...
    @property
    def tls_client_ca_file(self) -> str: ...
    @property
    def tls_min_version(self) -> str: ...
    @property
    def auth_tokens(self) -> str: ...
    @property
    def auth_tokens_file(self) -> str: ...
    @property
    def auth_required(self) -> bool | None: ...
    @property
    def auth_read_only_names(self) -> str: ...


# --- TLS ------------------------------------------------------------------------------


def server_ssl_context(settings: SecuritySettings) -> ssl.SSLContext | None:
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


def _tls_file_problems(settings: SecuritySettings) -> list[str]:
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
    def from_settings(settings: SecuritySettings) -> AuthPolicy:
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


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _token_entries(settings: SecuritySettings) -> list[tuple[str, str, str]]:
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
    if not BEARER_TOKEN.fullmatch(token):
        return [f"{where} ({name}): token has characters a Bearer header cannot carry"]
    return []


def _read_only_names(settings: SecuritySettings, known: set[str]) -> frozenset[str]:
    """A name that matches no token is a typo that would leave a client with write access."""
    names = frozenset(n.strip() for n in settings.auth_read_only_names.split(",") if n.strip())
    unknown = sorted(names - known)
    if unknown:
        raise SettingsError(f"auth_read_only_names: no token named {', '.join(unknown)}")
    return names


# --- loaded once at start-up ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the security settings name, loaded: the server TLS context both listeners share
    (None: TLS off) and the API tokens. Built once by the settings check, passed down."""

    server_tls: ssl.SSLContext | None
    auth: AuthPolicy


def loaded_or_problems(settings: SecuritySettings) -> tuple[Credentials | None, list[str]]:
    """The credentials, or every TLS and token problem (for `load_settings` to report with
    the other settings' problems at once)."""
    problems: list[str] = []
    tls: ssl.SSLContext | None = None
    auth: AuthPolicy | None = None
    try:
        tls = server_ssl_context(settings)
    except SettingsError as exc:
        problems.append(str(exc))
    try:
        auth = AuthPolicy.from_settings(settings)
    except SettingsError as exc:
        problems.append(str(exc))
    if problems or auth is None:
        return None, problems
    return Credentials(tls, auth), []


def load_credentials(settings: SecuritySettings) -> Credentials:
    """The credentials; SettingsError naming every problem (callers without the settings check:
    tests and tools that build `Settings` directly)."""
    credentials, problems = loaded_or_problems(settings)
    if credentials is None:
        raise SettingsError("; ".join(problems))
    return credentials
