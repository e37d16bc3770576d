"""Shared by bench/crash_test.py and bench/pg_restart_test.py: traffic, the adapter process,
an MLLP load generator that behaves like an interface engine, and the database checks.

- Traffic: every visit is one fixtures/scenarios/*.hl7 template (ADT^A04, RAS^O17, ADT^A03)
  with its MSH-10s, MRN (PID-3), visit number (PV1-19) and order numbers (ORC-2/3) made
  unique, so the encounter closes on its A03. A share of the visits asks for enhanced
  acknowledgement (MSH-15 AL, MSH-16 NE or AL): those are accepted on CA.
- Load: N threads, each one MLLP connection, each sending its visits' messages in order
  (several visits interleaved per connection) and waiting for each ACK. A message is
  accepted on AA or CA whose MSA-2 names it; on AE/CE it is resent after a pause; on a
  refused/reset connection or an ACK timeout the thread reconnects and resends it. Every
  loop is bounded in time (a hard deadline) and in count (a visit budget).
- Checks (`verify`): read the store directly (SQLite file or PostgreSQL schema) and compare
  it with what was accepted and with the batch coder's result on the same messages
  (`charge-adapter code`, the same pure core): every accepted message stored exactly once
  and byte-identical, every visit's encounter finished, exactly one current Claim per
  encounter with billable lines (equal to the batch Claim), its current ChargeItems exactly
  the expected ones (no duplicate, none missing), no Claim for an encounter without lines.

Only the standard library, asyncpg (for PostgreSQL) and the adapter's CLI are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "fixtures" / "scenarios"
BIN = ROOT / ".venv" / "bin"
CHARGE_ADAPTER = (
    str(BIN / "charge-adapter") if (BIN / "charge-adapter").exists() else "charge-adapter"
)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FINAL_STATES = frozenset({"coded", "held", "skipped"})

SB, EB, CR = b"\x0b", b"\x1c", b"\r"

# --- traffic -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutMessage:
    control_id: str
    kind: str
    payload: bytes
    acks_expected: int  # ACK frames the server sends back (2 for MSH-15 AL + MSH-16 AL)


@dataclass(frozen=True, slots=True)
class Visit:
    index: int
    template: str
    visit_id: str
    mode: str  # "original" | "AL/NE" | "AL/AL"
    messages: tuple[OutMessage, ...]

    @property
    def encounter_key(self) -> str:
        return f"visit:{self.visit_id}"


def load_templates(directory: Path = SCENARIOS) -> list[tuple[str, list[list[str]]]]:
    """Each scenario file as (name, messages as segment lists); only A04 + RAS + A03 files."""
    templates = []
    for path in sorted(directory.glob("*.hl7")):
        text = path.read_bytes().decode("utf-8")  # segments end in CR, messages in LF
        messages = [
            [seg for seg in line.split("\r") if seg] for line in text.split("\n") if line.strip()
        ]
        kinds = [_msh(m)[8].split("^")[:2] for m in messages]
        if kinds == [["ADT", "A04"], ["RAS", "O17"], ["ADT", "A03"]]:
            templates.append((path.stem, messages))
    if not templates:
        raise SystemExit(f"no A04+RAS+A03 templates in {directory}")
    return templates


def _msh(segments: list[str]) -> list[str]:
    return segments[0].split("|")


def _set_first_component(fields: list[str], index: int, value: str) -> None:
    while len(fields) <= index:
        fields.append("")
    rest = fields[index].split("^", 1)
    fields[index] = value + ("^" + rest[1] if len(rest) > 1 else "")


class Traffic:
    """Deterministic visits: visit n of seed s is always the same bytes."""

    def __init__(self, prefix: str, seed: int, enhanced_share: float = 0.2) -> None:
        self.prefix = prefix
        self.seed = seed
        self.enhanced_share = enhanced_share
        self.templates = load_templates()

    def visit(self, n: int, force_mode: str | None = None) -> Visit:
        """Visit n; `force_mode` ("original", "AL/NE", "NE/AL", ...) overrides the draw."""
        rnd = random.Random(f"{self.seed}:{n}")
        name, template = rnd.choice(self.templates)
        roll = rnd.random()
        mode = "original"
        if roll < self.enhanced_share / 2:
            mode = "AL/NE"
        elif roll < self.enhanced_share:
            mode = "AL/AL"
        mode = force_mode or mode
        visit_id = f"{self.prefix}V{n:06d}"
        out = []
        for k, segments in enumerate(template, 1):
            control_id = f"{self.prefix}{n:06d}M{k}"
            rewritten = []
            for segment in segments:
                fields = segment.split("|")
                name_ = fields[0]
                if name_ == "MSH":  # MSH-n is fields[n - 1]
                    _set_first_component(fields, 9, control_id)
                    if mode != "original":
                        accept, app = mode.split("/")
                        _set_first_component(fields, 14, accept)
                        _set_first_component(fields, 15, app)
                elif name_ == "PID":
                    _set_first_component(fields, 3, f"{self.prefix}P{n:06d}")
                elif name_ == "PV1":
                    _set_first_component(fields, 19, visit_id)
                elif name_ == "ORC":
                    for index in (2, 3):
                        if len(fields) > index and fields[index]:
                            first = fields[index].split("^", 1)[0]
                            _set_first_component(fields, index, f"{first}-{self.prefix}{n}")
                rewritten.append("|".join(fields))
            kind = "^".join(_msh(segments)[8].split("^")[:2])
            payload = ("\r".join(rewritten) + "\r").encode()
            out.append(OutMessage(control_id, kind, payload, 2 if mode == "AL/AL" else 1))
        return Visit(n, name, visit_id, mode, tuple(out))


# --- the adapter process -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AdapterProcess:
    """`charge-adapter serve` as a subprocess with its own settings; logs appended to a file."""

    database_url: str
    log_path: Path
    schema: str = "public"
    extra_env: dict[str, str] = field(default_factory=dict)
    mllp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
        env.update(
            {
                "ADAPTER_HOST": "127.0.0.1",
                "ADAPTER_MLLP_PORT": str(self.mllp_port),
                "ADAPTER_HTTP_PORT": str(self.http_port),
                "ADAPTER_DATABASE_URL": self.database_url,
                "ADAPTER_DATABASE_SCHEMA": self.schema,
                "ADAPTER_CLOSE_CHECK_SECONDS": "0.5",
                "ADAPTER_QUIET_PERIOD_MINUTES": "1",
                "ADAPTER_LEASE_SECONDS": "10",
                "ADAPTER_LOG_FORMAT": "json",
                "ADAPTER_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        if self.running():
            raise RuntimeError("adapter already running")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f'{{"event": "harness.start", "n": {self.starts}}}\n'.encode())
            self.proc = subprocess.Popen(
                [CHARGE_ADAPTER, "serve"],
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /readyz answers 200 (the MLLP listener is up before HTTP)."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(
                    f"adapter exited during start-up (status {code}); see {self.log_path}"
                )
            if self.readyz() == 200:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"adapter not ready within {timeout:.0f} s; see {self.log_path}")

    def readyz(self, timeout: float = 3.0) -> int:
        """HTTP status of /readyz, 0 when nothing answers."""
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError):
            return 0

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> float | None:
        """SIGTERM and wait; seconds it took, or None if it had to be killed (a hang)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None
        return time.monotonic() - started


