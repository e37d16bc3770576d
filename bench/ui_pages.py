"""Workbench page times with many held encounters: `ui_worklist_ms_10k_sqlite`,
`ui_worklist_ms_10k_postgres` and `ui_encounter_ms` (p95, milliseconds); and
`ui_report_ms_10k_sqlite` / `_postgres`, the documentation-gaps report over the same Claims.

The store is filled through its own API (messages, leases, held codings with a Claim each,
five hold reasons and four locations spread over them), then the real app (create_app, auth
off) serves `GET /ui` (the first page of the worklist, counts per reason over all of them)
and `GET /ui/encounters/{claim id}` of one real encounter (S09, sent and coded beside the
held ones: its timeline, lines, versions and expected payment) on a loopback port. Times are
measured at the client over loopback, so they include the HTTP round trip: an upper bound of
the server time.
Targets (issue 13): worklist <= 300 ms with 10,000 held, encounter <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.pg import PG_URL, adrop_schema, new_schema, pg_available  # noqa: E402

from adapter.config import Settings  # noqa: E402
from adapter.core.emit.urls import EXT_HOLD_REASON  # noqa: E402
from adapter.logs import configure as configure_logs  # noqa: E402
from adapter.store import open_store  # noqa: E402
from adapter.store.base import CodingResult, EncounterState, Link, NewMessage  # noqa: E402
from adapter.web.app import create_app  # noqa: E402
from adapter.web.state import STATE  # noqa: E402

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
REASONS = (
    "missing-stop-time",
    "unknown-drug",
    "unknown-route",
    "invalid-diagnosis",
    "no-diagnosis",
)
LOCATIONS = ("Infusion center", "Oncology 4B", "Oncology 5A", "Outpatient infusion")
BATCH = 500
REAL_SCENARIO, REAL_VISIT = "S09", "visit:NV2601150109"
HL7_TYPE = "x-application/hl7-v2+er7"


def reasons_of(n: int) -> list[str]:
    return list(REASONS[n % len(REASONS) : n % len(REASONS) + 1 + n % 2])


def claim(n: int) -> tuple[str, str, str, dict[str, object]]:
    cid = f"clm-bench-{n}"
    body = {
        "resourceType": "Claim",
        "id": cid,
        "extension": [{"url": EXT_HOLD_REASON, "valueCode": r} for r in reasons_of(n)],
        "status": "draft",
        "type": {"coding": [{"code": ("professional", "institutional")[n % 2]}]},
        "patient": {"identifier": {"system": "urn:bench", "value": f"BENCH|{n}"}},
        "billablePeriod": {"start": (T0 + timedelta(days=n % 60)).isoformat()},
        "provider": {"display": LOCATIONS[n % len(LOCATIONS)]},
        "item": [
            {
                "sequence": 1,
                "productOrService": {"coding": [{"code": "96413"}]},
                "quantity": {"value": 1},
                "servicedDate": "2026-03-02",
            }
        ],
    }
    return ("Claim", cid, "draft", body)


async def fill(database_url: str, schema: str, held: int) -> None:
    """`held` encounters coded HELD, BATCH at a time through the store's own calls."""
    store = open_store(database_url, pg_schema=schema)
    await store.migrate()
    try:
        for start in range(0, held, BATCH):
            now = T0 + timedelta(minutes=start)
            for n in range(start, min(held, start + BATCH)):
                message = NewMessage(
                    dedup_key=f"hl7:bench:{n}",
                    format="hl7",
                    kind="RAS^O17",
                    raw=f"MSH|^~\\&|B{n}\r".encode(),
                    received_at=now,
                    patient_key=f"P{n}",
                    control_id=f"B{n}",
                )
                await store.add_message(message, [Link(f"visit:b{n}", f"P{n}", True, None)])
            leases = await store.lease_ready(now, now, "bench", 300, BATCH)
            results = []
            for lease in leases:
                n = int(lease.encounter.key.removeprefix("visit:b"))
                reasons = " ".join(reasons_of(n))
                results.append(CodingResult(lease, EncounterState.HELD, reasons, [claim(n)]))
            await store.save_codings(results, now, None)
    finally:
        await store.close()


