"""Transport security and API auth, end to end: real TLS handshakes, real tokens, the real app.

The app is served the way `charge-adapter serve` serves it (an aiohttp TCPSite with the
app's SSL context; the MLLP listener gets the same context at start-up), on ephemeral
ports. Certificates come from a throwaway PKI generated once per session
(tests/tls_fixtures.py); without a generator the TLS tests skip with a loud reason.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from adapter.config import Settings, load_settings
from adapter.errors import SettingsError
from adapter.web.app import create_app
from adapter.web.security import server_tls_of
from adapter.web.state import STATE, AppState
from tests.mllp_client import MllpClient, hl7_message
from tests.service_fixtures import (
    FHIR_JSON,
    HL7_TYPE,
    Clock,
    hl7_messages,
    make_settings,
    running_client,
    state_of,
)
from tests.tls_fixtures import KEY_PASSWORD, Identity, Pki, make_pki

ROOT = Path(__file__).resolve().parents[1]
UI_TOKEN = "ui-" + secrets.token_urlsafe(24)
AUDITOR_TOKEN = "aud-" + secrets.token_urlsafe(24)
TOKENS = f"billing-ui:{UI_TOKEN},auditor:{AUDITOR_TOKEN}"
UI = {"Authorization": f"Bearer {UI_TOKEN}"}
AUDITOR = {"Authorization": f"Bearer {AUDITOR_TOKEN}"}
CHALLENGE = 'Bearer realm="charge-adapter"'
# What a failed TLS connection can look like from the client: a handshake error, a reset,
# an alert read after a TLS 1.3 handshake the client thought complete, or a bare EOF.
REFUSED = (OSError, EOFError, aiohttp.ClientError)
Client = TestClient[Any, Any]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    made = make_pki(tmp_path_factory.mktemp("pki"))
    if made is None:
        pytest.skip(
            "TLS TESTS NOT RUN: no certificate generator (neither the `cryptography` package "
            "nor the `openssl` CLI is available); install one of them"
        )
    return made


def tls_settings(tmp_path: Path, pki: Pki, **overrides: Any) -> Settings:
    files = {"tls_cert_file": str(pki.server_cert), "tls_key_file": str(pki.server_key)}
    return make_settings(tmp_path, **(files | overrides))


def auth_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, auth_tokens=TOKENS, auth_read_only_names="auditor", **overrides)


@dataclass
class Served:
    """The running app: its HTTP port (TLS when configured) and its state (MLLP port)."""

    app: web.Application
    http_port: int

    @property
    def state(self) -> AppState:
        return self.app[STATE]

    @property
    def mllp_port(self) -> int:
        assert self.state.mllp is not None
        return self.state.mllp.port

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.http_port}{path}"


@asynccontextmanager
async def serving(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Served]:
    """create_app served like web.run_app serves it: TCPSite with the app's SSL context."""
    app = create_app(settings, clock or Clock())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, 0, ssl_context=server_tls_of(app))
        await site.start()
        yield Served(app, int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()


async def https_get(
    served: Served, context: ssl.SSLContext | None, path: str = "/healthz", **kw: Any
) -> int:
    """Status of one GET over HTTPS (context None: plain HTTP to the same port)."""
    scheme = "http" if context is None else "https"
    url = served.url(path, scheme)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context or False, **kw) as response,
    ):
        await response.read()
        return response.status


