"""`ADAPTER_WORKERS=N`: real `charge-adapter serve` processes sharing one port and one store.

What an operator relies on: both workers take connections on the one MLLP port, nothing
acknowledged is lost, one patient's messages are kept in the order they were acknowledged
whichever worker took them, `/metrics` adds every worker up, SIGTERM stops every worker
cleanly (exit 0), a worker that dies is started again, a killed service leaves no worker
behind, and a wrong setting or a taken port stops the start as one process would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from adapter.store.writer_lock import WriterLock
from tests.mllp_client import MllpClient
from tests.test_operating import (
    EXIT_CONFIG,
    EXIT_STARTUP,
    ROOT,
    adapter,
    free_port,
    service_env,
)


async def open_client(port: int) -> MllpClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return MllpClient(reader, writer)


def message(control_id: str, mrn: str, kind: str = "RAS^O17^RAS_O17") -> bytes:
    segments = [
        f"MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH_BILLING|20250314161502-0400||{kind}|"
        f"{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^NRH^MR||SAMPLEPATIENT^AVERY^J||19610422|F",
        f"PV1|1|O|ONCINF^CHAIR12^^NRH_CANCER_CTR||||||||||||||||V{mrn}",
        "ORC|RE|ORD70001^EPIC|RX70001^EPICRX||CM",
        "RXA|0|1|20250314093000-0400|20250314094600-0400|00409-4755-03^ONDANSETRON^NDC|8|mg",
    ]
    return ("\r".join(segments) + "\r").encode()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
    return sorted(found)


def established_on(pid: int, port: int) -> int:
    """Established TCP connections whose local port is `port` held open by process `pid`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    held = 0
    with suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


def wait_for(check: object, seconds: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what or check}")


def healthy(env: dict[str, str]) -> bool:
    try:
        url = f"http://127.0.0.1:{env['ADAPTER_HTTP_PORT']}/healthz"
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def metrics_text(env: dict[str, str]) -> str:
    url = f"http://127.0.0.1:{env['ADAPTER_HTTP_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def accepted_total(text: str) -> float:
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("adapter_messages_total{") and 'outcome="accepted"' in line
    )


def serve_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`charge-adapter serve` with `env`, its output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "adapter.cli.main", "serve"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@contextmanager
def workers(tmp_path: Path, count: int = 2, **overrides: str) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:  # fmt: skip
    env = service_env(tmp_path, ADAPTER_WORKERS=str(count), ADAPTER_LOG_LEVEL="info", **overrides)
    log = tmp_path / "serve.log"
    proc = serve_process(env, log)
    try:
        wait_for(lambda: healthy(env) and len(children(proc.pid)) == count, what="workers up")
        wait_for(lambda: b"workers.started" in log.read_bytes(), what="workers.started")
        yield proc, env, log
    finally:
        pids = children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def send_each(port: int, payloads: list[bytes]) -> list[bytes]:
    """Every payload on its own connection, all connections open at once; the ACKs."""
    clients = [await open_client(port) for _ in payloads]
    try:
        for client, payload in zip(clients, payloads, strict=True):
            await client.send(payload)
        return [await client.read_ack() for client in clients]
    finally:
        for client in clients:
            await client.close()


