"""Replay you can trust: refused messages are never billed, named dead letters, truncation.

Real parts throughout: the service started as deployed (`start_state`), HL7 v2 sent
through a real MLLP socket, the store on a real SQLite file and on the local PostgreSQL
(a fresh schema each, skipped loudly when unreachable), and `replay` run as the CLI runs it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.replay import ReplaySelection, replay
from adapter.config import Settings
from adapter.hl7.msh import read_msa
from adapter.store import open_store
from adapter.store.base import (
    Link,
    MessageStatus,
    NewMessage,
    ReplayOutcome,
    SearchQuery,
    StoredMessage,
    TruncatedMessageError,
)
from adapter.web.app import start_state, stop_state
from adapter.web.state import AppState
from tests.mllp_client import connect
from tests.service_fixtures import Clock, make_settings
from tests.store_fixtures import PG_URL, require_postgres

FRAME_LIMIT = 8192  # the head kept of a larger frame is 4096 bytes


def visit(visit_id: str, control: str, *, mrn: str = "M100", drug_at: str = "0900") -> list[str]:
    """An office visit as an EHR sends it: A04, a RAS with one IV push, then the A03."""
    pv1 = f"PV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||{visit_id}"
    return [
        f"MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150800||ADT^A04^ADT_A01|{control}A|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR\r{pv1}\rDG1|1||C34.90^^I10||||||||||||1\r",
        f"MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|{control}R|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR\r{pv1}\r"
        f"ORC|RE|O{visit_id}|F{visit_id}\r"
        f"RXA|0|1|20260115{drug_at}|20260115{drug_at}|300108^DEXAMETHASONE SOD PHOS 100 MG/10 ML"
        " VIAL^99SBMCRX^63323051610^dexamethasone^NDC|12|mg^mg^UCUM|||||||||||||CP|A\r"
        "RXR|IV^Intravenous^HL70162|||IVP^IV Push^HL70165\r",
        f"MSH|^~\\&|EPIC|ONC|CHG|ONC|202601151000||ADT^A03^ADT_A03|{control}D|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR\r{pv1}|||||||||||||||||||||||||202601151000\r",
    ]


def oversize(visit_id: str) -> str:
    """A real RAS whose administration fits in the first 4096 bytes, followed by a long
    nursing note that takes the frame over the limit: the head alone reads as billable."""
    ras = visit(visit_id, "OVR")[1]
    note = "NTE|1||" + "infusion tolerated well, no reaction observed. " * 250 + "\r"
    return ras + note


def two_in_one_frame(visit_id: str) -> str:
    """An interface engine batching a whole visit into one MLLP frame: refused AR."""
    return "".join(visit(visit_id, "TWO"))


async def _pg_settings(tmp_path: Path) -> Settings:
    await require_postgres()
    base = make_settings(tmp_path, close_check_seconds=3600, mllp_max_frame_bytes=FRAME_LIMIT)
    return replace(base, database_url=PG_URL, database_schema=f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    if request.param == "sqlite":
        yield make_settings(tmp_path, close_check_seconds=3600, mllp_max_frame_bytes=FRAME_LIMIT)
        return
    chosen = await _pg_settings(tmp_path)
    yield chosen
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{chosen.database_schema}" CASCADE')
    await conn.close()


async def send(state: AppState, frames: list[str]) -> list[str]:
    """Each frame over one MLLP connection, waiting for its ACK; the ACK codes."""
    assert state.mllp is not None
    codes = []
    async with connect("127.0.0.1", state.mllp.port) as client:
        for frame in frames:
            await client.send(frame.encode())
            codes.append(read_msa(await client.read_ack())[0])
    return codes


async def stored(settings: Settings) -> list[StoredMessage]:
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    try:
        await store.migrate()
        return await store.list_messages()
    finally:
        await store.close()


async def claims(settings: Settings) -> list[dict[str, Any]]:
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    try:
        await store.migrate()
        rows, _ = await store.search(SearchQuery("Claim", count=500))
        return [json.loads(r.body) for r in rows]
    finally:
        await store.close()


async def feed_with_refusals(settings: Settings) -> AppState:
    """One good visit (coded), an oversize frame and a two-MSH frame (both AR)."""
    state = await start_state(settings, Clock())
    codes = await send(state, [*visit("V1", "OK"), oversize("V2"), two_in_one_frame("V3")])
    assert codes == ["AA", "AA", "AA", "AR", "AR"]
    await state.coder.run_once()
    return state


async def test_replay_without_names_never_reads_a_refused_message(settings: Settings) -> None:
    """AR'd frames (oversize, two MSH) stay dead letters: the sweep reads accepted only."""
    state = await feed_with_refusals(settings)
    await stop_state(state)
    before = await claims(settings)
    assert len(before) == 1

    summary = await replay(settings, ReplaySelection(), code=True, progress=False)

    assert (summary.read, summary.relinked, summary.dead) == (3, 3, 0)
    after = await claims(settings)
    assert [c["id"] for c in after] == [c["id"] for c in before]  # no Claim for V2 or V3
    dead = [m for m in await stored(settings) if m.status is MessageStatus.DEAD]
    assert sorted(m.kind for m in dead) == ["ADT^A04", "oversize"]
    assert [m.truncated for m in dead if m.kind == "oversize"] == [True]


