"""Ingest over MLLP: messages/s and ACK latency of `charge-adapter serve` beside a bare server.

Targets, all started once and loaded in turn by `bench/loadgen.py` (a separate
process; every connection waits for each ACK before the next message):

- `baseline`: `bench/baseline_server.py`, a bare asyncio MLLP server returning
  a canned AA (what Python does here with no parsing, no store, no logging);
- `sqlite`: the adapter on a fresh SQLite file, `ADAPTER_LOG_LEVEL=warning`;
- `sqlite_info`: the same with `info` (one JSON log line per message, to a file),
  8 connections only: the logging cost;
- `postgres`: the adapter on PostgreSQL, in a fresh schema dropped afterwards.

The coder is paused in every adapter (`ADAPTER_CLOSE_CHECK_SECONDS=3600`): these
figures are ingest alone (parse, commit, ACK); `drain.py` measures coding.

The machine is shared and noisy, so closed-loop runs are short and repeated in
rounds, each round loading every target in turn (rotating the order); ratios
are taken within a round and the median over rounds is reported.

Then, open loop: 500 messages/s evenly spaced over 8 connections for
`--paced-duration` seconds against each adapter (and the baseline, for the
floor the machine itself imposes): p99 ACK latency from the time each message
was due.

Usage: python bench/ingest.py [--quick] [--rounds N] [--duration S] [--paced-duration S]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.load import run_loadgen
from harness.pg import PG_URL, drop_schema, new_schema, pg_available
from harness.proc import (
    Adapter,
    baseline_server,
    cpu_seconds,
    start_adapter,
    thread_cpu,
    thread_cpu_split,
)
from harness.report import fmt, median, median_ratio, print_keys, print_table

PACED_RATE = 500.0


@dataclass
class Target:
    name: str
    port: int
    pid: int
    adapter: Adapter | None = None


def measure(
    target: Target, connections: int, duration: float, visit: int, rate: float = 0.0
) -> dict[str, Any]:
    log_before = _size(target.adapter.log_path) if target.adapter else 0
    threads0 = thread_cpu(target.pid)
    cpu0, t0 = cpu_seconds(target.pid), time.perf_counter()
    result = run_loadgen(
        target.port,
        connections=connections,
        duration=duration,
        warmup=1.0,
        rate=rate,
        first_visit=visit,
    )
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(target.pid) - cpu0
    result["server_cpu_pct"] = round(100 * cpu / wall, 1)
    # CPU per message is far less sensitive to other sessions than messages/s
    result["server_cpu_us_per_msg"] = round(1e6 * cpu / max(1, result["acked"]), 1)
    split = thread_cpu_split(target.pid, threads0, thread_cpu(target.pid))
    for part, seconds in split.items():
        result[f"cpu_us_per_msg_{part}"] = round(1e6 * seconds / max(1, result["acked"]), 1)
    if target.adapter is not None:
        log_bytes = _size(target.adapter.log_path) - log_before
        result["log_bytes_per_msg"] = round(log_bytes / max(1, result["acked"]), 1)
    if result["error"] or result["rejected"]:
        print(
            f"warning: {target.name} c={connections}: error={result['error']!r} "
            f"rejected={result['rejected']} {result['first_rejection']!r}",
            file=sys.stderr,
        )
    return result


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (~1.5 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per closed run")
    parser.add_argument("--paced-duration", type=float, default=None)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    ns = parser.parse_args()
    rounds = ns.rounds or (1 if ns.quick else 3)
    duration = ns.duration or (4.0 if ns.quick else 8.0)
    paced = ns.paced_duration or (10.0 if ns.quick else 30.0)
    use_pg = not ns.no_postgres and pg_available()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    schema = new_schema("ingest") if use_pg else ""
    adapters: list[Adapter] = []
    keys: dict[str, object] = {}
    rows: list[tuple[str, str]] = []
    started = time.monotonic()
    try:
        with baseline_server() as (base_proc, base_port):
            targets = [Target("baseline", base_port, base_proc.pid)]
            for name, kwargs in _adapter_specs(schema, use_pg):
                adapter = start_adapter(workdir, name, **kwargs)
                adapters.append(adapter)
                targets.append(Target(name, adapter.mllp_port, adapter.pid, adapter))
            results: dict[tuple[str, int], list[dict[str, Any]]] = {}
            visit = 0
            for r in range(rounds):
                order = targets[r % len(targets) :] + targets[: r % len(targets)]
                for connections in (1, 8):
                    for target in order:
                        if target.name == "sqlite_info" and connections == 1:
                            continue
                        visit += 10_000_000
                        res = measure(target, connections, duration, visit)
                        results.setdefault((target.name, connections), []).append(res)
                        print(
                            f"round {r + 1} {target.name:<11} c={connections}: "
                            f"{res['msg_per_s']:>8.1f} msg/s  p50 {res['p50_ms']} ms"
                            f"  p99 {res['p99_ms']} ms  server cpu {res['server_cpu_pct']}%",
                            file=sys.stderr,
                        )
            paced_results: dict[str, dict[str, Any]] = {}
            for target in targets:
                if target.name == "sqlite_info":
                    continue
                visit += 10_000_000
                seconds = min(paced, 10.0) if target.name == "baseline" else paced
                paced_results[target.name] = measure(target, 8, seconds, visit, PACED_RATE)
                res = paced_results[target.name]
                print(
                    f"paced {target.name:<11}: {res['msg_per_s']:.1f} msg/s"
                    f"  p50 {res['p50_ms']} p99 {res['p99_ms']} max {res['max_ms']} ms",
                    file=sys.stderr,
                )
        for adapter in adapters:
            adapter.stop()
        _report(results, paced_results, rounds, duration, paced, use_pg, keys, rows)
    finally:
        for adapter in adapters:
            adapter.stop()
        if schema:
            drop_schema(schema)
        if not ns.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    keys["ingest_seconds"] = round(time.monotonic() - started)
    print_table(
        f"ingest over MLLP ({rounds} round(s) x {duration:.0f} s; paced {paced:.0f} s;"
        f" PostgreSQL {'yes' if use_pg else 'skipped'})",
        rows,
    )
    print_keys(keys)


def _adapter_specs(schema: str, use_pg: bool) -> list[tuple[str, dict[str, Any]]]:
    specs: list[tuple[str, dict[str, Any]]] = [
        ("sqlite", {"log_level": "warning"}),
        ("sqlite_info", {"log_level": "info"}),
    ]
    if use_pg:
        specs.append(("postgres", {"database_url": PG_URL, "schema": schema}))
    return specs


def _report(
    results: dict[tuple[str, int], list[dict[str, Any]]],
    paced: dict[str, dict[str, Any]],
    rounds: int,
    duration: float,
    paced_seconds: float,
    use_pg: bool,
    keys: dict[str, object],
    rows: list[tuple[str, str]],
) -> None:
    def med(name: str, connections: int, field: str) -> float | None:
        values = [r[field] for r in results.get((name, connections), []) if r[field] is not None]
        return round(median(values), 3) if values else None

    def ratio(name: str) -> float | None:
        base = [b["msg_per_s"] for b in results.get(("baseline", 8), [])]
        return median_ratio([m["msg_per_s"] for m in results.get((name, 8), [])], base)

    names = ["baseline", "sqlite", "sqlite_info"] + (["postgres"] if use_pg else [])
    for name in names:
        for connections in (1, 8):
            if (name, connections) not in results:
                continue
            rate = med(name, connections, "msg_per_s")
            p50 = med(name, connections, "p50_ms")
            p99 = med(name, connections, "p99_ms")
            cpu = med(name, connections, "server_cpu_pct")
            cpu_us = med(name, connections, "server_cpu_us_per_msg")
            rows.append(
                (
                    f"{name}, {connections} conn",
                    f"{fmt(rate)} msg/s   p50 {fmt(p50, 2)} ms   p99 {fmt(p99, 2)} ms"
                    f"   server CPU {fmt(cpu, 0)}%, {fmt(cpu_us, 0)} µs/msg",
                )
            )
            keys[f"server_cpu_us_per_msg_{name}_{connections}"] = cpu_us
            parts = {
                part: med(name, connections, f"cpu_us_per_msg_{part}")
                for part in ("main_user", "main_sys", "other_user", "other_sys")
            }
            for part, value in parts.items():
                keys[f"cpu_us_per_msg_{part}_{name}_{connections}"] = value
            rows.append(
                (
                    "    CPU µs/msg by thread",
                    f"main {fmt(parts['main_user'], 0)} user + {fmt(parts['main_sys'], 0)} sys;"
                    f" other threads {fmt(parts['other_user'], 0)} user"
                    f" + {fmt(parts['other_sys'], 0)} sys",
                )
            )
            keys[f"ingest_msg_per_s_{name}_{connections}"] = rate
            keys[f"ack_p50_ms_{name}_{connections}"] = p50
            keys[f"ack_p99_ms_{name}_{connections}"] = p99
            keys[f"server_cpu_pct_{name}_{connections}"] = cpu
    for name in names:
        errors = sum(r["rejected"] + (1 if r["error"] else 0) for rs in
                     [v for (n, _), v in results.items() if n == name] for r in rs)  # fmt: skip
        errors += (
            (paced[name]["rejected"] + (1 if paced[name]["error"] else 0)) if name in paced else 0
        )
        keys[f"ingest_errors_{name}"] = errors
    for name in names[1:]:
        value = ratio(name)
        keys[f"ingest_ratio_{name}"] = value
        target = " (target >= 0.5)" if name in ("sqlite", "postgres") else ""
        rows.append((f"ingest_ratio_{name} (8 conn, median of rounds)", f"{fmt(value, 3)}{target}"))
    info, warn = med("sqlite_info", 8, "msg_per_s"), med("sqlite", 8, "msg_per_s")
    info_cpu = med("sqlite_info", 8, "server_cpu_us_per_msg")
    warn_cpu = med("sqlite", 8, "server_cpu_us_per_msg")
    if info and warn and info_cpu and warn_cpu:
        cost = round(100 * (1 - info / warn), 1)
        cpu_cost = round(100 * (info_cpu / warn_cpu - 1), 1)
        keys["logging_info_cost_pct"] = cost
        keys["logging_info_cpu_cost_pct"] = cpu_cost
        keys["logging_info_cpu_us_per_msg"] = round(info_cpu - warn_cpu, 1)
        log_bytes = med("sqlite_info", 8, "log_bytes_per_msg")
        keys["log_bytes_per_msg_info"] = log_bytes
        rows.append(
            (
                "logging at info vs warning (SQLite, 8 conn)",
                f"{cost}% fewer msg/s; CPU +{fmt(info_cpu - warn_cpu, 0)} µs/msg"
                f" ({cpu_cost}%); {fmt(log_bytes, 0)} log bytes per message",
            )
        )
    for name, res in paced.items():
        suffix = "" if name == "sqlite" else f"_{name}"
        key = f"ack_p99_ms_at_500{suffix}"
        keys[key] = res["p99_ms"]
        keys[f"ack_p50_ms_at_500{suffix}"] = res["p50_ms"]
        keys[f"ack_max_ms_at_500{suffix}"] = res["max_ms"]
        keys[f"paced_achieved_msg_per_s{suffix or '_sqlite'}"] = res["msg_per_s"]
        target = " (target <= 20)" if name == "sqlite" else ""
        rows.append(
            (
                f"{key}{target}",
                f"p99 {fmt(res['p99_ms'], 2)} ms  p50 {fmt(res['p50_ms'], 2)}"
                f"  max {fmt(res['max_ms'], 1)}  achieved {fmt(res['msg_per_s'])} msg/s"
                f"  late sends {res['late']}",
            )
        )
        timeline = " ".join(str(count) for _, count, _ in res["timeline"])
        rows.append((f"  {name}: ACKs per second", timeline))
        worst = " ".join(f"{ms:.0f}" for _, _, ms in res["timeline"])
        rows.append((f"  {name}: worst latency per second (ms)", worst))
    keys["ingest_rounds"] = rounds
    keys["ingest_run_seconds"] = duration
    keys["paced_seconds"] = paced_seconds


if __name__ == "__main__":
    main()