def test_two_workers_share_the_mllp_port_and_metrics_add_up_over_both(tmp_path: Path) -> None:
    with workers(tmp_path) as (proc, env, _log):
        port = int(env["ADAPTER_MLLP_PORT"])
        pids = children(proc.pid)
        payloads = [message(f"W{i:03d}", f"M{i:03d}") for i in range(24)]

        async def hold_open() -> tuple[list[bytes], dict[int, int]]:
            clients = [await open_client(port) for _ in payloads]
            try:
                for client, payload in zip(clients, payloads, strict=True):
                    await client.send(payload)
                acks = [await client.read_ack() for client in clients]
                return acks, {pid: established_on(pid, port) for pid in pids}
            finally:
                for client in clients:
                    await client.close()

        acks, per_worker = asyncio.run(hold_open())
        assert all(b"MSA|AA|" in ack for ack in acks)
        assert sum(per_worker.values()) == len(payloads)
        assert all(count > 0 for count in per_worker.values()), per_worker  # both accepted
        for _ in range(4):  # whichever worker answers the scrape: every worker's counts
            assert accepted_total(metrics_text(env)) == len(payloads)
        rows = sqlite3.connect(tmp_path / "adapter.db").execute(
            "SELECT count(*) FROM messages WHERE status = 'accepted'"
        )
        assert rows.fetchone()[0] == len(payloads)


def test_one_patients_messages_over_connections_to_both_workers_are_kept_in_ack_order(
    tmp_path: Path,
) -> None:
    """A sender that waits for each ACK keeps its order whichever worker took the message."""
    with workers(tmp_path) as (_proc, env, _log):
        port = int(env["ADAPTER_MLLP_PORT"])
        sent = [f"ORDER{i:02d}" for i in range(16)]

        async def alternate() -> None:
            clients = [await open_client(port) for _ in range(8)]
            try:
                for i, control_id in enumerate(sent):
                    client = clients[i % len(clients)]
                    await client.send(message(control_id, "SAMEPATIENT"))
                    assert b"MSA|AA|" in await client.read_ack()
            finally:
                for client in clients:
                    await client.close()

        asyncio.run(alternate())
        rows = sqlite3.connect(tmp_path / "adapter.db").execute(
            "SELECT control_id FROM messages ORDER BY rowid"
        )
        assert [r[0] for r in rows] == sent


def test_sigterm_stops_every_worker_cleanly_with_exit_0(tmp_path: Path) -> None:
    with workers(tmp_path) as (proc, env, log):
        pids = children(proc.pid)
        acks = asyncio.run(send_each(int(env["ADAPTER_MLLP_PORT"]), [message("T1", "MT1")]))
        assert b"MSA|AA|" in acks[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)
        text = log.read_text()
        assert text.count('"service.stopped"') == 2
        assert '"workers.stopped"' in text and '"failed": null' in text


