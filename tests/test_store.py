"""The durable store against real databases: every test runs on SQLite and on PostgreSQL.

SQLite is a real file under tmp_path; PostgreSQL is the local server (see
tests/store_fixtures.py), one fresh schema per test, dropped afterwards. When PostgreSQL is
unreachable its half is skipped with a message saying so.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.store import open_store
from adapter.store._common import load_migrations
from adapter.store.base import (
    AuditEntry,
    CodingResult,
    EncounterState,
    Lease,
    Link,
    MessageStatus,
    NewMessage,
    ReplayOutcome,
    SaveResult,
    SearchQuery,
    Store,
)
from adapter.store.planning import DumpedBody, without_meta
from adapter.store.postgres import PostgresStore
from adapter.store.sqlite import SqliteStore
from tests.store_fixtures import BACKENDS, PG_URL, StoreFactory, require_postgres

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=1)  # every encounter's quiet period is over by then
MIN = timedelta(minutes=1)
Resource = tuple[str, str, str, dict[str, Any]]

OPEN, DIRTY, CODED, HELD = (
    EncounterState.OPEN,
    EncounterState.DIRTY,
    EncounterState.CODED,
    EncounterState.HELD,
)


@pytest.fixture(params=BACKENDS)
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    if request.param == "postgres":
        await require_postgres()
    made = StoreFactory(request.param, tmp_path)
    yield made
    await made.cleanup()


@pytest.fixture
async def store(factory: StoreFactory) -> Store:
    return await factory.open()


# --- builders -------------------------------------------------------------------------------


def message(key: str, *, patient: str = "P1", at: datetime = T0, raw: bytes = b"") -> NewMessage:
    return NewMessage(
        dedup_key=key,
        format="hl7",
        kind="RAS^O17",
        raw=raw or f"MSH|^~\\&|{key}\r".encode(),
        received_at=at,
        patient_key=patient,
        control_id=key.rsplit(":", 1)[-1],
    )


def link(
    key: str, patient: str = "P1", *, close: bool = False, cutoff: datetime | None = None
) -> Link:
    return Link(encounter_key=key, patient_key=patient, close_requested=close, cutoff_at=cutoff)


def claim(cid: str = "clm-1", *, total: int = 100, status: str = "active") -> Resource:
    body = {
        "resourceType": "Claim",
        "id": cid,
        "status": status,
        "patient": {"identifier": {"system": "urn:mrn", "value": "MRN-1"}},
        "total": {"value": total, "currency": "USD"},
    }
    return ("Claim", cid, status, body)


def charge(iid: str, *, units: int = 1, status: str = "billable") -> Resource:
    body = {
        "resourceType": "ChargeItem",
        "id": iid,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "quantity": {"value": units},
    }
    return ("ChargeItem", iid, status, body)


def task(tid: str = "tsk-1", *, status: str = "requested") -> Resource:
    body = {"resourceType": "Task", "id": tid, "status": status, "for": {"reference": "Patient/p1"}}
    return ("Task", tid, status, body)


async def code(
    store: Store,
    key: str,
    resources: Sequence[Resource] = (),
    *,
    state: EncounterState = CODED,
    now: datetime = LATER,
    destination: str | None = None,
) -> SaveResult:
    """Lease what is ready, save `key`'s coding, give the others back."""
    leases = await store.lease_ready(now, now, "coder", 300, 1000)
    mine = [lease for lease in leases if lease.encounter.key == key]
    assert mine, "the encounter was not ready"
    for other in leases:
        if other.encounter.key != key:
            await store.release_lease(other)
    return await store.save_coding(mine[0], state, "", resources, now, destination)


async def encounter_state(store: Store, key: str) -> EncounterState:
    row = await store.get_encounter(key)
    assert row is not None
    return row.state


# --- inbound --------------------------------------------------------------------------------


async def test_a_message_is_stored_raw_with_aware_utc_time(store: Store) -> None:
    received = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    raw = b"MSH|^~\\&|PUMP\rRXA|0|1|\xff\x00"
    result = await store.add_message(message("hl7:s:1", at=received, raw=raw), [link("visit:1")])

    stored = await store.get_message(result.message_id)
    assert stored is not None and not result.duplicate
    assert stored.raw == raw
    assert stored.received_at == received and stored.received_at.utcoffset() == timedelta(0)
    assert (stored.status, stored.error, stored.control_id) == (MessageStatus.ACCEPTED, "", "1")
    assert await store.get_message(result.message_id + 1000) is None


async def test_the_same_dedup_key_twice_is_a_duplicate_and_writes_nothing(store: Store) -> None:
    first = await store.add_message(message("hl7:s:1"), [link("visit:1")])
    again = await store.add_message(
        message("hl7:s:1", raw=b"other", at=T0 + MIN), [link("visit:1"), link("visit:2")]
    )

    assert again.duplicate and again.message_id == first.message_id
    assert (await store.counts()).messages == 1
    assert await store.get_encounter("visit:2") is None
    row = await store.get_encounter("visit:1")
    assert row is not None and row.revision == 1 and row.last_activity == T0
    stored = await store.get_message(first.message_id)
    assert stored is not None and stored.raw != b"other"


@pytest.mark.parametrize(
    ("stored_keys", "reused"),
    [
        ([], False),  # the first message under its control key
        (["hl7:EPIC^NRH:C1:aaaa"], True),  # same sender and MSH-10, other content
        (["hl7:EPIC^NRH:C1"], True),  # kept before content digests (its content unknown)
        (["hl7:EPIC^NRH:C10:aaaa", "hl7:EPIC^NRH:C1x"], False),  # another control id
        (["hl7:EPIC^NRH2:C1:aaaa"], False),  # another sender with the same MSH-10
    ],
)
async def test_a_control_id_is_reused_when_another_key_has_its_sender_and_msh10(
    store: Store, stored_keys: list[str], reused: bool
) -> None:
    for number, key in enumerate(stored_keys):
        new = replace(message(key, at=T0 + number * MIN), control_id="C1")
        await store.add_message(new, [link("visit:1")])
    mine = "hl7:EPIC^NRH:C1:bbbb"
    await store.add_message(replace(message(mine), control_id="C1"), [link("visit:1")])

    assert await store.control_id_reused("C1", "hl7:EPIC^NRH:C1", mine) is reused