async def mllp_ack(
    served: Served, context: ssl.SSLContext | None, payload: bytes | None = None
) -> tuple[bytes, str]:
    """One message over MLLP (TLS when `context`): its ACK and the negotiated TLS version."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", served.mllp_port, ssl=context), 10
    )
    client = MllpClient(reader, writer)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        await client.send(payload or hl7_message("TLS0001"))
        ack = await client.read_ack(timeout=10)
        return ack, str(ssl_object.version()) if ssl_object is not None else ""
    finally:
        await client.close()


async def reaches(served: Served, listener: str, context: ssl.SSLContext) -> bool:
    """True when a request over `listener` gets its answer (200 / an AA)."""
    if listener == "http":
        return await https_get(served, context) == 200
    ack, _ = await mllp_ack(served, context)
    return b"MSA|AA|TLS0001" in ack


# --- HTTPS and MLLP over TLS -----------------------------------------------------------


async def test_https_answers_after_a_verified_handshake(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_settings(tmp_path, pki)) as served:
        assert await https_get(served, pki.client_context()) == 200
        stranger_trust = ssl.create_default_context(cafile=str(pki.stranger_ca))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await https_get(served, stranger_trust)  # our CA's certificate, nobody else's


async def test_plain_http_to_the_https_port_gets_no_answer(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_settings(tmp_path, pki)) as served:
        with pytest.raises(aiohttp.ClientError):
            await https_get(served, None, timeout=aiohttp.ClientTimeout(total=10))


async def test_mllp_over_tls_gets_an_aa(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_settings(tmp_path, pki)) as served:
        ack, version = await mllp_ack(served, pki.client_context())
        assert b"MSA|AA|TLS0001" in ack
        assert version in ("TLSv1.2", "TLSv1.3")


async def test_plain_mllp_to_the_tls_port_gets_no_ack(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_settings(tmp_path, pki)) as served:
        with pytest.raises(REFUSED):
            await mllp_ack(served, None)


async def test_start_state_alone_also_speaks_tls_on_mllp(tmp_path: Path, pki: Pki) -> None:
    """A caller that skips create_app (replay tools, tests) cannot get a plain listener."""
    from adapter.web.app import start_state, stop_state

    state = await start_state(tls_settings(tmp_path, pki), Clock())
    try:
        assert state.mllp is not None
        served = Served(web.Application(), 0)
        served.app[STATE] = state
        ack, _ = await mllp_ack(served, pki.client_context())
        assert b"MSA|AA" in ack
        with pytest.raises(REFUSED):
            await mllp_ack(served, None)
    finally:
        await stop_state(state)


async def test_stop_with_an_idle_tls_mllp_connection_is_prompt(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_settings(tmp_path, pki, shutdown_grace_seconds=5.0)) as served:
        port = served.mllp_port
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context())
        client = MllpClient(reader, writer)
        await client.send(hl7_message("IDLE1"))
        assert b"MSA|AA" in await client.read_ack()
        started = time.monotonic()
        assert served.state.mllp is not None
        await served.state.mllp.stop(served.state.settings.shutdown_grace_seconds)
        assert time.monotonic() - started < 3.0
        await client.close()


# --- mutual TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["http", "mllp"])
async def test_mutual_tls_needs_a_client_certificate_from_the_configured_ca(
    tmp_path: Path, pki: Pki, listener: str
) -> None:
    settings = tls_settings(tmp_path, pki, tls_client_ca_file=str(pki.ca))
    async with serving(settings) as served:
        for identity in ("none", "stranger"):
            with pytest.raises(REFUSED):
                await reaches(served, listener, pki.client_context(identity))
        assert await reaches(served, listener, pki.client_context("client"))


@pytest.mark.parametrize("listener", ["http", "mllp"])
async def test_without_mutual_tls_a_client_certificate_is_not_needed(
    tmp_path: Path, pki: Pki, listener: str
) -> None:
    async with serving(tls_settings(tmp_path, pki)) as served:
        identities: tuple[Identity, ...] = ("none", "client")
        for identity in identities:
            assert await reaches(served, listener, pki.client_context(identity))


# --- protocol versions ------------------------------------------------------------------


async def test_a_legacy_client_speaks_tls_1_1_to_a_permissive_server(pki: Pki) -> None:
    """Control for the refusal below: here TLS 1.1 works, so a refusal is the adapter's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")

    async def hello(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        legacy = pki.client_context(max_version=_tls_1_1(), legacy=True)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=legacy)
        except ssl.SSLError as exc:
            pytest.skip(f"this OpenSSL build cannot speak TLS 1.1 at all ({exc.reason})")
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.1"
        assert await reader.read() == b"hello"
        writer.close()


@pytest.mark.parametrize("listener", ["http", "mllp"])
async def test_tls_1_1_is_refused(tmp_path: Path, pki: Pki, listener: str) -> None:
    async with serving(tls_settings(tmp_path, pki)) as served:
        with pytest.raises(REFUSED):
            await reaches(served, listener, pki.client_context(max_version=_tls_1_1(), legacy=True))
        assert await reaches(served, listener, pki.client_context())


