"""PostgreSQL: the Reports port (the workbench reports' rows), over the stored Claim versions.

The Claim body is stored as text: each row's body is parsed to jsonb once (a LATERAL that
the planner may not flatten, `OFFSET 0`), then every path is read from it; the hold reasons
and unmatched drug codes are aggregated per version with `jsonb_array_elements`, the first
delivery per version joined from the outbox once (grouped), not looked up per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapter.core.report_rows import ClaimVersion, CodedClaim, ReportFilter
from adapter.store._common import aware
from adapter.store.postgres.connection import PostgresBase
from adapter.store.reports_common import (
    CLAIM_TYPE,
    DRUG_URL,
    HOLD_URL,
    LOCATION,
    START,
    STATUSES,
    claim_version,
    coded_claim,
    filter_sql,
)


class ReportsPg(PostgresBase):
    """The `Reports` port on PostgreSQL: each method one read-only snapshot."""

    async def claim_versions(self, query: ReportFilter) -> list[ClaimVersion]:
        sql, args = _versions_sql(query)
        async with self._read() as conn:
            rows = await conn.fetch(sql, *args)
        return _claim_versions(rows)

    async def coded_claims(self, query: ReportFilter) -> list[CodedClaim]:
        sql, args = _coded_sql(query)
        async with self._read() as conn:
            rows = await conn.fetch(sql, *args)
        return _coded_claims(rows)

    async def report_locations(self) -> list[str]:
        async with self._read() as conn:
            rows = await conn.fetch(_LOCATIONS_SQL)
        return [str(r["loc"]) for r in rows]


def _json_text(path: tuple[str, ...]) -> str:
    return f"(b.j #>> '{{{','.join(path)}}}')"


_BODY = "CROSS JOIN LATERAL (SELECT r.body::jsonb AS j OFFSET 0) AS b"
_EXTENSIONS = (
    "COALESCE((SELECT jsonb_agg({value}) FROM jsonb_array_elements(b.j -> 'extension') AS x"
    " WHERE x ->> 'url' = {url}), '[]'::jsonb)::text"
)
_HOLDS = _EXTENSIONS.format(value="x ->> 'valueCode'", url="$1")
_DRUGS = _EXTENSIONS.format(
    value="jsonb_build_array(x #>> '{valueCoding,system}', x #>> '{valueCoding,code}')",
    url="$2",
)
_FIRST_DELIVERY = (
    "LEFT JOIN (SELECT resource_id, version, MIN(delivered_at) AS delivered_at FROM outbox"
    " WHERE resource_type = 'Claim' AND delivered_at IS NOT NULL GROUP BY resource_id, version)"
    " AS d ON d.resource_id = r.resource_id AND d.version = r.version"
)
_ITEMS = (
    "COALESCE((SELECT jsonb_agg(jsonb_build_array(i #>> '{productOrService,coding,0,code}',"
    " i #>> '{quantity,value}', i ->> 'servicedDate')) FROM jsonb_array_elements(b.j -> 'item')"
    " AS i), '[]'::jsonb)::text"
)
_CLAIM_COLUMNS = (
    f"r.resource_id AS claim_id, {_json_text(START)} AS start,"
    f" {_json_text(LOCATION)} AS location, {_json_text(CLAIM_TYPE)} AS claim_type"
)
_STATUSES = ", ".join(f"'{s}'" for s in STATUSES)


def _numbers(first: int) -> Iterator[str]:
    n = first
    while True:
        yield f"${n}"
        n += 1


def _versions_sql(query: ReportFilter) -> tuple[str, list[object]]:
    numbers = _numbers(3)
    where, args = filter_sql(query, _json_text, lambda: next(numbers))
    sql = (
        f"SELECT {_CLAIM_COLUMNS}, r.version, r.status, r.last_updated,"
        f" {_HOLDS} AS holds, {_DRUGS} AS drugs, d.delivered_at"
        f" FROM resource_versions AS r {_BODY} {_FIRST_DELIVERY}"
        f" WHERE r.resource_type = 'Claim' AND r.status IN ({_STATUSES}){where}"
        " ORDER BY r.resource_id, r.version"
    )
    return sql, [HOLD_URL, DRUG_URL, *args]


def _claim_versions(rows: list[Any]) -> list[ClaimVersion]:
    out = []
    for row in rows:
        delivered = aware(row["delivered_at"]) if row["delivered_at"] is not None else None
        version = claim_version(row, aware(row["last_updated"]), delivered)
        if version is not None:
            out.append(version)
    return out


def _coded_sql(query: ReportFilter) -> tuple[str, list[object]]:
    numbers = _numbers(1)
    where, args = filter_sql(query, _json_text, lambda: next(numbers))
    sql = (
        f"SELECT {_CLAIM_COLUMNS}, {_ITEMS} AS items FROM resource_versions AS r {_BODY}"
        f" WHERE r.resource_type = 'Claim' AND r.is_current AND r.status = 'active'{where}"
        " ORDER BY r.resource_id"
    )
    return sql, args


def _coded_claims(rows: list[Any]) -> list[CodedClaim]:
    return [c for row in rows if (c := coded_claim(row)) is not None]


_LOCATIONS_SQL = (
    "SELECT DISTINCT r.body::jsonb #>> '{provider,display}' AS loc FROM resource_versions AS r"
    " WHERE r.resource_type = 'Claim' AND r.is_current"
    " AND r.body::jsonb #>> '{provider,display}' IS NOT NULL ORDER BY 1"
)