@pytest.mark.parametrize(
    ("stored_keys", "reused"),
    [
        ([], False),
        (["hl7:EPIC^NRH:C1:aaaa"], True),
        (["hl7:EPIC^NRH:C1"], True),
        (["hl7:EPIC^NRH:C10:aaaa", "hl7:EPIC^NRH:C1x"], False),
        (["hl7:EPIC^NRH2:C1:aaaa"], False),
    ],
)
async def test_the_commit_of_a_message_says_whether_its_control_id_was_reused(
    store: Store, stored_keys: list[str], reused: bool
) -> None:
    """The same check as `control_id_reused`, answered by `add_message` itself."""
    for number, key in enumerate(stored_keys):
        new = replace(message(key, at=T0 + number * MIN), control_id="C1")
        await store.add_message(new, [link("visit:1")])
    mine = replace(message("hl7:EPIC^NRH:C1:bbbb"), control_id="C1", control_key="hl7:EPIC^NRH:C1")

    result = await store.add_message(mine, [link("visit:1")])

    assert (result.duplicate, result.control_id_reused) == (False, reused)


async def test_a_resend_or_a_message_without_control_key_is_not_marked_reused(
    store: Store,
) -> None:
    first = replace(message("hl7:EPIC^NRH:C1:aaaa"), control_id="C1")
    await store.add_message(first, [link("visit:1")])
    resend = replace(first, control_key="hl7:EPIC^NRH:C1")
    other = replace(message("hl7:EPIC^NRH:C1:bbbb"), control_id="C1")

    assert (await store.add_message(resend, [link("visit:1")])).control_id_reused is False
    assert (await store.add_message(other, [link("visit:1")])).control_id_reused is False


async def test_messages_of_one_commit_group_under_one_control_key_see_each_other(
    store: Store,
) -> None:
    """Arriving together (one group commit), each is checked against the other as well."""
    keys = ["hl7:EPIC^NRH:C1:aaaa", "hl7:EPIC^NRH:C1:bbbb", "hl7:EPIC^NRH:C2:cccc"]
    results = await asyncio.gather(
        *(
            store.add_message(
                replace(
                    message(key), control_id=key.split(":")[2], control_key=key.rsplit(":", 1)[0]
                ),
                [link("visit:1")],
            )
            for key in keys
        )
    )

    assert [r.control_id_reused for r in results] == [True, True, False]


async def test_the_same_message_from_two_replicas_at_once_is_stored_once(
    factory: StoreFactory,
) -> None:
    replicas = [await factory.open(), await factory.open()]

    results = await asyncio.gather(
        *(r.add_message(message(f"m:{i}"), [link("visit:1")]) for i in range(20) for r in replicas)
    )

    assert sorted(result.duplicate for result in results) == [False] * 20 + [True] * 20
    assert len({result.message_id for result in results}) == 20
    row = await replicas[0].get_encounter("visit:1")
    assert row is not None and row.revision == 20


async def test_messages_arriving_together_are_each_stored_once_with_links_and_merged_encounters(
    store: Store,
) -> None:
    """Concurrent add_message calls share one group commit (one statement on PostgreSQL, one
    transaction on SQLite); the result must be what one message at a time would give."""
    cutoffs = [T0 + timedelta(hours=6 + (i * 7) % 5) for i in range(24)]
    calls = []
    for i in range(24):
        visit, patient = i % 3, f"P{i % 3}"
        links = [link(f"visit:{visit}", patient if i >= 3 else "", close=(i == 10),
                      cutoff=cutoffs[i] if i % 4 == 0 else None)]  # fmt: skip
        if i == 5:
            links.append(link(f"patient:{patient}", patient))
        calls.append(store.add_message(message(f"g:{i}", patient=patient, at=T0 + i * MIN), links))
    calls.append(store.add_message(message("g:7", patient="P1", at=T0), [link("visit:1")]))
    results = await asyncio.gather(*calls)

    assert [r.duplicate for r in results] == [False] * 24 + [True]
    assert results[-1].message_id == results[7].message_id
    assert len({r.message_id for r in results}) == 24
    for visit in range(3):
        row = await store.get_encounter(f"visit:{visit}")
        mine = [i for i in range(24) if i % 3 == visit]
        assert row is not None and row.patient_key == f"P{visit}"
        assert row.last_activity == T0 + mine[-1] * MIN
        assert row.revision == len(mine)  # one per message, grouped or not
        assert row.close_requested == (visit == 10 % 3)
        expected_cutoff = min(cutoffs[i] for i in mine if i % 4 == 0)
        assert row.cutoff_at == expected_cutoff and row.state is OPEN
        stored = await store.messages_for_encounter(f"visit:{visit}", f"P{visit}")
        assert [m.dedup_key for m in stored] == [f"g:{i}" for i in mine]
    assert await store.get_encounter("patient:P2") is None


async def test_a_message_the_database_refuses_fails_alone_in_its_group(store: Store) -> None:
    """PostgreSQL refuses a NUL in text (the readers never produce one): that message's caller
    gets the error, the others of the same group are stored."""
    bad = message("bad:\x00")
    calls = [store.add_message(message(f"ok:{i}"), [link("visit:9")]) for i in range(6)]
    calls.insert(3, store.add_message(bad, [link("visit:9")]))
    results = await asyncio.gather(*calls, return_exceptions=True)
    good = [r for i, r in enumerate(results) if i != 3]
    assert all(not isinstance(r, BaseException) and not r.duplicate for r in good), results
    if isinstance(store, PostgresStore):
        assert isinstance(results[3], Exception)
    assert len(await store.messages_for_encounter("visit:9", "P1")) == len(calls) - isinstance(
        results[3], Exception
    )


async def test_a_link_creates_an_open_encounter(store: Store) -> None:
    await store.add_message(message("hl7:s:1"), [link("visit:1", "P1")])

    row = await store.get_encounter("visit:1")
    assert row is not None
    assert (row.state, row.patient_key, row.revision) == (OPEN, "P1", 1)
    assert (row.close_requested, row.cutoff_at, row.outcome_detail) == (False, None, "")
    assert row.last_activity == T0 and row.updated_at == T0


async def test_later_links_bump_revision_or_in_close_and_keep_the_earliest_cutoff(
    store: Store,
) -> None:
    late_cutoff, early_cutoff = T0 + timedelta(hours=10), T0 + timedelta(hours=8)
    await store.add_message(message("m:1"), [link("visit:1", cutoff=late_cutoff)])
    await store.add_message(message("m:2", at=T0 + MIN), [link("visit:1", close=True)])
    await store.add_message(message("m:3", at=T0 + 2 * MIN), [link("visit:1", cutoff=early_cutoff)])
    await store.add_message(message("m:4", at=T0 + 3 * MIN), [link("visit:1", cutoff=late_cutoff)])

    row = await store.get_encounter("visit:1")
    assert row is not None
    assert (row.revision, row.close_requested, row.cutoff_at) == (4, True, early_cutoff)
    assert row.last_activity == T0 + 3 * MIN and row.state is OPEN