async def test_an_oversize_frame_is_stored_truncated_and_never_accepted_even_named(
    settings: Settings,
) -> None:
    state = await feed_with_refusals(settings)
    await stop_state(state)
    (head,) = [m for m in await stored(settings) if m.kind == "oversize"]
    assert head.truncated and len(head.raw) == 4096 and b"RXA|0|1" in head.raw

    summary = await replay(
        settings, ReplaySelection(dead_letter_ids=(head.id,)), code=True, progress=False
    )

    assert summary.read == 0 and [r.name for r in summary.refused] == [f"--dead-letter {head.id}"]
    assert "oversize" in summary.refused[0].reason
    (again,) = [m for m in await stored(settings) if m.id == head.id]
    assert (again.status, again.truncated) == (MessageStatus.DEAD, True)
    assert len(await claims(settings)) == 1


async def test_a_named_dead_letter_is_read_again_and_coded(settings: Settings) -> None:
    """The analyst decided the two-message frame is good: naming it is how it is billed."""
    state = await feed_with_refusals(settings)
    await stop_state(state)
    (frame,) = [m for m in await stored(settings) if m.kind == "ADT^A04" and m.status == "dead"]

    summary = await replay(
        settings, ReplaySelection(dead_letter_ids=(frame.id,)), code=True, progress=False
    )

    assert (summary.read, summary.relinked, summary.refused) == (1, 1, ())
    (revived,) = [m for m in await stored(settings) if m.id == frame.id]
    assert revived.status is MessageStatus.ACCEPTED
    found = await claims(settings)
    assert len(found) == 2 and all(c["status"] == "active" for c in found)


async def test_message_names_the_feed_control_id_and_skips_dead_letters_under_it(
    settings: Settings,
) -> None:
    state = await feed_with_refusals(settings)
    # the sender resends the refused batch's first message alone under the same MSH-10
    assert await send(state, [visit("V3", "TWO")[0]]) == ["AA"]
    await stop_state(state)

    summary = await replay(
        settings,
        ReplaySelection(control_ids=("OKR", "TWOA", "NOPE")),
        code=False,
        progress=False,
    )

    assert (summary.read, summary.relinked) == (2, 2)  # OKR and the accepted TWOA
    reasons = {r.name: r.reason for r in summary.refused}
    assert set(reasons) == {"--message TWOA", "--message NOPE"}
    assert "--dead-letter" in reasons["--message TWOA"]
    assert "no stored message" in reasons["--message NOPE"]


# --- the store's own guard ------------------------------------------------------------------


async def test_the_store_refuses_to_accept_a_truncated_raw(settings: Settings) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 15, tzinfo=UTC)
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    await store.migrate()
    try:
        kept = await store.add_dead_letter(
            NewMessage("hl7-oversize:x", "hl7", "oversize", b"MSH|^~\\&|", now, truncated=True),
            "too large",
        )
        link = Link("visit:V9", "P9")
        with pytest.raises(TruncatedMessageError):
            await store.relink_message(kept.message_id, [link], now)
        good = await store.add_dead_letter(
            NewMessage("hl7-dead:y", "hl7", "RAS^O17", b"MSH|^~\\&|", now), "bad RXA-3"
        )
        with pytest.raises(TruncatedMessageError):  # the whole page is refused, not half
            await store.apply_replay(
                [ReplayOutcome(good.message_id, (link,)), ReplayOutcome(kept.message_id, (link,))],
                now,
            )
        with pytest.raises(ValueError, match="truncated"):
            await store.add_message(
                NewMessage("hl7:z", "hl7", "RAS^O17", b"MSH", now, truncated=True), [link]
            )
        messages = {m.id: m for m in await store.list_messages()}
        assert messages[kept.message_id].status is MessageStatus.DEAD
        assert messages[good.message_id].status is MessageStatus.DEAD
        assert await store.get_encounter("visit:V9") is None
    finally:
        await store.close()


