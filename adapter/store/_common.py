"""What both store backends share: time rules, migrations on disk, resource versioning.

Kept free of any database so that SQLite and PostgreSQL decide the same things the same
way (which body counts as changed, which resources are retired, where `meta` goes) and
only differ in SQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from adapter.store.base import (
    AuditEntry,
    Delivery,
    EncounterRow,
    EncounterState,
    Link,
    MessageStatus,
    ResourceRow,
    SearchQuery,
    StoredMessage,
)

PATIENT_PREFIX = "patient:"  # a patient-level link (conditions, coverages): not an encounter
RETIRED_STATUS = {"ChargeItem": "entered-in-error", "Task": "cancelled"}
MAX_ERROR_CHARS = 4000  # a delivery error is a server's answer: keep it bounded

_MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class StoreClosedError(RuntimeError):
    """The store was closed: it does not reconnect (readiness turns false for good)."""


class RowLike(Protocol):
    """A database row by column name (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: str, /) -> Any: ...


TimeDecoder = Callable[[Any], datetime]


# --- time -------------------------------------------------------------------------------


def utc(value: datetime) -> datetime:
    """Every instant is stored in UTC; a naive one has no defined instant, so refuse it."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime given to the store: pass an aware one")
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """Fixed-width ISO-8601 in UTC, so that text order is time order (SQLite compares it)."""
    return utc(value).isoformat(timespec="microseconds")


def parse_iso(value: Any) -> datetime:
    """Back from `iso_utc` text to an aware datetime."""
    return utc(datetime.fromisoformat(str(value)))


def aware(value: Any) -> datetime:
    """asyncpg returns timestamptz as aware UTC datetimes; check rather than trust."""
    if not isinstance(value, datetime):
        raise TypeError("expected a timestamp from the database")
    return utc(value)


# --- migrations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """The versioned SQL files of one dialect, in version order (0001_init.sql, ...)."""
    folder = resources.files("adapter.store").joinpath("migrations", dialect)
    if not folder.is_dir():
        raise RuntimeError(f"no {dialect} migrations: adapter/store/migrations is not installed")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two {dialect} migrations numbered {version}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    if not found:
        raise RuntimeError(f"no {dialect} migrations found")
    return tuple(found[v] for v in sorted(found))


def pending_migrations(migrations: Sequence[Migration], applied: Iterable[int]) -> list[Migration]:
    """What is left to apply; a database newer than this build is refused, not downgraded."""
    done = set(applied)
    newest = migrations[-1].version
    if done and max(done) > newest:
        raise RuntimeError(
            f"database schema version {max(done)} is newer than this build ({newest})"
        )
    return [m for m in migrations if m.version not in done]


# --- links ------------------------------------------------------------------------------


def is_patient_key(encounter_key: str) -> bool:
    return encounter_key.startswith(PATIENT_PREFIX)


def merge_links(links: Sequence[Link]) -> list[Link]:
    """One link per encounter key, in key order (a fixed lock order avoids deadlocks)."""
    merged: dict[str, Link] = {}
    for link in links:
        old = merged.get(link.encounter_key)
        if old is None:
            merged[link.encounter_key] = link
            continue
        merged[link.encounter_key] = Link(
            encounter_key=link.encounter_key,
            patient_key=old.patient_key or link.patient_key,
            close_requested=old.close_requested or link.close_requested,
            cutoff_at=earliest(old.cutoff_at, link.cutoff_at),
        )
    return [merged[key] for key in sorted(merged)]


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# --- resource bodies --------------------------------------------------------------------


def parse_body(body: str) -> dict[str, Any]:
    """A resource body must be one JSON object."""
    parsed = json.loads(body)
    if not isinstance(parsed, dict):
        raise ValueError("a resource body must be a JSON object")
    return parsed


def without_meta(body: Mapping[str, Any]) -> dict[str, Any]:
    """What "the body differs" compares: everything the store does not set itself."""
    return {k: v for k, v in body.items() if k != "meta"}


def with_meta(body: Mapping[str, Any], version: int, last_updated: datetime) -> str:
    """The stored body: meta.versionId/lastUpdated set, `meta` right after `id`, compact.

    Other meta elements the caller gave (profile, tag) are kept.
    """
    meta = dict(body.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = iso_utc(last_updated)
    anchor = "id" if "id" in body else "resourceType" if "resourceType" in body else None
    ordered: dict[str, Any] = {} if anchor else {"meta": meta}
    for key, value in body.items():
        if key == "meta":
            continue
        ordered[key] = value
        if key == anchor:
            ordered["meta"] = meta
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


def patient_ref(body: Mapping[str, Any]) -> str:
    """The patient a resource is about, for search: a reference, else an identifier value."""
    for element in ("subject", "patient", "for"):
        target = body.get(element)
        if not isinstance(target, dict):
            continue
        reference = target.get("reference")
        if isinstance(reference, str) and reference:
            return reference
        identifier = target.get("identifier")
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            return str(identifier["value"])
    return ""


def new_version(
    current: ResourceRow | None,
    key: tuple[str, str],
    encounter_key: str,
    status: str,
    body: Mapping[str, Any],
    now: datetime,
) -> ResourceRow:
    """The row of the next version of a resource (version 1 when it is new)."""
    version = current.version + 1 if current else 1
    return ResourceRow(
        resource_type=key[0],
        resource_id=key[1],
        version=version,
        encounter_key=encounter_key,
        patient_ref=patient_ref(body),
        status=status,
        last_updated=utc(now),
        body=with_meta(body, version, now),
    )


def plan_coding(
    encounter_key: str,
    resources_in: Sequence[tuple[str, str, str, str]],
    current: Mapping[tuple[str, str], ResourceRow],
    now: datetime,
) -> list[ResourceRow]:
    """The new versions one coding result needs, against the current versions.

    `current` holds the current version of every resource of the encounter and of every
    resource in `resources_in`. Unchanged ones are not rewritten; this encounter's
    ChargeItems and Tasks that are no longer produced are retired with a new version.
    """
    written: list[ResourceRow] = []
    seen: set[tuple[str, str]] = set()
    for resource_type, resource_id, status, body_text in resources_in:
        key = (resource_type, resource_id)
        if key in seen:
            raise ValueError(f"{resource_type}/{resource_id} given twice in one coding result")
        seen.add(key)
        body = parse_body(body_text)
        old = current.get(key)
        if old is not None and old.status == status and _same_body(old.body, body):
            continue
        written.append(new_version(old, key, encounter_key, status, body, now))
    for key, old in sorted(current.items()):
        retired = RETIRED_STATUS.get(old.resource_type)
        if key in seen or old.encounter_key != encounter_key or retired in (None, old.status):
            continue
        body = parse_body(old.body) | {"status": retired}
        written.append(new_version(old, key, encounter_key, str(retired), body, now))
    return written


def _same_body(stored: str, body: Mapping[str, Any]) -> bool:
    return without_meta(parse_body(stored)) == without_meta(body)


# --- rows -------------------------------------------------------------------------------


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
    )


def audit_from_row(row: RowLike, decode: TimeDecoder) -> AuditEntry:
    return AuditEntry(
        at=decode(row["at"]),
        actor=str(row["actor"]),
        action=str(row["action"]),
        encounter_key=str(row["encounter_key"]),
        note=str(row["note"]),
    )


def state_counts(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Every state present, zero included, so a gauge drops to 0 instead of vanishing."""
    counts = {state.value: 0 for state in EncounterState}
    for state, count in rows:
        counts[str(state)] = int(count)
    return counts


def search_filters(
    query: SearchQuery,
    current_sql: str,
    mark: Callable[[int], str],
    encode_time: Callable[[datetime], object],
) -> tuple[str, list[object]]:
    """The WHERE clause of a search and its parameters; `mark(n)` spells the n-th one."""
    clauses = [current_sql]
    params: list[object] = []

    def add(template: str, value: object) -> None:
        params.append(value)
        clauses.append(template.format(mark(len(params))))

    add("resource_type = {}", query.resource_type)
    if query.patient is not None:
        add("patient_ref = {}", query.patient)
    if query.encounter is not None:
        add("encounter_key = {}", query.encounter)
    if query.status is not None:
        add("status = {}", query.status)
    if query.last_updated_ge is not None:
        add("last_updated >= {}", encode_time(query.last_updated_ge))
    if query.last_updated_le is not None:
        add("last_updated <= {}", encode_time(query.last_updated_le))
    return " AND ".join(clauses), params