async def test_one_message_linking_an_encounter_twice_counts_once(store: Store) -> None:
    cutoff = T0 + timedelta(hours=8)
    links = [link("visit:1"), link("visit:1", close=True, cutoff=cutoff)]
    await store.add_message(message("m:1"), links)

    row = await store.get_encounter("visit:1")
    assert row is not None and (row.revision, row.close_requested, row.cutoff_at) == (
        1,
        True,
        cutoff,
    )


@pytest.mark.parametrize("finished", [CODED, HELD, EncounterState.SKIPPED])
async def test_a_late_message_sends_a_finished_encounter_back_dirty(
    store: Store, finished: EncounterState
) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", state=finished)
    before = await store.get_encounter("visit:1")

    await store.add_message(message("m:2", at=LATER + MIN), [link("visit:1")])

    after = await store.get_encounter("visit:1")
    assert before is not None and after is not None
    assert before.state is finished and after.state is DIRTY
    assert after.revision == before.revision + 1


async def test_patient_links_create_no_encounter(store: Store) -> None:
    await store.add_message(message("fhir:Condition/c1"), [link("patient:P1")])

    assert await store.get_encounter("patient:P1") is None
    assert await store.lease_ready(LATER, LATER, "coder", 300, 10) == []


async def test_messages_for_encounter_include_the_patients_own_in_arrival_order(
    store: Store,
) -> None:
    await store.add_message(message("m:1", at=T0), [link("visit:1")])
    await store.add_message(message("m:2", at=T0 + MIN), [link("patient:P1")])
    await store.add_message(message("m:3", patient="P2"), [link("patient:P2", "P2")])
    await store.add_message(message("m:4", at=T0 + 2 * MIN), [link("visit:2")])
    await store.add_message(message("m:5", at=T0 + 3 * MIN), [link("visit:1"), link("visit:2")])
    await store.add_dead_letter(message("m:6"), "unreadable")

    got = await store.messages_for_encounter("visit:1", "P1")
    assert [m.dedup_key for m in got] == ["m:1", "m:2", "m:5"]
    without_patient = await store.messages_for_encounter("visit:1", "")
    assert [m.dedup_key for m in without_patient] == ["m:1", "m:5"]


