"""PostgreSQL: the Inbox port (messages, dead letters, replay, links)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

import asyncpg  # untyped: pyproject.toml ignores its missing stubs

from adapter.store._common import (
    PATIENT_PREFIX,
    aware,
    control_id_candidates,
    is_patient_key,
    merge_links,
    utc,
)
from adapter.store.group_commit import GroupCommit, Queued
from adapter.store.ports import (
    AddResult,
    Link,
    MessageStatus,
    NewMessage,
    ReplayOutcome,
    StoredMessage,
    TruncatedMessageError,
)
from adapter.store.postgres.connection import (
    MESSAGE_COLUMNS,
    PostgresBase,
    _Conn,
)
from adapter.store.postgres.inbox_sql import (
    ADD_MESSAGES,
    BUMP_ENCOUNTER,
    CONTROL_ID_REUSED,
    INSERT_MESSAGE,
    LOCK_ENCOUNTERS,
    MESSAGES_FOR_ENCOUNTERS,
    TOUCH_ENCOUNTER,
)
from adapter.store.rows import message_from_row


class InboxPg(PostgresBase):
    """The `Inbox` port on PostgreSQL; `add_message` goes through group commit."""

    @cached_property
    def _group(self) -> GroupCommit:
        return GroupCommit(self._write_group)

    async def add_message(self, message: NewMessage, links: Sequence[Link]) -> AddResult:
        """Group commit (`GroupCommit`): the messages that arrived together are written by
        one statement and one commit; if the data of one is refused, they are written
        one by one, so that message fails alone."""
        return await self._group.add(message, links)

    async def _write_group(self, batch: Sequence[Queued]) -> list[AddResult | BaseException]:
        """The group in one statement; one by one when the data of one of them was refused.

        Only a refusal of the data (a NUL in a text column, a constraint) is worth the
        one-by-one retry, which isolates the culprit. A lost connection or a timeout fails
        the whole group at once: retrying each message against a database that is not
        answering would hold every later message for as many timeouts.
        """
        try:
            return list(await self._add_group(batch))
        except _DATA_REFUSED:
            return [await self._add_alone(item) for item in batch]

    async def _add_group(self, batch: Sequence[Queued]) -> list[AddResult]:
        """One statement for the whole group (`ADD_MESSAGES`), then the duplicates' ids."""
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            rows = await conn.fetch(ADD_MESSAGES, *_group_arguments(batch))
            new = {str(row["dedup_key"]): int(row["id"]) for row in rows}
            reused = {str(row["dedup_key"]) for row in rows if row["reused"]}
            known = [m.dedup_key for m, _, _ in batch if m.dedup_key not in new]
            old = {}
            if known:  # a concurrent insert may have committed after the statement's snapshot
                sql = "SELECT dedup_key, id FROM messages WHERE dedup_key = ANY($1::text[])"
                old = {str(r["dedup_key"]): int(r["id"]) for r in await conn.fetch(sql, known)}
        results: list[AddResult] = []
        for message, _, _ in batch:
            key = message.dedup_key
            if key in new:
                results.append(AddResult(new[key], False, control_id_reused=key in reused))
            else:
                results.append(AddResult(old[key], True))
        return results

    async def _add_alone(self, item: Queued) -> AddResult | Exception:
        try:
            return (await self._add_group([item]))[0]
        except Exception as exc:
            return exc

    async def add_dead_letter(self, message: NewMessage, error: str) -> AddResult:
        async with self._tx() as conn:
            return await _insert_message(conn, message, error)

    async def get_message(self, message_id: int) -> StoredMessage | None:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        async with self._read() as conn:
            row = await conn.fetchrow(sql, message_id)
        return None if row is None else message_from_row(row, aware)

    async def messages_for_encounter(
        self, encounter_key: str, patient_key: str
    ) -> list[StoredMessage]:
        patient_link = PATIENT_PREFIX + patient_key if patient_key else None
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'accepted' AND id IN"
            " (SELECT message_id FROM message_links WHERE encounter_key IN ($1, $2))"
            " ORDER BY id"
        )
        # One statement is one snapshot: no explicit transaction (BEGIN and COMMIT would
        # be two more round trips per encounter coded).
        pool = await self._get_pool()
        rows = await pool.fetch(sql, encounter_key, patient_link)
        return [message_from_row(row, aware) for row in rows]

    async def messages_for_encounters(
        self, encounters: Sequence[tuple[str, str]]
    ) -> dict[str, list[StoredMessage]]:
        keys = [key for key, _ in encounters]
        patient_links = [PATIENT_PREFIX + p if p else None for _, p in encounters]
        pool = await self._get_pool()  # one statement: one snapshot, no transaction needed
        rows = await pool.fetch(MESSAGES_FOR_ENCOUNTERS, keys, patient_links)
        found: dict[str, list[StoredMessage]] = {key: [] for key in keys}
        for row in rows:
            found[str(row["wanted"])].append(message_from_row(row, aware))
        return found

    async def list_messages(
        self, since: datetime | None = None, message_id: int | None = None
    ) -> list[StoredMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages"
            " WHERE ($1::timestamptz IS NULL OR received_at >= $1)"
            " AND ($2::bigint IS NULL OR id = $2) ORDER BY id"
        )
        since_utc = None if since is None else utc(since)
        async with self._read() as conn:
            rows = await conn.fetch(sql, since_utc, message_id)
        return [message_from_row(row, aware) for row in rows]

    async def replay_page(
        self, after_id: int, limit: int, since: datetime | None = None
    ) -> list[StoredMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'accepted' AND id > $1"
            " AND ($2::timestamptz IS NULL OR received_at >= $2) ORDER BY id LIMIT $3"
        )
        pool = await self._get_pool()  # one statement: one snapshot
        rows = await pool.fetch(sql, after_id, None if since is None else utc(since), limit)
        return [message_from_row(row, aware) for row in rows]

    async def count_replayable(self, since: datetime | None = None) -> int:
        sql = (
            "SELECT count(*) FROM messages WHERE status = 'accepted'"
            " AND ($1::timestamptz IS NULL OR received_at >= $1)"
        )
        pool = await self._get_pool()
        return int(await pool.fetchval(sql, None if since is None else utc(since)))

    async def find_messages(self, control_ids: Sequence[str]) -> list[StoredMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE control_id = ANY($1::text[]) ORDER BY id"
        )
        pool = await self._get_pool()
        rows = await pool.fetch(sql, control_id_candidates(control_ids))
        return [message_from_row(row, aware) for row in rows]

    async def control_id_reused(self, control_id: str, control_key: str, dedup_key: str) -> bool:
        pool = await self._get_pool()
        return bool(await pool.fetchval(CONTROL_ID_REUSED, control_id, dedup_key, control_key))

    async def message_links(self, message_ids: Sequence[int]) -> dict[int, list[str]]:
        sql = (
            "SELECT message_id, encounter_key FROM message_links"
            " WHERE message_id = ANY($1::bigint[]) ORDER BY message_id, encounter_key"
        )
        pool = await self._get_pool()
        found: dict[int, list[str]] = {int(i): [] for i in message_ids}
        for row in await pool.fetch(sql, list(found)):
            found[int(row["message_id"])].append(str(row["encounter_key"]))
        return found

    async def apply_replay(self, outcomes: Sequence[ReplayOutcome], now: datetime) -> None:
        async with self._tx() as conn:
            for outcome in outcomes:
                if outcome.error is None:
                    await _relink(conn, outcome.message_id, outcome.links, now)
                else:
                    await _mark_dead(conn, outcome.message_id, outcome.error)
                    await conn.execute(
                        "UPDATE messages SET reason = $1, error_location = $2 WHERE id = $3",
                        outcome.reason,
                        outcome.error_location,
                        outcome.message_id,
                    )

    async def relink_message(self, message_id: int, links: Sequence[Link], now: datetime) -> None:
        async with self._tx() as conn:
            await _relink(conn, message_id, links, now)

    async def mark_dead(self, message_id: int, error: str) -> None:
        async with self._tx() as conn:
            await _mark_dead(conn, message_id, error)

    async def list_dead_letters(
        self, since: datetime | None, reasons: Sequence[str], limit: int, offset: int
    ) -> tuple[list[StoredMessage], int]:
        where = (
            "status = 'dead' AND ($1::timestamptz IS NULL OR received_at >= $1)"
            " AND (cardinality($2::text[]) = 0 OR reason = ANY($2::text[]))"
        )
        stamp = None if since is None else utc(since)
        page = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id LIMIT $3 OFFSET $4"
        )
        async with self._read() as conn:
            rows = await conn.fetch(page, stamp, list(reasons), limit, offset)
            total = await conn.fetchval(
                f"SELECT count(*) FROM messages WHERE {where}", stamp, list(reasons)
            )
        return [message_from_row(row, aware) for row in rows], int(total)

    async def dead_letters(self, limit: int = 100) -> list[StoredMessage]:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'dead' ORDER BY id LIMIT $1"
        async with self._read() as conn:
            rows = await conn.fetch(sql, limit)
        return [message_from_row(row, aware) for row in rows]