async def test_migration_puts_an_oversize_head_an_old_replay_accepted_back_among_the_dead(
    settings: Settings,
) -> None:
    """Before the truncated flag, a replay accepted oversize heads and billed them: the
    migration marks every kept head truncated, dead, unlinked, and its encounter re-coded."""
    from adapter.store._common import load_migrations

    dialect = "sqlite" if settings.database_url.startswith("sqlite") else "postgres"
    old = [m for m in load_migrations(dialect) if m.version <= 2]
    setup = [
        "INSERT INTO messages (dedup_key, format, kind, raw, received_at, status, error)"
        " VALUES ('hl7-oversize:sha256:ab', 'hl7', 'oversize', RAW, "
        "'2026-01-15T09:00:00.000000+00:00', 'accepted', '')",
        "INSERT INTO message_links (message_id, encounter_key) VALUES (1, 'visit:V2')",
        "INSERT INTO encounters (key, patient_key, state, last_activity, revision, updated_at)"
        " VALUES ('visit:V2', 'P', 'coded', '2026-01-15T09:00:00.000000+00:00', 1,"
        " '2026-01-15T09:00:00.000000+00:00')",
    ]
    if dialect == "sqlite":
        import sqlite3

        path = settings.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                         " applied_at TEXT NOT NULL)")  # fmt: skip
            for migration in old:
                conn.executescript(migration.sql)
                conn.execute("INSERT INTO schema_migrations VALUES (?, 'x')", (migration.version,))
            for sql in setup:
                conn.execute(sql.replace("RAW", "X'4D5348'"))
    else:
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            schema = settings.database_schema
            await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
            await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                               " applied_at TIMESTAMPTZ NOT NULL)")  # fmt: skip
            for migration in old:
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO schema_migrations VALUES ({migration.version}, now())"
                )
            for sql in setup:
                await conn.execute(sql.replace("RAW", "'\\x4d5348'::bytea"))
        finally:
            await conn.close()

    (head,) = await stored(settings)  # migrates

    assert (head.status, head.truncated) == (MessageStatus.DEAD, True)
    assert "earlier replay" in head.error
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    try:
        row = await store.get_encounter("visit:V2")
        assert row is not None and (row.state.value, row.revision) == ("dirty", 2)
        assert await store.messages_for_encounter("visit:V2", "P") == []
    finally:
        await store.close()


# --- dry run --------------------------------------------------------------------------------

LOCAL_DRUG_VISIT = [
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150800||ADT^A04^ADT_A01|LDA|P|2.5.1\r"
    "PID|1||M77^^^HOSP^MR\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||VLD1\r"
    "DG1|1||C34.90^^I10||||||||||||1\r",
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|LDR|P|2.5.1\r"
    "PID|1||M77^^^HOSP^MR\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||VLD1\r"
    "ORC|RE|O1|F1\rRXA|0|1|202601150900|202601150930|ERX99999^pembrolizumab^LOCAL|200|mg"
    "|||||||||||||CP|A\rRXR|IV||IVPB\r",
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601151000||ADT^A03^ADT_A03|LDD|P|2.5.1\r"
    "PID|1||M77^^^HOSP^MR\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||VLD1"
    "|||||||||||||||||||||||||202601151000\r",
]