async def test_messages_for_several_encounters_are_read_at_once(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await store.add_message(message("m:2", patient="P2"), [link("visit:2", "P2")])
    await store.add_message(message("m:3"), [link("patient:P1", "P1")])
    await store.add_message(message("m:4", patient="P2"), [link("visit:2", "P2")])
    wanted = [("visit:2", "P2"), ("visit:1", "P1"), ("visit:9", "")]

    got = await store.messages_for_encounters(wanted)

    assert list(got) == ["visit:2", "visit:1", "visit:9"]
    assert {k: [m.dedup_key for m in v] for k, v in got.items()} == {
        "visit:1": ["m:1", "m:3"],
        "visit:2": ["m:2", "m:4"],
        "visit:9": [],
    }
    for key, patient in wanted:
        assert got[key] == await store.messages_for_encounter(key, patient)
    assert await store.messages_for_encounters([]) == {}


async def test_dead_letters_are_kept_with_their_reason_and_deduplicated(store: Store) -> None:
    dead = await store.add_dead_letter(message("hl7:s:9"), "RXA-3: not a timestamp")
    again = await store.add_dead_letter(message("hl7:s:9"), "other reason")
    as_message = await store.add_message(message("hl7:s:9"), [link("visit:1")])

    assert again.duplicate and as_message.duplicate
    assert again.message_id == as_message.message_id == dead.message_id
    letters = await store.dead_letters()
    assert [(m.status, m.error) for m in letters] == [
        (MessageStatus.DEAD, "RXA-3: not a timestamp")
    ]
    assert await store.get_encounter("visit:1") is None
    assert (await store.counts()).dead_letters == 1


# --- replay ---------------------------------------------------------------------------------


async def test_list_messages_for_replay_by_time_or_id(store: Store) -> None:
    first = await store.add_message(message("m:1", at=T0), [link("visit:1")])
    await store.add_dead_letter(message("m:2", at=T0 + MIN), "bad")
    await store.add_message(message("m:3", at=T0 + 2 * MIN), [link("visit:1")])

    assert [m.dedup_key for m in await store.list_messages()] == ["m:1", "m:2", "m:3"]
    assert [m.dedup_key for m in await store.list_messages(since=T0 + MIN)] == ["m:2", "m:3"]
    one = await store.list_messages(message_id=first.message_id)
    assert [m.dedup_key for m in one] == ["m:1"]


async def test_relink_revives_a_dead_letter_and_links_it(store: Store) -> None:
    dead = await store.add_dead_letter(message("m:1"), "unknown drug")

    await store.relink_message(dead.message_id, [link("visit:1", close=True)], LATER)

    stored = await store.get_message(dead.message_id)
    assert stored is not None and (stored.status, stored.error) == (MessageStatus.ACCEPTED, "")
    row = await store.get_encounter("visit:1")
    assert row is not None and (row.state, row.revision, row.close_requested) == (OPEN, 1, True)
    assert [m.id for m in await store.messages_for_encounter("visit:1", "P1")] == [dead.message_id]
    assert await store.dead_letters() == []


async def test_relink_moves_a_message_and_recodes_both_encounters(store: Store) -> None:
    moved = await store.add_message(message("m:1"), [link("visit:1")])
    await store.add_message(message("m:2"), [link("visit:1")])
    await code(store, "visit:1")

    await store.relink_message(moved.message_id, [link("visit:2")], LATER + MIN)

    old = await store.get_encounter("visit:1")
    assert old is not None and (old.state, old.revision) == (DIRTY, 3)
    assert [m.dedup_key for m in await store.messages_for_encounter("visit:1", "")] == ["m:2"]
    new = await store.get_encounter("visit:2")
    assert new is not None and (new.state, new.last_activity) == (OPEN, LATER + MIN)


async def test_mark_dead_drops_a_message_from_its_encounter_and_recodes_it(store: Store) -> None:
    gone = await store.add_message(message("m:1"), [link("visit:1")])
    await store.add_message(message("m:2"), [link("visit:1")])
    await code(store, "visit:1")

    await store.mark_dead(gone.message_id, "unknown route under the new mappings")

    stored = await store.get_message(gone.message_id)
    assert stored is not None and stored.status is MessageStatus.DEAD
    assert [m.dedup_key for m in await store.messages_for_encounter("visit:1", "")] == ["m:2"]
    assert await encounter_state(store, "visit:1") is DIRTY
    assert [m.id for m in await store.dead_letters()] == [gone.message_id]


async def test_replaying_an_unknown_message_id_fails(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.relink_message(424242, [link("visit:1")], LATER)
    with pytest.raises(LookupError):
        await store.mark_dead(424242, "x")


# --- leasing --------------------------------------------------------------------------------


async def ready_keys(store: Store, now: datetime, quiet_before: datetime) -> list[str]:
    leases = await store.lease_ready(now, quiet_before, "probe", 60, 100)
    for lease in leases:
        await store.release_lease(lease)
    return [lease.encounter.key for lease in leases]


async def test_an_open_encounter_is_ready_after_its_quiet_period(store: Store) -> None:
    await store.add_message(message("m:1", at=T0), [link("visit:1")])

    assert await ready_keys(store, T0 + MIN, T0 - MIN) == []
    assert await ready_keys(store, T0 + 30 * MIN, T0) == ["visit:1"]


async def test_close_requested_or_a_passed_cutoff_makes_it_ready_at_once(store: Store) -> None:
    cutoff = T0 + timedelta(hours=8)
    await store.add_message(message("m:1", at=T0), [link("visit:closed", close=True)])
    await store.add_message(message("m:2", at=T0), [link("visit:cutoff", cutoff=cutoff)])
    quiet_before = T0 - MIN  # nothing is quiet yet

    assert await ready_keys(store, T0, quiet_before) == ["visit:closed"]
    assert await ready_keys(store, cutoff, quiet_before) == ["visit:closed", "visit:cutoff"]


async def test_dirty_is_ready_and_coded_or_held_is_not(store: Store) -> None:
    for key in ("visit:coded", "visit:held", "visit:dirty"):
        await store.add_message(message(f"m:{key}"), [link(key)])
        await code(store, key, state=HELD if key == "visit:held" else CODED)
    await store.add_message(message("m:late", at=LATER), [link("visit:dirty")])

    assert await ready_keys(store, LATER, T0 - MIN) == ["visit:dirty"]


async def test_a_lease_keeps_others_off_until_it_expires(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1", close=True)])

    first = await store.lease_ready(T0, T0, "replica-a", 60, 10)
    assert [lease.encounter.key for lease in first] == ["visit:1"]
    assert first[0].until == T0 + timedelta(seconds=60) and first[0].owner == "replica-a"
    assert await store.lease_ready(T0 + 59 * timedelta(seconds=1), T0, "replica-b", 60, 10) == []
    taken = await store.lease_ready(T0 + 61 * timedelta(seconds=1), T0, "replica-b", 60, 10)
    assert [lease.owner for lease in taken] == ["replica-b"]


async def test_released_lease_is_ready_again_for_anyone(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1", close=True)])
    [lease] = await store.lease_ready(T0, T0, "replica-a", 600, 10)

    await store.release_lease(lease)

    assert len(await store.lease_ready(T0, T0, "replica-b", 600, 10)) == 1


async def test_lease_ready_hands_out_oldest_activity_first_up_to_the_limit(store: Store) -> None:
    for i in (3, 1, 2):
        await store.add_message(message(f"m:{i}", at=T0 + i * MIN), [link(f"visit:{i}")])

    leases = await store.lease_ready(LATER, LATER, "coder", 60, 2)

    assert [lease.encounter.key for lease in leases] == ["visit:1", "visit:2"]


async def test_two_replicas_leasing_in_parallel_never_get_the_same_encounter(
    factory: StoreFactory,
) -> None:
    replica_a, replica_b = await factory.open(), await factory.open()
    keys = {f"visit:{i:03}" for i in range(200)}
    for key in sorted(keys):
        await replica_a.add_message(message(f"m:{key}"), [link(key, close=True)])
    leased: list[tuple[str, str]] = []

    async def replica(store: Store, owner: str) -> None:
        while leases := await store.lease_ready(T0, T0, owner, 300, 7):
            for lease in leases:
                leased.append((owner, lease.encounter.key))
                result = await store.save_coding(lease, CODED, "", [], T0, None)
                assert not result.stale
            await asyncio.sleep(0.005)  # as a coder yields between batches: lets the other in

    await asyncio.gather(replica(replica_a, "a"), replica(replica_b, "b"))

    per_key = Counter(key for _owner, key in leased)
    assert set(per_key) == keys and set(per_key.values()) == {1}
    assert {owner for owner, _key in leased} == {"a", "b"}, "the leasers did not overlap"


async def test_simultaneous_lease_calls_split_the_ready_encounters(factory: StoreFactory) -> None:
    replica_a, replica_b = await factory.open(), await factory.open()
    for i in range(200):
        await replica_a.add_message(message(f"m:{i}"), [link(f"visit:{i:03}", close=True)])

    got_a, got_b = await asyncio.gather(
        replica_a.lease_ready(T0, T0, "a", 300, 150), replica_b.lease_ready(T0, T0, "b", 300, 150)
    )

    keys_a = {lease.encounter.key for lease in got_a}
    keys_b = {lease.encounter.key for lease in got_b}
    assert not keys_a & keys_b
    assert len(keys_a | keys_b) == 200


# --- coding results -------------------------------------------------------------------------


async def test_a_first_coding_writes_version_1_with_meta_after_id(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])

    result = await code(store, "visit:1", [claim(), charge("chg-1")], destination="fhir")

    assert not result.stale
    assert [(r.resource_type, r.version) for r in result.written] == [
        ("Claim", 1),
        ("ChargeItem", 1),
    ]
    stored = await store.read_resource("Claim", "clm-1")
    assert stored is not None and stored.encounter_key == "visit:1"
    body = json.loads(stored.body)
    assert list(body)[:3] == ["resourceType", "id", "meta"]
    assert body["meta"] == {"versionId": "1", "lastUpdated": "2026-03-03T14:00:00.000000+00:00"}
    assert stored.last_updated == LATER and ", " not in stored.body
    assert await encounter_state(store, "visit:1") is CODED


async def test_patient_ref_comes_from_the_body(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(), charge("chg-1"), task()], state=HELD)

    refs = {}
    for resource_type, rid in (("Claim", "clm-1"), ("ChargeItem", "chg-1"), ("Task", "tsk-1")):
        row = await store.read_resource(resource_type, rid)
        assert row is not None
        refs[resource_type] = row.patient_ref
    assert refs == {"Claim": "MRN-1", "ChargeItem": "Patient/p1", "Task": "Patient/p1"}


async def test_recoding_to_the_same_bodies_writes_no_new_version(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(), charge("chg-1")], destination="fhir")
    await store.add_message(message("m:2", at=LATER), [link("visit:1")])

    again = await code(store, "visit:1", [claim(), charge("chg-1")], now=LATER + MIN)

    assert again.written == () and not again.stale
    assert [r.version for r in await store.history("Claim", "clm-1")] == [1]
    assert await encounter_state(store, "visit:1") is CODED


async def test_a_changed_body_gets_the_next_version_and_a_dropped_charge_is_voided(
    store: Store,
) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(), charge("chg-1"), charge("chg-2")], destination="fhir")
    await store.add_message(message("m:2", at=LATER), [link("visit:1")])

    result = await code(
        store, "visit:1", [claim(total=80), charge("chg-1")], now=LATER + MIN, destination="fhir"
    )

    written = {(r.resource_type, r.resource_id): r for r in result.written}
    assert set(written) == {("Claim", "clm-1"), ("ChargeItem", "chg-2")}
    assert written[("Claim", "clm-1")].version == 2
    voided = written[("ChargeItem", "chg-2")]
    assert (voided.version, voided.status) == (2, "entered-in-error")
    assert json.loads(voided.body)["status"] == "entered-in-error"
    assert json.loads(voided.body)["meta"]["versionId"] == "2"
    assert len(await store.due_deliveries(LATER + MIN, 100)) == 5  # 3 first + 2 new