async def real_encounter(client: TestClient[Any, Any]) -> str:
    """A real encounter beside the 10,000: the R-CHOP day of S09 (9 administrations, pushes and
    a concurrent infusion, 20 Claim lines) sent over HTTP and coded, so its page re-reads real
    messages, lays out a real timeline and prices real lines. Its Claim id."""
    raw = (ROOT / "fixtures" / "scenarios" / f"{REAL_SCENARIO}.hl7").read_bytes()
    for line in (m for m in raw.split(b"\n") if m.strip()):
        sent = await client.post(
            "/hl7", data=line.rstrip(b"\r") + b"\r", headers={"Content-Type": HL7_TYPE}
        )
        assert sent.status == 200, sent.status
    await client.app[STATE].coder.run_once()
    found = await client.get("/fhir/Claim", params={"encounter": REAL_VISIT})
    claim_id: str = (await found.json())["entry"][0]["resource"]["id"]
    return claim_id


async def page_times(settings: Settings, rounds: int) -> tuple[float, float]:
    """p95 of GET /ui and of GET /ui/encounters/{id}, in ms, after one warm-up each."""
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        worklist, encounter = [], []
        real = f"/ui/encounters/{await real_encounter(client)}"
        for path, times in (("/ui", worklist), (real, encounter)):
            await (await client.get(path)).read()
            for _ in range(rounds):
                began = time.perf_counter()
                response = await client.get(path)
                await response.read()
                times.append((time.perf_counter() - began) * 1000)
                assert response.status == 200, (path, response.status)
        return p95(worklist), p95(encounter)


async def report_time(settings: Settings, rounds: int) -> float:
    """p95 of GET /ui/reports/gaps (every Claim version read and aggregated), in ms."""
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        await (await client.get("/ui/reports/gaps")).read()
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            response = await client.get("/ui/reports/gaps")
            await response.read()
            times.append((time.perf_counter() - began) * 1000)
            assert response.status == 200, response.status
        return p95(times)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def settings_for(database_url: str, schema: str) -> Settings:
    base = Settings(host="127.0.0.1", mllp_port=0, http_port=0, log_format="json")
    return replace(base, database_url=database_url, database_schema=schema, log_level="warning")


async def run(held: int, rounds: int, postgres: bool) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/ui.db"
        began = time.perf_counter()
        await fill(url, "public", held)
        print(
            f"filled sqlite with {held} held in {time.perf_counter() - began:.0f} s",
            file=sys.stderr,
        )
        worklist, encounter = await page_times(settings_for(url, "public"), rounds)
        lines += [f"ui_worklist_ms_10k_sqlite={worklist:.1f}", f"ui_encounter_ms={encounter:.1f}"]
        report = await report_time(settings_for(url, "public"), max(5, rounds // 4))
        lines.append(f"ui_report_ms_10k_sqlite={report:.1f}")
    if postgres:
        schema = new_schema("ui")
        try:
            await fill(PG_URL, schema, held)
            worklist, encounter = await page_times(settings_for(PG_URL, schema), rounds)
            lines += [
                f"ui_worklist_ms_10k_postgres={worklist:.1f}",
                f"ui_encounter_ms_postgres={encounter:.1f}",
            ]
            report = await report_time(settings_for(PG_URL, schema), max(5, rounds // 4))
            lines.append(f"ui_report_ms_10k_postgres={report:.1f}")
        finally:
            await adrop_schema(schema)
    else:
        print("PostgreSQL not reachable: ui_worklist_ms_10k_postgres not measured", file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=10_000, help="held encounters in the store")
    parser.add_argument("--rounds", type=int, default=40, help="requests timed per page")
    args = parser.parse_args()
    configure_logs("json", "warning")  # stderr, so stdout keeps only the key=value lines
    postgres = pg_available()  # before the loop: it runs its own
    for line in asyncio.run(run(args.held, args.rounds, postgres)):
        print(line)


if __name__ == "__main__":
    main()
