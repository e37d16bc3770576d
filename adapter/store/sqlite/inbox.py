"""SQLite: the Inbox port (messages, dead letters, replay, links)."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property

from adapter.store._common import (
    PATIENT_PREFIX,
    control_id_candidates,
    is_patient_key,
    iso_utc,
    merge_links,
    parse_iso,
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
from adapter.store.rows import message_from_row
from adapter.store.sqlite.connection import Conn, SqliteBase, _scalar


class InboxSql(SqliteBase):
    """The `Inbox` port on SQLite; `add_message` goes through group commit."""

    @cached_property
    def _group(self) -> GroupCommit:
        return GroupCommit(self._write_group)

    async def add_message(self, message: NewMessage, links: Sequence[Link]) -> AddResult:
        """Group commit (`GroupCommit`): one transaction and one fsync for the messages
        that arrived together; a message that fails rolls back to its own savepoint, not
        the group."""
        return await self._group.add(message, links)

    async def _write_group(self, batch: list[Queued]) -> list[AddResult | Exception]:
        return await self._write(functools.partial(_add_batch, batch=batch))

    async def add_dead_letter(self, message: NewMessage, error: str) -> AddResult:
        return await self._write(lambda conn: _insert_message(conn, message, error))

    async def get_message(self, message_id: int) -> StoredMessage | None:
        return await self._read(lambda conn: _get_message(conn, message_id))

    async def messages_for_encounter(
        self, encounter_key: str, patient_key: str
    ) -> list[StoredMessage]:
        return await self._read(lambda conn: _for_encounter(conn, encounter_key, patient_key))

    async def messages_for_encounters(
        self, encounters: Sequence[tuple[str, str]]
    ) -> dict[str, list[StoredMessage]]:
        wanted = list(encounters)
        return await self._read(
            lambda conn: {key: _for_encounter(conn, key, patient) for key, patient in wanted}
        )

    async def list_messages(
        self, since: datetime | None = None, message_id: int | None = None
    ) -> list[StoredMessage]:
        return await self._read(lambda conn: _list_messages(conn, since, message_id))

    async def replay_page(
        self, after_id: int, limit: int, since: datetime | None = None
    ) -> list[StoredMessage]:
        sql = (
            "SELECT * FROM messages WHERE status = 'accepted' AND id > ?"
            " AND (? IS NULL OR received_at >= ?) ORDER BY id LIMIT ?"
        )
        stamp = None if since is None else iso_utc(since)
        return await self._read(lambda conn: _messages(conn, sql, (after_id, stamp, stamp, limit)))

    async def count_replayable(self, since: datetime | None = None) -> int:
        sql = (
            "SELECT count(*) FROM messages WHERE status = 'accepted'"
            " AND (? IS NULL OR received_at >= ?)"
        )
        stamp = None if since is None else iso_utc(since)
        return await self._read(lambda conn: _scalar(conn, sql, (stamp, stamp)))

    async def find_messages(self, control_ids: Sequence[str]) -> list[StoredMessage]:
        wanted = json.dumps(control_id_candidates(control_ids))
        sql = (
            "SELECT * FROM messages"
            " WHERE control_id IN (SELECT value FROM json_each(?)) ORDER BY id"
        )
        return await self._read(lambda conn: _messages(conn, sql, (wanted,)))

    async def control_id_reused(self, control_id: str, control_key: str, dedup_key: str) -> bool:
        params = (dedup_key, control_key, f"{control_key}:", f"{control_key};")
        return bool(await self._read(lambda conn: _scalar(conn, _REUSED, params)))

    async def message_links(self, message_ids: Sequence[int]) -> dict[int, list[str]]:
        ids = list(message_ids)
        return await self._read(lambda conn: {i: _linked_keys(conn, i) for i in ids})

    async def apply_replay(self, outcomes: Sequence[ReplayOutcome], now: datetime) -> None:
        items = list(outcomes)
        await self._write(lambda conn: _apply_replay(conn, items, now))

    async def relink_message(self, message_id: int, links: Sequence[Link], now: datetime) -> None:
        await self._write(lambda conn: _relink(conn, message_id, links, now))

    async def mark_dead(self, message_id: int, error: str) -> None:
        await self._write(lambda conn: _mark_dead(conn, message_id, error))

    async def list_dead_letters(
        self, since: datetime | None, reasons: Sequence[str], limit: int, offset: int
    ) -> tuple[list[StoredMessage], int]:
        where = "status = 'dead' AND (? IS NULL OR received_at >= ?)"
        params: list[object] = [None if since is None else iso_utc(since)] * 2
        if reasons:
            where += f" AND reason IN ({','.join('?' * len(reasons))})"
            params.extend(reasons)
        page = f"SELECT * FROM messages WHERE {where} ORDER BY id LIMIT ? OFFSET ?"
        count = f"SELECT count(*) FROM messages WHERE {where}"

        def read(conn: Conn) -> tuple[list[StoredMessage], int]:
            rows = _messages(conn, page, [*params, limit, offset])
            return rows, _scalar(conn, count, params)

        return await self._read(read)

    async def dead_letters(self, limit: int = 100) -> list[StoredMessage]:
        sql = "SELECT * FROM messages WHERE status = 'dead' ORDER BY id LIMIT ?"
        return await self._read(lambda conn: _messages(conn, sql, (limit,)))


# The key itself (old rows) or the keys that start with `<control key>:` (':' + 1 is ';', and
# text compares as bytes): two searches of the unique index, whatever the table's size. Not
# the control_id index: on `status = ?` as well the planner took the status index and read
# every accepted row (3 ms a message at 20,000 rows); `+status` keeps it off that index.
_REUSED = """
SELECT count(*) FROM (SELECT 1 FROM messages
    WHERE +status = 'accepted' AND dedup_key <> ?
      AND (dedup_key = ? OR (dedup_key > ? AND dedup_key < ?))
    LIMIT 1)