async def test_a_body_with_the_same_content_in_another_key_order_is_a_new_version(
    store: Store,
) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim()])
    await store.add_message(message("m:2", at=LATER), [link("visit:1")])
    rtype, rid, status, body = claim()
    reordered = {"resourceType": "Claim", "id": rid, **dict(reversed(body.items()))}

    result = await code(store, "visit:1", [(rtype, rid, status, reordered)], now=LATER + MIN)

    # the compact JSON differs (a hash compares it), and that JSON is what is delivered
    assert [r.version for r in result.written] == [2]


async def test_versions_written_before_content_hashes_are_compared_as_json(
    factory: StoreFactory,
) -> None:
    store = await factory.open()
    await store.add_message(message("m:1"), [link("visit:1")])
    meta = {"profile": ["http://example.org/p"]}
    rtype, rid, status, body = claim()
    first = [(rtype, rid, status, {**body, "meta": meta}), charge("chg-1"), charge("chg-2")]
    await code(store, "visit:1", first)
    await factory.execute("UPDATE resource_versions SET content_hash = NULL")
    await store.add_message(message("m:2", at=LATER), [link("visit:1")])

    result = await code(store, "visit:1", first[:2], now=LATER + MIN)

    assert [(r.resource_id, r.version, r.status) for r in result.written] == [
        ("chg-2", 2, "entered-in-error")
    ]
    await store.add_message(message("m:3", at=LATER), [link("visit:1")])
    again = await code(store, "visit:1", first[:2], now=LATER + 2 * MIN)
    assert again.written == ()
    changed = await code_after_a_message(store, [claim(total=5), charge("chg-1")])
    assert [(r.resource_id, r.version) for r in changed.written] == [("clm-1", 2)]


async def code_after_a_message(store: Store, resources: Sequence[Resource]) -> SaveResult:
    """A new message makes visit:1 ready again; code it at the next minute."""
    count = (await store.counts()).messages
    await store.add_message(message(f"m:after{count}", at=LATER), [link("visit:1")])
    return await code(store, "visit:1", resources, now=LATER + (count + 1) * MIN)


async def lease_all(store: Store, now: datetime = LATER) -> dict[str, Lease]:
    return {lease.encounter.key: lease for lease in await store.lease_ready(now, now, "c", 300, 99)}


async def test_a_group_of_results_is_saved_together_and_a_stale_one_alone_is_given_back(
    store: Store,
) -> None:
    for n in (1, 2, 3):
        await store.add_message(message(f"m:{n}"), [link(f"visit:{n}")])
    leases = await lease_all(store)
    await store.add_message(message("m:2b", at=T0 + MIN), [link("visit:2")])  # 2 goes stale
    results = [
        CodingResult(leases[f"visit:{n}"], CODED, "", [claim(f"clm-{n}"), charge(f"chg-{n}")])
        for n in (1, 2, 3)
    ]

    saved = await store.save_codings(results, LATER, "fhir")

    assert [s.stale for s in saved] == [False, True, False]
    assert [[r.resource_id for r in s.written] for s in saved] == [
        ["clm-1", "chg-1"],
        [],
        ["clm-3", "chg-3"],
    ]
    assert [await encounter_state(store, f"visit:{n}") for n in (1, 2, 3)] == [CODED, OPEN, CODED]
    assert await store.read_resource("Claim", "clm-2") is None
    assert len(await store.due_deliveries(LATER, 100)) == 4
    assert list(await lease_all(store, LATER + MIN)) == ["visit:2"]  # its lease was released


async def test_a_group_recodes_changed_encounters_into_next_versions(store: Store) -> None:
    for n in (1, 2):
        await store.add_message(message(f"m:{n}"), [link(f"visit:{n}")])
    first = await lease_all(store)
    await store.save_codings(
        [
            CodingResult(first[f"visit:{n}"], CODED, "", [claim(f"clm-{n}"), charge(f"chg-{n}")])
            for n in (1, 2)
        ],
        LATER,
        None,
    )
    for n in (1, 2):
        await store.add_message(message(f"m:{n}b", at=LATER), [link(f"visit:{n}")])
    again = await lease_all(store, LATER + MIN)

    saved = await store.save_codings(
        [
            CodingResult(again["visit:1"], CODED, "", [claim("clm-1", total=7), charge("chg-1")]),
            CodingResult(again["visit:2"], HELD, "why", [claim("clm-2"), charge("chg-9")]),
        ],
        LATER + MIN,
        None,
    )

    assert [[(r.resource_id, r.version, r.status) for r in s.written] for s in saved] == [
        [("clm-1", 2, "active")],
        [("chg-9", 1, "billable"), ("chg-2", 2, "entered-in-error")],
    ]
    current, total = await store.search(SearchQuery("ChargeItem", count=10))
    assert total == 3 and {r.resource_id for r in current} == {"chg-1", "chg-2", "chg-9"}
    encounter = await store.get_encounter("visit:2")
    assert encounter is not None and (encounter.state, encounter.outcome_detail) == (HELD, "why")


