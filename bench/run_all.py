"""Every service benchmark in one run: a table of the headline figures, then `key=value` lines.

Parts, each a script of bench/ run in its own process (see bench/README.md):

  machine   cores, memory, load; fsync and CPU probes before and after
  stages    each step of the ingest path timed alone, in-process (stages.py)
  ingest    MLLP load: baseline vs adapter on SQLite and PostgreSQL (ingest.py)
  ingest_cpu  CPU per message, the python-hl7 peer, the physical limits, 2 workers
            (ingest_cpu.py; issue 14's figures, ~1.5 min quick, ~5 min full)
  drain     coder draining a closed backlog, SQLite then PostgreSQL (drain.py)
  replicas  two adapter processes on one PostgreSQL vs one (replicas.py)
  memory    adapter RSS as messages pile up (memory.py)
  replay    `charge-adapter replay` peak RSS, 100,000 vs 1,000,000 stored messages
            (replay_memory.py; ~4 minutes)

Full run: about 23 minutes, ~14 of them `memory` (1,000,000 messages, capped by
`--memory-max-seconds`, default 1500). `--quick`: about 2-3 minutes, the same
figures on small counts (a smoke run: indicative only).
A part that fails is reported (`<part>_exit_status`) and the others still run;
the PostgreSQL parts are retried once (the shared server is sometimes restarted
by other sessions).

Usage: python bench/run_all.py [--quick] [--only ingest,drain] [--memory-messages N]
       [--memory-max-seconds S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from harness.pg import drop_run_schemas
from harness.proc import run_script
from harness.report import print_keys, verdict
from machine import facts, probes

PARTS = ("stages", "ingest", "ingest_cpu", "drain", "dft", "replicas", "memory", "replay")

# (key, target text, check) for the headline table
HEADLINES: list[tuple[str, str, str]] = [
    ("ingest_ratio_sqlite", ">= 0.5", "ge:0.5"),
    ("dft_per_s", ">= 500 (SQLite)", "ge:500"),
    ("ingest_ratio_postgres", ">= 0.5", "ge:0.5"),
    ("ingest_cpu_us_per_msg_sqlite", "<= 300", "le:300"),
    ("ingest_cpu_us_per_msg_postgres", "(adapter only)", ""),
    ("ingest_vs_peer_sqlite", ">= 1.5", "ge:1.5"),
    ("ingest_vs_peer_postgres", ">= 1.2", "ge:1.2"),
    ("ingest_scaling_2_workers", ">= 1.6 (PostgreSQL)", "ge:1.6"),
    ("limit_bare_ack_msg_per_s", "(limit)", ""),
    ("limit_sqlite_commits_per_s", "(limit)", ""),
    ("ingest_ack_p99_ms_at_500_sqlite", "<= 20", "le:20"),
    ("ingest_msg_per_s_baseline_8", "(baseline)", ""),
    ("ingest_msg_per_s_sqlite_8", "", ""),
    ("ingest_msg_per_s_postgres_8", "", ""),
    ("ack_p99_ms_sqlite_8", "", ""),
    ("ack_p99_ms_postgres_8", "", ""),
    ("ack_p99_ms_at_500", "<= 20", "le:20"),
    ("ack_p99_ms_at_500_postgres", "(extra)", ""),
    ("logging_info_cost_pct", "(msg/s lost)", ""),
    ("logging_info_cpu_cost_pct", "(CPU/msg added)", ""),
    ("process_admin_per_s", ">= 1000 (SQLite)", "ge:1000"),
    ("process_admin_per_s_postgres", ">= 1000", "ge:1000"),
    ("replica_scaling", ">= 1.8 (2 cores)", "ge:1.8"),
    ("replica_no_double_coding", "yes", "eq:yes"),
    ("rss_growth_pct", "<= 20", "le:20"),
    ("rss_growth_pct_projected_1m", "<= 20", "le:20"),
    ("replay_rss_growth_pct", "<= 20", "le:20"),
]


def part_runs(
    quick: bool, ns: argparse.Namespace
) -> list[tuple[str, str, str, list[str], float, bool]]:
    """(label, part, script, args, timeout, retry once on failure)."""
    q = ["--quick"] if quick else []
    memory_args = [*q]
    if ns.memory_messages:
        memory_args.append(f"--messages={ns.memory_messages}")
    if ns.memory_checkpoint:
        memory_args.append(f"--checkpoint={ns.memory_checkpoint}")
    memory_seconds = ns.memory_max_seconds or (60.0 if quick else 1500.0)
    memory_args.append(f"--max-seconds={memory_seconds}")
    return [
        ("stages", "stages", "stages.py", q, 900, False),
        ("ingest", "ingest", "ingest.py", q, 1800, False),
        ("ingest_cpu", "ingest_cpu", "ingest_cpu.py", q, 1200, True),
        ("drain_sqlite", "drain", "drain.py", [*q, "--store=sqlite"], 1200, False),
        ("drain_postgres", "drain", "drain.py", [*q, "--store=postgres"], 1200, True),
        ("dft", "dft", "dft_send.py", q, 900, True),
        ("replicas", "replicas", "replicas.py", q, 1800, True),
        ("memory", "memory", "memory.py", memory_args, memory_seconds + 600, False),
        ("replay", "replay", "replay_memory.py", q, 1200, False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~2-3 minute smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {PARTS}")
    parser.add_argument("--memory-messages", type=int, default=None)
    parser.add_argument("--memory-checkpoint", type=int, default=None)
    parser.add_argument("--memory-max-seconds", type=float, default=None)
    ns = parser.parse_args()
    only = {p.strip() for p in ns.only.split(",") if p.strip()}
    unknown = only - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    started = time.monotonic()
    run_id = f"r{os.getpid()}"
    os.environ["BENCH_RUN_ID"] = run_id  # inherited by every part: names its schemas
    keys: dict[str, str] = {
        "bench_mode": "quick" if ns.quick else "full",
        "bench_date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    keys.update({k: str(v) for k, v in facts().items()})
    keys.update({k: str(v) for k, v in probes("before").items()})
    details: list[str] = []
    for label, part, script, args, timeout, retry in part_runs(ns.quick, ns):
        if only and part not in only:
            continue
        print(f"--- {label}: {script} {' '.join(args)}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        for attempt in (1, 2):
            try:
                got, text = run_script(script, args, timeout)
            except subprocess.TimeoutExpired:
                got, text = {}, ""
                got[f"{label}_exit_status"] = "timeout"
            statuses = [v for k, v in got.items() if k.endswith("_exit_status")]
            if not (statuses and retry and attempt == 1):
                break
            print(f"--- {label} failed; retrying once", file=sys.stderr, flush=True)
            time.sleep(10)
        if statuses:
            got[f"{label}_exit_status"] = statuses[0]
        keys.update(got)
        keys[f"{label}_seconds"] = str(round(time.monotonic() - t0))
        details.append("\n".join(ln for ln in text.splitlines() if ln and ln not in _kv(got)))
    left = drop_run_schemas(run_id)
    if left:
        print(f"dropped leftover schemas: {left}", file=sys.stderr)
    keys.update({k: str(v) for k, v in probes("after").items()})
    keys["bench_seconds"] = str(round(time.monotonic() - started))
    _print_summary(keys, details, ns.quick)


def _kv(got: dict[str, str]) -> set[str]:
    return {f"{k}={v}" for k, v in got.items()}


def _print_summary(keys: dict[str, str], details: list[str], quick: bool) -> None:
    for block in details:
        print(block)
    print(
        f"\n== summary ({keys['bench_mode']} run, {keys['bench_date']},"
        f" {keys['machine_cores']} cores, {keys['machine_mem_gib']} GiB,"
        f" load {keys['machine_loadavg_1m_before']} -> {keys['machine_loadavg_1m_after']},"
        f" fsync {keys['probe_fsync_ms_before']} -> {keys['probe_fsync_ms_after']} ms)"
    )
    rows = [
        (k, keys.get(k, "n/a"), target, verdict(keys.get(k), check))
        for k, target, check in HEADLINES
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>{vwidth}}  {'target':<17} verdict")
    for key, value, target, mark in rows:
        print(f"{key:<{width}}  {value:>{vwidth}}  {target:<17} {mark}")
    if "memory_messages" in keys:
        print(
            f"(memory: rss_growth_pct measured {keys.get('memory_checkpoint_messages')} ->"
            f" {keys.get('memory_messages')} messages)"
        )
    if quick:
        print("(quick run: small counts, one round; indicative only)")
    failures = sorted(k for k in keys if k.endswith("_exit_status"))
    if failures:
        print("failed parts: " + ", ".join(f"{k}={keys[k]}" for k in failures))
    print()
    print_keys(dict(keys))


if __name__ == "__main__":
    main()