async def dump(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read outside the store: what "nothing written" means."""
    tables = ("messages", "message_links", "encounters", "resource_versions", "outbox", "audit")
    if settings.database_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as conn:
            return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'SET search_path TO "{settings.database_schema}"')
        return {
            t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {t} ORDER BY 1, 2")]
            for t in tables
        }
    finally:
        await conn.close()


async def held_local_drug(settings: Settings, tmp_path: Path) -> Settings:
    """The local drug code is unknown: held. Then the site adds it to its overlay."""
    import shutil

    mappings = tmp_path / "mappings"
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", mappings)
    settings = replace(settings, mappings_dir=str(mappings))
    state = await start_state(settings, Clock())
    assert await send(state, LOCAL_DRUG_VISIT) == ["AA", "AA", "AA"]
    await state.coder.run_once()
    await stop_state(state)
    overlay = mappings / "drug_catalog_local.csv"
    overlay.write_text(overlay.read_text() + "ERX99999,00006302602,,,test: pembrolizumab\n")
    return settings


async def test_a_dry_run_prints_the_change_per_encounter_and_writes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    import io

    settings = await held_local_drug(settings, tmp_path)
    (before_claim,) = await claims(settings)
    assert before_claim["status"] == "draft"
    before = await dump(settings)
    out = io.StringIO()

    summary = await replay(settings, ReplaySelection(), dry_run=True, out=out, progress=False)

    assert await dump(settings) == before  # nothing written, not even a lease
    text = out.getvalue().splitlines()
    assert summary.dry_run and summary.read == 3 and summary.coded == 0
    assert text[0] == f"encounter {before_claim['id']}: held -> coded, Claim draft -> active"
    assert "  hold closed: unknown-drug" in text
    assert any(line.startswith("  + J9271") for line in text)
    assert text[-1].startswith("dry run: encounters=1 changed=1 unchanged=0")

    # what it announced is what the replay then does
    done = await replay(settings, ReplaySelection(), progress=False)
    assert done.coded == 1
    (after,) = await claims(settings)
    assert after["status"] == "active"
    from adapter.core.claim_diff import diff_claims

    announced = [ln.removeprefix("  ") for ln in text if ln.startswith(("  +", "  -", "  ~"))]
    assert announced == diff_claims(before_claim, after).lines()


async def test_a_dry_run_of_a_named_dead_letter_says_it_would_be_accepted(
    settings: Settings,
) -> None:
    import io

    state = await feed_with_refusals(settings)
    await stop_state(state)
    (frame,) = [m for m in await stored(settings) if m.kind == "ADT^A04" and m.status == "dead"]
    before = await dump(settings)
    out = io.StringIO()

    await replay(
        settings,
        ReplaySelection(dead_letter_ids=(frame.id,)),
        dry_run=True,
        out=out,
        progress=False,
    )

    assert await dump(settings) == before
    text = out.getvalue()
    assert f"dead letter {frame.id} (TWOA) would be accepted" in text
    assert ": new (coded when it closes)" in text


def test_replay_progress_shows_on_a_terminal_only(settings: Settings, tmp_path: Path) -> None:
    """tqdm on stderr when it is a terminal (a pseudo-terminal here), silent in a pipe."""
    import asyncio
    import os
    import pty
    import subprocess
    import sys

    state = asyncio.run(_fed(settings))
    assert state
    env = dict(os.environ, ADAPTER_DATABASE_URL=settings.database_url,
               ADAPTER_DATABASE_SCHEMA=settings.database_schema, ADAPTER_LOG_FORMAT="json")  # fmt: skip
    command = [sys.executable, "-m", "adapter.cli.main", "replay", "--no-code"]
    piped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr.splitlines()[-1].startswith("replay: messages=3 ")
    assert "msg/s" not in piped.stderr and "msg]" not in piped.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    assert b"replay: 100%" in seen and b"3/3" in seen


async def _fed(settings: Settings) -> bool:
    state = await feed_with_refusals(settings)
    await stop_state(state)
    return True


def test_replay_help_says_what_is_read() -> None:
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "replay", "--help"],
        capture_output=True,
        text=True,
    ).stdout
    for flag in ("--since", "--message", "--dead-letter", "--dry-run", "--no-code"):
        assert flag in shown
    assert "MSH-10" in shown and "truncated" in shown


async def test_message_finds_a_fhir_payload_by_the_resource_id_the_feed_sent(
    settings: Settings,
) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 15, tzinfo=UTC)
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    await store.migrate()
    try:
        kept = await store.add_message(
            NewMessage(
                "fhir:x",
                "fhir",
                "MedicationAdministration",
                b"{}",
                now,
                control_id="MedicationAdministration/ma-77",
            ),
            [],
        )
        for wanted in ("ma-77", "MedicationAdministration/ma-77"):
            assert [m.id for m in await store.find_messages([wanted])] == [kept.message_id]
        assert await store.find_messages(["ma-7"]) == []
        assert await store.find_messages(["Encounter/ma-77"]) == []
    finally:
        await store.close()
