"""SQLite: the Outbox and DftPostings ports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapter.store._common import (
    MAX_ERROR_CHARS,
    iso_utc,
    parse_iso,
)
from adapter.store.ports import Delivery
from adapter.store.rows import delivery_from_row
from adapter.store.sqlite.connection import Conn, SqliteBase, _scalar


class OutboxSql(SqliteBase):
    """The `Outbox` and `DftPostings` ports on SQLite."""

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        sql = (
            "SELECT * FROM outbox WHERE delivered_at IS NULL AND rejected_at IS NULL"
            " AND next_attempt_at <= ? ORDER BY id LIMIT ?"
        )
        return await self._read(
            lambda conn: [
                delivery_from_row(r, parse_iso) for r in conn.execute(sql, (iso_utc(now), limit))
            ]
        )

    async def undelivered(
        self, destination: str, resource_type: str, ids: Sequence[str]
    ) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        sql = (
            "SELECT DISTINCT resource_id FROM outbox WHERE delivered_at IS NULL"
            " AND rejected_at IS NULL"
            f" AND destination = ? AND resource_type = ? AND resource_id IN ({marks})"
        )
        params = (destination, resource_type, *ids)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return {str(row[0]) for row in rows}

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        sql = "UPDATE outbox SET delivered_at = ? WHERE id = ?"
        await self._write(lambda conn: conn.execute(sql, (iso_utc(now), delivery_id)))

    async def mark_delivered_many(self, delivery_ids: Sequence[int], now: datetime) -> None:
        if not delivery_ids:
            return
        sql = "UPDATE outbox SET delivered_at = ? WHERE id = ?"
        at = iso_utc(now)
        await self._write(lambda conn: conn.executemany(sql, [(at, i) for i in delivery_ids]))

    async def mark_failed(self, delivery_id: int, error: str, next_attempt_at: datetime) -> None:
        sql = (
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?"
        )
        params = (error[:MAX_ERROR_CHARS], iso_utc(next_attempt_at), delivery_id)
        await self._write(lambda conn: conn.execute(sql, params))

    async def mark_rejected(self, delivery_id: int, error: str, now: datetime) -> None:
        sql = (
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, rejected_at = ?"
            " WHERE id = ?"
        )
        params = (error[:MAX_ERROR_CHARS], iso_utc(now), delivery_id)
        await self._write(lambda conn: conn.execute(sql, params))

    async def rejected_deliveries(self, limit: int, offset: int) -> tuple[list[Delivery], int]:
        def read(conn: Conn) -> tuple[list[Delivery], int]:
            total = _scalar(conn, "SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL")
            sql = "SELECT * FROM outbox WHERE rejected_at IS NOT NULL ORDER BY id LIMIT ? OFFSET ?"
            rows = conn.execute(sql, (max(limit, 0), max(offset, 0)))
            return [delivery_from_row(r, parse_iso) for r in rows], total

        return await self._read(read)

    async def queued_before(
        self, destination: str, resource_type: str, resource_id: str, version: int
    ) -> bool:
        sql = (
            "SELECT 1 FROM outbox WHERE delivered_at IS NULL AND rejected_at IS NULL"
            " AND destination = ? AND resource_type = ? AND resource_id = ? AND version < ?"
            " LIMIT 1"
        )
        params = (destination, resource_type, resource_id, version)
        return await self._read(lambda conn: conn.execute(sql, params).fetchone() is not None)

    async def queued_ahead(self, destination: str, ordering_key: str, before_id: int) -> str | None:
        params = (destination, ordering_key, before_id)
        row = await self._read(lambda conn: conn.execute(_QUEUED_AHEAD, params).fetchone())
        return None if row is None else f"{row['resource_type']}/{row['resource_id']}"

    # --- DFT postings -----------------------------------------------------------------

    async def dft_posting(self, destination: str, encounter_key: str) -> str | None:
        sql = "SELECT posting FROM dft_postings WHERE destination = ? AND encounter_key = ?"
        row = await self._read(
            lambda conn: conn.execute(sql, (destination, encounter_key)).fetchone()
        )
        return None if row is None else str(row[0])

    async def set_dft_posting(
        self, destination: str, encounter_key: str, version: int, posting: str, now: datetime
    ) -> None:
        params = (destination, encounter_key, version, posting, iso_utc(now))
        await self._write(lambda conn: conn.execute(_UPSERT_POSTING, params))

    async def dft_since(self, destination: str, now: datetime) -> datetime:
        def write(conn: Conn) -> datetime:
            conn.execute(_DFT_START, (destination, iso_utc(now)))
            row = conn.execute(_DFT_STARTED, (destination,)).fetchone()
            return parse_iso(row[0])

        return await self._write(write)

    async def claims_ahead_of_dft(
        self, destination: str, since: datetime, limit: int
    ) -> list[tuple[str, int]]:
        params = (destination, iso_utc(since), limit)
        rows = await self._read(lambda conn: conn.execute(_CLAIMS_AHEAD, params).fetchall())
        return [(str(r[0]), int(r[1])) for r in rows]

    async def queue_message(
        self,
        destination: str,
        resource: tuple[str, str, int],
        payload: str,
        encounter_key: str,
        posting: str,
        now: datetime,
        ordering_key: str = "",
    ) -> None:
        at = iso_utc(now)
        order = ordering_key or None
        row = (destination, *resource, at, at, payload, order, posting)

        def write(conn: Conn) -> None:
            conn.execute(_QUEUE_MESSAGE, row)
            conn.execute(_UPSERT_POSTING, (destination, encounter_key, resource[2], posting, at))

        await self._write(write)

    async def reject_dft(
        self,
        delivery_id: int,
        error: str,
        now: datetime,
        encounter_key: str,
        nothing_posted: str,
    ) -> int:
        at = iso_utc(now)

        def write(conn: Conn) -> int:
            found = conn.execute(_REFUSED_ROW, (delivery_id,)).fetchone()
            conn.execute(_REJECT, (error[:MAX_ERROR_CHARS], at, delivery_id))
            if found is None:
                return 0
            destination, rtype = str(found["destination"]), str(found["resource_type"])
            rid, version = str(found["resource_id"]), int(found["version"])
            why = _SUPERSEDED.format(v=version)[:MAX_ERROR_CHARS]
            later = conn.execute(_REJECT_LATER, (why, at, destination, rtype, rid, version))
            accepted = conn.execute(_ACCEPTED, (destination, rtype, rid, version)).fetchone()
            posting = nothing_posted if accepted is None else str(accepted[0])
            conn.execute(_UPSERT_POSTING, (destination, encounter_key, version, posting, at))
            return int(later.rowcount)

        return await self._write(write)


_QUEUE_MESSAGE = """
INSERT INTO outbox (destination, resource_type, resource_id, version, next_attempt_at,
                    created_at, payload, ordering_key, posting)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_QUEUED_AHEAD = """
SELECT resource_type, resource_id FROM outbox
WHERE destination = ? AND ordering_key = ? AND id < ?
  AND delivered_at IS NULL AND rejected_at IS NULL
ORDER BY id LIMIT 1
"""
_REFUSED_ROW = "SELECT destination, resource_type, resource_id, version FROM outbox WHERE id = ?"
_REJECT = "UPDATE outbox SET attempts = attempts + 1, last_error = ?, rejected_at = ? WHERE id = ?"
_REJECT_LATER = """
UPDATE outbox SET last_error = ?, rejected_at = ?
WHERE destination = ? AND resource_type = ? AND resource_id = ? AND version > ?
  AND delivered_at IS NULL AND rejected_at IS NULL
"""
_ACCEPTED = """
SELECT posting FROM outbox
WHERE destination = ? AND resource_type = ? AND resource_id = ? AND version < ?
  AND delivered_at IS NOT NULL AND posting IS NOT NULL
ORDER BY version DESC, id DESC LIMIT 1
"""
_SUPERSEDED = (
    "not sent: built on version {v}, which the receiver refused;"
    " the current Claim is queued again against what the receiver accepted"
)

_CLAIMS_AHEAD = """
SELECT rv.encounter_key, rv.version FROM resource_versions rv
LEFT JOIN dft_postings p ON p.destination = ? AND p.encounter_key = rv.encounter_key
WHERE rv.resource_type = 'Claim' AND rv.is_current = 1 AND rv.encounter_key <> ''
  AND rv.version > COALESCE(p.version, 0) AND rv.last_updated >= ?
ORDER BY rv.last_updated LIMIT ?
"""
# the row of encounter key '' marks when DFTs for the destination began
_DFT_START = """
INSERT INTO dft_postings (destination, encounter_key, version, posting, updated_at)
VALUES (?, '', 0, '', ?) ON CONFLICT (destination, encounter_key) DO NOTHING
"""
_DFT_STARTED = "SELECT updated_at FROM dft_postings WHERE destination = ? AND encounter_key = ''"
_UPSERT_POSTING = """
INSERT INTO dft_postings (destination, encounter_key, version, posting, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (destination, encounter_key) DO UPDATE
SET version = excluded.version, posting = excluded.posting, updated_at = excluded.updated_at
"""