_DATA_REFUSED = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


def _group_arguments(batch: Sequence[Queued]) -> list[list[Any]]:
    """`ADD_MESSAGES`' 16 parallel arrays: messages, links and encounter links by ordinal,
    then the messages' control keys."""
    columns: list[list[Any]] = [[] for _ in range(16)]
    for ordinal, (message, links, _) in enumerate(batch):
        row = (ordinal, message.dedup_key, message.format, message.kind, message.raw,
               utc(message.received_at), message.patient_key, message.control_id)  # fmt: skip
        for column, value in zip(columns, row, strict=False):
            column.append(value)
        for link in merge_links(links):
            columns[8].append(ordinal)
            columns[9].append(link.encounter_key)
            if is_patient_key(link.encounter_key):
                continue
            columns[10].append(ordinal)
            columns[11].append(link.encounter_key)
            columns[12].append(link.patient_key)
            columns[13].append(link.close_requested)
            columns[14].append(None if link.cutoff_at is None else utc(link.cutoff_at))
        columns[15].append(message.control_key)
    return columns


async def _insert_message(conn: _Conn, message: NewMessage, error: str | None) -> AddResult:
    """Insert unless the dedup key is known; `error` None means readable (ACCEPTED)."""
    status = MessageStatus.ACCEPTED if error is None else MessageStatus.DEAD
    message_id = await conn.fetchval(
        INSERT_MESSAGE,
        message.dedup_key,
        message.format,
        message.kind,
        message.raw,
        utc(message.received_at),
        message.patient_key,
        message.control_id,
        status.value,
        error or "",
        message.truncated,
        message.reason,
        message.error_location,
    )
    if message_id is not None:
        return AddResult(int(message_id), duplicate=False)
    sql = "SELECT id FROM messages WHERE dedup_key = $1"
    return AddResult(int(await conn.fetchval(sql, message.dedup_key)), duplicate=True)


