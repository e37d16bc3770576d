"""Shared plumbing of the service benchmarks: adapter processes, PostgreSQL schemas, output.

- `Adapter`: `charge-adapter serve` as a subprocess with its own `ADAPTER_*`
  environment (fresh database, free ports, log level), ready when `/readyz`
  answers 200; `rss_kib()` and `cpu_seconds()` read /proc; `stop()` sends
  SIGTERM to that one pid (then SIGKILL to it if it hangs).
- `run_loadgen`: `bench/loadgen.py` in its own process; returns its JSON result.
- PostgreSQL: `pg_available`, `drop_schema`, `pg_fetch` (a fresh schema per run;
  the store's migration creates it; the benchmark drops it afterwards).
- `print_table` / `print_keys`: the human table, then one `key=value` per figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PYTHON = sys.executable
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def adapter_command() -> list[str]:
    script = Path(PYTHON).parent / "charge-adapter"
    if script.exists():
        return [str(script), "serve"]
    return [PYTHON, "-c", "import sys; from adapter.cli import main; sys.exit(main())", "serve"]


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of a process: (user, system) CPU seconds; the main thread's id is `pid`."""
    out: dict[int, tuple[float, float]] = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[tid] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
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


@dataclass
class Adapter:
    proc: subprocess.Popen[bytes]
    mllp_port: int
    http_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL to this pid only; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


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
) -> Adapter:
    """`charge-adapter serve` on free ports; SQLite in `workdir/name.db` unless a URL is given."""
    workdir.mkdir(parents=True, exist_ok=True)
    mllp, http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    settings = {
        "ADAPTER_HOST": "127.0.0.1",
        "ADAPTER_MLLP_PORT": str(mllp),
        "ADAPTER_HTTP_PORT": str(http),
        "ADAPTER_DATABASE_URL": database_url or f"sqlite:///{workdir / (name + '.db')}",
        "ADAPTER_LOG_LEVEL": log_level,
        "ADAPTER_LOG_FORMAT": "json",
        "ADAPTER_CLOSE_CHECK_SECONDS": str(close_check_seconds),
        "ADAPTER_REPLICA_ID": f"bench-{name}",
        "ADAPTER_SHUTDOWN_GRACE_SECONDS": "10",
    }
    if schema:
        settings["ADAPTER_DATABASE_SCHEMA"] = schema
    settings.update(extra_env or {})
    env.update(settings)
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            adapter_command(), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    adapter = Adapter(proc, mllp, http, log_path, settings)
    deadline = time.monotonic() + ready_timeout
    url = f"http://127.0.0.1:{http}/readyz"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"adapter {name} exited {proc.returncode}: {adapter.log_tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return adapter
        if time.monotonic() > deadline:
            adapter.stop(5)
            raise RuntimeError(
                f"adapter {name} not ready in {ready_timeout}s: {adapter.log_tail()}"
            )
        time.sleep(0.2)


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


@contextlib.contextmanager
def baseline_server() -> Any:
    """bench/baseline_server.py in its own process; yields its port."""
    proc = subprocess.Popen(
        [PYTHON, str(BENCH / "baseline_server.py"), "--max-seconds=3600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port="):
            raise RuntimeError("baseline server did not start")
        yield proc, int(line.strip().partition("=")[2])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def pause_background_coder(state: Any) -> None:
    """Cancel the workers `start_state` just created, before their first pass runs.

    Call it right after `await start_state(...)`, with no await in between: the
    coder task has been created but not started, so it never leases anything and
    the benchmark's own `coder.run_once()` is the only coding pass.
    """
    for task in state.tasks:
        task.cancel()


# --- PostgreSQL ---------------------------------------------------------------------------


def new_schema(tag: str) -> str:
    """`bench_<tag>_<run>_<n>`; <run> is BENCH_RUN_ID (set by run_all.py) or the pid."""
    run = os.environ.get("BENCH_RUN_ID") or str(os.getpid())
    return f"bench_{tag}_{run}_{int(time.time() * 1000) % 10**9}"


def drop_run_schemas(run: str) -> list[str]:
    """Drop every schema of run `run` still there (a restart of the server can make a
    benchmark's own drop fail); returns their names."""
    if not run.isalnum():
        raise ValueError("a run id is alphanumeric")
    try:
        rows = pg_fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
            f"bench\\_%\\_{run}\\_%",
        )
    except Exception:
        return []
    names = [str(r["nspname"]) for r in rows]
    for name in names:
        drop_schema(name)
    return names


async def _pg(sql: str, *args: object, fetch: bool = False) -> Any:
    import asyncpg

    conn = await asyncio.wait_for(asyncpg.connect(PG_URL), 10)
    try:
        return await (conn.fetch(sql, *args) if fetch else conn.execute(sql, *args))
    finally:
        await conn.close()


def pg_available(attempts: int = 7) -> bool:
    """True when PostgreSQL at BENCH_PG_URL answers; retried for ~30 s (other sessions on
    this machine restart the shared server now and then)."""
    for attempt in range(attempts):
        try:
            asyncio.run(_pg("SELECT 1"))
            return True
        except Exception as exc:
            print(f"PostgreSQL not reachable ({type(exc).__name__}: {exc})", file=sys.stderr)
            time.sleep(1 + attempt)
    return False


def pg_fetch(sql: str, *args: object) -> list[Any]:
    return list(asyncio.run(_pg(sql, *args, fetch=True)))


def drop_schema(schema: str) -> None:
    """Drop a schema this benchmark created (from synchronous code)."""
    with contextlib.suppress(Exception):
        asyncio.run(adrop_schema(schema))


async def adrop_schema(schema: str) -> None:
    """Drop a schema this benchmark created (from a running event loop)."""
    if not schema.startswith("bench_"):
        raise ValueError("refusing to drop a schema the benchmark did not create")
    with contextlib.suppress(Exception):
        await _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- output -------------------------------------------------------------------------------


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


def parse_keys(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and " " not in key and key.replace("_", "").isalnum():
            out[key] = value
    return out


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def print_keys(keys: dict[str, object]) -> None:
    for key, value in keys.items():
        print(f"{key}={value}")


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
