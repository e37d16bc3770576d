"""Replicas: two adapter processes draining one PostgreSQL backlog vs one, and no double coding.

For each replica count (1, then 2; `--rounds` repeats the pair in alternating
order), in a fresh schema:

1. a backlog of `--encounters` closed visits (A04, RAS with 5 administrations,
   A03) is ingested in-process through `AppState.handle_hl7` (coder paused);
2. that many `bench/replica_worker.py` processes start (`start_state`, each
   with its own `ADAPTER_REPLICA_ID`), say `ready`, and get `go` together;
3. each runs `coder.run_once()` until no encounter is ready. Drain time = last
   end - first start (wall clock across processes);
4. the store is checked directly with SQL: every encounter `coded`, exactly one
   Claim per encounter, no resource with a version above 1, every Claim body at
   `meta.versionId` "1", and the replicas' coded counts add up to the encounters.

`replica_scaling` = administrations/s with 2 replicas / with 1 (target >= 1.8).
This machine has 2 cores shared by both replicas, PostgreSQL and other
sessions: read the figure with the CPU columns beside it.

Usage: python bench/replicas.py [--quick] [--encounters N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from harness.inprocess import paused_service
from harness.pg import PG_URL, drop_schema, new_schema, pg_available, pg_fetch
from harness.proc import BENCH, PYTHON, machine_cpu
from harness.report import median, print_keys, print_table
from harness.traffic import ADMINS_PER_DRAIN_VISIT, ingest_backlog


async def load_backlog(schema: str, encounters: int) -> None:
    async with paused_service(PG_URL, database_schema=schema, replica_id="bench-loader") as state:
        accepted = await ingest_backlog(state, encounters, "R")
    if accepted != 3 * encounters:
        raise RuntimeError(f"backlog: {accepted} of {3 * encounters} messages accepted")


def drain(schema: str, replicas: int, timeout: float) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [
                PYTHON,
                str(BENCH / "replica_worker.py"),
                f"--schema={schema}",
                f"--replica-id=bench-replica-{i + 1}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(replicas)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"replica did not start: {line!r}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        deadline = time.monotonic() + timeout
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                raise RuntimeError(f"replica exited {proc.returncode} without a result")
            results.append(json.loads(lines[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def verify(schema: str, encounters: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Check the store itself: each encounter coded exactly once."""
    q = f'"{schema}"'
    states = pg_fetch(f"SELECT state, count(*) AS n FROM {q}.encounters GROUP BY state")
    claims = pg_fetch(
        f"SELECT count(*) AS n, count(DISTINCT encounter_key) AS encounters,"
        f" coalesce(max(version), 0) AS max_version,"
        f" count(*) FILTER (WHERE (body::jsonb -> 'meta' ->> 'versionId') <> '1') AS not_v1"
        f" FROM {q}.resource_versions WHERE resource_type = 'Claim'"
    )[0]
    any_v2 = pg_fetch(f"SELECT count(*) AS n FROM {q}.resource_versions WHERE version > 1")[0]
    by_state = {str(r["state"]): int(r["n"]) for r in states}
    coded_sum = sum(int(r.get("coded", 0)) for r in results)
    ok = (
        by_state.get("coded", 0) == encounters
        and sum(by_state.values()) == encounters
        and int(claims["n"]) == encounters
        and int(claims["encounters"]) == encounters
        and int(claims["max_version"]) == 1
        and int(claims["not_v1"]) == 0
        and int(any_v2["n"]) == 0
        and coded_sum == encounters
    )
    return {
        "ok": ok,
        "states": by_state,
        "claims": int(claims["n"]),
        "claim_encounters": int(claims["encounters"]),
        "max_claim_version": int(claims["max_version"]),
        "claims_not_version_1": int(claims["not_v1"]),
        "resources_above_version_1": int(any_v2["n"]),
        "coded_by_replicas": [int(r.get("coded", 0)) for r in results],
    }


