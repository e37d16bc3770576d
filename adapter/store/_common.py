"""What both store backends share: time rules, migrations on disk, resource versioning.

Kept free of any database so that SQLite and PostgreSQL decide the same things the same
way (which body counts as changed, which resources are retired, where `meta` goes) and
only differ in SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from adapter.store.base import (
    AddResult,
    AuditEntry,
    CodingResult,
    Delivery,
    EncounterRow,
    EncounterState,
    HeldQuery,
    Lease,
    Link,
    MessageStatus,
    NewMessage,
    NewResource,
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


# --- group commit -----------------------------------------------------------------------

Queued = tuple[NewMessage, tuple[Link, ...], "asyncio.Future[AddResult]"]
GroupWriter = Callable[[list[Queued]], Awaitable[Sequence[AddResult | BaseException]]]
MAX_GROUP = 64  # messages per group commit; bounds one transaction's size and time


class GroupCommit:
    """`add_message` for both stores: messages that arrive while a group is being written
    go into the next group, so concurrent connections share one commit.

    Each caller returns only once the group holding its message was written (`write`
    gives one result or exception per message, in order). A group that fails as a whole
    fails every caller in it; a caller that gave up (timeout) is skipped, and its message
    may be stored anyway: the sender's resend finds it (dedup).
    """

    def __init__(self, write: GroupWriter) -> None:
        self._write = write
        self._queue: list[Queued] = []
        self._committer: asyncio.Task[None] | None = None

    async def add(self, message: NewMessage, links: Sequence[Link]) -> AddResult:
        if message.truncated:  # the head of a message is never readable data to accept
            raise ValueError("a truncated raw can only be kept as a dead letter")
        future: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self._queue.append((message, tuple(links), future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued())
        return await future  # a caller that gives up cancels only its own future

    async def _commit_queued(self) -> None:
        while self._queue:
            batch, self._queue = take_group(self._queue)
            try:
                results = await self._write(batch)
            except BaseException as exc:  # the whole group failed: every caller hears it
                _settle(batch, [exc] * len(batch))
                if not isinstance(exc, Exception):
                    raise
                continue
            _settle(batch, results)


def _settle(batch: Sequence[Queued], results: Sequence[AddResult | BaseException]) -> None:
    for (*_, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def take_group(queue: list[Queued]) -> tuple[list[Queued], list[Queued]]:
    """The next group (at most MAX_GROUP, unique dedup keys) and what stays queued.

    A key seen twice (a sender re-sending a message while the first copy is in flight) waits
    for the next group, where it is found stored and answered as a duplicate.
    """
    group: list[Queued] = []
    rest: list[Queued] = []
    keys: set[str] = set()
    for item in queue:
        key = item[0].dedup_key
        if len(group) < MAX_GROUP and key not in keys:
            keys.add(key)
            group.append(item)
        else:
            rest.append(item)
    return group, rest


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


# --- coding -----------------------------------------------------------------------------


def is_stale(lease: Lease, revision: int, lease_owner: str | None) -> bool:
    """A newer message arrived, or the lease expired and another coder took it."""
    taken = lease_owner is not None and lease_owner != lease.owner
    return revision != lease.encounter.revision or taken


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


def dump_json(value: object) -> str:
    """Compact JSON, UTF-8 kept as is: the stored and delivered form of a resource."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DumpedBody:
    """A body serialised once, split where `meta` goes (right after `id`).

    `content` (the body without meta) is what a new version is compared by, through its
    hash; `stored()` splices meta in without serialising the body again. Both are exactly
    `dump_json` of the body laid out as `with_meta` describes.
    """

    head: str  # '{"resourceType":"Claim","id":"c1"}': up to the anchor; "" when no anchor
    tail: str  # '{"status":...}': everything after it, meta excluded; "" when nothing
    meta: Mapping[str, Any]  # the caller's own meta elements (profile, tag), kept

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> DumpedBody:
        anchor = "id" if "id" in body else "resourceType" if "resourceType" in body else None
        head: dict[str, Any] = {}
        tail: dict[str, Any] = {}
        part = head if anchor is not None else tail
        for key, value in body.items():
            if key == "meta":
                continue
            part[key] = value
            if key == anchor:
                part = tail
        meta = body.get("meta")
        return cls(
            head=dump_json(head) if head else "",
            tail=dump_json(tail) if tail else "",
            meta=meta if isinstance(meta, Mapping) else {},
        )

    @property
    def content(self) -> str:
        """The body without meta, as compact JSON."""
        return _join_objects(self.head, self.tail)

    def stored(self, version: int, last_updated: datetime) -> str:
        """The stored body: meta.versionId/lastUpdated set, `meta` right after `id`."""
        meta = dict(self.meta)
        meta["versionId"] = str(version)
        meta["lastUpdated"] = iso_utc(last_updated)
        middle = '{"meta":' + dump_json(meta) + "}"
        return _join_objects(_join_objects(self.head, middle), self.tail)


