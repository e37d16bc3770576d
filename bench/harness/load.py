"""Load for the benchmarks: traffic shaped like real feeds, and the generators that send it.

Traffic. Every `fixtures/scenarios/*.hl7` file is one outpatient infusion visit as an EHR
sends it: ADT^A04 (registration), RAS^O17 (the administrations, repeated RXA under one
ORC, RXR after them), ADT^A03 (discharge). They are templates: each visit gets its own
MSH-10s, patient (PID-3), visit number (PV1-19) and order numbers (ORC-2/3), so any number
of distinct visits of many patients can be produced while the clinical content (drugs,
times, diagnoses, payers) stays real.
- `visit_messages` / `connection_stream`: the throughput form (template `v % 37`,
  pre-rendered, one join per message) for `loadgen.py`.
- `Traffic`: the crash tests' form, deterministic per seed, a share of the visits asking
  for enhanced acknowledgement (MSH-15 AL, MSH-16 NE or AL: accepted on CA).
- `regimen_messages` / `drain_visit`: the fixed 5-administration regimen (`REGIMEN`) for
  the processing and batch benchmarks, where every encounter must code cleanly.

Load.
- `run_loadgen`: `bench/loadgen.py` in its own process (asyncio, closed or open loop).
- `LoadGenerator`: N threads, each one MLLP connection behaving like an interface engine:
  each sends its visits' messages in order and waits for each ACK; accepted on AA or CA
  whose MSA-2 names it; on AE/CE resent after a pause; on a refused/reset connection or an
  ACK timeout it reconnects and resends. Bounded in time (a hard deadline) and in count.
  Framing is its own (standard library only), independent of the code under test.
- `ingest_backlog`: in-process ingest through `AppState.handle_hl7`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from . import ROOT
from .proc import BENCH, PYTHON

SCENARIOS = ROOT / "fixtures" / "scenarios"
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
BACKLOG_ORIGIN = "mllp 127.0.0.1"

# (NDC, dose, unit, minutes or None for a push, method)
REGIMEN = [
    ("00404-9795-30", "12", "mg", None, "IVP"),  # dexamethasone push (J1100)
    ("00409-2504-10", "0.25", "mg", None, "IVP"),  # palonosetron push (J2469)
    ("00006-3026-02", "200", "mg", 30, "IVPB"),  # pembrolizumab (J9271)
    ("00703-4239-01", "500", "mg", 35, "IVPB"),  # carboplatin (J9045)
    ("00264-5802-00", "1000", "mL", 90, "IVPB"),  # saline hydration with an indication
]
MESSAGES_PER_VISIT = 3
ADMINS_PER_DRAIN_VISIT = len(REGIMEN)


def frame(payload: bytes) -> bytes:
    """One MLLP frame."""
    return SB + payload + EB + CR


# --- traffic from the scenario fixtures ------------------------------------------------------


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


@cache
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


@cache
def templates() -> tuple[tuple[tuple[list[str], ...], ...], ...]:
    """Per scenario file: its messages, each a tuple of segments split into fields."""
    return tuple(
        tuple(tuple(segment.split("|") for segment in message) for message in messages)
        for _, messages in load_templates()
    )


_MARK = "\x01"


def _first_component(field: str, value: str) -> str:
    _, sep, rest = field.partition("^")
    return value + sep + rest


@cache
def _compiled() -> tuple[tuple[tuple[str, ...], ...], ...]:
    """Templates as alternating literal / slot-name parts, so rendering is one join."""
    out = []
    for template in templates():
        messages = []
        for k, message in enumerate(template):
            segments = []
            for fields in message:
                f = list(fields)
                name = f[0]
                if name == "MSH":
                    f[9] = f"{_MARK}msh10{_MARK}{k}"
                elif name == "PID" and len(f) > 3:
                    f[3] = _first_component(f[3], f"{_MARK}mrn{_MARK}")
                elif name == "PV1" and len(f) > 19:
                    f[19] = _first_component(f[19], f"{_MARK}vn{_MARK}")
                elif name == "ORC":
                    for i in (2, 3):
                        if len(f) > i and f[i]:
                            first, sep, rest = f[i].partition("^")
                            f[i] = f"{first}-{_MARK}ord{_MARK}{sep}{rest}"
                segments.append("|".join(f))
            messages.append(tuple(("\r".join(segments) + "\r").split(_MARK)))
        out.append(tuple(messages))
    return tuple(out)


def visit_messages(visit: int, prefix: str = "B") -> list[bytes]:
    """The three messages (A04, RAS, A03) of synthetic visit `visit`, segments joined by CR."""
    compiled = _compiled()
    values = {
        "msh10": f"{prefix}{visit:09d}",
        "mrn": f"{prefix}P{visit:09d}",
        "vn": f"{prefix}V{visit:09d}",
        "ord": f"{prefix}{visit}",
    }
    out = []
    for parts in compiled[visit % len(compiled)]:
        text = "".join(values[p] if i % 2 else p for i, p in enumerate(parts))
        out.append(text.encode())
    return out


def connection_stream(
    connection: int, connections: int, first_visit: int, prefix: str = "B"
) -> Iterator[bytes]:
    """Endless messages for one connection: visits connection, connection+N, ... in order."""
    visit = first_visit + connection
    while True:
        yield from visit_messages(visit, prefix)
        visit += connections


def regimen_messages(n: int, prefix: str = "", discharge: bool = True) -> list[str]:
    """A04, RAS (5 administrations of `REGIMEN`), A03 for encounter `n`, segments joined by CR
    (no trailing CR); `discharge=False` leaves out the A03 (the batch benchmark's feed)."""
    day = datetime(2026, 1, 5, 8, 0) + timedelta(days=n % 60)
    ts = day.strftime("%Y%m%d%H%M")
    visit, mrn = f"{prefix}V{n:07d}", f"{prefix}M{n:07d}"
    pid = f"PID|1||{mrn}^^^HOSP^MR||TEST^PATIENT"
    pv1 = f"PV1|1|O|ONCINF^^^MAIN||||||||||||||||{visit}"
    a04 = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{ts}||ADT^A04|{prefix}A{n:07d}|P|2.5.1",
        pid,
        pv1,
        "DG1|1||C34.90^Malignant neoplasm of lung^I10||||||||||||1",
    ]
    ras = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{ts}||RAS^O17^RAS_O17|{prefix}R{n:07d}|P|2.5.1",
        pid,
        pv1,
    ]
    clock = day
    for i, (ndc, dose, unit, minutes, method) in enumerate(REGIMEN):
        start = clock.strftime("%Y%m%d%H%M")
        end = (clock + timedelta(minutes=minutes or 0)).strftime("%Y%m%d%H%M")
        indication = "E86.0^Dehydration^I10" if unit == "mL" else ""
        ras += [
            f"ORC|RE|O{prefix}{n}-{i}|F{prefix}{n}-{i}",
            f"RXA|0|1|{start}|{end if minutes else ''}|{ndc}^drug^NDC|{dose}|{unit}"
            f"||||||||||||{indication}|CP|A",
            f"RXR|IV|L ARM||{method}",
        ]
        clock += timedelta(minutes=(minutes or 5) + 5)
    if not discharge:
        return ["\r".join(a04), "\r".join(ras)]
    out_ts = clock.strftime("%Y%m%d%H%M")
    a03 = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{out_ts}||ADT^A03|{prefix}X{n:07d}|P|2.5.1",
        f"EVN|A03|{out_ts}",
        pid,
        pv1 + "|" * 26 + out_ts,
    ]
    return ["\r".join(m) for m in (a04, ras, a03)]


def drain_visit(n: int, prefix: str = "D") -> list[bytes]:
    """A04, RAS (5 administrations of `REGIMEN`), A03 for encounter `n`: every one codes."""
    return [(m + "\r").encode() for m in regimen_messages(n, prefix)]


async def ingest_backlog(state: Any, encounters: int, prefix: str, workers: int = 8) -> int:
    """`drain_visit`s through `AppState.handle_hl7` in-process, `workers` at a time; the AA
    count (the processing benchmarks' backlog)."""
    accepted = 0

    async def worker(i: int) -> None:
        nonlocal accepted
        for n in range(i, encounters, workers):
            for raw in drain_visit(n, prefix):
                result = await state.handle_hl7(raw, BACKLOG_ORIGIN)
                if result.ack_code == "AA":
                    accepted += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return accepted


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


# --- reading the store ---------------------------------------------------------------------------