async def test_a_group_is_saved_all_or_nothing(store: Store) -> None:
    for n in (1, 2):
        await store.add_message(message(f"m:{n}"), [link(f"visit:{n}")])
    leases = await lease_all(store)
    good = CodingResult(leases["visit:1"], CODED, "", [claim("clm-1")])
    twice = CodingResult(leases["visit:2"], CODED, "", [claim("clm-2"), claim("clm-2")])

    with pytest.raises(ValueError, match="given twice"):
        await store.save_codings([good, twice], LATER, "fhir")

    assert await store.read_resource("Claim", "clm-1") is None
    assert await encounter_state(store, "visit:1") is OPEN
    assert (await store.save_codings([good], LATER, None))[0].written[0].version == 1


async def test_a_task_no_longer_produced_is_cancelled_once(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(status="draft"), task()], state=HELD)
    for minute in (1, 2):
        await store.add_message(message(f"m:r{minute}", at=LATER), [link("visit:1")])
        await code(store, "visit:1", [claim()], now=LATER + minute * MIN)

    versions = await store.history("Task", "tsk-1")
    assert [(v.version, v.status) for v in versions] == [(2, "cancelled"), (1, "requested")]


async def test_a_stale_coding_saves_nothing_and_frees_the_encounter(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1", close=True)])
    [lease] = await store.lease_ready(T0, T0, "coder", 300, 10)
    await store.add_message(message("m:2", at=T0 + MIN), [link("visit:1")])

    result = await store.save_coding(lease, CODED, "", [claim()], T0 + MIN, "fhir")

    assert result == SaveResult(written=(), stale=True)
    assert await store.read_resource("Claim", "clm-1") is None
    assert await encounter_state(store, "visit:1") is OPEN
    assert len(await store.lease_ready(T0 + MIN, T0, "other", 300, 10)) == 1


async def test_a_coder_whose_lease_was_taken_over_cannot_save(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1", close=True)])
    [slow] = await store.lease_ready(T0, T0, "slow", 60, 10)
    [fast] = await store.lease_ready(T0 + 2 * MIN, T0, "fast", 60, 10)

    assert (await store.save_coding(slow, CODED, "", [claim()], T0 + 3 * MIN, None)).stale
    saved = await store.save_coding(fast, CODED, "", [claim()], T0 + 3 * MIN, None)
    assert not saved.stale and len(saved.written) == 1


async def test_put_resource_version_writes_and_queues_a_new_version(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(status="draft"), task()], state=HELD)
    _type, _id, _status, body = claim(status="active")

    text = json.dumps(body)
    row = await store.put_resource_version("Claim", "clm-1", "active", text, LATER + MIN, "fhir")

    assert (row.version, row.status, row.encounter_key) == (2, "active", "visit:1")
    current = await store.read_resource("Claim", "clm-1")
    assert current == row
    [delivery] = await store.due_deliveries(LATER + MIN, 10)
    assert (delivery.resource_id, delivery.version, delivery.destination) == ("clm-1", 2, "fhir")
    first = await store.put_resource_version("Patient", "pat-1", "", '{"id": "pat-1"}', LATER, None)
    assert (first.version, first.encounter_key) == (1, ""), "not stored yet: version 1"
    assert [d.resource_id for d in await store.due_deliveries(LATER + MIN, 10)] == ["clm-1"]


# --- reading resources ----------------------------------------------------------------------


async def test_history_is_newest_first_and_any_version_can_be_read(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(total=1)])
    for n in (2, 3):
        await store.add_message(message(f"m:{n}", at=LATER), [link("visit:1")])
        await code(store, "visit:1", [claim(total=n)], now=LATER + n * MIN)

    history = await store.history("Claim", "clm-1")
    assert [r.version for r in history] == [3, 2, 1]
    v2 = await store.read_resource("Claim", "clm-1", 2)
    assert v2 is not None and json.loads(v2.body)["total"]["value"] == 2
    current = await store.read_resource("Claim", "clm-1")
    assert current is not None and current.version == 3
    assert await store.read_resource("Claim", "clm-1", 4) is None
    assert await store.history("Claim", "clm-nope") == []


async def seed_search(store: Store) -> None:
    """Three encounters, one re-coded: five current resources at 1-minute steps."""
    await store.add_message(message("m:1"), [link("visit:1")])
    await store.add_message(message("m:2", patient="P2"), [link("visit:2", "P2")])
    await code(store, "visit:1", [claim("clm-1"), charge("chg-1")], now=LATER)
    await code(store, "visit:2", [claim("clm-2", status="draft"), task("tsk-2")], now=LATER + MIN)
    await store.add_message(message("m:3", at=LATER), [link("visit:1")])
    await code(store, "visit:1", [claim("clm-1", total=5), charge("chg-1")], now=LATER + 2 * MIN)


async def test_search_returns_current_versions_newest_first_with_the_total(store: Store) -> None:
    await seed_search(store)

    rows, total = await store.search(SearchQuery("Claim"))

    assert total == 2
    assert [(r.resource_id, r.version) for r in rows] == [("clm-1", 2), ("clm-2", 1)]


async def test_search_filters(store: Store) -> None:
    await seed_search(store)

    async def ids(query: SearchQuery) -> list[str]:
        rows, total = await store.search(query)
        assert total == len(rows)
        return [r.resource_id for r in rows]

    assert await ids(SearchQuery("Claim", status="draft")) == ["clm-2"]
    assert await ids(SearchQuery("Claim", encounter="visit:1")) == ["clm-1"]
    assert await ids(SearchQuery("ChargeItem", patient="Patient/p1")) == ["chg-1"]
    assert await ids(SearchQuery("Claim", patient="MRN-1")) == ["clm-2", "clm-1"][::-1]
    assert await ids(SearchQuery("Claim", last_updated_ge=LATER + MIN)) == ["clm-1", "clm-2"]
    assert await ids(SearchQuery("Claim", last_updated_le=LATER + MIN)) == ["clm-2"]
    assert await ids(SearchQuery("Task", patient="Patient/nobody")) == []


async def test_search_pages_with_count_and_offset(store: Store) -> None:
    for i in range(5):
        key = f"visit:{i}"
        await store.add_message(message(f"m:{i}"), [link(key)])
        await code(store, key, [claim(f"clm-{i}")], now=LATER + i * MIN)

    page, total = await store.search(SearchQuery("Claim", count=2, offset=1))
    empty, total_again = await store.search(SearchQuery("Claim", count=2, offset=10))

    assert [r.resource_id for r in page] == ["clm-3", "clm-2"]
    assert (total, empty, total_again) == (5, [], 5)


# --- delivery -------------------------------------------------------------------------------


