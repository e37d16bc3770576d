"""The service end to end, with real parts: MLLP over TCP, the HTTP API, SQLite and PostgreSQL.

Every test starts the real application (`start_state`), sends real HL7 v2
through a real MLLP client, and reads the result back from the store or the
HTTP API. Store-dependent tests run on SQLite and on the PostgreSQL of this
machine (skipped loudly, with the reason, when it is unreachable).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapter.config import Settings
from adapter.hl7.er7 import split_messages
from adapter.hl7.msh import read_msa, read_msh
from adapter.store.base import SearchQuery
from adapter.web.app import start_state, stop_state
from adapter.web.state import AppState
from tests.mllp_client import send_messages
from tests.service_fixtures import Clock, make_settings

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "fixtures" / "scenarios"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def quiet_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """The background coder sleeps: the test decides when coding happens (run_once)."""
    return make_settings(tmp_path, close_check_seconds=3600, **overrides)


def hl7_messages(name: str) -> list[bytes]:
    text = (SCENARIOS / name).read_text(encoding="utf-8")
    return [("\r".join(c.lines) + "\r").encode() for c in split_messages(text)]


async def _pg_available() -> str | None:
    try:
        import asyncpg

        conn = await asyncio.wait_for(asyncpg.connect(PG_URL), 5)
        await conn.close()
        return None
    except Exception as exc:  # any failure to connect means: skip, loudly
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    base = make_settings(tmp_path, quiet_period_minutes=240, close_check_seconds=3600)
    if request.param == "sqlite":
        yield base
        return
    reason = await _pg_available()
    if reason:
        pytest.skip(f"POSTGRESQL TESTS DID NOT RUN: {PG_URL} unreachable ({reason})")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    yield replace(base, database_url=PG_URL, database_schema=schema)
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def _claims(state: AppState) -> list[dict[str, Any]]:
    rows, _ = await state.store.search(SearchQuery("Claim", count=500))
    return [json.loads(r.body) for r in rows]


async def test_mllp_feed_is_acknowledged_after_commit_and_coded_on_discharge(
    settings: Settings,
) -> None:
    """Issue 3 'done when': AA echoing each MSH-10, then GET /fhir/Claim has the Claim."""
    state = await start_state(settings, Clock())
    try:
        assert state.mllp is not None
        messages = hl7_messages("S09.hl7")
        acks = await send_messages(
            "127.0.0.1", state.mllp.port, messages, split_writes=True, seed=7
        )
        for message, ack in zip(messages, acks, strict=True):
            msh = read_msh(message)
            assert msh is not None
            assert read_msa(ack) == ("AA", msh.control_id)
        assert await state.coder.run_once() == 1  # the A03 closed it
        (claim,) = await _claims(state)
        codes = {i["productOrService"]["coding"][0]["code"] for i in claim["item"]}
        assert {"96413", "96415", "96417", "96411", "96368", "96375"} <= codes
    finally:
        await stop_state(state)


async def test_restart_after_ack_still_charges_exactly_once(settings: Settings) -> None:
    clock = Clock()
    first = await start_state(settings, clock)
    assert first.mllp is not None
    messages = hl7_messages("S03.hl7")
    await send_messages("127.0.0.1", first.mllp.port, messages[:-1])  # no A03 yet
    await stop_state(first)  # stopped after the ACKs, before any coding

    second = await start_state(settings, clock)
    try:
        assert second.mllp is not None
        assert await second.coder.run_once() == 0  # still open: quiet period not over
        await send_messages("127.0.0.1", second.mllp.port, messages)  # re-sent: duplicates
        assert await second.coder.run_once() == 1
        clock.advance(hours=5)
        assert await second.coder.run_once() == 0
        (claim,) = await _claims(second)
        assert claim["meta"]["versionId"] == "1"
    finally:
        await stop_state(second)


async def test_quiet_period_closes_an_encounter_without_discharge(settings: Settings) -> None:
    clock = Clock()
    state = await start_state(settings, clock)
    try:
        assert state.mllp is not None
        await send_messages("127.0.0.1", state.mllp.port, hl7_messages("S03.hl7")[:-1])
        assert await state.coder.run_once() == 0
        clock.advance(minutes=241)
        assert await state.coder.run_once() == 1
    finally:
        await stop_state(state)


async def test_late_correction_recodes_into_a_new_version_of_the_same_claim(
    settings: Settings,
) -> None:
    state = await start_state(settings, Clock())
    try:
        assert state.mllp is not None
        messages = hl7_messages("S04.hl7")
        await send_messages("127.0.0.1", state.mllp.port, messages)
        await state.coder.run_once()
        (before,) = await _claims(state)
        ras = next(m for m in messages if b"RAS^O17" in m)
        corrected = _shorten_infusion(ras)
        acks = await send_messages("127.0.0.1", state.mllp.port, [corrected])
        assert read_msa(acks[0])[0] == "AA"
        assert await state.coder.run_once() == 1
        (after,) = await _claims(state)
        assert after["id"] == before["id"]
        assert after["meta"]["versionId"] == "2"
        codes = {i["productOrService"]["coding"][0]["code"] for i in after["item"]}
        assert "96415" not in codes  # 91 -> 90 minutes: the added hour is gone
        rows, _ = await state.store.search(SearchQuery("ChargeItem", status="entered-in-error"))
        assert [json.loads(r.body)["code"]["coding"][0]["code"] for r in rows] == ["96415"]
    finally:
        await stop_state(state)


def _shorten_infusion(ras: bytes) -> bytes:
    """Re-send the RAS as an RXA-21 'U' correction with the stop time one minute earlier."""
    segments = ras.decode().split("\r")
    out = []
    for seg in segments:
        if seg.startswith("MSH"):
            fields = seg.split("|")
            fields[9] = fields[9] + "C"
            seg = "|".join(fields)
        if seg.startswith("RXA"):
            fields = seg.split("|")
            fields[4] = _minus_one_minute(fields[4])
            while len(fields) < 22:
                fields.append("")
            fields[21] = "U"
            seg = "|".join(fields)
        out.append(seg)
    return "\r".join(out).encode()


def _minus_one_minute(ts: str) -> str:
    from datetime import datetime, timedelta

    stamp, sign, offset = ts[:12], ts[14:15], ts[14:]
    value = datetime.strptime(stamp, "%Y%m%d%H%M") - timedelta(minutes=1)
    return value.strftime("%Y%m%d%H%M") + ts[12:14] + (offset if sign else "")


async def test_unreadable_message_gets_ae_with_err_and_is_kept_as_a_dead_letter(
    settings: Settings,
) -> None:
    state = await start_state(settings, Clock())
    try:
        assert state.mllp is not None
        bad = (ROOT / "fixtures/hl7v2/bad_messages.hl7").read_text(encoding="utf-8")
        chunks = [("\r".join(c.lines) + "\r").encode() for c in split_messages(bad)]
        acks = await send_messages("127.0.0.1", state.mllp.port, chunks)
        # bad_messages.hl7 asks for enhanced mode (MSH-15 AL): CA/CE stand for AA/AE
        codes = [read_msa(a)[0].replace("C", "A", 1) for a in acks]
        assert codes[0] == "AA" and "AE" in codes
        err = next(a for a in acks if read_msa(a)[0] in ("AE", "CE")).decode()
        assert "\rERR|" in err and "RXA^1^3" in err
        dead = await state.store.dead_letters()
        assert len(dead) == codes.count("AE") + codes.count("AR")
    finally:
        await stop_state(state)


async def test_unsupported_message_type_is_rejected_ar_and_kept(settings: Settings) -> None:
    state = await start_state(settings, Clock())
    try:
        assert state.mllp is not None
        vxu = (ROOT / "fixtures/samples/hl7v2/msft__VXU-V04-01.hl7").read_bytes()
        (ack,) = await send_messages("127.0.0.1", state.mllp.port, [vxu.replace(b"\n", b"\r")])
        assert read_msa(ack)[0] == "AR"
        assert "ERR|" in ack.decode() and "200" in ack.decode()
        assert len(await state.store.dead_letters()) == 1
    finally:
        await stop_state(state)


async def test_enhanced_mode_answers_commit_accept_then_application_ack(tmp_path: Path) -> None:
    state = await start_state(quiet_settings(tmp_path), Clock())
    try:
        assert state.mllp is not None
        message = hl7_messages("S03.hl7")[0]
        fields = message.decode().split("\r")[0].split("|")
        fields += [""] * (17 - len(fields))
        fields[14], fields[15] = "AL", "AL"
        enhanced = message.decode().replace(message.decode().split("\r")[0], "|".join(fields), 1)
        from tests.mllp_client import connect

        async with connect("127.0.0.1", state.mllp.port) as client:
            await client.send(enhanced.encode())
            first = await client.read_ack(5)
            second = await client.read_ack(5)
        assert read_msa(first)[0] == "CA"
        assert read_msa(second)[0] == "AA"
    finally:
        await stop_state(state)


async def test_delivery_retries_a_failing_downstream_server_until_it_accepts(
    tmp_path: Path,
) -> None:
    received: dict[str, dict[str, Any]] = {}
    failures = {"left": 3}

    async def put(request: web.Request) -> web.Response:
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=503)
        assert request.headers["Authorization"] == "Bearer test-token"
        received[f"{request.match_info['type']}/{request.match_info['id']}"] = await request.json()
        return web.Response(status=200)

    downstream = web.Application()
    downstream.router.add_put("/fhir/{type}/{id}", put)
    runner = web.AppRunner(downstream)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    clock = Clock()
    settings = quiet_settings(
        tmp_path,
        fhir_base_url=f"http://127.0.0.1:{port}/fhir",
        fhir_auth_header="Authorization: Bearer test-token",
        delivery_backoff_base_seconds=0.01,
        delivery_backoff_max_seconds=0.05,
    )
    state = await start_state(settings, clock)
    try:
        assert state.mllp is not None and state.deliverer is not None
        await send_messages("127.0.0.1", state.mllp.port, hl7_messages("S25.hl7"))
        await state.coder.run_once()
        for _ in range(200):
            clock.advance(seconds=1)
            await state.deliverer.run_once()
            if (await state.store.counts()).outbox_pending == 0:
                break
        assert (await state.store.counts()).outbox_pending == 0
        types = sorted({k.partition("/")[0] for k in received})
        assert types == ["ChargeItem", "Claim", "Task"]
        assert failures["left"] == 0
    finally:
        await stop_state(state)
        await runner.cleanup()


async def test_two_replicas_on_one_postgresql_code_each_encounter_exactly_once(
    tmp_path: Path,
) -> None:
    reason = await _pg_available()
    if reason:
        pytest.skip(f"POSTGRESQL TESTS DID NOT RUN: {PG_URL} unreachable ({reason})")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    base = replace(quiet_settings(tmp_path), database_url=PG_URL, database_schema=schema)
    clock = Clock()
    one = await start_state(replace(base, replica_id="one"), clock)
    two = await start_state(replace(base, replica_id="two"), clock)
    try:
        assert one.mllp is not None
        names = sorted(p.name for p in SCENARIOS.glob("S*.hl7"))
        for name in names:
            await send_messages("127.0.0.1", one.mllp.port, hl7_messages(name))
        for state in (one, two):  # small batches, so the two replicas interleave
            state.coder.config = replace(state.coder.config, batch=2)
        coded = await asyncio.gather(one.coder.run_once(), two.coder.run_once())
        counts = (await one.store.counts()).encounters_by_state
        finished = sum(counts.get(k, 0) for k in ("coded", "held", "skipped"))
        assert sum(coded) == finished == len(names)  # every encounter coded exactly once
        assert all(n > 0 for n in coded), coded  # and both replicas took part
        claims = await _claims(one)
        assert all(c["meta"]["versionId"] == "1" for c in claims)
    finally:
        await stop_state(one)
        await stop_state(two)
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def test_an_encounter_whose_coding_fails_does_not_spin_the_coder(tmp_path: Path) -> None:
    """A poisoned encounter is given back and retried on the next pass, not in a tight loop."""
    state = await start_state(quiet_settings(tmp_path), Clock())
    try:
        assert state.mllp is not None
        await send_messages("127.0.0.1", state.mllp.port, hl7_messages("S03.hl7"))
        calls = {"n": 0}

        def explode(key: str, stored: list[Any]) -> Any:
            calls["n"] += 1
            raise RuntimeError("boom")

        state.coder.code_messages = explode  # type: ignore[method-assign]
        assert await asyncio.wait_for(state.coder.run_once(), 5) == 0
        assert calls["n"] == 1
    finally:
        await stop_state(state)


RAS_LOCAL_CODE = (
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150800||ADT^A04^ADT_A01|RPA1|P|2.5.1\r"
    "PID|1||M77^^^HOSP^MR\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||VRP1\r"
    "DG1|1||C34.90^^I10||||||||||||1\r",
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|RPR1|P|2.5.1\r"
    "PID|1||M77^^^HOSP^MR\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||VRP1\r"
    "ORC|RE|O1|F1\rRXA|0|1|202601150900|202601150930|ERX99999^pembrolizumab^LOCAL|200|mg"
    "|||||||||||||CP|A\rRXR|IV||IVPB\r",
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601151000||ADT^A03^ADT_A03|RPD1|P|2.5.1\r"
    "PID|1||M77^^^HOSP^MR\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||VRP1|||||||||||||||||||||||||202601151000\r",
)


async def test_replay_after_a_mapping_fix_recodes_into_new_versions_not_duplicates(
    tmp_path: Path,
) -> None:
    """An unknown local drug code is held; the site adds it to the overlay; replay bills it."""
    import shutil

    from adapter.cli.replay import ReplaySelection, replay

    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    settings = quiet_settings(tmp_path, mappings_dir=str(mappings))
    state = await start_state(settings, Clock())
    try:
        assert state.mllp is not None
        await send_messages("127.0.0.1", state.mllp.port, [m.encode() for m in RAS_LOCAL_CODE])
        await state.coder.run_once()
        (held,) = await _claims(state)
        assert held["status"] == "draft"
    finally:
        await stop_state(state)
    overlay = mappings / "drug_catalog_local.csv"
    overlay.write_text(overlay.read_text() + "ERX99999,00006302602,,,test: pembrolizumab\n")
    summary = await replay(settings, ReplaySelection(), code=True, progress=False)
    assert (summary.relinked, summary.dead, summary.coded) == (3, 0, 1)
    state = await start_state(settings, Clock())
    try:
        (claim,) = await _claims(state)
        assert claim["id"] == held["id"] and claim["status"] == "active"
        assert claim["meta"]["versionId"] == "2"
        codes = {i["productOrService"]["coding"][0]["code"] for i in claim["item"]}
        assert {"96413", "J9271"} <= codes
        tasks, _ = await state.store.search(SearchQuery("Task"))
        assert [json.loads(t.body)["status"] for t in tasks] == ["cancelled"]
    finally:
        await stop_state(state)


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`charge-adapter serve` as deployed: starts, answers /healthz, exits 0 on SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    http = free_port()
    env = dict(os.environ, ADAPTER_HTTP_PORT=str(http), ADAPTER_MLLP_PORT=str(free_port()),
               ADAPTER_DATABASE_URL=f"sqlite:///{tmp_path}/a.db", ADAPTER_LOG_FORMAT="json")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli.main", "serve"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("service did not start: " + proc.stderr.read1().decode())  # type: ignore[union-attr]
        probe = subprocess.run(
            [sys.executable, "-m", "adapter.cli.main", "health"], env=env, cwd=ROOT, timeout=30,
            capture_output=True, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr  # the container HEALTHCHECK command
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=25) == 0
        assert b"service.stopped" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