@pytest.mark.parametrize("listener", ["http", "mllp"])
async def test_tls_min_version_1_3_refuses_a_tls_1_2_client(
    tmp_path: Path, pki: Pki, listener: str
) -> None:
    async with serving(tls_settings(tmp_path, pki, tls_min_version="TLSv1.3")) as served:
        tls12 = pki.client_context(max_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(REFUSED):
            await reaches(served, listener, tls12)
        assert await reaches(served, listener, pki.client_context())
        _, version = await mllp_ack(served, pki.client_context())
        assert version == "TLSv1.3"


def _tls_1_1() -> ssl.TLSVersion:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ssl.TLSVersion.TLSv1_1


# --- size limits over TLS ---------------------------------------------------------------


async def test_size_limits_hold_over_tls(tmp_path: Path, pki: Pki) -> None:
    settings = tls_settings(
        tmp_path, pki, http_max_body_bytes=4096, mllp_max_frame_bytes=2048, auth_tokens=TOKENS
    )
    async with serving(settings) as served:
        body = hl7_message("BIG0001", filler=8000)
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                served.url("/hl7"),
                data=body,
                headers={**UI, "Content-Type": HL7_TYPE},
                ssl=pki.client_context(),
            )
            assert response.status == 413
            outcome = await response.json(content_type=None)
            assert outcome["issue"][0]["code"] == "too-long"
        ack, _ = await mllp_ack(served, pki.client_context(), body)
        assert b"MSA|AR|BIG0001" in ack
        assert b"207" in ack
        ack, _ = await mllp_ack(served, pki.client_context())  # the listener still serves
        assert b"MSA|AA|TLS0001" in ack


# --- bearer tokens --------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with running_client(auth_settings(tmp_path), Clock()) as c:
        yield c


