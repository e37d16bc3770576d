"""One adapter replica for `replicas.py`: start as `serve` does, wait for "go", drain, report.

Runs `adapter.web.app.start_state` (PostgreSQL store, mappings, MLLP
listener on a free port, the coder; its background task is cancelled before
its first pass, which would otherwise start on the backlog), prints `ready`,
waits for a `go` line on stdin (so that every replica starts coding at the
same instant, after its start-up), runs `coder.run_once()` until no encounter
is ready, and prints one JSON line: coded count, wall-clock start/end
(time.time, comparable across processes) and CPU seconds. Bounded: it gives up
waiting for `go` after `--wait` seconds.

Usage (normally started by replicas.py):
  python bench/replica_worker.py --schema S --replica-id R [--dsn URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from harness.inprocess import paused_service
from harness.pg import PG_URL


async def run(ns: argparse.Namespace) -> dict[str, object]:
    async with paused_service(ns.dsn, database_schema=ns.schema, replica_id=ns.replica_id) as state:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), ns.wait)
        if line.strip() != "go":
            return {"replica": ns.replica_id, "error": f"expected go, got {line!r}"}
        cpu0 = os.times()
        start = time.time()
        coded = await state.coder.run_once()
        end = time.time()
        cpu1 = os.times()
        return {
            "replica": ns.replica_id,
            "coded": coded,
            "start": start,
            "end": end,
            "cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=PG_URL)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--replica-id", required=True)
    parser.add_argument("--wait", type=float, default=180.0)
    ns = parser.parse_args()
    from adapter.logs import configure
    from adapter.runtime import tune_gc

    configure("json", "warning")
    tune_gc()  # as `serve` does
    print(json.dumps(asyncio.run(run(ns))), flush=True)


if __name__ == "__main__":
    main()
