"""SQLite: the Resources port (versions, history, search)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from adapter.store._common import iso_utc, parse_iso
from adapter.store.planning import (
    CurrentVersion,
    PlannedVersion,
    PreparedResource,
    new_version,
    parse_body,
)
from adapter.store.ports import (
    ResourceRow,
    SearchQuery,
)
from adapter.store.queries import search_filters
from adapter.store.rows import current_from_row, resource_from_row
from adapter.store.sqlite.connection import Conn, SqliteBase, _scalar


class ResourcesSql(SqliteBase):
    """The `Resources` port on SQLite."""

    async def read_resource(
        self, resource_type: str, resource_id: str, version: int | None = None
    ) -> ResourceRow | None:
        return await self._read(
            lambda conn: _read_resource(conn, resource_type, resource_id, version)
        )

    async def history(self, resource_type: str, resource_id: str) -> list[ResourceRow]:
        sql = (
            "SELECT * FROM resource_versions WHERE resource_type = ? AND resource_id = ?"
            " ORDER BY version DESC"
        )
        return await self._read(
            lambda conn: [_resource(r) for r in conn.execute(sql, (resource_type, resource_id))]
        )

    async def search(self, query: SearchQuery) -> tuple[list[ResourceRow], int]:
        return await self._read(lambda conn: _search(conn, query))

    async def put_resource_version(
        self,
        resource_type: str,
        resource_id: str,
        status: str,
        body: str,
        now: datetime,
        destination: str | None,
    ) -> ResourceRow:
        key = (resource_type, resource_id)
        return await self._write(
            lambda conn: _put_version(conn, key, status, body, now, destination)
        )


def _resource(row: sqlite3.Row) -> ResourceRow:
    return resource_from_row(row, parse_iso)


# --- resources ------------------------------------------------------------------------------


# The current versions of the encounter's resources and of the incoming ones (another
# encounter's), in one query; the incoming keys are one JSON array parameter, so the
# statement text is fixed. Written as a UNION of two index lookups: a row-value IN over
# the union scanned every current row.
_CURRENT_VERSIONS = """
SELECT resource_type, resource_id, version, encounter_key, status, content_hash, body
FROM resource_versions WHERE is_current = 1 AND encounter_key = :encounter
UNION ALL
SELECT r.resource_type, r.resource_id, r.version, r.encounter_key, r.status, r.content_hash,
       r.body
FROM json_each(:keys) AS k
JOIN resource_versions AS r
  ON r.resource_type = k.value ->> 0 AND r.resource_id = k.value ->> 1 AND r.is_current = 1
WHERE r.encounter_key <> :encounter
"""

_SUPERSEDE = (
    "UPDATE resource_versions SET is_current = 0"
    " WHERE resource_type = ? AND resource_id = ? AND is_current = 1"
)

_INSERT_VERSION = """
INSERT INTO resource_versions (resource_type, resource_id, version, is_current, encounter_key,
                               patient_ref, status, last_updated, body, content_hash)
VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)
"""

_QUEUE = """
INSERT INTO outbox (destination, resource_type, resource_id, version, next_attempt_at,
                    created_at)
VALUES (?, ?, ?, ?, ?, ?)
"""


def _current_versions(
    conn: Conn, encounter_key: str, resources: Sequence[PreparedResource]
) -> dict[tuple[str, str], CurrentVersion]:
    keys = json.dumps([list(r.key) for r in resources])
    params = {"encounter": encounter_key, "keys": keys}
    rows = map(current_from_row, conn.execute(_CURRENT_VERSIONS, params))
    return {(row.resource_type, row.resource_id): row for row in rows}


def _write_versions(
    conn: Conn, planned: Sequence[PlannedVersion], destination: str | None, now: datetime
) -> None:
    """The new versions become current (one executemany per statement); each is queued
    for delivery."""
    conn.executemany(
        _SUPERSEDE,
        [(p.row.resource_type, p.row.resource_id) for p in planned if p.replaces_current],
    )
    conn.executemany(_INSERT_VERSION, [_version_params(p) for p in planned])
    if destination is not None:
        stamp = iso_utc(now)
        conn.executemany(
            _QUEUE,
            [
                (destination, p.row.resource_type, p.row.resource_id, p.row.version, stamp, stamp)
                for p in planned
            ],
        )


def _version_params(planned: PlannedVersion) -> tuple[object, ...]:
    row = planned.row
    return (
        row.resource_type,
        row.resource_id,
        row.version,
        row.encounter_key,
        row.patient_ref,
        row.status,
        iso_utc(row.last_updated),
        row.body,
        planned.content_hash,
    )


def _read_resource(
    conn: Conn, resource_type: str, resource_id: str, version: int | None
) -> ResourceRow | None:
    sql = "SELECT * FROM resource_versions WHERE resource_type = ? AND resource_id = ?"
    if version is None:
        row = conn.execute(sql + " AND is_current = 1", (resource_type, resource_id)).fetchone()
    else:
        params = (resource_type, resource_id, version)
        row = conn.execute(sql + " AND version = ?", params).fetchone()
    return None if row is None else _resource(row)


def _put_version(
    conn: Conn,
    key: tuple[str, str],
    status: str,
    body: str,
    now: datetime,
    destination: str | None,
) -> ResourceRow:
    current = _read_resource(conn, key[0], key[1], None)
    version, encounter_key = (current.version, current.encounter_key) if current else (None, "")
    planned = new_version(version, key, encounter_key, status, parse_body(body), now)
    _write_versions(conn, [planned], destination, now)
    return planned.row


def _search(conn: Conn, query: SearchQuery) -> tuple[list[ResourceRow], int]:
    where, params = search_filters(query, "is_current = 1", lambda _n: "?", iso_utc)
    total = _scalar(conn, f"SELECT count(*) FROM resource_versions WHERE {where}", params)
    sql = (
        f"SELECT * FROM resource_versions WHERE {where}"
        " ORDER BY last_updated DESC, resource_type, resource_id LIMIT ? OFFSET ?"
    )
    page = [max(query.count, 0), max(query.offset, 0)]
    return [_resource(row) for row in conn.execute(sql, [*params, *page])], total
