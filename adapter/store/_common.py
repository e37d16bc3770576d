"""What both store backends share: time rules, migrations on disk, links, closed stores.

Kept free of any database so that SQLite and PostgreSQL decide the same things the same
way and only differ in SQL. The pure planning of resource versions is in planning.py,
row decoding in rows.py, shared query text in queries.py, group commit in group_commit.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from adapter.store.ports import Link

PATIENT_PREFIX = "patient:"  # a patient-level link (conditions, coverages): not an encounter
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


# --- replay -----------------------------------------------------------------------------

# What a FHIR message's control id starts with: the first resource's type (see ingest).
FHIR_INBOUND_TYPES = (
    "MedicationAdministration",
    "Encounter",
    "Condition",
    "Patient",
    "Coverage",
)


def control_id_candidates(wanted: Sequence[str]) -> list[str]:
    """The stored control ids that the ids a feed sends may be kept under.

    HL7 v2 messages are kept under MSH-10 as sent; a FHIR payload under `Type/id` of
    its first resource, so a bare resource id is looked up under each inbound type.
    """
    found: dict[str, None] = {}
    for text in wanted:
        found[text] = None
        if text and "/" not in text:
            found.update((f"{t}/{text}", None) for t in FHIR_INBOUND_TYPES)
    return list(found)
