"""SQLite group commit when the database refuses one message of a group: it fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
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
