"""Two processes writing one SQLite file: SQLite's busy handler against our `flock`.

What `ADAPTER_WORKERS=2` on SQLite asks of the disk: two writers, each committing small
transactions (WAL, `synchronous=FULL`, one ~1 KB row each) at a steady rate, open loop
(latency counted from when each commit was due, so waiting for the other writer counts).

- `one`: one process at the whole rate (the reference);
- `busy`: two processes, each at half the rate, serialized by SQLite alone (`BEGIN
  IMMEDIATE` + `busy_timeout`: its busy handler sleeps 1, 2, 5 ... 100 ms between tries);
- `flock`: the same two, each write transaction inside `adapter.store.writer_lock.WriterLock`
  (what the store does under `ADAPTER_WORKERS`).

Figures: `sqlite_writers_p99_ms_<mode>`, `sqlite_writers_max_ms_<mode>`,
`sqlite_writers_commits_per_s_<mode>`.

Each mode runs once per round (`--rounds`, 3), the order rotating; the medians are printed.

Usage: python bench/sqlite_writers.py [--rate 200] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness  # noqa: F401  (this checkout first on sys.path)
from harness.report import median, print_keys, print_table

from adapter.store.writer_lock import WriterLock

PAYLOAD_BYTES = 940


def child(db: Path, mode: str, rate: float, seconds: float, start_at: float) -> dict[str, object]:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA synchronous = FULL")
    lock = WriterLock(db) if mode == "flock" else None
    payload = os.urandom(PAYLOAD_BYTES)
    latencies: list[float] = []
    k = 0
    while True:
        due = start_at + k / rate
        if due >= start_at + seconds:
            break
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        start = max(due, time.time()) if delay > 0 else due
        if lock is not None:
            lock.acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO m (raw) VALUES (?)", (payload,))
            conn.execute("COMMIT")
        finally:
            if lock is not None:
                lock.release()
        latencies.append(time.time() - start)
        k += 1
    conn.close()
    return {"latencies": latencies}


def run_mode(directory: Path, mode: str, rate: float, seconds: float) -> dict[str, float]:
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / f"{mode}.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
    conn.close()
    writers = 1 if mode == "one" else 2
    start_at = time.time() + 3.0  # both children started and connected by then
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                f"--mode={mode}",
                f"--db={db}",
                f"--rate={rate / writers}",
                f"--seconds={seconds}",
                f"--start-at={start_at}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    latencies: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        latencies += json.loads(out)["latencies"]
    latencies.sort()
    n = len(latencies)
    return {
        "p50_ms": round(1000 * latencies[n // 2], 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (n - 1))], 2),
        "max_ms": round(1000 * latencies[-1], 2),
        "commits_per_s": round(n / seconds, 1),
    }


def measure(
    directory: Path, rate: float, seconds: float, rounds: int = 3
) -> dict[str, dict[str, float]]:
    """Every mode once per round, the order rotating (the disk's neighbours change by the
    minute); per mode the median of the rounds' figures."""
    modes = ["one", "busy", "flock"]
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for r in range(rounds):
        for mode in modes[r % 3 :] + modes[: r % 3]:
            runs[mode].append(run_mode(directory / f"r{r}", mode, rate, seconds))
    return {
        mode: {name: median([res[name] for res in results]) for name in results[0]}
        for mode, results in runs.items()
    }


def report(
    results: dict[str, dict[str, float]], rate: float
) -> tuple[list[tuple[str, str]], dict[str, object]]:
    rows: list[tuple[str, str]] = []
    keys: dict[str, object] = {"sqlite_writers_rate": rate}
    for mode, res in results.items():
        for name in ("p99_ms", "max_ms", "commits_per_s"):
            keys[f"sqlite_writers_{name}_{mode}"] = res[name]
        rows.append(
            (
                mode,
                f"p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  max {res['max_ms']} ms"
                f"  {res['commits_per_s']} commits/s",
            )
        )
    return rows, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="commits/s in all")
    parser.add_argument("--seconds", type=float, default=4.0, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="flock", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        print(json.dumps(child(Path(ns.db), ns.mode, ns.rate, ns.seconds, ns.start_at)))
        return
    directory = Path(tempfile.mkdtemp(prefix="bench-sqlite-writers-"))
    try:
        results = measure(directory, ns.rate, ns.seconds, ns.rounds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    rows, keys = report(results, ns.rate)
    title = f"two SQLite writers, {ns.rate:.0f} commits/s in all, {ns.rounds} x {ns.seconds:.0f} s"
    print_table(f"{title} (medians of rounds)", rows)
    print_keys(keys)


if __name__ == "__main__":
    main()
