"""SQLite: the Encounters port (leases, coding results, states, held worklist)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from adapter.store._common import (
    iso_utc,
    parse_iso,
)
from adapter.store.planning import (
    PlannedVersion,
    PreparedCoding,
    is_stale,
    plan_coding,
    prepare_codings,
)
from adapter.store.ports import (
    CodingResult,
    EncounterRow,
    EncounterState,
    HeldItem,
    HeldPage,
    HeldQuery,
    Lease,
    NewResource,
    SaveResult,
)
from adapter.store.queries import (
    HELD_FROM,
    held_filters,
    reason_counts,
)
from adapter.store.rows import encounter_from_row
from adapter.store.sqlite.connection import Conn, SqliteBase
from adapter.store.sqlite.resources import _current_versions, _write_versions


class EncountersSql(SqliteBase):
    """The `Encounters` port on SQLite."""

    async def lease_ready(
        self, now: datetime, quiet_before: datetime, owner: str, lease_seconds: int, limit: int
    ) -> list[Lease]:
        until = now + timedelta(seconds=lease_seconds)
        return await self._write(
            lambda conn: _lease_ready(conn, now, quiet_before, owner, until, limit)
        )

    async def save_codings(
        self, results: Sequence[CodingResult], now: datetime, destination: str | None
    ) -> list[SaveResult]:
        if not results:
            return []
        # serialised and hashed here, outside the write lock (ingest waits behind it)
        prepared = prepare_codings(results)
        save = functools.partial(_save_codings, codings=prepared, now=now, destination=destination)
        return await self._write(save)

    async def save_coding(
        self,
        lease: Lease,
        state: EncounterState,
        outcome_detail: str,
        resources: Sequence[NewResource],
        now: datetime,
        destination: str | None,
    ) -> SaveResult:
        result = CodingResult(lease, state, outcome_detail, resources)
        return (await self.save_codings([result], now, destination))[0]

    async def release_lease(self, lease: Lease) -> None:
        await self._write(lambda conn: _release(conn, lease.encounter.key, lease.owner))

    async def get_encounter(self, key: str) -> EncounterRow | None:
        return await self._read(lambda conn: _get_encounter(conn, key))

    async def encounters_in_state(
        self, state: EncounterState, limit: int = 100
    ) -> list[EncounterRow]:
        sql = "SELECT * FROM encounters WHERE state = ? ORDER BY updated_at, key LIMIT ?"
        return await self._read(
            lambda conn: [_encounter(r) for r in conn.execute(sql, (state.value, limit))]
        )

    async def held_worklist(self, query: HeldQuery) -> HeldPage:
        return await self._read(lambda conn: _held_worklist(conn, query))

    async def set_state(self, key: str, state: EncounterState, now: datetime) -> None:
        await self._write(lambda conn: _set_state(conn, key, state, now))


# --- encounters ---------------------------------------------------------------------------

_LEASE_READY = """
UPDATE encounters SET lease_owner = :owner, lease_until = :until
WHERE key IN (
    SELECT key FROM encounters
    WHERE (state = 'dirty'
           OR (state = 'open' AND (close_requested = 1 OR last_activity <= :quiet
                                   OR cutoff_at <= :now)))
      AND (lease_until IS NULL OR lease_until <= :now OR lease_owner = :owner)
    ORDER BY last_activity, key
    LIMIT :limit)