class FreezableProxy:
    """A loopback TCP proxy to PostgreSQL that can be frozen: while frozen it neither relays
    bytes nor opens upstream connections, but closes nothing, which is what a network
    partition or a stalled database host looks like to the client (no RST, no answer)."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        while self.frozen.is_set() and not self.closed.is_set():
            time.sleep(0.05)
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                while self.frozen.is_set() and not self.closed.is_set():
                    time.sleep(0.05)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.frozen.clear()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


# --- the load generator --------------------------------------------------------------------------


@dataclass
class Recorder:
    """What the senders saw, thread-safe. Times are time.monotonic()."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, tuple[float, str]] = field(default_factory=dict)  # cid -> (t, AA|CA)
    answers: list[tuple[float, str, str]] = field(default_factory=list)  # (t, cid, code)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (t answered, seconds)
    errors: Counter[str] = field(default_factory=Counter)
    error_times: list[tuple[float, str]] = field(default_factory=list)
    sent: int = 0
    resent: int = 0
    completed_visits: list[Visit] = field(default_factory=list)
    unfinished_visits: list[Visit] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    probes: list[OutMessage] = field(default_factory=list)  # sent outside the load (may be stored)

    def answer(self, cid: str, code: str, latency: float = 0.0) -> None:
        now = time.monotonic()
        with self.lock:
            self.answers.append((now, cid, code))
            self.latencies.append((now, latency))
            if code in ("AA", "CA") and cid not in self.accepted:
                self.accepted[cid] = (now, code)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            self.error_times.append((time.monotonic(), kind))

    def errors_between(self, start: float, end: float) -> Counter[str]:
        with self.lock:
            return Counter(kind for at, kind in self.error_times if start <= at < end)

    def accepted_count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def first_accept_after(self, t: float) -> float | None:
        with self.lock:
            times = [at for at, _cid, code in self.answers if at >= t and code in ("AA", "CA")]
        return min(times) if times else None

    def max_latency_between(self, start: float, end: float) -> float:
        with self.lock:
            return max((lat for at, lat in self.latencies if start <= at < end), default=0.0)

    def codes_between(self, start: float, end: float) -> Counter[str]:
        with self.lock:
            return Counter(code for at, _cid, code in self.answers if start <= at < end)


