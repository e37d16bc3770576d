"""SQLite group commit: a message the database refuses fails alone; a group writes what its
messages written one after the other would."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapter.store.ports import Link, NewMessage
from adapter.store.sqlite import SqliteStore

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def message(key: str) -> NewMessage:
    return NewMessage(key, "hl7", "RAS^O17", f"MSH|^~\\&|{key}\r".encode(), T0, "P1", key)


async def test_a_message_sqlite_refuses_fails_alone_and_the_rest_of_its_group_is_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    await store.migrate()
    with sqlite3.connect(path) as other:  # the refusal is the database's own, as a trigger
        other.execute(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON messages WHEN NEW.dedup_key = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    keys = ["ok:0", "ok:1", "ok:2", "bad", "ok:3", "ok:4"]
    try:
        results = await asyncio.gather(
            *(store.add_message(message(k), [Link("visit:9", "P1")]) for k in keys),
            return_exceptions=True,
        )
        assert isinstance(results[3], sqlite3.Error)
        good = [r for k, r in zip(keys, results, strict=True) if k != "bad"]
        assert all(not isinstance(r, BaseException) and not r.duplicate for r in good), results
        stored = await store.messages_for_encounter("visit:9", "P1")
        assert sorted(m.dedup_key for m in stored) == sorted(k for k in keys if k != "bad")
        row = await store.get_encounter("visit:9")
        assert row is not None and row.revision == 5  # the refused one touched nothing
    finally:
        await store.close()


async def test_a_group_the_database_takes_whole_is_stored_with_every_link(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.migrate()
    try:
        results = await asyncio.gather(
            *(
                store.add_message(message(f"m:{i}"), [Link(f"visit:{i % 3}", "P1")])
                for i in range(9)
            )
        )
        assert len({r.message_id for r in results}) == 9
        for i in range(3):
            row = await store.get_encounter(f"visit:{i}")
            assert row is not None and row.revision == 3
    finally:
        await store.close()


async def test_a_group_writes_what_the_same_messages_one_after_the_other_write(
    tmp_path: Path,
) -> None:
    """The group's statements (all inserts, then all links, then all upserts) against the
    same messages written one by one: same duplicates, same links, same encounter rows, when
    messages of the group touch one encounter, resend a stored message, or link a patient."""

    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    def new(key: str, minutes: int) -> NewMessage:
        return NewMessage(key, "hl7", "ADT^A08", f"MSH|{key}\r".encode(), at(minutes), "", key)

    stored_first = (new("m:old", 0), [Link("visit:1", "")])
    group = [
        (new("m:a", 5), [Link("visit:1", "P1", cutoff_at=at(90)), Link("patient:P1", "P1")]),
        (new("m:old", 6), [Link("visit:1", "P9", close_requested=True)]),  # a resend
        (new("m:b", 4), [Link("visit:1", "P2", close_requested=True, cutoff_at=at(60))]),
        (new("m:c", 7), [Link("visit:2", "P1"), Link("visit:1", "", cutoff_at=at(30))]),
    ]
    one_by_one, grouped = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    try:
        for store in (one_by_one, grouped):
            await store.migrate()
            await store.add_message(*stored_first)
        expected = [await one_by_one.add_message(m, links) for m, links in group]
        got = await asyncio.gather(*(grouped.add_message(m, links) for m, links in group))
        assert [r.duplicate for r in got] == [r.duplicate for r in expected] == [0, 1, 0, 0]
        assert got[1].message_id == 1
        for key in ("visit:1", "visit:2"):
            assert await grouped.get_encounter(key) == await one_by_one.get_encounter(key)
        # ids in the same order; the group's executemany may skip the id its resend tried
        ids, ids_expected = [r.message_id for r in got], [r.message_id for r in expected]
        assert ids[1] == ids_expected[1] == 1 and ids[0] < ids[2] < ids[3]
        links = await grouped.message_links(ids)
        links_expected = await one_by_one.message_links(ids_expected)
        assert [links[i] for i in ids] == [links_expected[i] for i in ids_expected]
    finally:
        await one_by_one.close()
        await grouped.close()
