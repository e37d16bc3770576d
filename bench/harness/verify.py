"""The crash tests' checks: the store read back and compared with the batch coder.

`verify` reads the store directly (SQLite file or PostgreSQL schema) and compares it with
what the senders saw accepted and with `charge-adapter code` (the same pure core) on the
same messages: every accepted message stored exactly once and byte-identical, every
visit's encounter finished, exactly one current Claim per encounter with billable lines
(equal to the batch Claim), its current ChargeItems exactly the expected ones (no
duplicate, none missing), no Claim for an encounter without lines.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ROOT
from .load import Recorder, Visit
from .proc import adapter_command

FINAL_STATES = frozenset({"coded", "held", "skipped"})

# --- reading the store ---------------------------------------------------------------------------

_QUERIES = {
    "messages": "SELECT m.id, m.dedup_key, m.control_id, m.status, m.raw,"
    " (SELECT count(*) FROM message_links l WHERE l.message_id = m.id) AS links FROM messages m",
    "encounters": "SELECT key, state, lease_owner FROM encounters",
    "resources": "SELECT resource_type, resource_id, version, encounter_key, status, body"
    " FROM resource_versions WHERE is_current",
}


def fetch(
    database_url: str, schema: str, queries: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Each query's rows as dicts, read-only, from the SQLite file or the PostgreSQL schema."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return {name: [dict(row) for row in conn.execute(sql)] for name, sql in queries.items()}
        finally:
            conn.close()

    async def run() -> dict[str, list[dict[str, Any]]]:
        import asyncpg

        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            return {name: [dict(r) for r in await conn.fetch(sql)] for name, sql in queries.items()}
        finally:
            await conn.close()

    return asyncio.run(run())


def read_store(database_url: str, schema: str = "public") -> dict[str, list[dict[str, Any]]]:
    """The rows the checks need, straight from the database."""
    return fetch(database_url, schema, _QUERIES)


def encounter_states(database_url: str, schema: str) -> dict[str, str]:
    rows = fetch(database_url, schema, {"e": "SELECT key, state FROM encounters"})["e"]
    return {str(r["key"]): str(r["state"]) for r in rows}


def wait_settled(
    database_url: str, schema: str, keys: Iterable[str], timeout: float
) -> tuple[float, list[str]]:
    """Poll until every encounter key is coded/held/skipped; (seconds, keys still not)."""
    wanted = set(keys)
    started = time.monotonic()
    pending = sorted(wanted)
    while time.monotonic() - started < timeout:
        try:
            states = encounter_states(database_url, schema)
        except Exception:  # the database may be briefly unavailable (restart test)
            states = {}
        pending = sorted(k for k in wanted if states.get(k) not in FINAL_STATES)
        if not pending:
            break
        time.sleep(0.5)
    return time.monotonic() - started, pending


# --- expected result: the batch coder on the same messages ---------------------------------------


def batch_expected(
    visits: Iterable[Visit], workdir: Path, chunk: int = 1000
) -> dict[str, dict[str, Any]]:
    """Per encounter key: the Claim, ChargeItems and Tasks `charge-adapter code` produces.

    Visits are independent (own patient, own visit number), so they are coded in chunks
    to bound the batch command's memory.
    """
    expected: dict[str, dict[str, Any]] = {}
    ordered = list(visits)
    for start in range(0, len(ordered), chunk):
        expected.update(_batch_chunk(ordered[start : start + chunk], workdir))
    return expected


def _batch_chunk(visits: list[Visit], workdir: Path) -> dict[str, dict[str, Any]]:
    feed = workdir / "accepted_feed.hl7"
    with feed.open("wb") as out:
        for visit in visits:
            for message in visit.messages:
                out.write(message.payload.replace(b"\n", b"\r") + b"\n")
    run = subprocess.run(
        [*adapter_command(), "code", str(feed)], cwd=ROOT, capture_output=True, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(f"batch coding failed: {run.stderr.decode()[-2000:]}")
    bundle = json.loads(run.stdout)
    claims: dict[str, str] = {}
    expected: dict[str, dict[str, Any]] = {}
    resources = [entry["resource"] for entry in bundle.get("entry", [])]
    for resource in resources:
        if resource["resourceType"] == "Claim":
            key = resource["identifier"][0]["value"]
            claims[resource["id"]] = key
            expected[key] = {"claim": resource, "charge_items": {}, "tasks": {}}
    for resource in resources:
        if resource["resourceType"] == "ChargeItem":
            ref = resource["supportingInformation"][0]["reference"].removeprefix("Claim/")
            expected[claims[ref]]["charge_items"][resource["id"]] = resource
        elif resource["resourceType"] == "Task":
            ref = resource["focus"]["reference"].removeprefix("Claim/")
            expected[claims[ref]]["tasks"][resource["id"]] = resource
    feed.unlink()
    return expected


def log_counts(log_path: Path) -> Counter[str]:
    """Events of interest in the adapter's JSON log (all runs appended to one file)."""
    counts: Counter[str] = Counter()
    with log_path.open("rb") as log:
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                counts["non-json-lines"] += 1
                continue
            event = str(entry.get("event", ""))
            if event == "message.stored":
                counts["stored-duplicate" if entry.get("duplicate") else "stored-new"] += 1
            elif event == "mllp.message":
                counts[f"ack-{entry.get('ack_code')}"] += 1
            elif event in (
                "hl7.ingest_failed",
                "coder.error",
                "coder.encounter_failed",
                "coder.stale",
                "encounter.coded",
                "mllp.handler_failed",
                "mllp.connection_failed",
            ):
                counts[event] += 1
            if entry.get("level") in ("error", "critical"):
                counts["level-error"] += 1
    return counts