class _Connection:
    """A blocking MLLP client connection that reads ACK frames."""

    def __init__(self, port: int, connect_timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
        self.buffer = b""

    def send(self, payload: bytes) -> None:
        self.sock.sendall(SB + payload + EB + CR)

    def read_frame(self, deadline: float) -> bytes:
        while True:
            end = self.buffer.find(EB)
            if end >= 0:
                start = self.buffer.rfind(SB, 0, end)
                frame = self.buffer[start + 1 : end]
                self.buffer = self.buffer[end + 1 :].lstrip(CR + b"\n")
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no ACK")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed by the adapter")
            self.buffer += data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def read_msa(ack: bytes) -> tuple[str, str]:
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA"):
            fields = segment.decode("utf-8", "replace").split("|")
            return (fields[1] if len(fields) > 1 else "", fields[2] if len(fields) > 2 else "")
    return ("", "")


@dataclass
class LoadConfig:
    port: Callable[[], int]
    connections: int = 6
    window: int = 3  # visits interleaved on one connection
    max_visits: int = 5000
    ack_timeout: float = 15.0
    connect_timeout: float = 2.0
    retry_pause: float = 0.2  # after AE or a failed connect
    seed: int = 0
    rate: float = 0.0  # messages per second over all connections (first sends); 0 = no limit


