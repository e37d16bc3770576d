"""Where `save_codings` spends its time on PostgreSQL: wall ms per encounter per SQL statement.

Runs `drain.py`'s PostgreSQL drain (in-process, `start_state`) with the store's
transactions handed a connection proxy that times every execute/executemany/
fetch/fetchrow/fetchval by statement, and the commit at the end of each
transaction. Shows, for example, a prepared statement whose cached generic plan
scans the table (see docs/performance.md). Add `?plan_cache_mode=force_custom_plan`
to BENCH_PG_URL to compare.

Usage: python bench/pg_statements.py [--encounters 2000] [--top 8]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from harness.report import print_keys, print_table

TIMED = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


class Timings:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1


class TimedConnection:
    def __init__(self, conn: Any, timings: Timings) -> None:
        self._conn = conn
        self._timings = timings

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name not in TIMED:
            return method

        async def timed(sql: str, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return await method(sql, *args)
            finally:
                label = f"{name}: {' '.join(sql.split())[:70]}"
                self._timings.add(label, time.perf_counter() - start)

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=2000)
    parser.add_argument("--top", type=int, default=8)
    ns = parser.parse_args()
    from adapter.logs import configure
    from adapter.runtime import tune_gc
    from adapter.store import postgres
    from bench import drain

    configure("json", "warning")
    tune_gc()
    timings = Timings()
    original_tx = postgres.PostgresStore._tx

    @asynccontextmanager
    async def tx(self: Any) -> AsyncIterator[Any]:
        async with original_tx(self) as conn:
            yield TimedConnection(conn, timings)
            commit_from = time.perf_counter()
        timings.add("COMMIT (end of the transaction)", time.perf_counter() - commit_from)

    setattr(postgres.PostgresStore, "_tx", tx)  # noqa: B010 (patched in this process only)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pgstmt-"))
    try:
        res = asyncio.run(drain.drain_store("postgres", ns.encounters, workdir, True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    coded = max(1, res["coded"])
    save_ms = 1000 * res["timers"]["store.save_codings"][0] / coded
    rows = [
        ("administrations/s", f"{res['admin_per_s']:,.0f}"),
        ("save_codings", f"{save_ms:.3f} ms/encounter"),
    ]
    keys: dict[str, object] = {
        "pgstmt_admin_per_s": round(res["admin_per_s"]),
        "pgstmt_save_coding_ms": round(save_ms, 3),
    }
    ranked = sorted(timings.seconds.items(), key=lambda kv: -kv[1])[: ns.top]
    for n, (label, seconds) in enumerate(ranked):
        per = 1000 * seconds / coded
        rows.append(
            (f"{per:8.3f} ms/encounter", f"{timings.calls[label] / coded:.2f} calls  {label}")
        )
        keys[f"pgstmt_{n + 1}_ms_per_encounter"] = round(per, 3)
    print_table(f"PostgreSQL statements during a drain of {ns.encounters} encounters", rows)
    print_keys(keys)


if __name__ == "__main__":
    main()
