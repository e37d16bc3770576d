"""Load for the benchmarks: the generators that send the traffic of `harness/traffic.py`.

- `run_loadgen`: `bench/loadgen.py` in its own process (asyncio, closed or open loop).
- `LoadGenerator`: N threads, each one MLLP connection behaving like an interface engine:
  each sends its visits' messages in order and waits for each ACK; accepted on AA or CA
  whose MSA-2 names it; on AE/CE resent after a pause; on a refused/reset connection or an
  ACK timeout it reconnects and resends. Bounded in time (a hard deadline) and in count.
  Framing is its own (standard library only), independent of the code under test.
- `probe`: one message on a fresh connection, the ACK codes that came back.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .proc import BENCH, PYTHON
from .traffic import OutMessage, Traffic, Visit

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


def frame(payload: bytes) -> bytes:
    """One MLLP frame."""
    return SB + payload + EB + CR


# --- load generators ---------------------------------------------------------------------


def run_loadgen(
    port: int,
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
    rate: float = 0.0,
    first_visit: int = 0,
    prefix: str = "B",
    max_messages: int = 10_000_000,
    progress_every: int = 0,
    on_progress: Callable[[int, float], None] | None = None,
    ack_timeout: float = 30.0,
) -> dict[str, Any]:
    """bench/loadgen.py in its own process: its JSON result; progress lines go to `on_progress`."""
    args = [
        PYTHON,
        str(BENCH / "loadgen.py"),
        f"--port={port}",
        f"--connections={connections}",
        f"--duration={duration}",
        f"--warmup={warmup}",
        f"--rate={rate}",
        f"--first-visit={first_visit}",
        f"--prefix={prefix}",
        f"--max-messages={max_messages}",
        f"--progress-every={progress_every}",
        f"--ack-timeout={ack_timeout}",
    ]
    hard_limit = time.monotonic() + warmup + duration + ack_timeout + 90
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] | None = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if time.monotonic() > hard_limit:
                break
            if line.startswith("progress "):
                parts = dict(p.split("=") for p in line.split()[1:])
                if on_progress is not None:
                    on_progress(int(parts["acked"]), float(parts["t"]))
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait(timeout=max(1.0, hard_limit - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if result is None:
        raise RuntimeError(f"load generator failed (exit {proc.returncode})")
    return result


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