def one_run(replicas: int, encounters: int, timeout: float) -> dict[str, Any]:
    schema = new_schema(f"rep{replicas}")
    try:
        t0 = time.perf_counter()
        asyncio.run(load_backlog(schema, encounters))
        ingest_s = time.perf_counter() - t0
        busy0, total0 = machine_cpu()
        results = drain(schema, replicas, timeout)
        busy1, total1 = machine_cpu()
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise RuntimeError(f"replica failed: {errors}")
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        check = verify(schema, encounters, results)
    finally:
        drop_schema(schema)
    cpu = sum(r["cpu_s"] for r in results)
    return {
        "replicas": replicas,
        "ingest_s": ingest_s,
        "wall_s": wall,
        "admin_per_s": encounters * ADMINS_PER_DRAIN_VISIT / wall,
        "replica_cpu_pct": [round(100 * r["cpu_s"] / wall) for r in results],
        "replica_cpu_total_pct": round(100 * cpu / wall),
        # the whole machine over the drain (replica start-up included): are both cores
        # busy? (replicas, PostgreSQL, and whatever other sessions run meanwhile)
        "machine_busy_pct": round(100 * (busy1 - busy0) / max(1e-9, total1 - total0)),
        **check,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--encounters", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="pairs of 1- and 2-replica runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="per drain")
    ns = parser.parse_args()
    encounters = ns.encounters or (300 if ns.quick else 2000)
    rounds = ns.rounds or 1
    from adapter.logs import configure

    configure("json", "warning")
    keys: dict[str, object] = {}
    rows: list[tuple[str, str]] = []
    if not pg_available():
        print("PostgreSQL not reachable: replicas skipped", file=sys.stderr)
        keys["replica_scaling"] = "skipped"
        print_keys(keys)
        return
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(rounds):
        for replicas in (1, 2) if r % 2 == 0 else (2, 1):
            res = one_run(replicas, encounters, ns.timeout)
            runs[replicas].append(res)
            print(
                f"replicas={replicas}: {res['admin_per_s']:.0f} admin/s in {res['wall_s']:.1f} s,"
                f" replica CPU {res['replica_cpu_pct']}%, ok={res['ok']}"
                f" coded by replica {res['coded_by_replicas']}",
                file=sys.stderr,
            )
    one = median([r["admin_per_s"] for r in runs[1]])
    two = median([r["admin_per_s"] for r in runs[2]])
    scaling = two / one
    all_ok = all(r["ok"] for rs in runs.values() for r in rs)
    for replicas in (1, 2):
        for res in runs[replicas]:
            rows.append(
                (
                    f"{replicas} replica(s)",
                    f"{res['admin_per_s']:,.0f} admin/s; drain {res['wall_s']:.1f} s;"
                    f" replica CPU {res['replica_cpu_pct']}% of one core;"
                    f" machine {res['machine_busy_pct']}% busy (both cores);"
                    f" coded by replica {res['coded_by_replicas']}",
                )
            )
            rows.append(
                (
                    "  check",
                    f"{'OK' if res['ok'] else 'FAILED'}: states {res['states']}, Claims"
                    f" {res['claims']} for {res['claim_encounters']} encounters, max version"
                    f" {res['max_claim_version']}, not v1 {res['claims_not_version_1']},"
                    f" any resource above v1 {res['resources_above_version_1']}",
                )
            )
    rows.append(("replica_scaling (target >= 1.8; 2 cores)", f"{scaling:.2f}"))
    keys["replica_admin_per_s_1"] = round(one)
    keys["replica_admin_per_s_2"] = round(two)
    keys["replica_scaling"] = round(scaling, 3)
    keys["replica_cpu_total_pct_1"] = median([r["replica_cpu_total_pct"] for r in runs[1]])
    keys["replica_cpu_total_pct_2"] = median([r["replica_cpu_total_pct"] for r in runs[2]])
    for n in (1, 2):
        keys[f"replica_machine_busy_pct_{n}"] = median([r["machine_busy_pct"] for r in runs[n]])
    keys["replica_no_double_coding"] = "yes" if all_ok else "NO"
    keys["replica_encounters"] = encounters
    print_table(
        f"replicas on one PostgreSQL: {encounters} encounters x {ADMINS_PER_DRAIN_VISIT}"
        f" administrations, {rounds} round(s)",
        rows,
    )
    print_keys(keys)


if __name__ == "__main__":
    main()