class LoadGenerator:
    """Interface-engine-like senders; `stop_new` ends new visits, `hard_deadline` ends all."""

    def __init__(self, traffic: Traffic, config: LoadConfig, recorder: Recorder) -> None:
        self.traffic = traffic
        self.config = config
        self.recorder = recorder
        self.stop_new = threading.Event()
        self.abort = threading.Event()
        self.hard_deadline = float("inf")
        self._next = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.config.connections):
            thread = threading.Thread(target=self._run, args=(i,), name=f"sender-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self, timeout: float) -> bool:
        """Stop new visits, let open ones finish; True when every sender ended in time."""
        self.stop_new.set()
        self.hard_deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, self.hard_deadline - time.monotonic()) + 5)
        return not any(t.is_alive() for t in self._threads)

    def _take(self) -> Visit | None:
        if self.stop_new.is_set():
            return None
        with self._lock:
            if self._next >= self.config.max_visits:
                return None
            n, self._next = self._next, self._next + 1
        return self.traffic.visit(n)

    def _run(self, worker: int) -> None:
        rnd = random.Random(f"{self.config.seed}:sender:{worker}")
        active: list[tuple[Visit, int]] = []  # (visit, next message index)
        conn: list[_Connection | None] = [None]
        interval = self.config.connections / self.config.rate if self.config.rate > 0 else 0.0
        next_send = time.monotonic() + rnd.uniform(0, interval)
        try:
            while not self.abort.is_set():
                if interval:
                    pause = next_send - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    next_send = max(next_send + interval, time.monotonic())
                while len(active) < self.config.window:
                    visit = self._take()
                    if visit is None:
                        break
                    active.append((visit, 0))
                if not active:
                    return
                slot = rnd.randrange(len(active))
                visit, index = active[slot]
                outcome = self._deliver(visit.messages[index], conn)
                if outcome == "accepted":
                    index += 1
                if outcome == "rejected" or index == len(visit.messages):
                    del active[slot]
                    with self.recorder.lock:
                        target = self.recorder.completed_visits
                        if outcome == "rejected":
                            target = self.recorder.unfinished_visits
                        target.append(visit)
                elif outcome == "gave-up":
                    break
                else:
                    active[slot] = (visit, index)
        finally:
            with self.recorder.lock:
                self.recorder.unfinished_visits.extend(v for v, _ in active)
            if conn[0] is not None:
                conn[0].close()

    def _deliver(self, message: OutMessage, conn: list[_Connection | None]) -> str:
        """Send until accepted (AA/CA): 'accepted', 'rejected' (AR/CR) or 'gave-up' (deadline)."""
        first = True
        while not self.abort.is_set() and time.monotonic() < self.hard_deadline:
            current = conn[0]
            if current is None:
                try:
                    current = conn[0] = _Connection(self.config.port(), self.config.connect_timeout)
                except OSError:
                    self.recorder.error("connect")
                    time.sleep(self.config.retry_pause)
                    continue
            with self.recorder.lock:
                self.recorder.sent += 1
                if not first:
                    self.recorder.resent += 1
            first = False
            try:
                code = self._exchange(current, message)
            except (OSError, EOFError, TimeoutError) as exc:
                kind = "ack-timeout" if isinstance(exc, TimeoutError) else "connection-lost"
                self.recorder.error(kind)
                current.close()
                conn[0] = None
                continue
            if code in ("AA", "CA"):
                return "accepted"
            if code in ("AR", "CR"):
                with self.recorder.lock:
                    self.recorder.rejected.append(message.control_id)
                return "rejected"
            time.sleep(self.config.retry_pause)  # AE/CE (store down) or no answer code
        return "gave-up"

    def _exchange(self, conn: _Connection, message: OutMessage) -> str:
        sent_at = time.monotonic()
        conn.send(message.payload)
        deadline = min(sent_at + self.config.ack_timeout, self.hard_deadline)
        while True:
            code, cid = read_msa(conn.read_frame(deadline))
            if cid != message.control_id:  # a late second ACK of an earlier message
                self.recorder.error("stale-ack")
                continue
            self.recorder.answer(cid, code, time.monotonic() - sent_at)
            if code == "CA" and message.acks_expected == 2:
                with contextlib.suppress(OSError, EOFError, TimeoutError):
                    code2, cid2 = read_msa(conn.read_frame(deadline))
                    if cid2 == cid:
                        self.recorder.answer(cid, code2)
            return code


def probe(port: int, payload: bytes, wait: float = 2.0) -> list[str]:
    """Send one message on a fresh connection; the MSA-1 codes of every frame answered within
    `wait` seconds (an empty list: no answer at all)."""
    codes: list[str] = []
    try:
        conn = _Connection(port, 2.0)
    except OSError:
        return ["connect-failed"]
    try:
        conn.send(payload)
        deadline = time.monotonic() + wait
        while True:
            codes.append(read_msa(conn.read_frame(deadline))[0])
    except (OSError, EOFError, TimeoutError):
        return codes
    finally:
        conn.close()


# --- reading the store ---------------------------------------------------------------------------

_QUERIES = {
    "messages": "SELECT m.id, m.dedup_key, m.control_id, m.status, m.raw,"
    " (SELECT count(*) FROM message_links l WHERE l.message_id = m.id) AS links FROM messages m",
    "encounters": "SELECT key, state, lease_owner FROM encounters",
    "resources": "SELECT resource_type, resource_id, version, encounter_key, status, body"
    " FROM resource_versions WHERE is_current",
}