def db_exec(database_url: str, schema: str, statements: list[str]) -> None:
    """Run statements in one transaction (used by the harness self-test only)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        try:
            with conn:
                for sql in statements:
                    conn.execute(sql)
        finally:
            conn.close()
        return

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            async with conn.transaction():
                for sql in statements:
                    await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def inject_faults(database_url: str, schema: str, recorder: Recorder, visits: list[Visit]) -> None:
    """Harness self-test: lose one acknowledged message and duplicate one ChargeItem, so a
    correct checker must report lost=1 and duplicates=1."""
    cid = sorted(recorder.accepted)[len(recorder.accepted) // 2]
    store = read_store(database_url, schema)
    item = next(
        r
        for r in store["resources"]
        if r["resource_type"] == "ChargeItem" and r["status"] == "billable"
    )
    body = json.loads(item["body"])
    body["id"] = "chg-selftest-duplicate"
    text = json.dumps(body).replace("'", "''")
    is_current = "1" if database_url.startswith("sqlite:///") else "TRUE"
    db_exec(
        database_url,
        schema,
        [
            f"DELETE FROM message_links WHERE message_id IN"
            f" (SELECT id FROM messages WHERE control_id = '{cid}')",
            f"DELETE FROM messages WHERE control_id = '{cid}'",
            "INSERT INTO resource_versions (resource_type, resource_id, version, is_current,"
            " encounter_key, patient_ref, status, last_updated, body)"
            f" SELECT resource_type, 'chg-selftest-duplicate', 1, {is_current}, encounter_key,"
            f" patient_ref, status, last_updated, '{text}' FROM resource_versions"
            f" WHERE resource_type = 'ChargeItem' AND resource_id = '{item['resource_id']}'"
            f" AND version = {int(item['version'])}",
        ],
    )


# --- the checks ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    acked: int = 0
    lost: int = 0  # accepted (AA/CA) but not stored
    corrupt: int = 0  # stored but different bytes, dead, or without encounter links
    duplicate_messages: int = 0  # more than one stored row for one control id
    stored_unknown: int = 0  # rows the senders never sent (should not exist)
    unsettled: int = 0  # encounters not coded/held/skipped at the end
    missing_claims: int = 0
    extra_claims: int = 0  # a Claim for an encounter the batch coder gives none
    claim_mismatch: int = 0  # Claim differs from the batch Claim (items, diagnoses...)
    duplicate_charge_items: int = 0
    missing_charge_items: int = 0
    task_mismatch: int = 0
    encounters: int = 0
    claims: int = 0
    charge_items: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.duplicate_messages + self.extra_claims + self.duplicate_charge_items

    @property
    def other_failures(self) -> int:
        return (
            self.corrupt
            + self.unsettled
            + self.missing_claims
            + self.claim_mismatch
            + self.missing_charge_items
            + self.task_mismatch
            + self.stored_unknown
        )

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing twice, nothing else wrong in the store."""
        return self.lost == 0 and self.duplicates == 0 and self.other_failures == 0

    def note(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)


