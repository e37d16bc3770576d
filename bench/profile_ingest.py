"""Profile `charge-adapter serve` under MLLP load with py-spy: where each message's time goes.

Starts one adapter (SQLite or PostgreSQL, a log level), drives it with
`bench/loadgen.py` (N connections, closed loop) and records it with
`py-spy record --threads` for the same seconds, once on-CPU only and once with
`--idle` (waits included). Prints the py-spy summaries (`pyspy_summary.py`)
and the CPU milliseconds per message measured from /proc.

py-spy is not a dependency of the project: `pip install py-spy` (into the venv
or anywhere; pass `--py-spy PATH` when it is not on PATH).

Usage: python bench/profile_ingest.py [--store sqlite|postgres] [--log-level warning]
       [--connections 8] [--seconds 8] [--py-spy PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.load import run_loadgen
from harness.pg import PG_URL, drop_schema, new_schema
from harness.proc import BENCH, PYTHON, start_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop instead of closed")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profiles here")
    parser.add_argument("--top", type=int, default=30)
    ns = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    out = ns.out or workdir
    out.mkdir(parents=True, exist_ok=True)
    schema = new_schema("profile") if ns.store == "postgres" else ""
    url = PG_URL if schema else None
    adapter = start_adapter(
        workdir, "profiled", log_level=ns.log_level, database_url=url, schema=schema or None
    )
    try:
        for n, idle in enumerate((False, True)):
            name = f"{ns.store}-{ns.log_level}-c{ns.connections}-{'idle' if idle else 'cpu'}.txt"
            path = out / name
            spy_args = [ns.py_spy, "record", "-p", str(adapter.pid), "--threads", "-r", "250"]
            spy_args += ["-d", str(int(ns.seconds)), "-f", "raw", "-o", str(path)]
            if idle:
                spy_args.append("--idle")
            spy = subprocess.Popen(spy_args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            cpu0, t0 = adapter.cpu_seconds(), time.perf_counter()
            result = run_loadgen(
                adapter.mllp_port,
                connections=ns.connections,
                duration=ns.seconds,
                warmup=0.5,
                rate=ns.rate,
                first_visit=(n + 1) * 10_000_000,
            )
            wall = time.perf_counter() - t0
            cpu = adapter.cpu_seconds() - cpu0
            try:
                _, err = spy.communicate(timeout=ns.seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            print(
                f"\n##### {name}: {result['msg_per_s']} msg/s, p50 {result['p50_ms']} ms,"
                f" p99 {result['p99_ms']} ms, adapter CPU {100 * cpu / wall:.0f}%,"
                f" {1000 * cpu / max(1, result['acked']):.3f} CPU ms/message"
            )
            if not path.exists():
                print(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
                continue
            summary = [PYTHON, str(BENCH / "pyspy_summary.py"), str(path)]
            subprocess.run([*summary, f"--top={ns.top}"], check=False)
    finally:
        adapter.stop()
        if schema:
            drop_schema(schema)
        shutil.rmtree(
            workdir, ignore_errors=True
        )  # the adapter's files (and profiles unless --out)


if __name__ == "__main__":
    main()