def read_store(database_url: str, schema: str = "public") -> dict[str, list[dict[str, Any]]]:
    """The rows the checks need, straight from the database."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return {
                name: [dict(row) for row in conn.execute(sql)] for name, sql in _QUERIES.items()
            }
        finally:
            conn.close()
    return asyncio.run(_read_pg(database_url, schema))


async def _read_pg(database_url: str, schema: str) -> dict[str, list[dict[str, Any]]]:
    import asyncpg

    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        out = {}
        for name, sql in _QUERIES.items():
            out[name] = [dict(row) for row in await conn.fetch(sql)]
        return out
    finally:
        await conn.close()


def pg_admin(database_url: str, sql: str) -> None:
    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def encounter_states(database_url: str, schema: str) -> dict[str, str]:
    sql = "SELECT key, state FROM encounters"
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return {str(k): str(s) for k, s in conn.execute(sql)}
        finally:
            conn.close()

    async def run() -> dict[str, str]:
        import asyncpg

        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            return {str(r["key"]): str(r["state"]) for r in await conn.fetch(sql)}
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_settled(
    database_url: str, schema: str, keys: Iterable[str], timeout: float
) -> tuple[float, list[str]]:
    """Poll until every encounter key is coded/held/skipped; (seconds, keys still not)."""
    wanted = set(keys)
    started = time.monotonic()
    pending = sorted(wanted)
    while time.monotonic() - started < timeout:
        try:
            states = encounter_states(database_url, schema)
        except Exception:  # the database may be briefly unavailable (restart test)
            states = {}
        pending = sorted(k for k in wanted if states.get(k) not in FINAL_STATES)
        if not pending:
            break
        time.sleep(0.5)
    return time.monotonic() - started, pending


# --- expected result: the batch coder on the same messages ---------------------------------------


def batch_expected(
    visits: Iterable[Visit], workdir: Path, chunk: int = 1000
) -> dict[str, dict[str, Any]]:
    """Per encounter key: the Claim, ChargeItems and Tasks `charge-adapter code` produces.

    Visits are independent (own patient, own visit number), so they are coded in chunks
    to bound the batch command's memory.
    """
    expected: dict[str, dict[str, Any]] = {}
    ordered = list(visits)
    for start in range(0, len(ordered), chunk):
        expected.update(_batch_chunk(ordered[start : start + chunk], workdir))
    return expected


def _batch_chunk(visits: list[Visit], workdir: Path) -> dict[str, dict[str, Any]]:
    feed = workdir / "accepted_feed.hl7"
    with feed.open("wb") as out:
        for visit in visits:
            for message in visit.messages:
                out.write(message.payload.replace(b"\n", b"\r") + b"\n")
    run = subprocess.run(
        [CHARGE_ADAPTER, "code", str(feed)], cwd=ROOT, capture_output=True, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(f"batch coding failed: {run.stderr.decode()[-2000:]}")
    bundle = json.loads(run.stdout)
    claims: dict[str, str] = {}
    expected: dict[str, dict[str, Any]] = {}
    resources = [entry["resource"] for entry in bundle.get("entry", [])]
    for resource in resources:
        if resource["resourceType"] == "Claim":
            key = resource["identifier"][0]["value"]
            claims[resource["id"]] = key
            expected[key] = {"claim": resource, "charge_items": {}, "tasks": {}}
    for resource in resources:
        if resource["resourceType"] == "ChargeItem":
            ref = resource["supportingInformation"][0]["reference"].removeprefix("Claim/")
            expected[claims[ref]]["charge_items"][resource["id"]] = resource
        elif resource["resourceType"] == "Task":
            ref = resource["focus"]["reference"].removeprefix("Claim/")
            expected[claims[ref]]["tasks"][resource["id"]] = resource
    feed.unlink()
    return expected


def log_counts(log_path: Path) -> Counter[str]:
    """Events of interest in the adapter's JSON log (all runs appended to one file)."""
    counts: Counter[str] = Counter()
    with log_path.open("rb") as log:
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                counts["non-json-lines"] += 1
                continue
            event = str(entry.get("event", ""))
            if event == "message.stored":
                counts["stored-duplicate" if entry.get("duplicate") else "stored-new"] += 1
            elif event == "mllp.message":
                counts[f"ack-{entry.get('ack_code')}"] += 1
            elif event in (
                "hl7.ingest_failed",
                "coder.error",
                "coder.encounter_failed",
                "coder.stale",
                "encounter.coded",
                "mllp.handler_failed",
                "mllp.connection_failed",
            ):
                counts[event] += 1
            if entry.get("level") in ("error", "critical"):
                counts["level-error"] += 1
    return counts