RETURNING *
"""


def _encounter(row: sqlite3.Row) -> EncounterRow:
    return encounter_from_row(row, parse_iso)


def _held_worklist(conn: Conn, query: HeldQuery) -> HeldPage:
    source = HELD_FROM.format(is_true="= 1")
    where, args = held_filters(query, _json_text, lambda: "?")
    rows = conn.execute(
        f"SELECT e.*, r.body AS claim_body{source}{where}"
        " ORDER BY e.updated_at, e.key LIMIT ? OFFSET ?",
        (*args, query.limit, query.offset),
    ).fetchall()
    (total,) = conn.execute(f"SELECT COUNT(*){source}{where}", args).fetchone()
    details = conn.execute(
        "SELECT outcome_detail, COUNT(*) FROM encounters WHERE state = 'held'"
        " GROUP BY outcome_detail"
    ).fetchall()
    location = _json_text(("provider", "display"))
    locations = conn.execute(
        f"SELECT DISTINCT {location}{source} AND {location} IS NOT NULL ORDER BY 1"
    ).fetchall()
    return HeldPage(
        tuple(HeldItem(_encounter(r), r["claim_body"] or "") for r in rows),
        int(total),
        sum(int(n) for _, n in details),
        reason_counts((str(d), int(n)) for d, n in details),
        tuple(str(loc) for (loc,) in locations),
    )


def _json_text(path: tuple[str, ...]) -> str:
    """SQLite's text at a constant JSON path of the Claim body."""
    steps = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path)
    return f"json_extract(r.body, '${steps}')"


def _get_encounter(conn: Conn, key: str) -> EncounterRow | None:
    row = conn.execute("SELECT * FROM encounters WHERE key = ?", (key,)).fetchone()
    return None if row is None else _encounter(row)


def _lease_ready(
    conn: Conn, now: datetime, quiet_before: datetime, owner: str, until: datetime, limit: int
) -> list[Lease]:
    params: dict[str, Any] = {
        "owner": owner,
        "until": iso_utc(until),
        "quiet": iso_utc(quiet_before),
        "now": iso_utc(now),
        "limit": limit,
    }
    rows = [_encounter(row) for row in conn.execute(_LEASE_READY, params).fetchall()]
    rows.sort(key=lambda e: (e.last_activity, e.key))
    return [Lease(encounter=row, owner=owner, until=until) for row in rows]


def _release(conn: Conn, key: str, owner: str) -> None:
    sql = (
        "UPDATE encounters SET lease_owner = NULL, lease_until = NULL"
        " WHERE key = ? AND lease_owner = ?"
    )
    conn.execute(sql, (key, owner))


def _set_state(conn: Conn, key: str, state: EncounterState, now: datetime) -> None:
    sql = "UPDATE encounters SET state = ?, updated_at = ? WHERE key = ?"
    if conn.execute(sql, (state.value, iso_utc(now), key)).rowcount == 0:
        raise LookupError("no such encounter")


_CODING_CHECK = "SELECT revision, lease_owner FROM encounters WHERE key = ?"

_FINISH_CODING = """
UPDATE encounters SET state = ?, outcome_detail = ?, updated_at = ?,
                      lease_owner = NULL, lease_until = NULL
WHERE key = ?
"""


def _save_codings(
    conn: Conn, *, codings: Sequence[PreparedCoding], now: datetime, destination: str | None
) -> list[SaveResult]:
    """Plan each result against the current versions, then write all of them at once."""
    saved: list[SaveResult] = []
    planned: list[PlannedVersion] = []
    finished: list[tuple[str, str, str, str]] = []
    for coding in codings:
        result = coding.result
        mine = _plan_one(conn, coding, now)
        if mine is None:
            saved.append(SaveResult(written=(), stale=True))
            continue
        planned.extend(mine)
        key = result.lease.encounter.key
        finished.append((result.state.value, result.outcome_detail, iso_utc(now), key))
        saved.append(SaveResult(written=tuple(p.row for p in mine), stale=False))
    _write_versions(conn, planned, destination, now)
    conn.executemany(_FINISH_CODING, finished)
    return saved


def _plan_one(conn: Conn, coding: PreparedCoding, now: datetime) -> list[PlannedVersion] | None:
    """The new versions of one result; None when it is stale (its lease is released)."""
    lease = coding.result.lease
    key = lease.encounter.key
    row = conn.execute(_CODING_CHECK, (key,)).fetchone()
    if row is None or is_stale(lease, int(row[0]), row[1]):
        _release(conn, key, lease.owner)
        return None
    current = _current_versions(conn, key, coding.resources)
    return plan_coding(key, coding.resources, current, now)