"""


# --- inbound ----------------------------------------------------------------------------------

# A group's inserts without RETURNING (executemany cannot return rows): `_add_group` reads
# the ids after.
_INSERT_MESSAGES = """
INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key, control_id,
                      status, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dedup_key) DO NOTHING
"""
_INSERT_MESSAGE = _INSERT_MESSAGES + "RETURNING id\n"

_NEW_IDS = "SELECT dedup_key, id FROM messages WHERE id > ?"

_INSERT_LINK = "INSERT INTO message_links (message_id, encounter_key) VALUES (?, ?)"

# A dead letter says whether its raw is only the head of what was sent.
_INSERT_DEAD_LETTER = """
INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key, control_id,
                      status, error, truncated, reason, error_location)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""

# Create OPEN, or: bump revision and activity, OR in close_requested, keep the earliest
# cutoff, and send a finished encounter back to be coded again (DIRTY).
_TOUCH_ENCOUNTER = """
INSERT INTO encounters (key, patient_key, state, last_activity, close_requested, cutoff_at,
                        revision, outcome_detail, updated_at)
VALUES (?, ?, 'open', ?, ?, ?, 1, '', ?)
ON CONFLICT (key) DO UPDATE SET
    patient_key = CASE WHEN patient_key = '' THEN excluded.patient_key ELSE patient_key END,
    state = CASE WHEN state IN ('coded', 'held', 'skipped') THEN 'dirty' ELSE state END,
    last_activity = max(last_activity, excluded.last_activity),
    close_requested = max(close_requested, excluded.close_requested),
    cutoff_at = CASE
        WHEN cutoff_at IS NULL THEN excluded.cutoff_at
        WHEN excluded.cutoff_at IS NULL THEN cutoff_at
        ELSE min(cutoff_at, excluded.cutoff_at) END,
    revision = revision + 1,
    updated_at = excluded.updated_at
"""

# A message left the encounter (replay moved it, or it is now dead): code it again.
_BUMP_ENCOUNTER = """
UPDATE encounters SET
    state = CASE WHEN state IN ('coded', 'held', 'skipped') THEN 'dirty' ELSE state END,
    revision = revision + 1,
    updated_at = coalesce(?, updated_at)
WHERE key = ?
"""


def _insert_message(conn: Conn, message: NewMessage, error: str | None) -> AddResult:
    """Insert unless the dedup key is known; `error` None means readable (ACCEPTED)."""
    status = MessageStatus.ACCEPTED if error is None else MessageStatus.DEAD
    params = _message_params(message, status, error or "")
    if error is None:
        inserted = conn.execute(_INSERT_MESSAGE, params).fetchall()
    else:
        dead = (*params, message.truncated, message.reason, message.error_location)
        inserted = conn.execute(_INSERT_DEAD_LETTER, dead).fetchall()
    if inserted:
        return AddResult(int(inserted[0][0]), duplicate=False)
    return _existing(conn, message)


def _existing(conn: Conn, message: NewMessage) -> AddResult:
    existing = conn.execute("SELECT id FROM messages WHERE dedup_key = ?", (message.dedup_key,))
    return AddResult(int(existing.fetchone()[0]), duplicate=True)


