"""The PostgreSQL store: production, several replicas on one database.

An asyncpg pool; every method is one transaction on one pooled connection. Replicas
share the work without talking to each other: `lease_ready` locks ready encounters with
FOR UPDATE SKIP LOCKED (a row another replica is leasing is skipped, not waited for) and
`save_codings` re-checks the revisions under the encounters' row locks. Migrations run
under an advisory lock, so replicas starting together apply each file exactly once.

All tables live in one schema (`schema`, default public), put first on the search_path
of every pooled connection; tests use a fresh schema each. Queries name their columns
(no SELECT *) so that a later migration adding a column does not break the prepared
statements a running replica has cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg  # untyped: pyproject.toml ignores its missing stubs

from adapter.store._common import (
    HELD_FROM,
    MAX_ERROR_CHARS,
    PATIENT_PREFIX,
    CurrentVersion,
    GroupCommit,
    PlannedVersion,
    Queued,
    RowLike,
    StoreClosedError,
    audit_from_row,
    aware,
    control_id_candidates,
    current_from_row,
    delivery_from_row,
    encounter_from_row,
    held_filters,
    is_patient_key,
    is_stale,
    load_migrations,
    merge_links,
    message_from_row,
    new_version,
    parse_body,
    pending_migrations,
    plan_coding,
    prepare_codings,
    reason_counts,
    resource_from_row,
    search_filters,
    state_counts,
    utc,
)
from adapter.store.base import (
    AddResult,
    AuditEntry,
    CodingResult,
    Delivery,
    EncounterRow,
    EncounterState,
    HeldItem,
    HeldPage,
    HeldQuery,
    Lease,
    Link,
    MessageStatus,
    NewMessage,
    NewResource,
    ReplayOutcome,
    ResourceRow,
    SaveResult,
    SearchQuery,
    StoreCounts,
    StoredMessage,
    TruncatedMessageError,
)

PING_TIMEOUT_SECONDS = 5.0
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

MESSAGE_COLUMNS = (
    "id, dedup_key, format, kind, raw, received_at, patient_key, control_id, status, error,"
    " truncated, reason, error_location"
)
ENCOUNTER_COLUMNS = (
    "key, patient_key, state, last_activity, close_requested, cutoff_at, revision,"
    " outcome_detail, updated_at"
)
RESOURCE_COLUMNS = (
    "resource_type, resource_id, version, encounter_key, patient_ref, status, last_updated, body"
)
DELIVERY_COLUMNS = (
    "id, destination, resource_type, resource_id, version, attempts, next_attempt_at, last_error,"
    " rejected_at, payload"
)


class _Conn(Protocol):
    """The part of asyncpg.Connection the store uses (asyncpg has no type information)."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def executemany(self, query: str, args: Iterable[Sequence[object]]) -> None: ...

    async def fetch(self, query: str, *args: object) -> list[RowLike]: ...

    async def fetchrow(self, query: str, *args: object) -> RowLike | None: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...


CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0


