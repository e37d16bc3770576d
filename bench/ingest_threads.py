"""CPU per message of `charge-adapter serve`, split by thread and into user and system time.

Why beside `ingest_cpu.py`: that one gives the whole process tree; this one says which
thread pays (the event loop, or the SQLite store thread) and whether in Python or in the
kernel, which is what found the mapping made and unmapped per message (system time of both
threads) and the timer per message (user time of the loop). Read /proc/<pid>/task/*/stat
before and after each closed-loop run (`loadgen.py`, 8 connections, each waiting for its
ACK), divided by the messages ACKed.

Prints, per round and then as key=value (median of the rounds):
`ingest_threads_<store>_loop_user_us`, `..._loop_sys_us`, `..._store_user_us`,
`..._store_sys_us` (SQLite's store thread; PostgreSQL has none: asyncpg runs on the loop)
and `..._msg_per_s`.

Usage: python bench/ingest_threads.py [--store sqlite|postgres] [--rounds 3] [--seconds 5]
       [--event-loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness.load import run_loadgen
from harness.pg import PG_URL, drop_schema, new_schema
from harness.proc import start_adapter, thread_cpu, thread_cpu_split

CONNECTIONS = 8
# thread_cpu_split's names: the main thread runs the event loop; the one other busy thread
# is SQLite's store thread
FIGURES = {
    "main_user": "loop_user_us",
    "main_sys": "loop_sys_us",
    "other_user": "store_user_us",
    "other_sys": "store_sys_us",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio")
    ns = parser.parse_args()
    schema = new_schema("threads") if ns.store == "postgres" else None
    adapter = start_adapter(
        Path(tempfile.mkdtemp(prefix="bench-threads-")),
        "threads",
        database_url=PG_URL if schema else None,
        schema=schema,
        # unset for asyncio, so the script also measures a tree from before the setting
        extra_env={} if ns.event_loop == "asyncio" else {"ADAPTER_EVENT_LOOP": ns.event_loop},
    )
    figures: dict[str, list[float]] = {}
    try:
        for n in range(ns.rounds):
            before = thread_cpu(adapter.pid)
            result = run_loadgen(
                adapter.mllp_port,
                connections=CONNECTIONS,
                duration=ns.seconds,
                warmup=0.5,
                first_visit=(n + 1) * 10_000_000,
            )
            after = thread_cpu(adapter.pid)
            acked = max(1, int(result["acked"]))
            seconds = thread_cpu_split(adapter.pid, before, after)
            split = {FIGURES[key]: 1e6 * value / acked for key, value in seconds.items()}
            split["msg_per_s"] = float(result["msg_per_s"])
            for key, value in split.items():
                figures.setdefault(key, []).append(value)
            print(f"round {n + 1}: " + "  ".join(f"{k} {v:.1f}" for k, v in split.items()))
    finally:
        adapter.stop()
        if schema:
            drop_schema(schema)
    tag = ns.store if ns.event_loop == "asyncio" else f"{ns.store}_{ns.event_loop}"
    for key, values in figures.items():
        print(f"ingest_threads_{tag}_{key}={statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
