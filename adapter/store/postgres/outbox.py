"""PostgreSQL: the Outbox and DftPostings ports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapter.store._common import (
    MAX_ERROR_CHARS,
    aware,
    utc,
)
from adapter.store.ports import Delivery
from adapter.store.postgres.connection import (
    DELIVERY_COLUMNS,
    PostgresBase,
)
from adapter.store.rows import delivery_from_row


class OutboxPg(PostgresBase):
    """The `Outbox` and `DftPostings` ports on PostgreSQL."""

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM outbox"
            " WHERE delivered_at IS NULL AND rejected_at IS NULL AND next_attempt_at <= $1"
            " ORDER BY id LIMIT $2"
        )
        async with self._read() as conn:
            rows = await conn.fetch(sql, utc(now), limit)
        return [delivery_from_row(row, aware) for row in rows]

    async def undelivered(
        self, destination: str, resource_type: str, ids: Sequence[str]
    ) -> set[str]:
        if not ids:
            return set()
        sql = (
            "SELECT DISTINCT resource_id FROM outbox WHERE delivered_at IS NULL"
            " AND rejected_at IS NULL"
            " AND destination = $1 AND resource_type = $2 AND resource_id = ANY($3::text[])"
        )
        async with self._read() as conn:
            rows = await conn.fetch(sql, destination, resource_type, list(ids))
        return {str(row["resource_id"]) for row in rows}

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        async with self._tx() as conn:
            sql = "UPDATE outbox SET delivered_at = $1 WHERE id = $2"
            await conn.execute(sql, utc(now), delivery_id)

    async def mark_delivered_many(self, delivery_ids: Sequence[int], now: datetime) -> None:
        if not delivery_ids:
            return
        sql = "UPDATE outbox SET delivered_at = $1 WHERE id = ANY($2::bigint[])"
        async with self._tx() as conn:
            await conn.execute(sql, utc(now), list(delivery_ids))

    async def mark_failed(self, delivery_id: int, error: str, next_attempt_at: datetime) -> None:
        sql = (
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2"
            " WHERE id = $3"
        )
        async with self._tx() as conn:
            await conn.execute(sql, error[:MAX_ERROR_CHARS], utc(next_attempt_at), delivery_id)

    async def mark_rejected(self, delivery_id: int, error: str, now: datetime) -> None:
        sql = (
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, rejected_at = $2"
            " WHERE id = $3"
        )
        async with self._tx() as conn:
            await conn.execute(sql, error[:MAX_ERROR_CHARS], utc(now), delivery_id)

    async def rejected_deliveries(self, limit: int, offset: int) -> tuple[list[Delivery], int]:
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE rejected_at IS NOT NULL"
            " ORDER BY id LIMIT $1 OFFSET $2"
        )
        async with self._read() as conn:
            total = await conn.fetchval("SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL")
            rows = await conn.fetch(sql, max(limit, 0), max(offset, 0))
        return [delivery_from_row(row, aware) for row in rows], int(total)

    async def queued_before(
        self, destination: str, resource_type: str, resource_id: str, version: int
    ) -> bool:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE delivered_at IS NULL"
            " AND rejected_at IS NULL AND destination = $1 AND resource_type = $2"
            " AND resource_id = $3 AND version < $4)"
        )
        async with self._read() as conn:
            return bool(await conn.fetchval(sql, destination, resource_type, resource_id, version))

    async def queued_ahead(self, destination: str, ordering_key: str, before_id: int) -> str | None:
        async with self._read() as conn:
            row = await conn.fetchrow(_QUEUED_AHEAD, destination, ordering_key, before_id)
        return None if row is None else f"{row['resource_type']}/{row['resource_id']}"

    # --- DFT postings -----------------------------------------------------------------

    async def dft_posting(self, destination: str, encounter_key: str) -> str | None:
        sql = "SELECT posting FROM dft_postings WHERE destination = $1 AND encounter_key = $2"
        async with self._read() as conn:
            value = await conn.fetchval(sql, destination, encounter_key)
        return None if value is None else str(value)

    async def set_dft_posting(
        self, destination: str, encounter_key: str, version: int, posting: str, now: datetime
    ) -> None:
        async with self._tx() as conn:
            await conn.execute(
                _UPSERT_POSTING, destination, encounter_key, version, posting, utc(now)
            )

    async def dft_since(self, destination: str, now: datetime) -> datetime:
        async with self._tx() as conn:
            await conn.execute(_DFT_START, destination, utc(now))
            value = await conn.fetchval(_DFT_STARTED, destination)
        return aware(value)

    async def claims_ahead_of_dft(
        self, destination: str, since: datetime, limit: int
    ) -> list[tuple[str, int]]:
        async with self._read() as conn:
            rows = await conn.fetch(_CLAIMS_AHEAD, destination, utc(since), limit)
        return [(str(r["encounter_key"]), int(r["version"])) for r in rows]

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
        at = utc(now)
        order = ordering_key or None
        async with self._tx() as conn:
            await conn.execute(
                _QUEUE_MESSAGE, destination, *resource, at, at, payload, order, posting
            )
            await conn.execute(
                _UPSERT_POSTING, destination, encounter_key, resource[2], posting, at
            )

    async def reject_dft(
        self,
        delivery_id: int,
        error: str,
        now: datetime,
        encounter_key: str,
        nothing_posted: str,
    ) -> int:
        at = utc(now)
        async with self._tx() as conn:
            found = await conn.fetchrow(_REFUSED_ROW, delivery_id)
            await conn.execute(_REJECT, error[:MAX_ERROR_CHARS], at, delivery_id)
            if found is None:
                return 0
            destination, rtype = str(found["destination"]), str(found["resource_type"])
            rid, version = str(found["resource_id"]), int(found["version"])
            why = _SUPERSEDED.format(v=version)[:MAX_ERROR_CHARS]
            later = await conn.fetch(_REJECT_LATER, why, at, destination, rtype, rid, version)
            accepted = await conn.fetchval(_ACCEPTED, destination, rtype, rid, version)
            posting = nothing_posted if accepted is None else str(accepted)
            await conn.execute(_UPSERT_POSTING, destination, encounter_key, version, posting, at)
            return len(later)


_QUEUE_MESSAGE = """
INSERT INTO outbox (destination, resource_type, resource_id, version, next_attempt_at,
                    created_at, payload, ordering_key, posting)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
