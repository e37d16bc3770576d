"""Database rows (sqlite3.Row or asyncpg.Record, by column name) to the ports' values."""

from __future__ import annotations

from adapter.store._common import RowLike, TimeDecoder
from adapter.store.planning import CurrentVersion
from adapter.store.ports import (
    AuditEntry,
    Delivery,
    EncounterRow,
    EncounterState,
    MessageStatus,
    ResourceRow,
    StoredMessage,
)


def message_from_row(row: RowLike, decode: TimeDecoder) -> StoredMessage:
    return StoredMessage(
        id=int(row["id"]),
        dedup_key=str(row["dedup_key"]),
        format=str(row["format"]),
        kind=str(row["kind"]),
        raw=bytes(row["raw"]),
        received_at=decode(row["received_at"]),
        patient_key=str(row["patient_key"]),
        control_id=str(row["control_id"]),
        status=MessageStatus(row["status"]),
        error=str(row["error"]),
        truncated=bool(row["truncated"]),
        reason=str(row["reason"]),
        error_location=str(row["error_location"]),
    )


def encounter_from_row(row: RowLike, decode: TimeDecoder) -> EncounterRow:
    cutoff = row["cutoff_at"]
    return EncounterRow(
        key=str(row["key"]),
        patient_key=str(row["patient_key"]),
        state=EncounterState(row["state"]),
        last_activity=decode(row["last_activity"]),
        close_requested=bool(row["close_requested"]),
        cutoff_at=None if cutoff is None else decode(cutoff),
        revision=int(row["revision"]),
        outcome_detail=str(row["outcome_detail"]),
        updated_at=decode(row["updated_at"]),
    )


def resource_from_row(row: RowLike, decode: TimeDecoder) -> ResourceRow:
    return ResourceRow(
        resource_type=str(row["resource_type"]),
        resource_id=str(row["resource_id"]),
        version=int(row["version"]),
        encounter_key=str(row["encounter_key"]),
        patient_ref=str(row["patient_ref"]),
        status=str(row["status"]),
        last_updated=decode(row["last_updated"]),
        body=str(row["body"]),
    )


def current_from_row(row: RowLike) -> CurrentVersion:
    digest = row["content_hash"]
    return CurrentVersion(
        resource_type=str(row["resource_type"]),
        resource_id=str(row["resource_id"]),
        version=int(row["version"]),
        encounter_key=str(row["encounter_key"]),
        status=str(row["status"]),
        content_hash=None if digest is None else str(digest),
        body=str(row["body"]),
    )


def delivery_from_row(row: RowLike, decode: TimeDecoder) -> Delivery:
    return Delivery(
        id=int(row["id"]),
        destination=str(row["destination"]),
        resource_type=str(row["resource_type"]),
        resource_id=str(row["resource_id"]),
        version=int(row["version"]),
        attempts=int(row["attempts"]),
        next_attempt_at=decode(row["next_attempt_at"]),
        last_error=str(row["last_error"]),
        rejected_at=None if row["rejected_at"] is None else decode(row["rejected_at"]),
        payload=None if row["payload"] is None else str(row["payload"]),
    )


def audit_from_row(row: RowLike, decode: TimeDecoder) -> AuditEntry:
    return AuditEntry(
        at=decode(row["at"]),
        actor=str(row["actor"]),
        action=str(row["action"]),
        encounter_key=str(row["encounter_key"]),
        note=str(row["note"]),
    )
