"""Operating the service as a person does: real `charge-adapter` processes, real ports.

Start-up failures are one line naming the cause and the setting, with a documented exit
code (2: a setting is wrong; 3: the environment refused); `ADAPTER_*` typos are reported;
the mapping tables reload without a restart (SIGHUP, `POST /admin/reload-mappings`),
keeping the old tables when the new ones are wrong.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.service_fixtures import make_settings, running_client, state_of
from tests.store_fixtures import PG_URL
from tests.tls_fixtures import Pki, make_pki

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings"
EXIT_CONFIG = 2
EXIT_STARTUP = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The test process's environment without its ADAPTER_* variables, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    env.update(
        ADAPTER_HTTP_PORT=str(free_port()),
        ADAPTER_MLLP_PORT=str(free_port()),
        ADAPTER_DATABASE_URL=f"sqlite:///{tmp_path}/adapter.db",
        ADAPTER_LOG_FORMAT="json",
    )
    env.update(overrides)
    return env


def adapter(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """Exit `code`, no traceback, and exactly one `charge-adapter:` line holding `parts`."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("charge-adapter:")]
    assert len(lines) == 1, done.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@contextmanager
def serving(
    env: dict[str, str], tls: ssl.SSLContext | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`charge-adapter serve` until its /healthz answers; SIGTERM and wait at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli.main", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http{'s' if tls else ''}://127.0.0.1:{env['ADAPTER_HTTP_PORT']}/healthz"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"serve exited {proc.returncode}: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(url, timeout=1, context=tls):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("serve did not answer /healthz")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()


def metric(env: dict[str, str], line_start: str) -> float:
    url = f"http://127.0.0.1:{env['ADAPTER_HTTP_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rpartition(" ")[2])
    return 0.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    made = make_pki(tmp_path_factory.mktemp("pki"))
    if made is None:
        pytest.skip("TLS TESTS NOT RUN: neither `cryptography` nor the `openssl` CLI is available")
    return made


# --- settings -------------------------------------------------------------------------------


def test_settings_command_refuses_a_mysql_url_naming_the_setting(tmp_path: Path) -> None:
    env = service_env(tmp_path, ADAPTER_DATABASE_URL="mysql://app:secret@db:3306/charges")
    line = assert_one_line_error(
        adapter("settings", env=env),
        EXIT_CONFIG,
        "database_url",
        "unsupported database URL scheme 'mysql'",
    )
    assert "secret" not in line


def test_an_adapter_variable_that_is_no_setting_is_a_warning_naming_the_closest(
    tmp_path: Path,
) -> None:
    env = service_env(tmp_path, ADAPTER_MLLP_PROT="2576")
    done = adapter("settings", env=env)
    assert done.returncode == 0, done.stderr
    assert (
        "warning: ADAPTER_MLLP_PROT is not a setting (did you mean ADAPTER_MLLP_PORT?)"
        in done.stderr
    )


def test_an_adapter_variable_that_is_no_setting_is_an_error_with_strict(tmp_path: Path) -> None:
    env = service_env(tmp_path, ADAPTER_MLLP_PROT="2576")
    assert_one_line_error(
        adapter("settings", "--strict", env=env), EXIT_CONFIG, "ADAPTER_MLLP_PROT"
    )
    assert_one_line_error(adapter("serve", "--strict", env=env), EXIT_CONFIG, "ADAPTER_MLLP_PROT")


def test_a_missing_tls_file_stops_settings_and_serve_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "server.pem"
    env = service_env(
        tmp_path, ADAPTER_TLS_CERT_FILE=str(missing), ADAPTER_TLS_KEY_FILE=str(missing)
    )
    for command in ("settings", "serve"):
        assert_one_line_error(
            adapter(command, env=env), EXIT_CONFIG, f"tls_cert_file={missing}: no such file"
        )


def test_settings_and_health_have_descriptions() -> None:
    for command in ("settings", "health"):
        done = adapter(command, "--help", env=dict(os.environ))
        assert done.returncode == 0
        description = done.stdout.split("\n\n")[1]
        assert len(description.split()) > 10, done.stdout


def test_send_shows_help_and_default_for_every_option() -> None:
    done = adapter("send", "--help", env=dict(os.environ))
    options = done.stdout.partition("options:")[2]
    for flag in (
        "--host",
        "--port",
        "--timeout",
        "--tls",
        "--ca",
        "--cert",
        "--key",
        "--server-name",
    ):
        block = options.partition(flag)[2].split("\n  -")[0]
        assert "(default:" in block, f"{flag}: {block!r}"


# --- start-up against the environment ---------------------------------------------------------


def test_a_second_serve_on_a_busy_mllp_port_exits_3_naming_the_port_and_setting(
    tmp_path: Path,
) -> None:
    first = service_env(tmp_path / "one")
    (tmp_path / "one").mkdir()
    with serving(first):
        second = service_env(tmp_path, ADAPTER_MLLP_PORT=first["ADAPTER_MLLP_PORT"])
        assert_one_line_error(
            adapter("serve", env=second),
            EXIT_STARTUP,
            f"MLLP port {first['ADAPTER_MLLP_PORT']} on 127.0.0.1 is already in use",
            "(ADAPTER_MLLP_PORT)",
        )


def test_a_second_serve_on_a_busy_http_port_exits_3_naming_the_port_and_setting(
    tmp_path: Path,
) -> None:
    first = service_env(tmp_path / "one")
    (tmp_path / "one").mkdir()
    with serving(first):
        second = service_env(tmp_path, ADAPTER_HTTP_PORT=first["ADAPTER_HTTP_PORT"])
        assert_one_line_error(
            adapter("serve", env=second),
            EXIT_STARTUP,
            f"HTTP port {first['ADAPTER_HTTP_PORT']} on 127.0.0.1 is already in use",
            "(ADAPTER_HTTP_PORT)",
        )


@pytest.mark.parametrize(
    ("host", "cause"),
    [("192.0.2.1", "Cannot assign requested address"), ("no-such-host.invalid", "cannot listen")],
)
def test_a_host_that_is_not_this_machine_exits_3_naming_adapter_host(
    tmp_path: Path, host: str, cause: str
) -> None:
    done = adapter("serve", env=service_env(tmp_path, ADAPTER_HOST=host))
    assert_one_line_error(done, EXIT_STARTUP, f"cannot listen on {host}:", cause, "(ADAPTER_HOST)")


def test_a_postgresql_that_refuses_the_connection_exits_3_without_the_password(
    tmp_path: Path,
) -> None:
    closed = free_port()  # nothing listens there
    url = f"postgresql://app:s3cret-pw@127.0.0.1:{closed}/charges"
    done = adapter("serve", env=service_env(tmp_path, ADAPTER_DATABASE_URL=url))
    line = assert_one_line_error(
        done,
        EXIT_STARTUP,
        f"database 127.0.0.1:{closed}/charges refused the connection",
        "(ADAPTER_DATABASE_URL)",
    )
    assert "s3cret" not in done.stderr and "s3cret" not in line


def test_a_postgresql_database_that_does_not_exist_exits_3_naming_it(tmp_path: Path) -> None:
    pytest.importorskip("asyncpg")
    base = PG_URL.rpartition("/")[0]
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            pass
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    env = service_env(tmp_path, ADAPTER_DATABASE_URL=f"{base}/no_such_db_i10")
    assert_one_line_error(
        adapter("serve", env=env),
        EXIT_STARTUP,
        'database "no_such_db_i10" does not exist',
        "(ADAPTER_DATABASE_URL)",
    )


def test_a_bad_mapping_row_at_start_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    tables = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, tables)
    with (tables / "routes.csv").open("a", encoding="utf-8") as f:
        f.write("XX\n")
    env = service_env(tmp_path, ADAPTER_MAPPINGS_DIR=str(tables))
    assert_one_line_error(
        adapter("serve", env=env), EXIT_CONFIG, "routes.csv", "(ADAPTER_MAPPINGS_DIR)"
    )


