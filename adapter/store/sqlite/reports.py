"""SQLite: the Reports port (the workbench reports' rows), over the stored Claim versions.

One statement per report read, in the store's read snapshot: the JSON paths are read with
`json_extract`, the hold reasons and unmatched drug codes aggregated per version with
`json_each`, the first delivery per version joined from the outbox once (grouped), not
looked up per row.
"""

from __future__ import annotations

from adapter.core.report_rows import ClaimVersion, CodedClaim, ReportFilter
from adapter.store._common import parse_iso
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
from adapter.store.sqlite.connection import Conn, SqliteBase


class ReportsSql(SqliteBase):
    """The `Reports` port on SQLite: each method one read transaction."""

    async def claim_versions(self, query: ReportFilter) -> list[ClaimVersion]:
        return await self._read(lambda conn: _claim_versions(conn, query))

    async def coded_claims(self, query: ReportFilter) -> list[CodedClaim]:
        return await self._read(lambda conn: _coded_claims(conn, query))

    async def report_locations(self) -> list[str]:
        return await self._read(_report_locations)


def _json_text(path: tuple[str, ...]) -> str:
    steps = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path)
    return f"json_extract(r.body, '${steps}')"


_EXTENSIONS = (
    "(SELECT json_group_array({value}) FROM json_each(r.body, '$.extension') AS x"
    " WHERE json_extract(x.value, '$.url') = {url})"
)
_HOLDS = _EXTENSIONS.format(value="json_extract(x.value, '$.valueCode')", url="?")
_DRUGS = _EXTENSIONS.format(
    value="json_array(json_extract(x.value, '$.valueCoding.system'),"
    " json_extract(x.value, '$.valueCoding.code'))",
    url="?",
)
_FIRST_DELIVERY = (
    "LEFT JOIN (SELECT resource_id, version, MIN(delivered_at) AS delivered_at FROM outbox"
    " WHERE resource_type = 'Claim' AND delivered_at IS NOT NULL GROUP BY resource_id, version)"
    " AS d ON d.resource_id = r.resource_id AND d.version = r.version"
)
_ITEMS = (
    "(SELECT json_group_array(json_array("
    "json_extract(i.value, '$.productOrService.coding[0].code'),"
    " json_extract(i.value, '$.quantity.value'), json_extract(i.value, '$.servicedDate')))"
    " FROM json_each(r.body, '$.item') AS i)"
)
_CLAIM_COLUMNS = (
    f"r.resource_id AS claim_id, {_json_text(START)} AS start,"
    f" {_json_text(LOCATION)} AS location, {_json_text(CLAIM_TYPE)} AS claim_type"
)
_STATUSES = ", ".join(f"'{s}'" for s in STATUSES)


def _claim_versions(conn: Conn, query: ReportFilter) -> list[ClaimVersion]:
    where, args = filter_sql(query, _json_text, lambda: "?")
    sql = (
        f"SELECT {_CLAIM_COLUMNS}, r.version, r.status, r.last_updated,"
        f" {_HOLDS} AS holds, {_DRUGS} AS drugs, d.delivered_at"
        f" FROM resource_versions AS r {_FIRST_DELIVERY}"
        f" WHERE r.resource_type = 'Claim' AND r.status IN ({_STATUSES}){where}"
        " ORDER BY r.resource_id, r.version"
    )
    out = []
    for row in conn.execute(sql, (HOLD_URL, DRUG_URL, *args)):
        delivered = parse_iso(row["delivered_at"]) if row["delivered_at"] else None
        version = claim_version(row, parse_iso(row["last_updated"]), delivered)
        if version is not None:
            out.append(version)
    return out


def _coded_claims(conn: Conn, query: ReportFilter) -> list[CodedClaim]:
    where, args = filter_sql(query, _json_text, lambda: "?")
    sql = (
        f"SELECT {_CLAIM_COLUMNS}, {_ITEMS} AS items FROM resource_versions AS r"
        f" WHERE r.resource_type = 'Claim' AND r.is_current = 1 AND r.status = 'active'{where}"
        " ORDER BY r.resource_id"
    )
    return [c for row in conn.execute(sql, args) if (c := coded_claim(row)) is not None]


def _report_locations(conn: Conn) -> list[str]:
    location = _json_text(LOCATION)
    sql = (
        f"SELECT DISTINCT {location} FROM resource_versions AS r WHERE r.resource_type = 'Claim'"
        f" AND r.is_current = 1 AND {location} IS NOT NULL ORDER BY 1"
    )
    return [str(loc) for (loc,) in conn.execute(sql)]