class PostgresStore:
    """The `Store` on a PostgreSQL database (asyncpg DSN), in one schema."""

    def __init__(
        self, dsn: str, *, schema: str = "public", min_size: int = 1, max_size: int = 10
    ) -> None:
        if _SCHEMA_NAME.fullmatch(schema) is None:
            raise ValueError("schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
        self._dsn = dsn
        self._schema = schema
        self._min_size, self._max_size = min_size, max_size
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self._closed = False  # close() is final: a closed store never reconnects
        self._group = GroupCommit(self._write_group)

    # --- plumbing ---------------------------------------------------------------------

    async def _get_pool(self) -> Any:
        """Connect on first use: the factory is synchronous, the pool is not."""
        if self._pool is not None and not self._closed:  # the common case, without the lock
            return self._pool
        async with self._open_lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    # custom plans: a plan cached while the tables were empty kept scanning
                    # them as they grew (save_coding 47 ms -> 5 ms per encounter, bench drain)
                    server_settings={
                        "search_path": self._schema,
                        "plan_cache_mode": "force_custom_plan",
                    },
                    timeout=CONNECT_TIMEOUT_S,  # a stalled database answers AE, not silence
                    command_timeout=COMMAND_TIMEOUT_S,
                )
            return self._pool

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Conn]:
        """One read-write transaction (READ COMMITTED, row locks where a method needs them)."""
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_Conn]:
        """One snapshot for every statement of a read method (a page and its total agree)."""
        pool = await self._get_pool()
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield conn

    # --- lifecycle --------------------------------------------------------------------

    async def migrate(self) -> None:
        migrations = load_migrations("postgres")
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(self._schema))
            known = await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", self._schema
            )
            if not known:
                await conn.execute(f'CREATE SCHEMA "{self._schema}"')
            await conn.execute(f'SET LOCAL search_path TO "{self._schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            applied = [int(r["version"]) for r in await conn.fetch(_APPLIED)]
            for migration in pending_migrations(migrations, applied):
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                    migration.version,
                )

    async def close(self) -> None:
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    async def ping(self) -> bool:
        """Bounded in time: a readiness probe must answer even when the server does not."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self._read() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except (
            OSError,
            TimeoutError,
            StoreClosedError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ):
            return False

    # --- inbound ----------------------------------------------------------------------

    async def add_message(self, message: NewMessage, links: Sequence[Link]) -> AddResult:
        """Group commit (`GroupCommit`): the messages that arrived together are written by
        one statement and one commit; if the data of one is refused, they are written
        one by one, so that message fails alone."""
        return await self._group.add(message, links)

    async def _write_group(self, batch: Sequence[Queued]) -> list[AddResult | BaseException]:
        """The group in one statement; one by one when the data of one of them was refused.

        Only a refusal of the data (a NUL in a text column, a constraint) is worth the
        one-by-one retry, which isolates the culprit. A lost connection or a timeout fails
        the whole group at once: retrying each message against a database that is not
        answering would hold every later message for as many timeouts.
        """
        try:
            return list(await self._add_group(batch))
        except _DATA_REFUSED:
            return [await self._add_alone(item) for item in batch]

    async def _add_group(self, batch: Sequence[Queued]) -> list[AddResult]:
        """One statement for the whole group (`_ADD_MESSAGES`), then the duplicates' ids."""
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            rows = await conn.fetch(_ADD_MESSAGES, *_group_arguments(batch))
            new = {str(row["dedup_key"]): int(row["id"]) for row in rows}
            known = [m.dedup_key for m, _, _ in batch if m.dedup_key not in new]
            old = {}
            if known:  # a concurrent insert may have committed after the statement's snapshot
                sql = "SELECT dedup_key, id FROM messages WHERE dedup_key = ANY($1::text[])"
                old = {str(r["dedup_key"]): int(r["id"]) for r in await conn.fetch(sql, known)}
        results: list[AddResult] = []
        for message, _, _ in batch:
            key = message.dedup_key
            results.append(AddResult(new[key], False) if key in new else AddResult(old[key], True))
        return results

    async def _add_alone(self, item: Queued) -> AddResult | Exception:
        try:
            return (await self._add_group([item]))[0]
        except Exception as exc:
            return exc

    async def add_dead_letter(self, message: NewMessage, error: str) -> AddResult:
        async with self._tx() as conn:
            return await _insert_message(conn, message, error)

    async def get_message(self, message_id: int) -> StoredMessage | None:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        async with self._read() as conn:
            row = await conn.fetchrow(sql, message_id)
        return None if row is None else message_from_row(row, aware)

    async def messages_for_encounter(
        self, encounter_key: str, patient_key: str
    ) -> list[StoredMessage]:
        patient_link = PATIENT_PREFIX + patient_key if patient_key else None
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'accepted' AND id IN"
            " (SELECT message_id FROM message_links WHERE encounter_key IN ($1, $2))"
            " ORDER BY id"
        )
        # One statement is one snapshot: no explicit transaction (BEGIN and COMMIT would
        # be two more round trips per encounter coded).
        pool = await self._get_pool()
        rows = await pool.fetch(sql, encounter_key, patient_link)
        return [message_from_row(row, aware) for row in rows]

    async def messages_for_encounters(
        self, encounters: Sequence[tuple[str, str]]
    ) -> dict[str, list[StoredMessage]]:
        keys = [key for key, _ in encounters]
        patient_links = [PATIENT_PREFIX + p if p else None for _, p in encounters]
        pool = await self._get_pool()  # one statement: one snapshot, no transaction needed
        rows = await pool.fetch(_MESSAGES_FOR_ENCOUNTERS, keys, patient_links)
        found: dict[str, list[StoredMessage]] = {key: [] for key in keys}
        for row in rows:
            found[str(row["wanted"])].append(message_from_row(row, aware))
        return found

    async def list_messages(
        self, since: datetime | None = None, message_id: int | None = None
    ) -> list[StoredMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages"
            " WHERE ($1::timestamptz IS NULL OR received_at >= $1)"
            " AND ($2::bigint IS NULL OR id = $2) ORDER BY id"
        )
        since_utc = None if since is None else utc(since)
        async with self._read() as conn:
            rows = await conn.fetch(sql, since_utc, message_id)
        return [message_from_row(row, aware) for row in rows]

    async def replay_page(
        self, after_id: int, limit: int, since: datetime | None = None
    ) -> list[StoredMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'accepted' AND id > $1"
            " AND ($2::timestamptz IS NULL OR received_at >= $2) ORDER BY id LIMIT $3"
        )
        pool = await self._get_pool()  # one statement: one snapshot
        rows = await pool.fetch(sql, after_id, None if since is None else utc(since), limit)
        return [message_from_row(row, aware) for row in rows]

    async def count_replayable(self, since: datetime | None = None) -> int:
        sql = (
            "SELECT count(*) FROM messages WHERE status = 'accepted'"
            " AND ($1::timestamptz IS NULL OR received_at >= $1)"
        )
        pool = await self._get_pool()
        return int(await pool.fetchval(sql, None if since is None else utc(since)))

    async def find_messages(self, control_ids: Sequence[str]) -> list[StoredMessage]:
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE control_id = ANY($1::text[]) ORDER BY id"
        )
        pool = await self._get_pool()
        rows = await pool.fetch(sql, control_id_candidates(control_ids))
        return [message_from_row(row, aware) for row in rows]

    async def control_id_reused(self, control_id: str, control_key: str, dedup_key: str) -> bool:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM messages WHERE control_id = $1"
            " AND status = 'accepted' AND format = 'hl7' AND dedup_key <> $2"
            " AND (dedup_key = $3 OR starts_with(dedup_key, $3 || ':')))"
        )  # the control_id index, then the rows under that MSH-10 (starts_with compares
        # bytes whatever the collation, which a range on dedup_key would not): 0.03 ms for a
        # unique MSH-10, 6 ms when 20,000 rows of ANOTHER sender share it (a test system)
        pool = await self._get_pool()
        return bool(await pool.fetchval(sql, control_id, dedup_key, control_key))

    async def message_links(self, message_ids: Sequence[int]) -> dict[int, list[str]]:
        sql = (
            "SELECT message_id, encounter_key FROM message_links"
            " WHERE message_id = ANY($1::bigint[]) ORDER BY message_id, encounter_key"
        )
        pool = await self._get_pool()
        found: dict[int, list[str]] = {int(i): [] for i in message_ids}
        for row in await pool.fetch(sql, list(found)):
            found[int(row["message_id"])].append(str(row["encounter_key"]))
        return found

    async def apply_replay(self, outcomes: Sequence[ReplayOutcome], now: datetime) -> None:
        async with self._tx() as conn:
            for outcome in outcomes:
                if outcome.error is None:
                    await _relink(conn, outcome.message_id, outcome.links, now)
                else:
                    await _mark_dead(conn, outcome.message_id, outcome.error)
                    await conn.execute(
                        "UPDATE messages SET reason = $1, error_location = $2 WHERE id = $3",
                        outcome.reason,
                        outcome.error_location,
                        outcome.message_id,
                    )

    async def relink_message(self, message_id: int, links: Sequence[Link], now: datetime) -> None:
        async with self._tx() as conn:
            await _relink(conn, message_id, links, now)

    async def mark_dead(self, message_id: int, error: str) -> None:
        async with self._tx() as conn:
            await _mark_dead(conn, message_id, error)

    async def list_dead_letters(
        self, since: datetime | None, reasons: Sequence[str], limit: int, offset: int
    ) -> tuple[list[StoredMessage], int]:
        where = (
            "status = 'dead' AND ($1::timestamptz IS NULL OR received_at >= $1)"
            " AND (cardinality($2::text[]) = 0 OR reason = ANY($2::text[]))"
        )
        stamp = None if since is None else utc(since)
        page = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id LIMIT $3 OFFSET $4"
        )
        async with self._read() as conn:
            rows = await conn.fetch(page, stamp, list(reasons), limit, offset)
            total = await conn.fetchval(
                f"SELECT count(*) FROM messages WHERE {where}", stamp, list(reasons)
            )
        return [message_from_row(row, aware) for row in rows], int(total)

    async def dead_letters(self, limit: int = 100) -> list[StoredMessage]:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'dead' ORDER BY id LIMIT $1"
        async with self._read() as conn:
            rows = await conn.fetch(sql, limit)
        return [message_from_row(row, aware) for row in rows]

    # --- closing and coding -----------------------------------------------------------

    async def lease_ready(
        self, now: datetime, quiet_before: datetime, owner: str, lease_seconds: int, limit: int
    ) -> list[Lease]:
        until = utc(now) + timedelta(seconds=lease_seconds)
        async with self._tx() as conn:
            rows = await conn.fetch(_LEASE_READY, utc(now), utc(quiet_before), owner, until, limit)
        leased = sorted(
            (encounter_from_row(row, aware) for row in rows), key=lambda e: (e.last_activity, e.key)
        )
        return [Lease(encounter=row, owner=owner, until=until) for row in leased]

    async def save_codings(
        self, results: Sequence[CodingResult], now: datetime, destination: str | None
    ) -> list[SaveResult]:
        if not results:
            return []
        return await self._save_codings(results, now, destination)

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

    async def _save_codings(
        self, results: Sequence[CodingResult], now: datetime, destination: str | None
    ) -> list[SaveResult]:
        """Four round trips for the whole batch: BEGIN; lock the encounters and read (and
        lock) their current versions; write every new version, queue them and finish
        the encounters; COMMIT. (One statement per step and encounter before: 8 round
        trips per encounter.)"""
        prepared = prepare_codings(results)
        async with self._tx() as conn:
            found = await _lock_for_coding(conn, results)
            saved: list[SaveResult] = []
            planned: list[PlannedVersion] = []
            finished: list[CodingResult] = []
            stale: list[Lease] = []
            for coding in prepared:
                result = coding.result
                key = result.lease.encounter.key
                revision, owner, current = found.get(key, (None, None, {}))
                if revision is None or is_stale(result.lease, revision, owner):
                    stale.append(result.lease)
                    saved.append(SaveResult(written=(), stale=True))
                    continue
                mine = plan_coding(key, coding.resources, current, now)
                planned.extend(mine)
                finished.append(result)
                saved.append(SaveResult(written=tuple(p.row for p in mine), stale=False))
            await _write_versions(conn, planned, destination, now, finished)
            if stale:
                await _release_all(conn, stale)
        return saved

    async def release_lease(self, lease: Lease) -> None:
        async with self._tx() as conn:
            await _release(conn, lease.encounter.key, lease.owner)

    async def get_encounter(self, key: str) -> EncounterRow | None:
        sql = f"SELECT {ENCOUNTER_COLUMNS} FROM encounters WHERE key = $1"
        async with self._read() as conn:
            row = await conn.fetchrow(sql, key)
        return None if row is None else encounter_from_row(row, aware)

    async def encounters_in_state(
        self, state: EncounterState, limit: int = 100
    ) -> list[EncounterRow]:
        sql = (
            f"SELECT {ENCOUNTER_COLUMNS} FROM encounters WHERE state = $1"
            " ORDER BY updated_at, key LIMIT $2"
        )
        async with self._read() as conn:
            rows = await conn.fetch(sql, state.value, limit)
        return [encounter_from_row(row, aware) for row in rows]

    async def held_worklist(self, query: HeldQuery) -> HeldPage:
        source = HELD_FROM.format(is_true="")
        numbers = iter(range(1, 100))
        where, args = held_filters(query, _json_text, lambda: f"${next(numbers)}")
        columns = ", ".join(f"e.{c.strip()}" for c in ENCOUNTER_COLUMNS.split(","))
        page = f" LIMIT ${next(numbers)} OFFSET ${next(numbers)}"
        location = _json_text(("provider", "display"))
        async with self._read() as conn:
            rows = await conn.fetch(
                f"SELECT {columns}, r.body AS claim_body{source}{where}"
                f" ORDER BY e.updated_at, e.key{page}",
                *args,
                query.limit,
                query.offset,
            )
            total = await conn.fetchval(f"SELECT COUNT(*){source}{where}", *args)
            details = await conn.fetch(
                "SELECT outcome_detail, COUNT(*) AS n FROM encounters WHERE state = 'held'"
                " GROUP BY outcome_detail"
            )
            locations = await conn.fetch(
                f"SELECT DISTINCT {location} AS loc{source} AND {location} IS NOT NULL ORDER BY 1"
            )
        return HeldPage(
            tuple(HeldItem(encounter_from_row(r, aware), r["claim_body"] or "") for r in rows),
            int(total),
            sum(int(d["n"]) for d in details),
            reason_counts((str(d["outcome_detail"]), int(d["n"])) for d in details),
            tuple(str(r["loc"]) for r in locations),
        )

    async def set_state(self, key: str, state: EncounterState, now: datetime) -> None:
        sql = "UPDATE encounters SET state = $1, updated_at = $2 WHERE key = $3"
        async with self._tx() as conn:
            if await conn.execute(sql, state.value, utc(now), key) == "UPDATE 0":
                raise LookupError("no such encounter")

    # --- emitted resources ------------------------------------------------------------

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
        key = (resource_type, resource_id)
        parsed = parse_body(body)
        async with self._tx() as conn:
            current = await _read_resource(conn, resource_type, resource_id, None, lock=True)
            version = current.version if current else None
            encounter_key = current.encounter_key if current else ""
            planned = new_version(version, key, encounter_key, status, parsed, now)
            await _write_versions(conn, [planned], destination, now, ())
        return planned.row

    # --- delivery ---------------------------------------------------------------------

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
    ) -> None:
        at = utc(now)
        async with self._tx() as conn:
            await conn.execute(_QUEUE_MESSAGE, destination, *resource, at, at, payload)
            await conn.execute(
                _UPSERT_POSTING, destination, encounter_key, resource[2], posting, at
            )

    # --- audit and metrics ------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        sql = (
            "INSERT INTO audit (at, actor, action, encounter_key, note) VALUES ($1, $2, $3, $4, $5)"
        )
        async with self._tx() as conn:
            await conn.execute(
                sql, utc(entry.at), entry.actor, entry.action, entry.encounter_key, entry.note
            )

    async def audit_for(self, encounter_key: str) -> list[AuditEntry]:
        sql = (
            "SELECT at, actor, action, encounter_key, note FROM audit"
            " WHERE encounter_key = $1 ORDER BY at, id"
        )
        async with self._read() as conn:
            rows = await conn.fetch(sql, encounter_key)
        return [audit_from_row(row, aware) for row in rows]

    async def counts(self) -> StoreCounts:
        async with self._read() as conn:
            by_state = await conn.fetch(
                "SELECT state, count(*) AS n FROM encounters GROUP BY state"
            )
            totals = await conn.fetchrow(_TOTALS)
        assert totals is not None  # an aggregate query always returns its one row
        return StoreCounts(
            encounters_by_state=state_counts((str(r["state"]), int(r["n"])) for r in by_state),
            outbox_pending=int(totals["pending"]),
            dead_letters=int(totals["dead"]),
            messages=int(totals["messages"]),
            outbox_rejected=int(totals["rejected"]),
        )


