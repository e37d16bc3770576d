"""PostgreSQL: the Resources port (versions, history, search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from adapter.store._common import (
    aware,
    utc,
)
from adapter.store.planning import (
    PlannedVersion,
    new_version,
    parse_body,
)
from adapter.store.ports import (
    CodingResult,
    ResourceRow,
    SearchQuery,
)
from adapter.store.postgres.connection import (
    RESOURCE_COLUMNS,
    PostgresBase,
    _Conn,
)
from adapter.store.queries import search_filters
from adapter.store.rows import resource_from_row


class ResourcesPg(PostgresBase):
    """The `Resources` port on PostgreSQL."""

    async def read_resource(
        self, resource_type: str, resource_id: str, version: int | None = None
    ) -> ResourceRow | None:
        async with self._read() as conn:
            return await _read_resource(conn, resource_type, resource_id, version)

    async def history(self, resource_type: str, resource_id: str) -> list[ResourceRow]:
        sql = (
            f"SELECT {RESOURCE_COLUMNS} FROM resource_versions"
            " WHERE resource_type = $1 AND resource_id = $2 ORDER BY version DESC"
        )
        async with self._read() as conn:
            rows = await conn.fetch(sql, resource_type, resource_id)
        return [resource_from_row(row, aware) for row in rows]

    async def search(self, query: SearchQuery) -> tuple[list[ResourceRow], int]:
        where, params = search_filters(query, "is_current", lambda n: f"${n}", utc)
        n = len(params)
        sql = (
            f"SELECT {RESOURCE_COLUMNS} FROM resource_versions WHERE {where}"
            " ORDER BY last_updated DESC, resource_type, resource_id"
            f" LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        page = (max(query.count, 0), max(query.offset, 0))
        async with self._read() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM resource_versions WHERE {where}", *params
            )
            rows = await conn.fetch(sql, *params, *page)
        return [resource_from_row(row, aware) for row in rows], int(total)

    async def put_resource_version(
        self,
        resource_type: str,
        resource_id: str,
        status: str,
        body: str,
        now: datetime,
        destination: str | None,
    ) -> ResourceRow:
        parsed = parse_body(body)
        async with self._tx() as conn:
            key = (resource_type, resource_id)
            return await _put_version(conn, key, status, parsed, now, destination)


async def _put_version(
    conn: _Conn,
    key: tuple[str, str],
    status: str,
    body: Mapping[str, Any],
    now: datetime,
    destination: str | None,
) -> ResourceRow:
    """A new version of one resource, its current one locked; queued when `destination`."""
    current = await _read_resource(conn, key[0], key[1], None, lock=True)
    version = current.version if current else None
    encounter_key = current.encounter_key if current else ""
    planned = new_version(version, key, encounter_key, status, body, now)
    await _write_versions(conn, [planned], destination, now, ())
    return planned.row


# Every new version in one statement: the replaced ones stop being current (the scalar
# subquery makes that finish before the first insert, which the partial unique index
# `resource_current` needs), the new ones are inserted and queued for delivery when
# $12 (the destination) is not NULL; then the finished encounters get their state.
_SAVE_CODINGS = """
WITH superseded AS (
    UPDATE resource_versions AS r SET is_current = FALSE
    FROM unnest($1::text[], $2::text[]) AS s (resource_type, resource_id)
    WHERE r.resource_type = s.resource_type AND r.resource_id = s.resource_id AND r.is_current
    RETURNING r.resource_id
), inserted AS (
    INSERT INTO resource_versions (resource_type, resource_id, version, encounter_key,
                                   patient_ref, status, last_updated, body, content_hash,
                                   is_current)
    SELECT n.*, TRUE
    FROM unnest($3::text[], $4::text[], $5::integer[], $6::text[], $7::text[], $8::text[],
                $9::timestamptz[], $10::text[], $11::text[]) AS n
    WHERE (SELECT count(*) FROM superseded) >= 0
    RETURNING resource_type, resource_id, version
), queued AS (
    INSERT INTO outbox (destination, resource_type, resource_id, version, next_attempt_at,
                        created_at)
    SELECT $12::text, resource_type, resource_id, version, $13, $13
    FROM inserted WHERE $12::text IS NOT NULL
)
UPDATE encounters AS e SET state = f.state, outcome_detail = f.detail, updated_at = $13,
                           lease_owner = NULL, lease_until = NULL
FROM unnest($14::text[], $15::text[], $16::text[]) AS f (key, state, detail)
WHERE e.key = f.key
"""


async def _write_versions(
    conn: _Conn,
    planned: Sequence[PlannedVersion],
    destination: str | None,
    now: datetime,
    finished: Sequence[CodingResult],
) -> None:
    """The new versions become current, each queued for delivery, and the `finished`
    encounters get their state, lease cleared: one statement."""
    if not planned and not finished:
        return
    replaced = [p.row for p in planned if p.replaces_current]
    rows = [p.row for p in planned]
    await conn.execute(
        _SAVE_CODINGS,
        [r.resource_type for r in replaced],
        [r.resource_id for r in replaced],
        [r.resource_type for r in rows],
        [r.resource_id for r in rows],
        [r.version for r in rows],
        [r.encounter_key for r in rows],
        [r.patient_ref for r in rows],
        [r.status for r in rows],
        [r.last_updated for r in rows],
        [r.body for r in rows],
        [p.content_hash for p in planned],
        destination,
        utc(now),
        [f.lease.encounter.key for f in finished],
        [f.state.value for f in finished],
        [f.outcome_detail for f in finished],
    )


async def _read_resource(
    conn: _Conn, resource_type: str, resource_id: str, version: int | None, lock: bool = False
) -> ResourceRow | None:
    sql = (
        f"SELECT {RESOURCE_COLUMNS} FROM resource_versions"
        " WHERE resource_type = $1 AND resource_id = $2"
        " AND ($3::integer IS NULL AND is_current OR version = $3)"
    )
    row = await conn.fetchrow(
        sql + (" FOR UPDATE" if lock else ""), resource_type, resource_id, version
    )
    return None if row is None else resource_from_row(row, aware)
