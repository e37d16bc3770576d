"""Memory: RSS of `charge-adapter serve` as messages pile up (target: <= 20% growth 100k -> 1M).

One adapter on a fresh SQLite file (`ADAPTER_LOG_LEVEL=warning`, the coder paused
by `ADAPTER_CLOSE_CHECK_SECONDS=3600`, so this is the ingest path; `--coder`
runs the coder every 5 s as in production), loaded by `bench/loadgen.py` with 8
connections at full speed, each connection waiting for each ACK, every visit a
new patient. VmRSS is read from /proc/<pid>/status every `--sample-every`
ACKs (the load generator reports progress on stdout).

Figures: RSS at `--checkpoint` messages (default 100,000) and at the end
(`--messages`, default 1,000,000, or wherever `--max-seconds` stopped the run:
the counts actually reached are reported); `rss_growth_pct` between the two; the
slope in KiB per 1,000 messages after the checkpoint, and the growth projected
to 1M at that slope when the run stopped short.

Beside it, in-process: what one entry of the ingestor's per-patient lock table
(`Ingestor._locks`) costs, measured with tracemalloc: the entries were never pruned and
were most of the growth; they are now dropped once a patient has nothing in flight.

Usage: python bench/memory.py [--quick] [--messages N] [--checkpoint N] [--max-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from harness.load import run_loadgen
from harness.proc import start_adapter
from harness.report import print_keys, print_table


def lock_entry_bytes(count: int = 50_000) -> float:
    """Bytes per entry of a dict of asyncio.Lock keyed like Ingestor._locks (patient ids)."""

    async def build() -> float:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        locks: dict[str, asyncio.Lock] = {}
        for n in range(count):
            key = f"BP{n:09d}"
            lock = locks.get(key)
            if lock is None:
                lock = locks[key] = asyncio.Lock()
            async with lock:  # as _keep does: binds the lock to the loop
                pass
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / count

    return asyncio.run(build())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30k messages, checkpoint 10k")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--checkpoint", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--sample-every", type=int, default=None)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--coder", action="store_true", help="run the coder every 5 s")
    ns = parser.parse_args()
    messages = ns.messages or (30_000 if ns.quick else 1_000_000)
    checkpoint = ns.checkpoint or (10_000 if ns.quick else 100_000)
    max_seconds = ns.max_seconds or (60.0 if ns.quick else 720.0)
    sample_every = ns.sample_every or max(1000, checkpoint // 20)
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    keys: dict[str, object] = {}
    rows: list[tuple[str, str]] = []
    adapter = start_adapter(workdir, "memory", close_check_seconds=5.0 if ns.coder else 3600.0)
    samples: list[tuple[int, int, float]] = []  # (acked, rss KiB, seconds)
    try:
        rss_start = adapter.rss_kib()

        def on_progress(acked: int, seconds: float) -> None:
            samples.append((acked, adapter.rss_kib(), seconds))

        result = run_loadgen(
            adapter.mllp_port,
            connections=ns.connections,
            duration=max_seconds,
            warmup=0.0,
            max_messages=messages,
            progress_every=sample_every,
            on_progress=on_progress,
            prefix="M",
        )
        rss_end = adapter.rss_kib()
        samples.append((result["acked"], rss_end, result["window_s"]))
        db_bytes = sum(p.stat().st_size for p in workdir.glob("memory.db*"))
        status = adapter.stop()
    finally:
        adapter.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    acked = result["acked"]
    at_checkpoint = next((s for s in samples if s[0] >= checkpoint), None)
    per_lock = lock_entry_bytes()
    keys["memory_messages"] = acked
    keys["memory_checkpoint_messages"] = at_checkpoint[0] if at_checkpoint else None
    keys["rss_start_mib"] = round(rss_start / 1024, 1)
    keys["rss_end_mib"] = round(rss_end / 1024, 1)
    rows.append(("messages acknowledged", f"{acked:,} ({result['msg_per_s']:,.0f} msg/s)"))
    rows.append(("RSS after start-up", f"{rss_start / 1024:,.1f} MiB"))
    if at_checkpoint is not None and acked > at_checkpoint[0]:
        rss_cp = at_checkpoint[1]
        growth = 100 * (rss_end - rss_cp) / rss_cp
        slope = (rss_end - rss_cp) / ((acked - at_checkpoint[0]) / 1000)  # KiB per 1k messages
        projected = 100 * slope * ((1_000_000 - at_checkpoint[0]) / 1000) / rss_cp
        keys["rss_checkpoint_mib"] = round(rss_cp / 1024, 1)
        keys["rss_growth_pct"] = round(growth, 1)
        keys["rss_kib_per_1k_messages"] = round(slope, 2)
        keys["rss_growth_pct_projected_1m"] = round(projected, 1)
        rows.append((f"RSS at {at_checkpoint[0]:,} messages", f"{rss_cp / 1024:,.1f} MiB"))
        rows.append((f"RSS at {acked:,} messages", f"{rss_end / 1024:,.1f} MiB"))
        rows.append(
            (
                f"rss_growth_pct {at_checkpoint[0]:,} -> {acked:,} (target <= 20 to 1M)",
                f"{growth:.1f}%  ({slope:.2f} KiB per 1,000 messages;"
                f" projected to 1M: {projected:.0f}%)",
            )
        )
    else:
        keys["rss_growth_pct"] = None
        rows.append(("rss_growth_pct", f"not measured: only {acked:,} messages in the time"))
    patients = acked // 3
    keys["lock_entry_bytes"] = round(per_lock)
    rows.append(
        (
            "Ingestor._locks: bytes per patient (tracemalloc)",
            f"{per_lock:.0f} B; {patients:,} patients here"
            f" -> ~{per_lock * patients / 2**20:.0f} MiB",
        )
    )
    keys["memory_db_mib"] = round(db_bytes / 2**20)
    keys["memory_adapter_exit_code"] = status
    keys["memory_load_errors"] = result["rejected"] + (1 if result["error"] else 0)
    rows.append(("SQLite file size", f"{db_bytes / 2**20:,.0f} MiB"))
    curve = ", ".join(
        f"{a // 1000}k:{r / 1024:.0f}" for a, r, _ in samples[:: max(1, len(samples) // 12)]
    )
    rows.append(("RSS curve (messages: MiB)", curve))
    print_table(
        f"memory: {acked:,} messages over {ns.connections} connections"
        f" (coder {'on' if ns.coder else 'paused'}; {time.strftime('%Y-%m-%d')})",
        rows,
    )
    print_keys(keys)


if __name__ == "__main__":
    main()