def db_exec(database_url: str, schema: str, statements: list[str]) -> None:
    """Run statements in one transaction (used by the harness self-test only)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        try:
            with conn:
                for sql in statements:
                    conn.execute(sql)
        finally:
            conn.close()
        return

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            async with conn.transaction():
                for sql in statements:
                    await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def inject_faults(database_url: str, schema: str, recorder: Recorder, visits: list[Visit]) -> None:
    """Harness self-test: lose one acknowledged message and duplicate one ChargeItem, so a
    correct checker must report lost=1 and duplicates=1."""
    cid = sorted(recorder.accepted)[len(recorder.accepted) // 2]
    store = read_store(database_url, schema)
    item = next(
        r
        for r in store["resources"]
        if r["resource_type"] == "ChargeItem" and r["status"] == "billable"
    )
    body = json.loads(item["body"])
    body["id"] = "chg-selftest-duplicate"
    text = json.dumps(body).replace("'", "''")
    is_current = "1" if database_url.startswith("sqlite:///") else "TRUE"
    db_exec(
        database_url,
        schema,
        [
            f"DELETE FROM message_links WHERE message_id IN"
            f" (SELECT id FROM messages WHERE control_id = '{cid}')",
            f"DELETE FROM messages WHERE control_id = '{cid}'",
            "INSERT INTO resource_versions (resource_type, resource_id, version, is_current,"
            " encounter_key, patient_ref, status, last_updated, body)"
            f" SELECT resource_type, 'chg-selftest-duplicate', 1, {is_current}, encounter_key,"
            f" patient_ref, status, last_updated, '{text}' FROM resource_versions"
            f" WHERE resource_type = 'ChargeItem' AND resource_id = '{item['resource_id']}'"
            f" AND version = {int(item['version'])}",
        ],
    )


# --- the checks ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    acked: int = 0
    lost: int = 0  # accepted (AA/CA) but not stored
    corrupt: int = 0  # stored but different bytes, dead, or without encounter links
    duplicate_messages: int = 0  # more than one stored row for one control id
    stored_unknown: int = 0  # rows the senders never sent (should not exist)
    unsettled: int = 0  # encounters not coded/held/skipped at the end
    missing_claims: int = 0
    extra_claims: int = 0  # a Claim for an encounter the batch coder gives none
    claim_mismatch: int = 0  # Claim differs from the batch Claim (items, diagnoses...)
    duplicate_charge_items: int = 0
    missing_charge_items: int = 0
    task_mismatch: int = 0
    encounters: int = 0
    claims: int = 0
    charge_items: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.duplicate_messages + self.extra_claims + self.duplicate_charge_items

    @property
    def other_failures(self) -> int:
        return (
            self.corrupt
            + self.unsettled
            + self.missing_claims
            + self.claim_mismatch
            + self.missing_charge_items
            + self.task_mismatch
            + self.stored_unknown
        )

    def note(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)


def _body(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    body.pop("meta", None)
    return dict(body)


def _line_key(item: dict[str, Any]) -> tuple[str, str, str]:
    """(code, modifiers, date) of a Claim item or a ChargeItem."""
    if "productOrService" in item:
        code = item["productOrService"]["coding"][0]["code"]
        mods = [m["coding"][0]["code"] for m in item.get("modifier", [])]
        day = item.get("servicedDate", "")
    else:
        code = item["code"]["coding"][0]["code"]
        mods = [
            e["valueCoding"]["code"]
            for e in item.get("extension", [])
            if e.get("url", "").endswith("charge-modifier")
        ]
        day = str(item.get("occurrenceDateTime", ""))[:10]
    return code, "+".join(sorted(mods)), day


def verify(
    store: dict[str, list[dict[str, Any]]],
    recorder: Recorder,
    visits: list[Visit],
    expected: dict[str, dict[str, Any]],
) -> Verdict:
    v = Verdict()
    sent = {m.control_id: m for visit in visits for m in visit.messages}
    sent.update({m.control_id: m for visit in recorder.unfinished_visits for m in visit.messages})
    sent.update({m.control_id: m for m in recorder.probes})
    rows_by_cid: dict[str, list[dict[str, Any]]] = {}
    for row in store["messages"]:
        rows_by_cid.setdefault(str(row["control_id"]), []).append(row)
        if str(row["control_id"]) not in sent:
            v.stored_unknown += 1
            v.note(f"stored message {row['control_id']!r} was never sent")
    v.acked = len(recorder.accepted)
    for cid in sorted(recorder.accepted):
        rows = rows_by_cid.get(cid, [])
        if not rows:
            v.lost += 1
            v.note(f"LOST: {cid} was acknowledged {recorder.accepted[cid][1]} but is not stored")
            continue
        if len(rows) > 1:
            v.duplicate_messages += len(rows) - 1
            v.note(f"DUPLICATE: {cid} stored {len(rows)} times")
        row = rows[0]
        if (
            bytes(row["raw"]) != sent[cid].payload
            or row["status"] != "accepted"
            or f":{cid}:" not in str(row["dedup_key"])  # hl7:<sender>:<MSH-10>:<digest>
            or int(row["links"]) == 0
        ):
            v.corrupt += 1
            v.note(f"CORRUPT: {cid} status={row['status']} links={row['links']}")
    states = {str(r["key"]): str(r["state"]) for r in store["encounters"]}
    by_encounter: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in store["resources"]:
        group = by_encounter.setdefault(str(row["encounter_key"]), {})
        group.setdefault(str(row["resource_type"]), []).append(row)
    v.encounters = len(visits)
    for visit in visits:
        key = visit.encounter_key
        state = states.get(key)
        if state not in FINAL_STATES:
            v.unsettled += 1
            v.note(f"UNSETTLED: {key} ({visit.template}) state={state}")
        mine = by_encounter.get(key, {})
        claims = mine.get("Claim", [])
        want = expected.get(key)
        v.claims += len(claims)
        if want is None:
            if claims:
                v.extra_claims += len(claims)
                v.note(f"EXTRA CLAIM: {key} ({visit.template}) has {len(claims)}, expected none")
        elif not claims:
            v.missing_claims += 1
            v.note(f"MISSING CLAIM: {key} ({visit.template}) state={state}")
        elif len(claims) > 1:  # impossible by id, unless ids changed
            v.extra_claims += len(claims) - 1
            v.note(f"EXTRA CLAIM: {key} has {len(claims)} current Claims")
        elif _body(claims[0]) != want["claim"]:
            v.claim_mismatch += 1
            v.note(f"CLAIM MISMATCH: {key} ({visit.template}) differs from the batch Claim")
        items = {
            str(r["resource_id"]): r
            for r in mine.get("ChargeItem", [])
            if r["status"] != "entered-in-error"
        }
        v.charge_items += len(items)
        want_items = set(want["charge_items"]) if want else set()
        surplus_ids = len(set(items) - want_items)
        surplus_lines = 0
        if len(claims) == 1:
            claim_lines = Counter(_line_key(i) for i in _body(claims[0]).get("item", []))
            item_lines = Counter(_line_key(_body(r)) for r in items.values())
            surplus_lines = sum((item_lines - claim_lines).values())
        surplus = max(surplus_ids, surplus_lines)
        if surplus:
            v.duplicate_charge_items += surplus
            v.note(f"DUPLICATE CHARGE ITEMS: {key} ({visit.template}) +{surplus}")
        missing = len(want_items - set(items))
        if missing:
            v.missing_charge_items += missing
            v.note(f"MISSING CHARGE ITEMS: {key} ({visit.template}) -{missing}")
        tasks = {str(r["resource_id"]) for r in mine.get("Task", []) if r["status"] != "cancelled"}
        if tasks != (set(want["tasks"]) if want else set()):
            v.task_mismatch += 1
            v.note(f"TASK MISMATCH: {key} ({visit.template})")
    return v


def print_problems(verdict: Verdict) -> None:
    for text in verdict.problems:
        print(f"  problem: {text}", flush=True)
