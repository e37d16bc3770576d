"""Processes of a benchmark: the adapter under test, the baseline server, other scripts.

- `AdapterProcess`: `charge-adapter serve` as a subprocess with its own `ADAPTER_*`
  environment (a fresh SQLite file or PostgreSQL schema, free ports, log level); it can be
  started again after a kill (the crash tests), is ready when `/readyz` answers 200, and is
  stopped with a signal to its one pid. `start_adapter` is the one-shot form the
  throughput and memory benchmarks use.
- `rss_kib`, `cpu_seconds`, `thread_cpu`, `machine_cpu`: read /proc (no psutil).
- `baseline_server`, `run_script`: other bench scripts in their own processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from . import ROOT
from .report import parse_keys

PYTHON = sys.executable
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Settings of `start_adapter` (ingest, memory, hostile): coder paused, quiet logs.
BENCH_SETTINGS = {
    "ADAPTER_LOG_LEVEL": "warning",
    "ADAPTER_LOG_FORMAT": "json",
    "ADAPTER_SHUTDOWN_GRACE_SECONDS": "10",
}
# Settings of the crash and restart tests: encounters close and code within seconds.
RESTART_SETTINGS = {
    "ADAPTER_CLOSE_CHECK_SECONDS": "0.5",
    "ADAPTER_QUIET_PERIOD_MINUTES": "1",
    "ADAPTER_LEASE_SECONDS": "10",
    "ADAPTER_LOG_FORMAT": "json",
    "ADAPTER_LOG_LEVEL": "info",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def adapter_command() -> list[str]:
    script = Path(PYTHON).parent / "charge-adapter"
    if script.exists():
        return [str(script)]
    return [PYTHON, "-c", "import sys; from adapter.cli.main import main; sys.exit(main())"]


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so `finally` blocks stop the adapter
    (SIGINT also when the script was started with it ignored: nohup, &)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


# --- /proc ---------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _stat_times(path: str) -> tuple[float, float] | None:
    """(user, system) CPU seconds from a /proc stat file."""
    try:
        fields = Path(path).read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), in seconds."""
    times = _stat_times(f"/proc/{pid}/stat")
    return 0.0 if times is None else times[0] + times[1]


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (worker processes of `ADAPTER_WORKERS=N`)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU of `pid` and its live descendants, every thread of each: what the
    whole service costs, one process or several (read before and after a run; a process
    that exits in between takes its share with it)."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of a process: (user, system) CPU seconds; the main thread's id is `pid`."""
    out: dict[int, tuple[float, float]] = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        times = _stat_times(f"/proc/{pid}/task/{tid}/stat")
        if times is not None:
            out[tid] = times
    return out


def thread_cpu_split(
    pid: int, before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> dict[str, float]:
    """CPU seconds between two `thread_cpu` readings: main / other threads, user / system."""
    split = {"main_user": 0.0, "main_sys": 0.0, "other_user": 0.0, "other_sys": 0.0}
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0.0, 0.0))
        who = "main" if tid == pid else "other"
        split[f"{who}_user"] += user - user0
        split[f"{who}_sys"] += system - system0
    return split


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --- the adapter ---------------------------------------------------------------------------


