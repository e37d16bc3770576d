"""The reused-control-id check on PostgreSQL reads the rows under one MSH-10, never every
accepted message, on a young table too (no statistics yet: a new install, the first day).

Found in issue 14's measurement: the planner ANDed the control_id index with the (status,
id) index, which grows with the table: a group commit of 8 took 1.8 ms at 3,000 rows and
3.5 ms at 16,000. The plans are read with EXPLAIN, without ANALYZE, as the store's first
day would see them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from adapter.store.ports import Link, NewMessage
from adapter.store.postgres.inbox import _group_arguments
from adapter.store.postgres.inbox_sql import ADD_MESSAGES, CONTROL_ID_REUSED
from tests.store_fixtures import PG_URL, StoreFactory, require_postgres

RECEIVED = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)


def _message(n: int) -> tuple[NewMessage, tuple[Link, ...]]:
    raw = f"MSH|^~\\&|EPIC|NRH|CHGCAP|NRH|20261204190000||RAS^O17|C{n}|P|2.5.1\rPID|1||M{n}"
    message = NewMessage(
        f"hl7:EPIC|NRH|C{n}:{n:032x}", "hl7", "RAS^O17", raw.encode(), RECEIVED,
        f"M{n}", f"C{n}", control_key=f"hl7:EPIC|NRH|C{n}",
    )  # fmt: skip
    return message, (Link(f"visit:V{n}", f"M{n}"),)


async def _plan(factory: StoreFactory, sql: str, *args: object) -> str:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'SET search_path TO "{factory.schema}"')
        return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    finally:
        await conn.close()


async def test_the_group_write_and_the_reuse_query_find_earlier_rows_by_control_id_alone(
    tmp_path: Path,
) -> None:
    await require_postgres()
    factory = StoreFactory("postgres", tmp_path)
    try:
        store = await factory.open()
        for start in range(0, 2400, 8):  # 2,400 accepted rows, never analyzed
            await asyncio.gather(
                *(store.add_message(*_message(n)) for n in range(start, start + 8))
            )
        group = [(*_message(n), None) for n in range(10_000, 10_008)]
        plans = {
            "group write": await _plan(factory, ADD_MESSAGES, *_group_arguments(group)),  # type: ignore[arg-type]
            "reuse query": await _plan(
                factory, CONTROL_ID_REUSED, "C5", "x", "hl7:EPIC|NRH|C5"
            ),
        }  # fmt: skip
        for name, plan in plans.items():
            assert "messages_control_id" in plan, (name, plan)
            assert "messages_dead_letters" not in plan, (name, plan)
            assert "Seq Scan on messages" not in plan, (name, plan)
    finally:
        await factory.cleanup()