def _join_objects(first: str, second: str) -> str:
    """Two compact JSON objects (or "") as one: '{"a":1}' + '{"b":2}' -> '{"a":1,"b":2}'."""
    if not first:
        return second or "{}"
    if not second:
        return first
    return first[:-1] + "," + second[1:]


def content_hash(content: str) -> str:
    """What the store compares a new body with: 128 bits of BLAKE2b, hex."""
    return hashlib.blake2b(content.encode(), digest_size=16).hexdigest()


def with_meta(body: Mapping[str, Any], version: int, last_updated: datetime) -> str:
    """The stored body: meta.versionId/lastUpdated set, `meta` right after `id`, compact.

    Other meta elements the caller gave (profile, tag) are kept; with no `id` (nor
    `resourceType`) meta comes first.
    """
    return DumpedBody.of(body).stored(version, last_updated)


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


@dataclass(frozen=True, slots=True)
class CurrentVersion:
    """The current version of a resource, as save_codings compares against it."""

    resource_type: str
    resource_id: str
    version: int
    encounter_key: str
    status: str
    content_hash: str | None  # None: written before migration 0002, compare parsed bodies
    body: str


@dataclass(frozen=True, slots=True)
class PlannedVersion:
    """A new version to write: its row, its content hash, and whether it replaces a
    current version (which must then stop being current)."""

    row: ResourceRow
    content_hash: str
    replaces_current: bool


def new_version(
    current_version: int | None,
    key: tuple[str, str],
    encounter_key: str,
    status: str,
    body: Mapping[str, Any],
    now: datetime,
    dumped: DumpedBody | None = None,
    digest: str | None = None,
) -> PlannedVersion:
    """The next version of a resource (version 1 when there is no current one);
    `dumped` and `digest`, when given, are the body's serialised form and its hash."""
    dumped = dumped or DumpedBody.of(body)
    digest = digest or content_hash(dumped.content)
    version = current_version + 1 if current_version is not None else 1
    row = ResourceRow(
        resource_type=key[0],
        resource_id=key[1],
        version=version,
        encounter_key=encounter_key,
        patient_ref=patient_ref(body),
        status=status,
        last_updated=utc(now),
        body=dumped.stored(version, now),
    )
    return PlannedVersion(row, digest, current_version is not None)


@dataclass(frozen=True, slots=True)
class PreparedResource:
    """One incoming resource, serialised and hashed before the store's transaction (so
    the transaction, which holds SQLite's write lock, only compares and writes)."""

    key: tuple[str, str]
    status: str
    body: Mapping[str, Any]
    dumped: DumpedBody
    content_hash: str


def prepare_resources(resources_in: Sequence[NewResource]) -> list[PreparedResource]:
    """Serialise and hash each resource once; a key given twice is refused."""
    prepared: list[PreparedResource] = []
    seen: set[tuple[str, str]] = set()
    for resource_type, resource_id, status, body in resources_in:
        key = (resource_type, resource_id)
        if key in seen:
            raise ValueError(f"{resource_type}/{resource_id} given twice in one coding result")
        seen.add(key)
        dumped = DumpedBody.of(body)
        prepared.append(PreparedResource(key, status, body, dumped, content_hash(dumped.content)))
    return prepared