# --- mapping reload ---------------------------------------------------------------------------


def test_sighup_reloads_the_mappings_and_a_bad_table_keeps_the_old_ones(tmp_path: Path) -> None:
    tables = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, tables)
    env = service_env(tmp_path, ADAPTER_MAPPINGS_DIR=str(tables))
    ok, error = (f'adapter_mapping_reloads_total{{result="{r}"}}' for r in ("ok", "error"))
    with serving(env) as proc:
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: metric(env, ok) == 1.0)
        routes = tables / "routes.csv"
        routes.write_text(routes.read_text(encoding="utf-8") + "XX\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: metric(env, error) == 1.0)
        assert proc.poll() is None, "a bad table must not stop the service"
        assert metric(env, ok) == 1.0
    assert proc.stderr is not None


def _wait_for(check: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail("condition not reached")


async def test_post_admin_reload_mappings_swaps_good_tables_and_keeps_old_on_a_bad_row(
    tmp_path: Path,
) -> None:
    tables = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, tables)
    settings = make_settings(tmp_path, mappings_dir=str(tables))
    async with running_client(settings) as client:
        state = state_of(client)
        before = state.mappings
        overlay = tables / "drug_catalog_local.csv"
        overlay.write_text(overlay.read_text() + "ERX99999,00006302602,,,test: pembrolizumab\n")
        response = await client.post("/admin/reload-mappings")
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        reloaded = state.mappings
        assert reloaded is not before
        assert state.ingestor.mappings is reloaded and state.coder.ctx.mappings is reloaded
        routes = tables / "routes.csv"
        routes.write_text(routes.read_text(encoding="utf-8") + "XX\n", encoding="utf-8")
        response = await client.post("/admin/reload-mappings")
        assert response.status == 422
        outcome = await response.json()
        text = outcome["issue"][0]["diagnostics"]
        assert "routes.csv line" in text and "previous ones stay in use" in text
        assert state.mappings is reloaded and state.coder.ctx.mappings is reloaded
        metrics = await (await client.get("/metrics")).text()
        assert 'adapter_mapping_reloads_total{result="ok"} 1.0' in metrics
        assert 'adapter_mapping_reloads_total{result="error"} 1.0' in metrics


async def test_a_read_only_client_may_not_reload_the_mappings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        auth_tokens="ops:ops-token-0123456789,auditor:auditor-token-0123456789",
        auth_read_only_names="auditor",
    )
    async with running_client(settings) as client:
        assert (await client.post("/admin/reload-mappings")).status == 401
        auditor = {"Authorization": "Bearer auditor-token-0123456789"}
        assert (await client.post("/admin/reload-mappings", headers=auditor)).status == 403
        ops = {"Authorization": "Bearer ops-token-0123456789"}
        assert (await client.post("/admin/reload-mappings", headers=ops)).status == 200