async def _link(conn: _Conn, message_id: int, links: Sequence[Link], at: datetime) -> None:
    merged = merge_links(links)  # in key order: concurrent writers lock rows in one order
    await conn.executemany(
        "INSERT INTO message_links (message_id, encounter_key) VALUES ($1, $2)",
        [(message_id, link.encounter_key) for link in merged],
    )
    stamp = utc(at)
    await conn.executemany(
        TOUCH_ENCOUNTER,
        [
            (
                link.encounter_key,
                link.patient_key,
                stamp,
                link.close_requested,
                None if link.cutoff_at is None else utc(link.cutoff_at),
            )
            for link in merged
            if not is_patient_key(link.encounter_key)
        ],
    )


async def _linked_keys(conn: _Conn, message_id: int) -> list[str]:
    sql = "SELECT encounter_key FROM message_links WHERE message_id = $1 ORDER BY encounter_key"
    return [str(row["encounter_key"]) for row in await conn.fetch(sql, message_id)]


async def _set_message_status(
    conn: _Conn, message_id: int, status: MessageStatus, error: str
) -> None:
    sql = "SELECT truncated FROM messages WHERE id = $1 FOR UPDATE"
    truncated = await conn.fetchval(sql, message_id)
    if truncated is None:
        raise LookupError(f"no stored message with id {message_id}")
    if truncated and status is MessageStatus.ACCEPTED:
        raise TruncatedMessageError(message_id)
    sql = "UPDATE messages SET status = $1, error = $2 WHERE id = $3"
    await conn.execute(sql, status.value, error, message_id)


async def _relink(conn: _Conn, message_id: int, links: Sequence[Link], now: datetime) -> None:
    await _set_message_status(conn, message_id, MessageStatus.ACCEPTED, "")
    old_keys = await _linked_keys(conn, message_id)
    new_keys = {link.encounter_key for link in links}
    await conn.execute(LOCK_ENCOUNTERS, sorted(new_keys | set(old_keys)))
    left = [key for key in old_keys if key not in new_keys]
    await conn.executemany(BUMP_ENCOUNTER, [(utc(now), key) for key in left])
    await conn.execute("DELETE FROM message_links WHERE message_id = $1", message_id)
    await _link(conn, message_id, links, now)


async def _mark_dead(conn: _Conn, message_id: int, error: str) -> None:
    await _set_message_status(conn, message_id, MessageStatus.DEAD, error)
    keys = await _linked_keys(conn, message_id)
    await conn.executemany(BUMP_ENCOUNTER, [(None, key) for key in keys])
    await conn.execute("DELETE FROM message_links WHERE message_id = $1", message_id)