def _state(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    return ""


def test_a_worker_killed_is_started_again_and_the_service_goes_on(tmp_path: Path) -> None:
    with workers(tmp_path) as (proc, env, log):
        victim = children(proc.pid)[1]
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = children(proc.pid)  # read once: a zombie is listed until it is reaped
            return len(now) == 2 and victim not in now

        wait_for(replaced, what="a new worker")
        assert '"workers.worker_died"' in log.read_text()
        payloads = [message(f"R{i}", f"MR{i}") for i in range(8)]
        wait_for(lambda: healthy(env), what="healthy")
        acks = asyncio.run(send_each(int(env["ADAPTER_MLLP_PORT"]), payloads))
        assert all(b"MSA|AA|" in ack for ack in acks)
        assert proc.poll() is None


def test_a_service_killed_with_sigkill_leaves_no_worker_on_its_ports(tmp_path: Path) -> None:
    with workers(tmp_path) as (proc, env, _log):
        pids = children(proc.pid)
        proc.kill()
        proc.wait(10)
        wait_for(lambda: all(not Path(f"/proc/{p}").exists() for p in pids), 20, "workers gone")
        with socket.socket() as probe:  # the MLLP port is free again
            probe.bind(("127.0.0.1", int(env["ADAPTER_MLLP_PORT"])))


def test_a_taken_mllp_port_stops_the_start_with_exit_3_naming_the_setting(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env = service_env(
            tmp_path, ADAPTER_WORKERS="2", ADAPTER_MLLP_PORT=str(taken.getsockname()[1])
        )
        done = subprocess.run(
            [sys.executable, "-m", "adapter.cli.main", "serve"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == EXIT_STARTUP, done.stderr
    assert "ADAPTER_MLLP_PORT" in done.stderr and "Traceback" not in done.stderr


def test_a_worker_that_cannot_start_stops_the_service_with_its_exit_status(tmp_path: Path) -> None:
    """A database that refuses: every worker would fail alike, so the service stops (exit 3)."""
    env = service_env(
        tmp_path,
        ADAPTER_WORKERS="2",
        ADAPTER_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "serve"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_STARTUP, done.stderr
    assert "workers.start_failed" in done.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_adapter_workers_out_of_range_is_a_setting_error(tmp_path: Path, value: str) -> None:
    done = adapter("settings", env=service_env(tmp_path, ADAPTER_WORKERS=value), timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert "workers" in done.stderr.lower()


# --- the SQLite writer lock --------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from adapter.store.writer_lock import WriterLock
lock = WriterLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
print("released", flush=True)
time.sleep(30)
"""


def _holder(db: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_writer_lock_makes_a_second_process_wait_until_the_first_releases(
    tmp_path: Path,
) -> None:
    db = tmp_path / "adapter.db"
    holder = _holder(db, 0.5)
    try:
        lock = WriterLock(db)
        started = time.monotonic()
        lock.acquire()
        waited = time.monotonic() - started
        assert holder.stdout is not None and holder.stdout.readline().strip() == "released"
        assert 0.3 <= waited < 5
        lock.release()
        lock.close()
    finally:
        holder.kill()
        holder.wait(10)


def test_the_writer_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    db = tmp_path / "adapter.db"
    holder = _holder(db, 60)
    holder.kill()
    holder.wait(10)
    lock = WriterLock(db)
    started = time.monotonic()
    lock.acquire()
    assert time.monotonic() - started < 1
    lock.close()


def test_two_workers_on_postgresql_keep_every_message_of_both(tmp_path: Path) -> None:
    """Nothing to serialize on PostgreSQL: both workers commit side by side, none is lost."""
    import asyncpg

    from tests.store_fixtures import PG_URL, require_postgres

    asyncio.run(require_postgres())
    schema = f"workers_test_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    try:
        with workers(tmp_path, ADAPTER_DATABASE_URL=PG_URL, ADAPTER_DATABASE_SCHEMA=schema) as (
            proc,
            env,
            _log,
        ):
            port = int(env["ADAPTER_MLLP_PORT"])
            payloads = [message(f"P{i:03d}", f"MP{i % 6:03d}") for i in range(24)]
            acks = asyncio.run(send_each(port, payloads))
            assert all(b"MSA|AA|" in ack for ack in acks)
            assert accepted_total(metrics_text(env)) == len(payloads)

        async def stored() -> int:
            conn = await asyncpg.connect(PG_URL)
            try:
                return int(
                    await conn.fetchval(
                        f"SELECT count(*) FROM {schema}.messages WHERE status = 'accepted'"
                    )
                )
            finally:
                await conn.close()

        assert asyncio.run(stored()) == len(payloads)
        assert proc.returncode == 0
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.mark.parametrize(("role", "waits"), [("1/2", True), ("", False)])
async def test_a_workers_sqlite_store_writes_only_under_the_writer_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str, waits: bool
) -> None:
    """Under ADAPTER_WORKERS a write waits for the lock another process holds; one process
    (no worker role) takes no lock at all."""
    from adapter.store.sqlite import SqliteStore
    from adapter.worker_role import WORKER_ENV

    db = tmp_path / "adapter.db"
    if role:
        monkeypatch.setenv(WORKER_ENV, role)
    else:
        monkeypatch.delenv(WORKER_ENV, raising=False)
    holder = _holder(db, 2.0)
    store = SqliteStore(db)
    try:
        started = time.monotonic()
        await store.migrate()
        took = time.monotonic() - started
    finally:
        await store.close()
        holder.kill()
        holder.wait(10)
    assert (took >= 1.2) is waits, took
