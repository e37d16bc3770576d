"""SQLite: the Review port (audit, review decisions in one transaction)."""

from __future__ import annotations

from datetime import datetime

from adapter.store._common import iso_utc, parse_iso
from adapter.store.ports import AuditEntry, ResourceRow, ReviewConflictError, ReviewDecision
from adapter.store.rows import audit_from_row
from adapter.store.sqlite.connection import Conn, SqliteBase
from adapter.store.sqlite.encounters import _get_encounter, _set_state
from adapter.store.sqlite.resources import _put_version

_INSERT_AUDIT = "INSERT INTO audit (at, actor, action, encounter_key, note) VALUES (?, ?, ?, ?, ?)"


class ReviewSql(SqliteBase):
    """The `Review` port on SQLite."""

    async def add_audit(self, entry: AuditEntry) -> None:
        await self._write(lambda conn: _insert_audit(conn, entry))

    async def audit_for(self, encounter_key: str) -> list[AuditEntry]:
        sql = "SELECT * FROM audit WHERE encounter_key = ? ORDER BY at, id"
        return await self._read(
            lambda conn: [audit_from_row(r, parse_iso) for r in conn.execute(sql, (encounter_key,))]
        )

    async def apply_review(
        self, decision: ReviewDecision, now: datetime, destination: str | None
    ) -> list[ResourceRow]:
        return await self._write(lambda conn: _apply_review(conn, decision, now, destination))


def _insert_audit(conn: Conn, entry: AuditEntry) -> None:
    params = (iso_utc(entry.at), entry.actor, entry.action, entry.encounter_key, entry.note)
    conn.execute(_INSERT_AUDIT, params)


def _apply_review(
    conn: Conn, decision: ReviewDecision, now: datetime, destination: str | None
) -> list[ResourceRow]:
    """Under the write lock: check the state, write the edits, the state, the audit."""
    key = decision.encounter_key
    row = _get_encounter(conn, key)
    if row is None or row.state is not decision.expected:
        raise ReviewConflictError(key, None if row is None else row.state)
    written = [
        _put_version(conn, (e.resource_type, e.resource_id), e.status, e.body, now, destination)
        for e in decision.edits
    ]
    _set_state(conn, key, decision.state, now)
    _insert_audit(conn, decision.audit)
    return written