def _body(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    body.pop("meta", None)
    return dict(body)


def _line_key(item: dict[str, Any]) -> tuple[str, str, str]:
    """(code, modifiers, date) of a Claim item or a ChargeItem."""
    if "productOrService" in item:
        code = item["productOrService"]["coding"][0]["code"]
        mods = [m["coding"][0]["code"] for m in item.get("modifier", [])]
        day = item.get("servicedDate", "")
    else:
        code = item["code"]["coding"][0]["code"]
        mods = [
            e["valueCoding"]["code"]
            for e in item.get("extension", [])
            if e.get("url", "").endswith("charge-modifier")
        ]
        day = str(item.get("occurrenceDateTime", ""))[:10]
    return code, "+".join(sorted(mods)), day


def verify(
    store: dict[str, list[dict[str, Any]]],
    recorder: Recorder,
    visits: list[Visit],
    expected: dict[str, dict[str, Any]],
) -> Verdict:
    v = Verdict()
    sent = {m.control_id: m for visit in visits for m in visit.messages}
    sent.update({m.control_id: m for visit in recorder.unfinished_visits for m in visit.messages})
    sent.update({m.control_id: m for m in recorder.probes})
    rows_by_cid: dict[str, list[dict[str, Any]]] = {}
    for row in store["messages"]:
        rows_by_cid.setdefault(str(row["control_id"]), []).append(row)
        if str(row["control_id"]) not in sent:
            v.stored_unknown += 1
            v.note(f"stored message {row['control_id']!r} was never sent")
    v.acked = len(recorder.accepted)
    for cid in sorted(recorder.accepted):
        rows = rows_by_cid.get(cid, [])
        if not rows:
            v.lost += 1
            v.note(f"LOST: {cid} was acknowledged {recorder.accepted[cid][1]} but is not stored")
            continue
        if len(rows) > 1:
            v.duplicate_messages += len(rows) - 1
            v.note(f"DUPLICATE: {cid} stored {len(rows)} times")
        row = rows[0]
        if (
            bytes(row["raw"]) != sent[cid].payload
            or row["status"] != "accepted"
            or f":{cid}:" not in str(row["dedup_key"])  # hl7:<sender>:<MSH-10>:<digest>
            or int(row["links"]) == 0
        ):
            v.corrupt += 1
            v.note(f"CORRUPT: {cid} status={row['status']} links={row['links']}")
    states = {str(r["key"]): str(r["state"]) for r in store["encounters"]}
    by_encounter: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in store["resources"]:
        group = by_encounter.setdefault(str(row["encounter_key"]), {})
        group.setdefault(str(row["resource_type"]), []).append(row)
    v.encounters = len(visits)
    for visit in visits:
        key = visit.encounter_key
        state = states.get(key)
        if state not in FINAL_STATES:
            v.unsettled += 1
            v.note(f"UNSETTLED: {key} ({visit.template}) state={state}")
        mine = by_encounter.get(key, {})
        claims = mine.get("Claim", [])
        want = expected.get(key)
        v.claims += len(claims)
        if want is None:
            if claims:
                v.extra_claims += len(claims)
                v.note(f"EXTRA CLAIM: {key} ({visit.template}) has {len(claims)}, expected none")
        elif not claims:
            v.missing_claims += 1
            v.note(f"MISSING CLAIM: {key} ({visit.template}) state={state}")
        elif len(claims) > 1:  # impossible by id, unless ids changed
            v.extra_claims += len(claims) - 1
            v.note(f"EXTRA CLAIM: {key} has {len(claims)} current Claims")
        elif _body(claims[0]) != want["claim"]:
            v.claim_mismatch += 1
            v.note(f"CLAIM MISMATCH: {key} ({visit.template}) differs from the batch Claim")
        items = {
            str(r["resource_id"]): r
            for r in mine.get("ChargeItem", [])
            if r["status"] != "entered-in-error"
        }
        v.charge_items += len(items)
        want_items = set(want["charge_items"]) if want else set()
        surplus_ids = len(set(items) - want_items)
        surplus_lines = 0
        if len(claims) == 1:
            claim_lines = Counter(_line_key(i) for i in _body(claims[0]).get("item", []))
            item_lines = Counter(_line_key(_body(r)) for r in items.values())
            surplus_lines = sum((item_lines - claim_lines).values())
        surplus = max(surplus_ids, surplus_lines)
        if surplus:
            v.duplicate_charge_items += surplus
            v.note(f"DUPLICATE CHARGE ITEMS: {key} ({visit.template}) +{surplus}")
        missing = len(want_items - set(items))
        if missing:
            v.missing_charge_items += missing
            v.note(f"MISSING CHARGE ITEMS: {key} ({visit.template}) -{missing}")
        tasks = {str(r["resource_id"]) for r in mine.get("Task", []) if r["status"] != "cancelled"}
        if tasks != (set(want["tasks"]) if want else set()):
            v.task_mismatch += 1
            v.note(f"TASK MISMATCH: {key} ({visit.template})")
    return v


def print_verdict(prefix: str, v: Verdict, *, duplicates_breakdown: bool = True) -> None:
    """The store's counts and each kind of failure as `<prefix>_*` keys, then the problems."""
    print(
        f"{prefix}_encounters={v.encounters} {prefix}_claims={v.claims}"
        f" {prefix}_charge_items={v.charge_items}"
    )
    if duplicates_breakdown:
        print(
            f"{prefix}_duplicate_messages={v.duplicate_messages}"
            f" {prefix}_extra_claims={v.extra_claims}"
            f" {prefix}_duplicate_charge_items={v.duplicate_charge_items}"
        )
    print(
        f"{prefix}_missing_claims={v.missing_claims}"
        f" {prefix}_missing_charge_items={v.missing_charge_items}"
        f" {prefix}_claim_mismatch={v.claim_mismatch}"
        f" {prefix}_task_mismatch={v.task_mismatch}"
        f" {prefix}_corrupt={v.corrupt} {prefix}_stored_unknown={v.stored_unknown}"
    )
    print_problems(v)


def print_problems(verdict: Verdict) -> None:
    for text in verdict.problems:
        print(f"  problem: {text}", flush=True)
