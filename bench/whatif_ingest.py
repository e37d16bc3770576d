"""What-if: the proposed SQLite group commit, measured instead of guessed.

Runs the adapter in this process, wired as `serve` wires it
(`adapter.service.app.start_state`: store, mappings, the real MLLP listener on a
free port; logs at warning; coder paused), in two variants on fresh SQLite
files, loaded by `bench/loadgen.py` (its own process) in alternating rounds:

- `current`: the store as it is (one transaction and one fsync per message);
- `group_commit`: `SqliteStore.add_message` replaced, in this process only, by a
  prototype of the proposal in docs/performance.md: concurrent calls queue up;
  one flusher runs every queued message through the store's own `_add_message`
  in ONE `BEGIN IMMEDIATE ... COMMIT` on the store thread, and only then
  resolves each caller (so the ACK still follows the commit). While a batch is
  committing the next one gathers; an idle adapter commits a lone message at
  once (no timer, no added latency). If a batch fails, its messages are retried
  one transaction each so that one bad message cannot fail the others.

The adapter's code is not changed. The baseline server runs beside them for the
ratio. Figures: msg/s with 8 connections (and the gain), ratio to the baseline,
and p99 ACK latency at 500 msg/s paced.

Usage: python bench/whatif_ingest.py [--rounds 2] [--duration 6] [--paced-duration 15]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    baseline_server,
    median,
    pause_background_coder,
    print_keys,
    print_table,
    run_loadgen,
)

MAX_BATCH = 256


class GroupCommit:
    """A prototype of group commit for `SqliteStore.add_message` (see the module doc)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.pending: list[tuple[Any, Sequence[Any], asyncio.Future[Any]]] = []
        self.flushing = False
        self.batches = 0
        self.messages = 0

    async def add_message(self, message: Any, links: Sequence[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((message, links, future))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        from adapter.store import sqlite

        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                conn, executor = await self.store._connection()

                def run(c: Any, items: Sequence[Any] = batch) -> list[Any]:
                    return [sqlite._add_message(c, m, lk) for m, lk, _ in items]

                async with self.store._write_lock:
                    try:
                        results = await loop.run_in_executor(
                            executor, sqlite._transaction, conn, run, "BEGIN IMMEDIATE"
                        )
                    except Exception:
                        results = None
                if results is None:  # isolate the bad message: one transaction each
                    for message, links, future in batch:
                        try:
                            one = await self.store.__class__.add_message(self.store, message, links)
                            future.set_result(one)
                        except Exception as exc:
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.messages += len(batch)
                for (_, _, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.flushing = False


async def start(workdir: Path, variant: str) -> tuple[Any, GroupCommit | None]:
    from adapter.config import Settings
    from adapter.service.app import start_state

    settings = replace(
        Settings(),
        database_url=f"sqlite:///{workdir / f'{variant}-{time.monotonic_ns()}.db'}",
        mllp_port=0,
        http_port=0,
        close_check_seconds=3600.0,
        replica_id=f"bench-whatif-{variant}",
    )
    state = await start_state(settings)
    pause_background_coder(state)
    group = None
    if variant == "group_commit":
        group = GroupCommit(state.store)
        setattr(state.store, "add_message", group.add_message)  # noqa: B010 (this instance only)
    return state, group


async def measure(
    port: int, connections: int, duration: float, visit: int, rate: float = 0.0
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None,
        lambda: run_loadgen(
            port,
            connections=connections,
            duration=duration,
            warmup=1.0,
            rate=rate,
            first_visit=visit,
            prefix="W",
        ),
    )


async def run(ns: argparse.Namespace) -> None:
    from adapter.service.app import stop_state

    workdir = Path(tempfile.mkdtemp(prefix="bench-whatif-"))
    closed: dict[str, list[float]] = {"current": [], "group_commit": [], "baseline": []}
    p99: dict[str, list[float]] = {"current": [], "group_commit": []}
    paced: dict[str, dict[str, Any]] = {}
    batch_sizes: list[float] = []
    visit = 0
    try:
        with baseline_server() as (_, base_port):
            for r in range(ns.rounds):
                visit += 10_000_000
                res = await measure(base_port, 8, ns.duration, visit)
                closed["baseline"].append(res["msg_per_s"])
                variants = (
                    ("current", "group_commit") if r % 2 == 0 else ("group_commit", "current")
                )
                for variant in variants:
                    state, group = await start(workdir, variant)
                    try:
                        assert state.mllp is not None
                        visit += 10_000_000
                        res = await measure(state.mllp.port, 8, ns.duration, visit)
                        closed[variant].append(res["msg_per_s"])
                        p99[variant].append(res["p99_ms"])
                        if group is not None and group.batches:
                            batch_sizes.append(group.messages / group.batches)
                        print(
                            f"round {r + 1} {variant:<12}: {res['msg_per_s']:.0f} msg/s"
                            f" p99 {res['p99_ms']} ms (baseline {closed['baseline'][-1]:.0f})",
                            file=sys.stderr,
                        )
                        if r == 0:
                            visit += 10_000_000
                            paced[variant] = await measure(
                                state.mllp.port, 8, ns.paced_duration, visit, rate=500.0
                            )
                            print(
                                f"paced {variant}: p99 {paced[variant]['p99_ms']} ms,"
                                f" achieved {paced[variant]['msg_per_s']}",
                                file=sys.stderr,
                            )
                    finally:
                        await stop_state(state)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base = median(closed["baseline"])
    cur = median(closed["current"])
    gc_rate = median(closed["group_commit"])
    keys: dict[str, object] = {
        "whatif_baseline_msg_per_s_8": round(base, 1),
        "whatif_current_msg_per_s_8": round(cur, 1),
        "whatif_group_commit_msg_per_s_8": round(gc_rate, 1),
        "whatif_group_commit_gain": round(gc_rate / cur, 2),
        "whatif_current_ratio": round(cur / base, 3),
        "whatif_group_commit_ratio": round(gc_rate / base, 3),
        "whatif_group_commit_mean_batch": round(median(batch_sizes), 1) if batch_sizes else None,
        "whatif_current_ack_p99_ms_8": round(median(p99["current"]), 2),
        "whatif_group_commit_ack_p99_ms_8": round(median(p99["group_commit"]), 2),
    }
    rows = [
        ("baseline, 8 conn", f"{base:,.0f} msg/s"),
        (
            "adapter in-process, store as is, 8 conn",
            f"{cur:,.0f} msg/s ({cur / base:.3f} of baseline)",
        ),
        (
            "adapter in-process, group commit, 8 conn",
            f"{gc_rate:,.0f} msg/s ({gc_rate / base:.3f} of baseline; {gc_rate / cur:.2f}x;"
            f" mean batch {keys['whatif_group_commit_mean_batch']})",
        ),
    ]
    for variant, res in paced.items():
        keys[f"whatif_{variant}_ack_p99_ms_at_500"] = res["p99_ms"]
        keys[f"whatif_{variant}_paced_achieved"] = res["msg_per_s"]
        rows.append(
            (
                f"{variant}: 500 msg/s paced",
                f"p99 {res['p99_ms']} ms, p50 {res['p50_ms']} ms, achieved {res['msg_per_s']}",
            )
        )
    print_table(
        f"what-if: SQLite group commit ({ns.rounds} rounds x {ns.duration:.0f} s,"
        " in-process serve)",
        rows,
    )
    print_keys(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--paced-duration", type=float, default=15.0)
    ns = parser.parse_args()
    from adapter.cli import tune_gc
    from adapter.logs import configure

    configure("json", "warning")
    tune_gc()
    asyncio.run(run(ns))


if __name__ == "__main__":
    main()