async def assert_outcome(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == FHIR_JSON
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    assert body["issue"][0]["diagnostics"]
    return body


PROTECTED = [
    ("GET", "/review"),
    ("POST", "/review/clm-x/release"),
    ("GET", "/fhir/Claim"),
    ("GET", "/fhir/Claim/clm-x"),
    ("GET", "/fhir/ChargeItem/x/_history"),
    ("GET", "/fhir/Patient/p1"),  # not served: still no hint without a token
    ("POST", "/fhir"),
    ("PUT", "/fhir/Patient/p1"),
    ("POST", "/hl7"),
    ("POST", "/fhir/metadata"),  # only the GET of the CapabilityStatement is open
    ("GET", "/no-such-endpoint"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_without_a_token_it_is_401_with_a_bearer_challenge(
    client: Client, method: str, path: str
) -> None:
    response = await client.request(method, path)
    await assert_outcome(response, 401, "login")
    assert response.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", f"Bearer {UI_TOKEN} extra", f"Token {UI_TOKEN}"],
)
async def test_a_malformed_authorization_header_is_401(client: Client, header: str) -> None:
    response = await client.get("/review", headers={"Authorization": header})
    await assert_outcome(response, 401, "login")
    assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)


async def test_an_unknown_token_is_401_invalid_token(client: Client) -> None:
    last = "y" if UI_TOKEN.endswith("x") else "x"  # the random token may end in x (1 in 64)
    wrong = {"Authorization": f"Bearer {UI_TOKEN[:-1]}{last}"}
    response = await client.get("/review", headers=wrong)
    await assert_outcome(response, 401, "unknown")
    assert response.headers["WWW-Authenticate"] == f'{CHALLENGE}, error="invalid_token"'


async def test_a_read_only_token_reads_but_cannot_write(client: Client) -> None:
    assert (await client.get("/review", headers=AUDITOR)).status == 200
    assert (await client.get("/fhir/Claim", headers=AUDITOR)).status == 200
    message = hl7_message("RO0001")
    response = await client.post(
        "/hl7", data=message, headers={**AUDITOR, "Content-Type": HL7_TYPE}
    )
    await assert_outcome(response, 403, "forbidden")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    release = await client.post("/review/clm-x/release", json={"action": "recode"}, headers=AUDITOR)
    await assert_outcome(release, 403, "forbidden")


async def test_the_right_token_reads_and_writes(client: Client) -> None:
    assert (await client.get("/review", headers=UI)).status == 200
    lower = {"Authorization": f"bearer {UI_TOKEN}"}  # the scheme is case-insensitive
    assert (await client.get("/fhir/Claim", headers=lower)).status == 200
    message = hl7_message("RW0001")
    response = await client.post("/hl7", data=message, headers={**UI, "Content-Type": HL7_TYPE})
    assert response.status == 200
    assert b"MSA|AA|RW0001" in await response.read()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/fhir/metadata"),
     ("HEAD", "/fhir/metadata")],
)  # fmt: skip
async def test_probes_metrics_and_metadata_are_open(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status == 200


async def test_tokens_never_reach_the_logs(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        await client.get("/fhir/Claim?patient=Patient/secret-id", headers={"Authorization": "x"})
        await client.get("/review", headers={"Authorization": f"Bearer {UI_TOKEN}0"})
        await client.get("/review", headers=UI)
        await client.post("/hl7", data=b"MSH|", headers={**AUDITOR, "Content-Type": HL7_TYPE})
    text = repr(logs)
    assert UI_TOKEN not in text and AUDITOR_TOKEN not in text
    assert "secret-id" not in text
    refused = [e for e in logs if e["event"] == "http.auth_refused"]
    assert [e["reason"] for e in refused] == ["malformed", "unknown_token", "read_only"]
    assert refused[0]["route"] == "/fhir/{type}"


async def test_tokens_from_a_secret_file_with_comments(tmp_path: Path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text(
        f"# billing front end\nbilling-ui:{UI_TOKEN}\n\n  # auditors\nauditor : {AUDITOR_TOKEN}\n"
    )
    settings = make_settings(tmp_path, auth_tokens_file=str(secret), auth_read_only_names="auditor")
    async with running_client(settings) as c:
        assert (await c.get("/review")).status == 401
        assert (await c.get("/review", headers=UI)).status == 200
        assert (await c.post("/hl7", headers=AUDITOR)).status == 403


async def test_auth_is_off_without_tokens_and_start_up_says_the_api_is_open(
    tmp_path: Path,
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with running_client(make_settings(tmp_path)) as c:
            assert (await c.get("/review")).status == 200
    warning = [e for e in logs if e["event"] == "security.http_api_open"]
    assert warning and warning[0]["log_level"] == "warning"
    assert warning[0]["reason"] == "no auth token configured"


async def test_auth_required_false_keeps_the_api_open_despite_tokens(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        async with running_client(auth_settings(tmp_path, auth_required=False)) as c:
            assert (await c.get("/review")).status == 200
    warning = [e for e in logs if e["event"] == "security.http_api_open"]
    assert warning and warning[0]["reason"] == "auth_required=false"


async def test_auth_over_https(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_settings(tmp_path, pki, auth_tokens=TOKENS)) as served:
        assert await https_get(served, pki.client_context(), "/review") == 401
        assert await https_get(served, pki.client_context(), "/review", headers=UI) == 200
        assert await https_get(served, pki.client_context(), "/healthz") == 200


# --- the audit actor is the principal --------------------------------------------------


async def test_review_releases_are_audited_under_the_authenticated_client(
    client: Client,
) -> None:
    for message in hl7_messages("S25"):
        response = await client.post("/hl7", data=message, headers={**UI, "Content-Type": HL7_TYPE})
        assert response.status == 200
    await state_of(client).coder.run_once()
    (held,) = await (await client.get("/review", headers=UI)).json()
    cid, key = held["claimId"], held["encounterKey"]

    recode = await client.post(f"/review/{cid}/release", json={"action": "recode"}, headers=UI)
    assert recode.status == 200, await recode.text()  # no actor needed: the token says who
    override = {"action": "override", "note": "stop time confirmed", "actor": "biller-1"}
    response = await client.post(f"/review/{cid}/release", json=override, headers=UI)
    assert response.status == 200, await response.text()

    audit = await state_of(client).store.audit_for(key)
    assert [(a.action, a.actor) for a in audit] == [
        ("release-recode", "billing-ui"),
        ("override", "billing-ui on behalf of biller-1"),
    ]


# --- start-up refuses what it cannot load ---------------------------------------------


def base_env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {"ADAPTER_DATABASE_URL": f"sqlite:///{tmp_path}/a.db", **env}


def settings_error(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return str(info.value)


def test_a_missing_key_file_names_the_setting(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.key"
    text = settings_error(
        base_env(
            tmp_path, ADAPTER_TLS_CERT_FILE=str(pki.server_cert), ADAPTER_TLS_KEY_FILE=str(missing)
        )
    )
    assert f"tls_key_file={missing}: no such file" in text
    with pytest.raises(SettingsError, match="tls_key_file"):
        create_app(tls_settings(tmp_path, pki, tls_key_file=str(missing)))


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"cert": "garbage"}, "tls_cert_file="),
        ({"key": "client"}, "tls_key_file="),  # a key that is not the certificate's
        ({"key": "encrypted"}, "the key is encrypted"),
        ({"key": "garbage"}, "tls_key_file="),
        ({"ca": "garbage"}, "tls_client_ca_file="),
        ({"cert": None}, "set both"),
    ],
)
def test_unloadable_tls_files_fail_start_up_naming_the_setting(
    tmp_path: Path, pki: Pki, files: dict[str, str | None], fragment: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    choices: dict[str | None, str] = {
        "garbage": str(garbage),
        "client": str(pki.client_key),
        "encrypted": str(pki.server_key_encrypted),
        None: "",
    }
    paths = {"cert": str(pki.server_cert), "key": str(pki.server_key), "ca": str(pki.ca)}
    paths |= {k: choices[v] for k, v in files.items()}
    env = base_env(
        tmp_path,
        ADAPTER_TLS_CERT_FILE=paths["cert"],
        ADAPTER_TLS_KEY_FILE=paths["key"],
        ADAPTER_TLS_CLIENT_CA_FILE=paths["ca"],
    )
    text = settings_error(env)
    assert fragment in text
    assert KEY_PASSWORD.decode() not in text and "BEGIN" not in text


def test_good_tls_files_load(tmp_path: Path, pki: Pki) -> None:
    env = base_env(
        tmp_path,
        ADAPTER_TLS_CERT_FILE=str(pki.server_cert),
        ADAPTER_TLS_KEY_FILE=str(pki.server_key),
        ADAPTER_TLS_CLIENT_CA_FILE=str(pki.ca),
        ADAPTER_TLS_MIN_VERSION="TLSv1.3",
    )
    settings = load_settings(env)
    assert settings.tls_min_version == "TLSv1.3"


def test_an_unknown_tls_version_is_refused(tmp_path: Path) -> None:
    assert "tls_min_version=TLSv1.1" in settings_error(
        base_env(tmp_path, ADAPTER_TLS_MIN_VERSION="TLSv1.1")
    )


def test_a_short_token_fails_start_up_without_echoing_it(tmp_path: Path) -> None:
    text = settings_error(base_env(tmp_path, ADAPTER_AUTH_TOKENS=f"ok:{UI_TOKEN},short:abc123"))
    assert "auth_tokens entry 2 (short): token shorter than 16 characters" in text
    assert "abc123" not in text and UI_TOKEN not in text
    with pytest.raises(SettingsError, match="shorter than 16"):
        create_app(make_settings(tmp_path, auth_tokens="short:abc123"))


def test_token_file_problems_name_the_line(tmp_path: Path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text(f"# comment\nbilling-ui:{UI_TOKEN}\nreports:tooshort\nno-colon-here\n")
    text = settings_error(base_env(tmp_path, ADAPTER_AUTH_TOKENS_FILE=str(secret)))
    assert "auth_tokens_file line 3 (reports): token shorter than 16" in text
    assert "auth_tokens_file line 4: 'name:token'" in text
    assert "tooshort" not in text and UI_TOKEN not in text
    missing = tmp_path / "absent"
    assert "cannot read" in settings_error(
        base_env(tmp_path, ADAPTER_AUTH_TOKENS_FILE=str(missing))
    )


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ADAPTER_AUTH_TOKENS": f"a:{UI_TOKEN},b:{UI_TOKEN}"}, "same token as client 'a'"),
        ({"ADAPTER_AUTH_TOKENS": f"a b:{UI_TOKEN}"}, "'name:token'"),
        ({"ADAPTER_AUTH_TOKENS": "a:" + "x" * 15 + " y"}, "Bearer header cannot carry"),
        ({"ADAPTER_AUTH_TOKENS": TOKENS, "ADAPTER_AUTH_READ_ONLY_NAMES": "auditr"}, "auditr"),
        ({"ADAPTER_AUTH_REQUIRED": "true"}, "no token configured"),
        ({"ADAPTER_AUTH_REQUIRED": "sometimes"}, "ADAPTER_AUTH_REQUIRED"),
    ],
)
def test_bad_auth_settings_are_refused(tmp_path: Path, env: dict[str, str], fragment: str) -> None:
    assert fragment in settings_error(base_env(tmp_path, **env))


@pytest.mark.parametrize(
    ("raw", "expected"), [("auto", None), ("", None), ("true", True), ("off", False)]
)
def test_auth_required_reads_auto_and_booleans(
    tmp_path: Path, raw: str, expected: bool | None
) -> None:
    env = base_env(tmp_path, ADAPTER_AUTH_REQUIRED=raw, ADAPTER_AUTH_TOKENS=TOKENS)
    assert load_settings(env).auth_required is expected


def test_tokens_are_masked_in_the_settings_display() -> None:
    shown = Settings(auth_tokens=TOKENS).masked()
    assert shown["auth_tokens"] == "***"
    assert UI_TOKEN not in str(shown)


def test_serve_exits_2_naming_the_missing_key_file(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "tls.key"
    env = {
        "PATH": "/usr/bin:/bin",
        **base_env(
            tmp_path,
            ADAPTER_MLLP_PORT="0",
            ADAPTER_HTTP_PORT="0",
            ADAPTER_TLS_CERT_FILE=str(pki.server_cert),
            ADAPTER_TLS_KEY_FILE=str(missing),
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "serve"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"tls_key_file={missing}: no such file" in done.stderr
    assert "Traceback" not in done.stderr