def _message_params(message: NewMessage, status: MessageStatus, error: str) -> tuple[object, ...]:
    return (
        message.dedup_key,
        message.format,
        message.kind,
        message.raw,
        iso_utc(message.received_at),
        message.patient_key,
        message.control_id,
        status.value,
        error,
    )


def _add_batch(conn: Conn, *, batch: Sequence[Queued]) -> list[AddResult | Exception]:
    """The group's messages in the write transaction, a few statements for the whole group
    (`_add_group`); if the database refuses one, the transaction is rolled back and begun
    again, and the group is written with a savepoint per message, so that one fails alone
    and the others are stored. Then, in the same transaction, the reused-control-id check
    of the new ones (`_with_reuse`).

    Why not a savepoint per message always: with a savepoint open SQLite journals every page
    the message changes, ~30 of ~100 µs of the store thread's CPU per message (groups of 8,
    in-process); a refused message is rare (the readers never produce one).
    """
    try:
        results: list[AddResult | Exception] = list(_add_group(conn, batch))
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")  # as `_write` began it: the lock before any read
        results = _add_one_by_one(conn, batch)
    return _with_reuse(conn, batch, results)


def _add_group(conn: Conn, batch: Sequence[Queued]) -> list[AddResult]:
    """What `_add_message` does for each message of the group, in five statements whatever
    the group's size: the table's highest id, one executemany of the inserts, one read of
    the rows numbered after that id (the new ones: ids only grow, AUTOINCREMENT, and the
    write lock keeps other writers out), one executemany of the new messages' links, one of
    their encounter upserts. A message not among the new rows is a duplicate, found by its
    key as before. The upserts run in the order the per-message writes ran them (message by
    message, each message's links in key order), so two messages touching one encounter
    leave it as they did one after the other. A group's dedup keys differ (`take_group`).
    (A resend's insert in the executemany may use up an id: ids stay increasing, with a gap.)

    A group of one is `_add_message`: three statements, not five."""
    if len(batch) == 1:
        message, links, _ = batch[0]
        return [_add_message(conn, message, links)]
    newest = _scalar(conn, "SELECT coalesce(max(id), 0) FROM messages")
    accepted = MessageStatus.ACCEPTED
    conn.executemany(_INSERT_MESSAGES, [_message_params(m, accepted, "") for m, _, _ in batch])
    new_ids = {str(key): int(i) for key, i in conn.execute(_NEW_IDS, (newest,))}
    results: list[AddResult] = []
    link_rows: list[tuple[object, ...]] = []
    touch_rows: list[tuple[object, ...]] = []
    for message, links, _ in batch:
        message_id = new_ids.get(message.dedup_key)
        if message_id is None:
            results.append(_existing(conn, message))
            continue
        _link_rows(message_id, links, message.received_at, link_rows, touch_rows)
        results.append(AddResult(message_id, duplicate=False))
    conn.executemany(_INSERT_LINK, link_rows)
    conn.executemany(_TOUCH_ENCOUNTER, touch_rows)
    return results


def _add_one_by_one(conn: Conn, batch: Sequence[Queued]) -> list[AddResult | Exception]:
    """Each message in its own savepoint: one bad message never costs the others."""
    results: list[AddResult | Exception] = []
    for message, links, _ in batch:
        conn.execute("SAVEPOINT one_message")
        try:
            results.append(_add_message(conn, message, links))
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK TO one_message")
            results.append(exc)
        conn.execute("RELEASE one_message")
    return results


def _with_reuse(
    conn: Conn, batch: Sequence[Queued], results: Sequence[AddResult | Exception]
) -> list[AddResult | Exception]:
    """The results, those whose control key is reused marked (after the whole group is
    written, so two messages of one group under one control key see each other, as the
    check after the commit did). One `_REUSED` per new message: a single json_each query
    for the group measured no faster at 8 or 32 a group and ~5 µs slower for one."""
    out = list(results)
    for i, ((message, _, _), result) in enumerate(zip(batch, results, strict=True)):
        if isinstance(result, Exception) or result.duplicate or not message.control_key:
            continue
        key = message.control_key
        if _scalar(conn, _REUSED, (message.dedup_key, key, f"{key}:", f"{key};")):
            out[i] = AddResult(result.message_id, False, control_id_reused=True)
    return out


def _add_message(conn: Conn, message: NewMessage, links: Sequence[Link]) -> AddResult:
    result = _insert_message(conn, message, None)
    if not result.duplicate:
        _link(conn, result.message_id, links, message.received_at)
    return result