@dataclass(frozen=True, slots=True)
class PreparedCoding:
    """A coding result with its resources prepared (see PreparedResource)."""

    result: CodingResult
    resources: list[PreparedResource]


def prepare_codings(results: Sequence[CodingResult]) -> list[PreparedCoding]:
    return [PreparedCoding(r, prepare_resources(r.resources)) for r in results]


def plan_coding(
    encounter_key: str,
    resources_in: Sequence[PreparedResource],
    current: Mapping[tuple[str, str], CurrentVersion],
    now: datetime,
) -> list[PlannedVersion]:
    """The new versions one coding result needs, against the current versions.

    `current` holds the current version of every resource of the encounter and of every
    resource in `resources_in`. Unchanged ones (same status, same content hash) are not
    rewritten; this encounter's ChargeItems and Tasks that are no longer produced are
    retired with a new version.
    """
    planned: list[PlannedVersion] = []
    for new in resources_in:
        old = current.get(new.key)
        if old is not None and old.status == new.status and _unchanged(old, new):
            continue
        version = None if old is None else old.version
        planned.append(
            new_version(
                version,
                new.key,
                encounter_key,
                new.status,
                new.body,
                now,
                new.dumped,
                new.content_hash,
            )
        )
    seen = {new.key for new in resources_in}
    for key, old in sorted(current.items()):
        retired = RETIRED_STATUS.get(old.resource_type)
        if key in seen or old.encounter_key != encounter_key or retired in (None, old.status):
            continue
        body = parse_body(old.body) | {"status": retired}
        planned.append(new_version(old.version, key, encounter_key, str(retired), body, now))
    return planned


def _unchanged(old: CurrentVersion, new: PreparedResource) -> bool:
    if old.content_hash is None:  # written before hashes were kept
        return without_meta(parse_body(old.body)) == without_meta(new.body)
    return old.content_hash == new.content_hash


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


def reason_counts(details: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Held encounters per hold reason, from (outcome_detail, count) groups: an encounter
    held for two reasons counts under each. Most frequent first, then by code."""
    counts: dict[str, int] = {}
    for detail, count in details:
        for code in detail.split():
            counts[code] = counts.get(code, 0) + count
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# The held worklist's one query for both stores: encounters held, their current Claim, the
# filters as SQL. Each store gives its JSON accessor (a path of keys/indexes) and its
# placeholder style; the SQL text holds only those and constant paths, never a value.
HELD_FROM = (
    " FROM encounters e LEFT JOIN resource_versions r ON r.resource_type = 'Claim'"
    " AND r.is_current {is_true} AND r.encounter_key = e.key WHERE e.state = 'held'"
)
HELD_LOCATION = ("provider", "display")
HELD_SETTING = ("type", "coding", "0", "code")
HELD_START = ("billablePeriod", "start")


def held_filters(
    query: HeldQuery, json_text: Callable[[tuple[str, ...]], str], param: Callable[[], str]
) -> tuple[str, list[object]]:
    """` AND ...` clauses and their arguments, in order, for `query`'s filters."""
    sql: list[str] = []
    args: list[object] = []
    if query.reason:
        sql.append(f"(' ' || e.outcome_detail || ' ') LIKE {param()}")
        args.append(f"% {query.reason} %")  # codes are [a-z0-9-]: checked by the caller
    if query.location:
        sql.append(f"{json_text(HELD_LOCATION)} = {param()}")
        args.append(query.location)
    if query.setting:
        sql.append(f"{json_text(HELD_SETTING)} = {param()}")
        args.append(query.setting)
    if query.service_from:
        sql.append(f"substr({json_text(HELD_START)}, 1, 10) >= {param()}")
        args.append(query.service_from)
    if query.service_to:
        sql.append(f"substr({json_text(HELD_START)}, 1, 10) <= {param()}")
        args.append(query.service_to)
    return "".join(f" AND {clause}" for clause in sql), args