@dataclass
class AdapterProcess:
    """`charge-adapter serve` as a subprocess with its own settings; logs appended to a file.

    `settings` start from `RESTART_SETTINGS` (the crash tests'); `start_adapter` passes
    `BENCH_SETTINGS`. `env` is what the process got on top of the inherited environment
    (every inherited `ADAPTER_*` dropped, so the caller's shell cannot leak in).
    """

    database_url: str
    log_path: Path
    schema: str | None = "public"
    extra_env: dict[str, str] = field(default_factory=dict)
    mllp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    defaults: dict[str, str] = field(default_factory=lambda: dict(RESTART_SETTINGS))
    cwd: Path = ROOT
    mark_starts: bool = True  # a `harness.start` line in the log before each start
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def env(self) -> dict[str, str]:
        settings = {
            "ADAPTER_HOST": "127.0.0.1",
            "ADAPTER_MLLP_PORT": str(self.mllp_port),
            "ADAPTER_HTTP_PORT": str(self.http_port),
            "ADAPTER_DATABASE_URL": self.database_url,
            **self.defaults,
        }
        if self.schema:
            settings["ADAPTER_DATABASE_SCHEMA"] = self.schema
        settings.update(self.extra_env)
        return settings

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> None:
        if self.running():
            raise RuntimeError("adapter already running")
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            if self.mark_starts:
                log.write(f'{{"event": "harness.start", "n": {self.starts}}}\n'.encode())
            self.proc = subprocess.Popen(
                [*adapter_command(), "serve"],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.1) -> float:
        """Seconds until /readyz answers 200 (the MLLP listener is up before HTTP)."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(
                    f"adapter exited during start-up (status {code}): {self.log_tail()}"
                )
            if self.readyz() == 200:
                return time.monotonic() - started
            time.sleep(poll)
        raise TimeoutError(f"adapter not ready within {timeout:.0f} s: {self.log_tail()}")

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

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

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

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL to this pid only; returns the exit status."""
        self.terminate(timeout)
        return None if self.proc is None else self.proc.returncode


Adapter = AdapterProcess


def start_adapter(
    workdir: Path,
    name: str,
    *,
    database_url: str | None = None,
    schema: str | None = None,
    log_level: str = "warning",
    close_check_seconds: float = 3600.0,
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 90.0,
    attempts: int = 3,
) -> AdapterProcess:
    """`charge-adapter serve` on free ports; SQLite in `workdir/name.db` unless a URL is given.

    A free port is only free when probed: on this shared machine another process has taken
    one before the adapter bound it (a memory run lost that way). When the adapter exits
    and one of its ports is now held by someone else, it is started again on new ports.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    for attempt in range(1, attempts + 1):
        log_path.unlink(missing_ok=True)
        adapter = AdapterProcess(
            database_url or f"sqlite:///{workdir / (name + '.db')}",
            log_path,
            schema=schema,
            extra_env={
                "ADAPTER_LOG_LEVEL": log_level,
                "ADAPTER_CLOSE_CHECK_SECONDS": str(close_check_seconds),
                "ADAPTER_REPLICA_ID": f"bench-{name}",
                **(extra_env or {}),
            },
            defaults=dict(BENCH_SETTINGS),
            cwd=workdir,
            mark_starts=False,
        )
        adapter.start()
        try:
            adapter.wait_ready(ready_timeout, poll=0.2)
            return adapter
        except (RuntimeError, TimeoutError) as exc:
            adapter.stop(5)
            lost_a_port = any(_taken(p) for p in (adapter.mllp_port, adapter.http_port))
            if lost_a_port and attempt < attempts:
                print(f"adapter {name}: a port was taken meanwhile; new ports", file=sys.stderr)
                continue
            raise RuntimeError(f"adapter {name}: {exc}") from exc
    raise AssertionError("unreachable")


def _taken(port: int) -> bool:
    """True when something else now listens on (or holds) this loopback port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --- other processes -----------------------------------------------------------------------


@contextlib.contextmanager
def baseline_server(
    script: str = "baseline_server.py",
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """bench/baseline_server.py (or another server script printing `port=N`, such as
    peer_server.py) in its own process; yields it and its port."""
    proc = subprocess.Popen(
        [PYTHON, str(BENCH / script), "--max-seconds=3600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port="):
            raise RuntimeError(f"{script} did not start")
        yield proc, int(line.strip().partition("=")[2])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def run_script(
    script: str, args: Sequence[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """Run a bench script in its own process; its key=value lines and its whole stdout."""
    proc = subprocess.run(
        [PYTHON, str(BENCH / script), *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    keys = parse_keys(proc.stdout)
    if proc.returncode != 0:
        keys.setdefault(f"{Path(script).stem}_exit_status", str(proc.returncode))
    return keys, proc.stdout
