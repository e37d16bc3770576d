"""Ingest CPU per message, the python-hl7 peer, and the physical limits, in one run.

The figures of issue 14, every ratio measured in the same run with the same client
(`loadgen.py`, 8 connections, each waiting for its ACK) and the same messages (within a
round every target gets the same visits: the adapters each have their own store, so
nothing is a duplicate):

- `bare`: `baseline_server.py`, asyncio + MLLP framing + a canned AA: the floor of what
  Python does here per message (the first physical limit);
- `peer`: `peer_server.py`, python-hl7's asyncio MLLP server, `hl7.parse` and
  `create_ack()` per message, no durability;
- `sqlite`: `charge-adapter serve` on a fresh SQLite file (WAL, `synchronous=FULL`: the
  store's defaults), log level warning, coder paused;
- `postgres`: the same on a fresh PostgreSQL schema;
- `sqlite_w2`, `postgres_w2` (with `--workers 2`, the default): the same with
  `ADAPTER_WORKERS=2`, for `ingest_scaling_2_workers`;
- `sqlite_uvloop`, `postgres_uvloop` (when uvloop is installed; `--no-uvloop` skips them):
  the same with `ADAPTER_EVENT_LOOP=uvloop`, for `uvloop_cpu_ratio_*` (uvloop ÷ asyncio,
  CPU per message).

CPU per message is user + system time of the whole process tree (every thread of every
process: the service and its workers), read from /proc before and after the run, divided
by the messages ACKed. Then 500 messages/s paced on the adapters (p99 ACK), and the second
physical limit: one connection committing one ~1 KB row per fsync'd transaction (WAL,
`synchronous=FULL`), back to back, on the same disk.

Quick mode (`--quick`, or `BENCH_QUICK=1` in the environment): one round of 4 s, 5 s
paced, ~1.5 min. Full: 3 rounds of 8 s, 20 s paced.

Usage: python bench/ingest_cpu.py [--quick] [--rounds N] [--duration S] [--workers N]
       [--no-postgres] [--no-uvloop] [--only sqlite,peer,...]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.load import run_loadgen
from harness.pg import PG_URL, drop_schema, new_schema, pg_available
from harness.proc import Adapter, baseline_server, machine_cpu, start_adapter, tree_cpu_seconds
from harness.report import fmt, median, median_ratio, print_keys, print_table

PACED_RATE = 500.0
CONNECTIONS = 8
PAYLOAD_BYTES = 940  # the traffic's mean message size


@dataclass
class Target:
    name: str
    port: int
    pid: int
    adapter: Adapter | None = None


def measure(target: Target, duration: float, visit: int, rate: float = 0.0) -> dict[str, Any]:
    """One load run against one target: the loadgen's result plus the server tree's CPU."""
    busy0, total0 = machine_cpu()
    cpu0, t0 = tree_cpu_seconds(target.pid), time.perf_counter()
    result = run_loadgen(
        target.port, connections=CONNECTIONS, duration=duration, warmup=1.0, rate=rate,
        first_visit=visit,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    cpu = tree_cpu_seconds(target.pid) - cpu0
    busy1, total1 = machine_cpu()
    acked = max(1, result["acked"])
    result["cpu_us_per_msg"] = round(1e6 * cpu / acked, 1)
    result["cpu_pct"] = round(100 * cpu / wall, 1)
    result["machine_busy_pct"] = round(100 * (busy1 - busy0) / max(1e-9, total1 - total0), 1)
    if result["error"] or result["rejected"]:
        print(
            f"warning: {target.name}: error={result['error']!r} rejected={result['rejected']}"
            f" {result['first_rejection']!r}",
            file=sys.stderr,
        )
    return result


def commit_stream(directory: Path, seconds: float) -> dict[str, float]:
    """One SQLite connection committing one row per transaction, back to back (WAL,
    synchronous=FULL): the most durable commits per second this disk gives one writer."""
    path = directory / "commit-stream.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
        payload = os.urandom(PAYLOAD_BYTES)
        samples: list[float] = []
        cpu0 = time.thread_time()
        start = time.perf_counter()
        end = start + seconds
        while (now := time.perf_counter()) < end:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO m (raw) VALUES (?)", (payload,))
            conn.execute("COMMIT")
            samples.append(time.perf_counter() - now)
        wall = time.perf_counter() - start
        cpu = time.thread_time() - cpu0
    finally:
        conn.close()
    samples.sort()
    return {
        "commits_per_s": round(len(samples) / wall, 1),
        "cpu_us_per_commit": round(1e6 * cpu / max(1, len(samples)), 1),
        "p50_ms": round(1000 * samples[len(samples) // 2], 3),
        "p99_ms": round(1000 * samples[int(0.99 * (len(samples) - 1))], 3),
    }


@contextlib.contextmanager
def servers(workdir: Path, names: list[str], schema: str, workers: int) -> Iterator[list[Target]]:
    """Every target started (in the order of `names`) and stopped at the end."""
    with contextlib.ExitStack() as stack:
        targets: list[Target] = []
        for name in names:
            if name in ("bare", "peer"):
                script = "baseline_server.py" if name == "bare" else "peer_server.py"
                proc, port = stack.enter_context(baseline_server(script))
                targets.append(Target(name, port, proc.pid))
                continue
            kwargs: dict[str, Any] = {"log_level": "warning"}
            if name.startswith("postgres"):
                kwargs.update(database_url=PG_URL, schema=f"{schema}_{name}")
            if name.endswith(f"_w{workers}"):
                kwargs["extra_env"] = {"ADAPTER_WORKERS": str(workers)}
            if name.endswith("_uvloop"):
                kwargs["extra_env"] = {"ADAPTER_EVENT_LOOP": "uvloop"}
            adapter = start_adapter(workdir, name, **kwargs)
            stack.callback(adapter.stop)
            targets.append(Target(name, adapter.mllp_port, adapter.pid, adapter))
        yield targets


def target_names(use_pg: bool, workers: int, only: set[str], uvloop: bool) -> list[str]:
    names = ["bare", "peer", "sqlite"] + (["postgres"] if use_pg else [])
    if workers > 1:
        names += [f"sqlite_w{workers}"] + ([f"postgres_w{workers}"] if use_pg else [])
    if uvloop:
        names += ["sqlite_uvloop"] + (["postgres_uvloop"] if use_pg else [])
    return [n for n in names if not only or n in only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (~1.5 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per closed run")
    parser.add_argument("--paced-duration", type=float, default=None)
    parser.add_argument("--workers", type=int, default=2, help="N of the _wN targets; 0: none")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the *_uvloop targets")
    parser.add_argument("--only", default="", help="comma-separated target names")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    ns = parser.parse_args()
    quick = ns.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    rounds = ns.rounds or (1 if quick else 3)
    duration = ns.duration or (4.0 if quick else 8.0)
    paced = ns.paced_duration or (5.0 if quick else 20.0)
    only = {n.strip() for n in ns.only.split(",") if n.strip()}
    use_pg = not ns.no_postgres and pg_available()
    uvloop = not ns.no_uvloop and importlib.util.find_spec("uvloop") is not None
    names = target_names(use_pg, ns.workers, only, uvloop)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-cpu-"))
    schema = new_schema("icpu") if use_pg else ""
    keys: dict[str, object] = {"ingest_cpu_mode": "quick" if quick else "full"}
    keys["ingest_cpu_loadavg_before"] = round(os.getloadavg()[0], 2)
    started = time.monotonic()
    results: dict[str, list[dict[str, Any]]] = {}
    paced_results: dict[str, dict[str, Any]] = {}
    try:
        with servers(workdir, names, schema, ns.workers) as targets:
            visit = 0
            for r in range(rounds):
                visit += 10_000_000  # every target of a round gets the same visits
                order = targets[r % len(targets) :] + targets[: r % len(targets)]
                for target in order:
                    res = measure(target, duration, visit)
                    results.setdefault(target.name, []).append(res)
                    print(
                        f"round {r + 1} {target.name:<12} {res['msg_per_s']:>8.1f} msg/s"
                        f"  {res['cpu_us_per_msg']:>6.0f} µs CPU/msg  p99 {res['p99_ms']} ms"
                        f"  machine busy {res['machine_busy_pct']}%",
                        file=sys.stderr,
                    )
            for target in targets:
                if target.adapter is None or "_w" in target.name or "_uvloop" in target.name:
                    continue
                visit += 10_000_000
                paced_results[target.name] = res = measure(target, paced, visit, PACED_RATE)
                print(
                    f"paced {target.name:<12} {res['msg_per_s']:.1f} msg/s"
                    f"  p50 {res['p50_ms']} p99 {res['p99_ms']} max {res['max_ms']} ms",
                    file=sys.stderr,
                )
        stream = commit_stream(workdir, 2.0 if quick else 5.0)
    finally:
        if schema:
            for name in names:
                if name.startswith("postgres"):
                    drop_schema(f"{schema}_{name}")
        if not ns.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = report(results, paced_results, stream, ns.workers, keys)
    keys["ingest_cpu_rounds"] = rounds
    keys["ingest_cpu_run_seconds"] = duration
    keys["ingest_cpu_loadavg_after"] = round(os.getloadavg()[0], 2)
    keys["ingest_cpu_seconds"] = round(time.monotonic() - started)
    print_table(
        f"ingest CPU, peer and limits ({rounds} round(s) x {duration:.0f} s, {CONNECTIONS}"
        f" connections; paced {PACED_RATE:.0f}/s for {paced:.0f} s;"
        f" PostgreSQL {'yes' if use_pg else 'skipped'})",
        rows,
    )
    print_keys(keys)


def report(
    results: dict[str, list[dict[str, Any]]],
    paced: dict[str, dict[str, Any]],
    stream: dict[str, float],
    workers: int,
    keys: dict[str, object],
) -> list[tuple[str, str]]:
    """Fill `keys` (the key=value interface) and return the human table's rows."""

    def med(name: str, field: str) -> float | None:
        values = [r[field] for r in results.get(name, []) if r[field] is not None]
        return round(median(values), 3) if values else None

    def rates(name: str) -> list[float]:
        return [r["msg_per_s"] for r in results.get(name, [])]

    rows: list[tuple[str, str]] = []
    for name in results:
        rate, cpu, p99 = med(name, "msg_per_s"), med(name, "cpu_us_per_msg"), med(name, "p99_ms")
        busy = med(name, "machine_busy_pct")
        keys[f"ingest_cpu_us_per_msg_{name}"] = cpu
        keys[f"ingest_cpu_msg_per_s_{name}"] = rate
        keys[f"ingest_cpu_ack_p99_ms_{name}"] = p99
        keys[f"ingest_cpu_machine_busy_pct_{name}"] = busy
        errors = sum(r["rejected"] + (1 if r["error"] else 0) for r in results[name])
        keys[f"ingest_cpu_errors_{name}"] = errors
        rows.append(
            (
                name,
                f"{fmt(rate)} msg/s  {fmt(cpu, 0)} µs CPU/msg  p99 {fmt(p99, 2)} ms"
                f"  (machine busy {fmt(busy, 0)}%, loadgen {fmt(med(name, 'loadgen_cpu_pct'), 0)}%"
                f" of a core; errors {errors})",
            )
        )
    peer_cpu = med("peer", "cpu_us_per_msg")
    for store in ("sqlite", "postgres"):
        if store not in results:
            continue
        target = " (target >= 1.5)" if store == "sqlite" else " (target >= 1.2)"
        if "peer" in results:
            value = median_ratio(rates(store), rates("peer"))
            keys[f"ingest_vs_peer_{store}"] = value
            cpu = med(store, "cpu_us_per_msg")
            cpu_ratio = round(peer_cpu / cpu, 3) if peer_cpu and cpu else None
            keys[f"ingest_vs_peer_cpu_{store}"] = cpu_ratio
            rows.append(
                (
                    f"ingest_vs_peer_{store}",
                    f"{fmt(value, 3)}{target}; by CPU per message {fmt(cpu_ratio, 3)}",
                )
            )
        if "bare" in results:
            keys[f"ingest_vs_bare_{store}"] = median_ratio(rates(store), rates("bare"))
        many = f"{store}_w{workers}"
        if many in results:
            scaling = median_ratio(rates(many), rates(store))
            keys[f"ingest_scaling_{workers}_workers_{store}"] = scaling
            if store == "postgres" or "postgres" not in results:
                keys[f"ingest_scaling_{workers}_workers"] = scaling
            goal = " (target >= 1.6 where two cores are free)" if store == "postgres" else ""
            rows.append((f"ingest_scaling_{workers}_workers_{store}", f"{fmt(scaling, 3)}{goal}"))
        fast, plain = med(f"{store}_uvloop", "cpu_us_per_msg"), med(store, "cpu_us_per_msg")
        if fast is not None and plain:
            keys[f"uvloop_cpu_ratio_{store}"] = round(fast / plain, 3)
            if "peer" in results:
                keys[f"uvloop_vs_peer_{store}"] = median_ratio(
                    rates(f"{store}_uvloop"), rates("peer")
                )
            rows.append((f"uvloop_cpu_ratio_{store}", f"{fast / plain:.3f} (uvloop ÷ asyncio)"))
    if "bare" in results:
        keys["limit_bare_ack_msg_per_s"] = med("bare", "msg_per_s")
        keys["limit_bare_cpu_us_per_msg"] = med("bare", "cpu_us_per_msg")
    keys["limit_sqlite_commits_per_s"] = stream["commits_per_s"]
    keys["limit_sqlite_commit_cpu_us"] = stream["cpu_us_per_commit"]
    keys["limit_sqlite_commit_p50_ms"] = stream["p50_ms"]
    keys["limit_sqlite_commit_p99_ms"] = stream["p99_ms"]
    rows.append(
        (
            "limit: one fsync'd SQLite commit stream",
            f"{fmt(stream['commits_per_s'])} commits/s  p50 {stream['p50_ms']} ms"
            f"  p99 {stream['p99_ms']} ms  {fmt(stream['cpu_us_per_commit'], 0)} µs CPU each",
        )
    )
    for name, res in paced.items():
        keys[f"ingest_ack_p99_ms_at_500_{name}"] = res["p99_ms"]
        keys[f"ingest_ack_max_ms_at_500_{name}"] = res["max_ms"]
        keys[f"ingest_paced_msg_per_s_{name}"] = res["msg_per_s"]
        keys[f"ingest_paced_cpu_us_per_msg_{name}"] = res["cpu_us_per_msg"]
        goal = " (target <= 20)" if name == "sqlite" else ""
        rows.append(
            (
                f"ingest_ack_p99_ms_at_500_{name}{goal}",
                f"p99 {fmt(res['p99_ms'], 2)} ms  max {fmt(res['max_ms'], 1)}"
                f"  achieved {fmt(res['msg_per_s'])} msg/s"
                f"  {fmt(res['cpu_us_per_msg'], 0)} µs CPU/msg",
            )
        )
    return rows


if __name__ == "__main__":
    main()