# --- clients under TLS ------------------------------------------------------------------------

DEMO_HL7 = ROOT / "fixtures/scenarios/S09.hl7"


def tls_env(tmp_path: Path, pki: Pki, *, mutual: bool, **more: str) -> dict[str, str]:
    files = {
        "ADAPTER_TLS_CERT_FILE": str(pki.server_cert),
        "ADAPTER_TLS_KEY_FILE": str(pki.server_key),
    }
    if mutual:
        files["ADAPTER_TLS_CLIENT_CA_FILE"] = str(pki.ca)
    return service_env(tmp_path, **files, **more)


def send(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return adapter("send", "--port", env["ADAPTER_MLLP_PORT"], *flags, str(DEMO_HL7), env=env)


def test_send_speaks_tls_verifying_the_server_against_the_given_ca(
    tmp_path: Path, pki: Pki
) -> None:
    env = tls_env(tmp_path, pki, mutual=False)
    with serving(env, pki.client_context()):
        done = send(env, "--tls", "--ca", str(pki.ca))
        assert done.returncode == 0, done.stderr
        acks = done.stdout.split()
        assert acks[1::2] and set(acks[1::2]) == {"AA"}
        refused = send(env, "--tls", "--ca", str(pki.stranger_ca))
        assert_one_line_error(refused, 2, "server certificate not accepted")
        plain = send(env)  # plain text to a TLS listener: the connection closes, no answer
        assert plain.returncode == 2 and "Traceback" not in plain.stderr


def test_send_presents_a_client_certificate_under_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    env = tls_env(tmp_path, pki, mutual=True)
    with serving(env, pki.client_context("client")):
        ok = send(
            env,
            "--tls",
            "--ca",
            str(pki.ca),
            "--cert",
            str(pki.client_cert),
            "--key",
            str(pki.client_key),
        )
        assert ok.returncode == 0, ok.stderr
        without = send(env, "--tls", "--ca", str(pki.ca))
        assert without.returncode == 2 and "Traceback" not in without.stderr


def test_send_tls_options_need_tls(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    assert_one_line_error(send(env, "--ca", "ca.pem"), 2, "need --tls")


def test_health_under_mutual_tls_presents_the_health_client_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    """The container HEALTHCHECK: with a client certificate from the settings it passes; with
    only the server's own certificate (serverAuth only, as here) the handshake is refused."""
    env = tls_env(tmp_path, pki, mutual=True)
    with serving(env, pki.client_context("client")):
        probe_env = dict(
            env,
            ADAPTER_HEALTH_CLIENT_CERT_FILE=str(pki.client_cert),
            ADAPTER_HEALTH_CLIENT_KEY_FILE=str(pki.client_key),
        )
        assert adapter("health", env=probe_env, timeout=60).returncode == 0
        refused = adapter("health", env=env, timeout=60)
        assert_one_line_error(refused, 1, "/healthz")


def test_health_client_certificate_settings_come_in_pairs(tmp_path: Path, pki: Pki) -> None:
    env = service_env(tmp_path, ADAPTER_HEALTH_CLIENT_CERT_FILE=str(pki.client_cert))
    assert_one_line_error(adapter("health", env=env), 2, "health_client_key_file")


def test_a_sqlite_file_that_cannot_be_created_exits_3_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    url = f"sqlite:///{blocker}/adapter.db"
    done = adapter("serve", env=service_env(tmp_path, ADAPTER_DATABASE_URL=url))
    assert_one_line_error(done, EXIT_STARTUP, f"{blocker}/adapter.db", "(ADAPTER_DATABASE_URL)")
