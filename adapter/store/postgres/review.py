"""PostgreSQL: the Review port (audit, review decisions in one transaction)."""

from __future__ import annotations

from datetime import datetime

from adapter.store._common import aware, utc
from adapter.store.planning import parse_body
from adapter.store.ports import (
    AuditEntry,
    EncounterState,
    ResourceRow,
    ReviewConflictError,
    ReviewDecision,
)
from adapter.store.postgres.connection import PostgresBase, _Conn
from adapter.store.postgres.resources import _put_version
from adapter.store.rows import audit_from_row

_INSERT_AUDIT = (
    "INSERT INTO audit (at, actor, action, encounter_key, note) VALUES ($1, $2, $3, $4, $5)"
)
_LOCK_STATE = "SELECT state FROM encounters WHERE key = $1 FOR UPDATE"
_SET_STATE = "UPDATE encounters SET state = $1, updated_at = $2 WHERE key = $3"


class ReviewPg(PostgresBase):
    """The `Review` port on PostgreSQL."""

    async def add_audit(self, entry: AuditEntry) -> None:
        async with self._tx() as conn:
            await _insert_audit(conn, entry)

    async def audit_for(self, encounter_key: str) -> list[AuditEntry]:
        sql = (
            "SELECT at, actor, action, encounter_key, note FROM audit"
            " WHERE encounter_key = $1 ORDER BY at, id"
        )
        async with self._read() as conn:
            rows = await conn.fetch(sql, encounter_key)
        return [audit_from_row(row, aware) for row in rows]

    async def apply_review(
        self, decision: ReviewDecision, now: datetime, destination: str | None
    ) -> list[ResourceRow]:
        """The encounter row locked first (a coder saving it waits), then the edits, the
        state and the audit entry, committed together."""
        key = decision.encounter_key
        edits = [(e, parse_body(e.body)) for e in decision.edits]
        async with self._tx() as conn:
            found = await conn.fetchval(_LOCK_STATE, key)
            state = None if found is None else EncounterState(found)
            if state is not decision.expected:
                raise ReviewConflictError(key, state)
            written = [
                await _put_version(
                    conn, (e.resource_type, e.resource_id), e.status, body, now, destination
                )
                for e, body in edits
            ]
            await conn.execute(_SET_STATE, decision.state.value, utc(now), key)
            await _insert_audit(conn, decision.audit)
        return written


async def _insert_audit(conn: _Conn, entry: AuditEntry) -> None:
    await conn.execute(
        _INSERT_AUDIT, utc(entry.at), entry.actor, entry.action, entry.encounter_key, entry.note
    )