def _link(conn: Conn, message_id: int, links: Sequence[Link], at: datetime) -> None:
    link_rows: list[tuple[object, ...]] = []
    touch_rows: list[tuple[object, ...]] = []
    _link_rows(message_id, links, at, link_rows, touch_rows)
    conn.executemany(_INSERT_LINK, link_rows)
    conn.executemany(_TOUCH_ENCOUNTER, touch_rows)


def _link_rows(
    message_id: int,
    links: Sequence[Link],
    at: datetime,
    link_rows: list[tuple[object, ...]],
    touch_rows: list[tuple[object, ...]],
) -> None:
    """Append the message's `message_links` rows and its `_TOUCH_ENCOUNTER` parameters (one
    per encounter, in key order; a patient-level link touches no encounter)."""
    stamp = iso_utc(at)
    for link in merge_links(links):
        link_rows.append((message_id, link.encounter_key))
        if is_patient_key(link.encounter_key):
            continue
        cutoff = None if link.cutoff_at is None else iso_utc(link.cutoff_at)
        touch_rows.append(
            (link.encounter_key, link.patient_key, stamp, int(link.close_requested), cutoff, stamp)
        )


def _get_message(conn: Conn, message_id: int) -> StoredMessage | None:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else message_from_row(row, parse_iso)


def _messages(conn: Conn, sql: str, params: Sequence[object]) -> list[StoredMessage]:
    return [message_from_row(row, parse_iso) for row in conn.execute(sql, params)]


def _for_encounter(conn: Conn, encounter_key: str, patient_key: str) -> list[StoredMessage]:
    patient_link = PATIENT_PREFIX + patient_key if patient_key else None
    sql = (
        "SELECT * FROM messages WHERE status = 'accepted' AND id IN"
        " (SELECT message_id FROM message_links WHERE encounter_key IN (?, ?)) ORDER BY id"
    )
    return _messages(conn, sql, (encounter_key, patient_link))


def _list_messages(
    conn: Conn, since: datetime | None, message_id: int | None
) -> list[StoredMessage]:
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    if since is not None:
        where.append("received_at >= ?")
        params.append(iso_utc(since))
    if message_id is not None:
        where.append("id = ?")
        params.append(message_id)
    return _messages(
        conn, f"SELECT * FROM messages WHERE {' AND '.join(where)} ORDER BY id", params
    )


def _linked_keys(conn: Conn, message_id: int) -> list[str]:
    sql = "SELECT encounter_key FROM message_links WHERE message_id = ? ORDER BY encounter_key"
    return [str(row[0]) for row in conn.execute(sql, (message_id,))]


def _set_message_status(conn: Conn, message_id: int, status: MessageStatus, error: str) -> None:
    row = conn.execute("SELECT truncated FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise LookupError(f"no stored message with id {message_id}")
    if row[0] and status is MessageStatus.ACCEPTED:
        raise TruncatedMessageError(message_id)
    sql = "UPDATE messages SET status = ?, error = ? WHERE id = ?"
    conn.execute(sql, (status.value, error, message_id))


def _apply_replay(conn: Conn, outcomes: Sequence[ReplayOutcome], now: datetime) -> None:
    for outcome in outcomes:
        if outcome.error is None:
            _relink(conn, outcome.message_id, outcome.links, now)
        else:
            _mark_dead(conn, outcome.message_id, outcome.error)
            conn.execute(
                "UPDATE messages SET reason = ?, error_location = ? WHERE id = ?",
                (outcome.reason, outcome.error_location, outcome.message_id),
            )


def _relink(conn: Conn, message_id: int, links: Sequence[Link], now: datetime) -> None:
    _set_message_status(conn, message_id, MessageStatus.ACCEPTED, "")
    new_keys = {link.encounter_key for link in links}
    left = [key for key in _linked_keys(conn, message_id) if key not in new_keys]
    conn.executemany(_BUMP_ENCOUNTER, [(iso_utc(now), key) for key in left])
    conn.execute("DELETE FROM message_links WHERE message_id = ?", (message_id,))
    _link(conn, message_id, links, now)


def _mark_dead(conn: Conn, message_id: int, error: str) -> None:
    _set_message_status(conn, message_id, MessageStatus.DEAD, error)
    conn.executemany(_BUMP_ENCOUNTER, [(None, key) for key in _linked_keys(conn, message_id)])
    conn.execute("DELETE FROM message_links WHERE message_id = ?", (message_id,))