_QUEUED_AHEAD = """
SELECT resource_type, resource_id FROM outbox
WHERE destination = $1 AND ordering_key = $2 AND id < $3
  AND delivered_at IS NULL AND rejected_at IS NULL
ORDER BY id LIMIT 1
"""
_REFUSED_ROW = "SELECT destination, resource_type, resource_id, version FROM outbox WHERE id = $1"
_REJECT = (
    "UPDATE outbox SET attempts = attempts + 1, last_error = $1, rejected_at = $2 WHERE id = $3"
)
_REJECT_LATER = """
UPDATE outbox SET last_error = $1, rejected_at = $2
WHERE destination = $3 AND resource_type = $4 AND resource_id = $5 AND version > $6
  AND delivered_at IS NULL AND rejected_at IS NULL
RETURNING id
"""
_ACCEPTED = """
SELECT posting FROM outbox
WHERE destination = $1 AND resource_type = $2 AND resource_id = $3 AND version < $4
  AND delivered_at IS NOT NULL AND posting IS NOT NULL
ORDER BY version DESC, id DESC LIMIT 1
"""
_SUPERSEDED = (
    "not sent: built on version {v}, which the receiver refused;"
    " the current Claim is queued again against what the receiver accepted"
)

_CLAIMS_AHEAD = """
SELECT rv.encounter_key, rv.version FROM resource_versions rv
LEFT JOIN dft_postings p ON p.destination = $1 AND p.encounter_key = rv.encounter_key
WHERE rv.resource_type = 'Claim' AND rv.is_current = TRUE AND rv.encounter_key <> ''
  AND rv.version > COALESCE(p.version, 0) AND rv.last_updated >= $2
ORDER BY rv.last_updated LIMIT $3
"""
# the row of encounter key '' marks when DFTs for the destination began
_DFT_START = """
INSERT INTO dft_postings (destination, encounter_key, version, posting, updated_at)
VALUES ($1, '', 0, '', $2) ON CONFLICT (destination, encounter_key) DO NOTHING
"""
_DFT_STARTED = "SELECT updated_at FROM dft_postings WHERE destination = $1 AND encounter_key = ''"
_UPSERT_POSTING = """
INSERT INTO dft_postings (destination, encounter_key, version, posting, updated_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (destination, encounter_key) DO UPDATE
SET version = excluded.version, posting = excluded.posting, updated_at = excluded.updated_at
"""