async def test_outbox_has_one_row_per_new_version_and_tracks_attempts(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(), charge("chg-1")], destination="fhir")

    first, second = await store.due_deliveries(LATER, 10)
    assert [(d.resource_type, d.version, d.attempts) for d in (first, second)] == [
        ("Claim", 1, 0),
        ("ChargeItem", 1, 0),
    ]
    assert await store.due_deliveries(LATER - MIN, 10) == []

    await store.mark_failed(first.id, "HTTP 503 from the FHIR server", LATER + 5 * MIN)
    await store.mark_delivered(second.id, LATER)

    assert await store.due_deliveries(LATER + MIN, 10) == []
    [retry] = await store.due_deliveries(LATER + 5 * MIN, 10)
    assert (retry.id, retry.attempts, retry.last_error) == (
        first.id,
        1,
        "HTTP 503 from the FHIR server",
    )
    assert retry.next_attempt_at == LATER + 5 * MIN
    assert (await store.counts()).outbox_pending == 1


async def test_no_destination_queues_nothing(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim()], destination=None)

    assert await store.due_deliveries(LATER, 10) == []


async def test_a_rejected_delivery_is_kept_never_due_and_no_longer_blocks(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await code(store, "visit:1", [claim(), charge("chg-1")], destination="dft:site")
    first, second = await store.due_deliveries(LATER, 10)

    await store.mark_rejected(first.id, "AR: unknown chargemaster item", LATER + MIN)

    assert [d.id for d in await store.due_deliveries(LATER + 60 * MIN, 10)] == [second.id]
    assert await store.undelivered("dft:site", "Claim", ["clm-1"]) == set()
    counts = await store.counts()
    assert (counts.outbox_pending, counts.outbox_rejected) == (1, 1)
    [kept], total = await store.rejected_deliveries(10, 0)
    assert total == 1
    assert (kept.id, kept.attempts, kept.last_error) == (
        first.id,
        1,
        "AR: unknown chargemaster item",
    )
    assert kept.rejected_at == LATER + MIN and kept.rejected_at.tzinfo is not None
    assert await store.rejected_deliveries(10, 1) == ([], 1)
    [pending] = await store.due_deliveries(LATER, 10)
    assert pending.rejected_at is None


async def test_dft_postings_queue_with_the_message_and_claims_ahead_are_found(
    store: Store,
) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    dest = "dft:site"
    since = await store.dft_since(dest, LATER - MIN)
    assert since == LATER - MIN and await store.dft_since(dest, LATER + MIN) == since  # kept
    [claim_row] = (await code(store, "visit:1", [claim()], destination=None)).written
    assert await store.claims_ahead_of_dft(dest, since, 10) == [("visit:1", 1)]
    assert await store.claims_ahead_of_dft(dest, LATER + MIN, 10) == []  # before DFTs began

    await store.queue_message(dest, ("Claim", "clm-1", 1), "MSH|DFT", "visit:1", "{p1}", LATER)
    assert await store.dft_posting(dest, "visit:1") == "{p1}"
    assert await store.dft_posting("dft:other", "visit:1") is None
    assert await store.claims_ahead_of_dft(dest, since, 10) == []
    [queued] = await store.due_deliveries(LATER, 10)
    assert (queued.destination, queued.version, queued.payload) == (dest, 1, "MSH|DFT")
    assert not await store.queued_before(dest, "Claim", "clm-1", 1)
    assert await store.queued_before(dest, "Claim", "clm-1", 2)

    await store.set_dft_posting(dest, "visit:1", 2, "{p1}", LATER + MIN)
    assert await store.dft_posting(dest, "visit:1") == "{p1}"
    assert claim_row.version == 1


# --- review, audit, metrics -----------------------------------------------------------------


async def test_set_state_and_encounters_in_state_for_the_worklist(store: Store) -> None:
    for key in ("visit:1", "visit:2"):
        await store.add_message(message(f"m:{key}"), [link(key)])
        await code(
            store, key, [claim(f"clm-{key[-1]}", status="draft"), task(f"t-{key[-1]}")], state=HELD
        )

    await store.set_state("visit:1", DIRTY, LATER + MIN)

    assert [e.key for e in await store.encounters_in_state(HELD)] == ["visit:2"]
    [dirty] = await store.encounters_in_state(DIRTY)
    assert (dirty.key, dirty.updated_at) == ("visit:1", LATER + MIN)
    with pytest.raises(LookupError):
        await store.set_state("visit:nope", DIRTY, LATER)


async def test_audit_entries_are_kept_per_encounter_in_time_order(store: Store) -> None:
    later = AuditEntry(T0 + MIN, "biller@site", "override", "visit:1", "units confirmed")
    earlier = AuditEntry(T0, "biller@site", "release-recode", "visit:1", "")
    await store.add_audit(later)
    await store.add_audit(earlier)
    await store.add_audit(AuditEntry(T0, "x", "override", "visit:2", ""))

    assert await store.audit_for("visit:1") == [earlier, later]
    assert await store.audit_for("visit:3") == []


async def test_counts_for_metrics(store: Store) -> None:
    await store.add_message(message("m:1"), [link("visit:1")])
    await store.add_message(message("m:2"), [link("visit:2")])
    await store.add_dead_letter(message("m:3"), "bad")
    await code(store, "visit:1", [claim()], destination="fhir")

    counts = await store.counts()

    assert counts.encounters_by_state == {
        "open": 1,
        "dirty": 0,
        "coded": 1,
        "held": 0,
        "skipped": 0,
    }
    assert (counts.messages, counts.dead_letters, counts.outbox_pending) == (3, 1, 1)


async def test_ping(store: Store) -> None:
    assert await store.ping()


async def test_a_closed_store_stays_closed(store: Store) -> None:
    await store.close()

    assert not await store.ping()
    with pytest.raises(RuntimeError, match="closed"):
        await store.counts()
    await store.close()  # twice is harmless


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.add_message(message("m:1", at=datetime(2026, 3, 2, 9, 0)), [link("visit:1")])
    assert (await store.counts()).messages == 0


# --- durability and migrations --------------------------------------------------------------


async def test_everything_survives_a_restart(factory: StoreFactory) -> None:
    first = await factory.open()
    await first.add_message(message("m:1"), [link("visit:1")])
    await first.add_dead_letter(message("m:2"), "bad")
    await code(first, "visit:1", [claim()], destination="fhir")
    await first.add_audit(AuditEntry(T0, "biller", "override", "visit:1", "ok"))
    await first.close()

    second = await factory.open()

    assert [m.dedup_key for m in await second.list_messages()] == ["m:1", "m:2"]
    assert await encounter_state(second, "visit:1") is CODED
    current = await second.read_resource("Claim", "clm-1")
    assert current is not None and current.version == 1
    assert len(await second.due_deliveries(LATER, 10)) == 1
    assert len(await second.audit_for("visit:1")) == 1
    assert (await second.add_message(message("m:1"), [])).duplicate


async def test_migrate_twice_is_a_no_op(factory: StoreFactory) -> None:
    store = await factory.open()
    await store.add_message(message("m:1"), [link("visit:1")])

    await store.migrate()

    assert await factory.applied_versions() == shipped_versions(factory)
    assert (await store.counts()).messages == 1


def shipped_versions(factory: StoreFactory) -> list[int]:
    return [m.version for m in load_migrations(factory.backend)]


async def test_a_database_at_version_1_is_migrated_to_the_latest(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"adapter.store.{factory.backend}.connection"
    monkeypatch.setattr(f"{module}.load_migrations", lambda dialect: load_migrations(dialect)[:1])
    old = await factory.open()
    await old.add_message(message("m:1"), [link("visit:1")])
    await old.close()
    monkeypatch.undo()

    store = await factory.open()

    assert await factory.applied_versions() == shipped_versions(factory)
    assert len(shipped_versions(factory)) > 1
    assert not (await code(store, "visit:1", [claim()])).stale


async def test_concurrent_migrations_from_two_replicas_apply_each_file_once(
    factory: StoreFactory,
) -> None:
    replicas = [factory.new() for _ in range(3)]

    await asyncio.gather(*(replica.migrate() for replica in replicas))

    assert await factory.applied_versions() == shipped_versions(factory)
    assert all([await replica.ping() for replica in replicas])


async def test_the_sqlite_file_is_wal_with_full_sync_and_its_folder_is_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "dir" / "adapter.db"
    store = SqliteStore(path)
    await store.migrate()
    try:
        with sqlite3.connect(path) as probe:
            assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # Per-connection settings can only be read on the store's own connection.
        settings = await store._read(
            lambda conn: (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
            )
        )
        assert settings == (2, 1)  # FULL, on
    finally:
        await store.close()


# --- the factory ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./var/adapter.db", "var/adapter.db"),
        ("sqlite:///relative/x.db", "relative/x.db"),
        ("sqlite:////abs/x.db", "/abs/x.db"),
        ("./plain/x.db", "plain/x.db"),
        ("/plain/abs.db", "/plain/abs.db"),
    ],
)
def test_open_store_sqlite_urls(url: str, expected: str) -> None:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert store._path == Path(expected)