# --- SQL ----------------------------------------------------------------------------------

_APPLIED = "SELECT version FROM schema_migrations"

_INSERT_MESSAGE = """
INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key, control_id,
                      status, error, truncated, reason, error_location)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""

# Create OPEN, or: bump revision and activity, OR in close_requested, keep the earliest
# cutoff (LEAST ignores NULL), and send a finished encounter back to be coded (DIRTY).
_TOUCH_SET = """
ON CONFLICT (key) DO UPDATE SET
    patient_key = CASE WHEN encounters.patient_key = '' THEN excluded.patient_key
                       ELSE encounters.patient_key END,
    state = CASE WHEN encounters.state IN ('coded', 'held', 'skipped') THEN 'dirty'
                 ELSE encounters.state END,
    last_activity = GREATEST(encounters.last_activity, excluded.last_activity),
    close_requested = encounters.close_requested OR excluded.close_requested,
    cutoff_at = LEAST(encounters.cutoff_at, excluded.cutoff_at),
    revision = encounters.revision + excluded.revision,  -- messages in this statement
    updated_at = excluded.updated_at
"""

_TOUCH_ENCOUNTER = (
    """
INSERT INTO encounters (key, patient_key, state, last_activity, close_requested, cutoff_at,
                        revision, outcome_detail, updated_at)