@pytest.mark.parametrize("url", ["postgresql://u@db:5432/charges", "postgres://u@db/charges"])
def test_open_store_postgres_urls(url: str) -> None:
    assert isinstance(open_store(url, pg_schema="charges"), PostgresStore)


@pytest.mark.parametrize(
    "url", ["mysql://root:s3cret@db/x", "sqlite://", "sqlite:///", "", "sqlite:///:memory:"]
)
def test_open_store_refuses_other_urls_naming_the_accepted_forms(url: str) -> None:
    with pytest.raises(ValueError, match=re.escape("sqlite:///path/to/file.db")) as error:
        open_store(url)
    assert "s3cret" not in str(error.value)


def test_a_bad_schema_name_is_refused() -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(PG_URL, schema='x"; DROP TABLE messages; --')


async def test_ping_is_false_when_postgresql_does_not_answer() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test")
    try:
        assert not await store.ping()
    finally:
        await store.close()


# --- stored bodies --------------------------------------------------------------------------


def _reference_with_meta(body: dict[str, Any], version: int, last_updated: datetime) -> str:
    """meta after `id` (else after resourceType, else first), as one json.dumps."""
    meta = dict(body.get("meta") or {})
    meta |= {
        "versionId": str(version),
        "lastUpdated": last_updated.isoformat(timespec="microseconds"),
    }
    anchor = "id" if "id" in body else "resourceType" if "resourceType" in body else None
    ordered: dict[str, Any] = {} if anchor else {"meta": meta}
    for key, value in body.items():
        if key != "meta":
            ordered[key] = value
        if key == anchor:
            ordered["meta"] = meta
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(["resourceType", "id", "status", "é", ""]) | st.text(max_size=4).filter(
    lambda key: key != "meta"  # a body's meta is drawn apart: a JSON object or none
)


@given(
    body=st.dictionaries(_keys, _json_values, max_size=6),
    meta=st.none() | st.dictionaries(st.sampled_from(["profile", "tag"]), _json_values),
)
def test_a_body_serialised_once_is_stored_as_one_dump_with_meta_after_id(
    body: dict[str, Any], meta: dict[str, Any] | None
) -> None:
    if meta is not None:
        body = {**body, "meta": meta}

    dumped = DumpedBody.of(body)

    assert dumped.stored(3, T0) == _reference_with_meta(body, 3, T0)
    assert dumped.content == json.dumps(
        without_meta(body), ensure_ascii=False, separators=(",", ":")
    )


async def test_dead_letter_worklist_filters_by_reason_and_since_pages_and_keeps_the_place(
    store: Store,
) -> None:
    def dead(key: str, reason: str, at: datetime) -> NewMessage:
        return replace(message(key, at=at), reason=reason, error_location="RXA #1 field RXA-3")

    await store.add_message(message("hl7:ok:1"), [link("visit:1")])
    await store.add_dead_letter(dead("d:1", "unreadable-field", T0), "bad RXA-3 'x'")
    await store.add_dead_letter(dead("d:2", "oversize", T0 + MIN), "too big")
    await store.add_dead_letter(dead("d:3", "unreadable-field", LATER), "bad again")
    rows, total = await store.list_dead_letters(None, [], 2, 0)
    assert ([r.dedup_key for r in rows], total) == (["d:1", "d:2"], 3)
    assert (rows[0].reason, rows[0].error_location) == ("unreadable-field", "RXA #1 field RXA-3")
    rows, total = await store.list_dead_letters(None, [], 2, 2)
    assert ([r.dedup_key for r in rows], total) == (["d:3"], 3)
    rows, total = await store.list_dead_letters(T0 + MIN, ["unreadable-field"], 10, 0)
    assert ([r.dedup_key for r in rows], total) == (["d:3"], 1)
    rows, total = await store.list_dead_letters(None, ["oversize", "unreadable-field"], 10, 0)
    assert total == 3
    await store.apply_replay(
        [ReplayOutcome(rows[0].id, (), "still bad", "implausible-header", "MSH-7")], LATER
    )
    again = await store.get_message(rows[0].id)
    assert again is not None and (again.reason, again.error_location) == (
        "implausible-header", "MSH-7"
    )  # fmt: skip