VALUES ($1, $2, 'open', $3, $4, $5, 1, '', $3)
"""
    + _TOUCH_SET
)

# add_message for a group of messages (unique dedup keys; one or many) in one statement, so
# one round trip and one commit: the new messages, their links, and each touched encounter
# upserted once with the group's values merged as `_TOUCH_SET` would merge them one message
# at a time (an ON CONFLICT DO UPDATE may not touch a row twice in one statement).
# Encounters in key order, so concurrent writers lock encounter rows in one order.
# Returns (dedup_key, id) of the messages that were new.
_ADD_MESSAGES = (
    """
WITH incoming AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                         $6::timestamptz[], $7::text[], $8::text[])
        AS i (ord, dedup_key, format, kind, raw, received_at, patient_key, control_id)
), new_message AS (
    INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key, control_id,
                          status, error)
    SELECT dedup_key, format, kind, raw, received_at, patient_key, control_id, 'accepted', ''
    FROM incoming ORDER BY ord
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, dedup_key
), new_ord AS (
    SELECT n.id, i.ord, i.received_at FROM new_message n JOIN incoming i USING (dedup_key)
), linked AS (
    INSERT INTO message_links (message_id, encounter_key)
    SELECT n.id, l.key FROM new_ord n
    JOIN unnest($9::int[], $10::text[]) AS l (ord, key) ON l.ord = n.ord
), touched AS (
    INSERT INTO encounters (key, patient_key, state, last_activity, close_requested, cutoff_at,
                            revision, outcome_detail, updated_at)
    SELECT e.key,
           COALESCE((array_agg(e.patient_key ORDER BY e.ord)
                     FILTER (WHERE e.patient_key <> ''))[1], ''),
           'open', max(n.received_at), bool_or(e.close_requested), min(e.cutoff_at), count(*), '',
           max(n.received_at)
    FROM new_ord n
    JOIN unnest($11::int[], $12::text[], $13::text[], $14::boolean[], $15::timestamptz[])
        AS e (ord, key, patient_key, close_requested, cutoff_at) ON e.ord = n.ord
    GROUP BY e.key
    ORDER BY e.key
"""
    + _TOUCH_SET
    + """
)
SELECT dedup_key, id FROM new_message
"""
)

# A message left the encounter (replay moved it, or it is now dead): code it again.
_BUMP_ENCOUNTER = """
UPDATE encounters SET
    state = CASE WHEN state IN ('coded', 'held', 'skipped') THEN 'dirty' ELSE state END,
    revision = revision + 1,
    updated_at = COALESCE($1, updated_at)
WHERE key = $2
"""

# messages_for_encounter's query once per (encounter key, patient link), in one statement.
_MESSAGES_FOR_ENCOUNTERS = f"""
SELECT w.key AS wanted, m.*
FROM unnest($1::text[], $2::text[]) AS w (key, patient_link)
CROSS JOIN LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM messages
    WHERE status = 'accepted' AND id IN (
        SELECT message_id FROM message_links
        WHERE encounter_key IN (w.key, w.patient_link))
) AS m
ORDER BY w.key, m.id
"""

_LOCK_ENCOUNTERS = "SELECT key FROM encounters WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE"

# Rows another replica is leasing right now are skipped, not waited for; a row it leased
# and committed meanwhile is re-checked under the lock and no longer matches.
_LEASE_READY = f"""
WITH ready AS (
    SELECT key FROM encounters
    WHERE (state = 'dirty'
           OR (state = 'open' AND (close_requested OR last_activity <= $2 OR cutoff_at <= $1)))
      AND (lease_until IS NULL OR lease_until <= $1 OR lease_owner = $3)
    ORDER BY last_activity, key
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE encounters AS e SET lease_owner = $3, lease_until = $4
FROM ready WHERE e.key = ready.key
RETURNING {", ".join("e." + c.strip() for c in ENCOUNTER_COLUMNS.split(","))}
"""

# The encounters' row locks (in key order) and, for each, the current versions of its
# resources and of its incoming ones, locked in key order (a lateral join is evaluated
# per encounter row). One IN over a UNION, not `encounter_key = ... OR (...) IN (...)`:
# the OR kept PostgreSQL from using either index (11.6 ms at 21k rows, 170 ms at 600k;
# 0.1-0.5 ms this way). An encounter that is gone has no row.
_LOCK_FOR_CODING = """
SELECT e.key, e.revision, e.lease_owner, c.resource_type, c.resource_id, c.version,
       c.encounter_key, c.status, c.content_hash, c.body
FROM (SELECT key, revision, lease_owner FROM encounters WHERE key = ANY($1::text[])
      ORDER BY key FOR UPDATE) AS e
LEFT JOIN LATERAL (
    SELECT resource_type, resource_id, version, encounter_key, status, content_hash, body
    FROM resource_versions
    WHERE is_current AND (resource_type, resource_id) IN (
        SELECT r.resource_type, r.resource_id FROM resource_versions AS r
        WHERE r.is_current AND r.encounter_key = e.key
        UNION ALL
        SELECT x.resource_type, x.resource_id
        FROM unnest($2::text[], $3::text[], $4::text[])
            AS x (encounter_key, resource_type, resource_id)
        WHERE x.encounter_key = e.key)
    ORDER BY resource_type, resource_id
    FOR UPDATE
) AS c ON TRUE
"""

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

_RELEASE_ALL = """
UPDATE encounters AS e SET lease_owner = NULL, lease_until = NULL
FROM unnest($1::text[], $2::text[]) AS l (key, owner)
WHERE e.key = l.key AND e.lease_owner = l.owner
"""

_QUEUE_MESSAGE = """
INSERT INTO outbox (destination, resource_type, resource_id, version, next_attempt_at,
                    created_at, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
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

_TOTALS = """
SELECT (SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND rejected_at IS NULL) AS pending,
       (SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL) AS rejected,
       (SELECT count(*) FROM messages WHERE status = 'dead') AS dead,
       (SELECT count(*) FROM messages) AS messages
"""


# --- helpers --------------------------------------------------------------------------------


def _lock_key(schema: str) -> int:
    """A stable 64-bit advisory lock id per schema (hash() is salted per process)."""
    digest = hashlib.blake2b(f"charge-adapter:migrate:{schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


_DATA_REFUSED = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


def _group_arguments(batch: Sequence[Queued]) -> list[list[Any]]:
    """`_ADD_MESSAGES`' 15 parallel arrays: messages, links and encounter links by ordinal."""
    columns: list[list[Any]] = [[] for _ in range(15)]
    for ordinal, (message, links, _) in enumerate(batch):
        row = (ordinal, message.dedup_key, message.format, message.kind, message.raw,
               utc(message.received_at), message.patient_key, message.control_id)  # fmt: skip
        for column, value in zip(columns, row, strict=False):
            column.append(value)
        for link in merge_links(links):
            columns[8].append(ordinal)
            columns[9].append(link.encounter_key)
            if is_patient_key(link.encounter_key):
                continue
            columns[10].append(ordinal)
            columns[11].append(link.encounter_key)
            columns[12].append(link.patient_key)
            columns[13].append(link.close_requested)
            columns[14].append(None if link.cutoff_at is None else utc(link.cutoff_at))
    return columns


async def _insert_message(conn: _Conn, message: NewMessage, error: str | None) -> AddResult:
    """Insert unless the dedup key is known; `error` None means readable (ACCEPTED)."""
    status = MessageStatus.ACCEPTED if error is None else MessageStatus.DEAD
    message_id = await conn.fetchval(
        _INSERT_MESSAGE,
        message.dedup_key,
        message.format,
        message.kind,
        message.raw,
        utc(message.received_at),
        message.patient_key,
        message.control_id,
        status.value,
        error or "",
        message.truncated,
        message.reason,
        message.error_location,
    )
    if message_id is not None:
        return AddResult(int(message_id), duplicate=False)
    sql = "SELECT id FROM messages WHERE dedup_key = $1"
    return AddResult(int(await conn.fetchval(sql, message.dedup_key)), duplicate=True)


async def _link(conn: _Conn, message_id: int, links: Sequence[Link], at: datetime) -> None:
    merged = merge_links(links)  # in key order: concurrent writers lock rows in one order
    await conn.executemany(
        "INSERT INTO message_links (message_id, encounter_key) VALUES ($1, $2)",
        [(message_id, link.encounter_key) for link in merged],
    )
    stamp = utc(at)
    await conn.executemany(
        _TOUCH_ENCOUNTER,
        [
            (
                link.encounter_key,
                link.patient_key,
                stamp,
                link.close_requested,
                None if link.cutoff_at is None else utc(link.cutoff_at),
            )
            for link in merged
            if not is_patient_key(link.encounter_key)
        ],
    )


async def _linked_keys(conn: _Conn, message_id: int) -> list[str]:
    sql = "SELECT encounter_key FROM message_links WHERE message_id = $1 ORDER BY encounter_key"
    return [str(row["encounter_key"]) for row in await conn.fetch(sql, message_id)]


async def _set_message_status(
    conn: _Conn, message_id: int, status: MessageStatus, error: str
) -> None:
    sql = "SELECT truncated FROM messages WHERE id = $1 FOR UPDATE"
    truncated = await conn.fetchval(sql, message_id)
    if truncated is None:
        raise LookupError(f"no stored message with id {message_id}")
    if truncated and status is MessageStatus.ACCEPTED:
        raise TruncatedMessageError(message_id)
    sql = "UPDATE messages SET status = $1, error = $2 WHERE id = $3"
    await conn.execute(sql, status.value, error, message_id)


async def _relink(conn: _Conn, message_id: int, links: Sequence[Link], now: datetime) -> None:
    await _set_message_status(conn, message_id, MessageStatus.ACCEPTED, "")
    old_keys = await _linked_keys(conn, message_id)
    new_keys = {link.encounter_key for link in links}
    await conn.execute(_LOCK_ENCOUNTERS, sorted(new_keys | set(old_keys)))
    left = [key for key in old_keys if key not in new_keys]
    await conn.executemany(_BUMP_ENCOUNTER, [(utc(now), key) for key in left])
    await conn.execute("DELETE FROM message_links WHERE message_id = $1", message_id)
    await _link(conn, message_id, links, now)


async def _mark_dead(conn: _Conn, message_id: int, error: str) -> None:
    await _set_message_status(conn, message_id, MessageStatus.DEAD, error)
    keys = await _linked_keys(conn, message_id)
    await conn.executemany(_BUMP_ENCOUNTER, [(None, key) for key in keys])
    await conn.execute("DELETE FROM message_links WHERE message_id = $1", message_id)


async def _release(conn: _Conn, key: str, owner: str) -> None:
    sql = (
        "UPDATE encounters SET lease_owner = NULL, lease_until = NULL"
        " WHERE key = $1 AND lease_owner = $2"
    )
    await conn.execute(sql, key, owner)


CodingLocks = dict[str, tuple[int, str | None, dict[tuple[str, str], CurrentVersion]]]


async def _lock_for_coding(conn: _Conn, results: Sequence[CodingResult]) -> CodingLocks:
    """Per encounter key: its revision and lease owner, and the current versions
    save_codings compares against, all locked, in one round trip (gone: no entry)."""
    incoming = [(r.lease.encounter.key, res[0], res[1]) for r in results for res in r.resources]
    rows = await conn.fetch(
        _LOCK_FOR_CODING,
        sorted({r.lease.encounter.key for r in results}),
        [i[0] for i in incoming],
        [i[1] for i in incoming],
        [i[2] for i in incoming],
    )
    found: CodingLocks = {}
    for row in rows:
        key = str(row["key"])
        _, _, current = found.setdefault(key, (int(row["revision"]), row["lease_owner"], {}))
        if row["resource_type"] is not None:
            version = current_from_row(row)
            current[(version.resource_type, version.resource_id)] = version
    return found


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


async def _release_all(conn: _Conn, leases: Sequence[Lease]) -> None:
    await conn.execute(
        _RELEASE_ALL, [lease.encounter.key for lease in leases], [lease.owner for lease in leases]
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


def _json_text(path: tuple[str, ...]) -> str:
    """PostgreSQL's text at a constant JSON path of the Claim body (stored as text)."""
    return f"(r.body::jsonb #>> '{{{','.join(path)}}}')"
