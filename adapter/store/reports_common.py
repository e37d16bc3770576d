"""What the report queries of both stores share: the Claim paths, the filters, the row builders.

The reports read stored Claim versions (never the inbound messages): the hold reasons and
unmatched drug codes from the Claim's extensions, the location, setting and service date
from the Claim, the first delivery from the outbox. Each store selects the same columns (its
own JSON syntax) and builds the rows here, so both give the same rows for the same data
(tests/test_reports_store.py runs on both).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapter.core.charges import ChargeLine, LineKind
from adapter.core.emit.urls import EXT_HOLD_REASON, EXT_UNMATCHED_DRUG
from adapter.core.mappings import Setting
from adapter.core.report_rows import ClaimVersion, CodedClaim, DrugCode, ReportFilter

CLAIM_TYPE_OF: dict[str, str] = {
    Setting.OFFICE: "professional",
    Setting.HOSPITAL_OUTPATIENT: "institutional",
}
SETTING_OF = {code: setting for setting, code in CLAIM_TYPE_OF.items()}
STATUSES = ("draft", "active")  # held, coded: the only statuses a Claim is written with
START = ("billablePeriod", "start")
LOCATION = ("provider", "display")
CLAIM_TYPE = ("type", "coding", "0", "code")
HOLD_URL = EXT_HOLD_REASON
DRUG_URL = EXT_UNMATCHED_DRUG
ADMINISTRATION_HCPCS = frozenset({"G0498"})  # the one HCPCS administration code (R27)


def filter_sql(
    query: ReportFilter, json_text: Callable[[tuple[str, ...]], str], param: Callable[[], str]
) -> tuple[str, list[object]]:
    """` AND ...` clauses (and their arguments, in order) for the report filters."""
    clauses: list[str] = []
    args: list[object] = []
    start = json_text(START)
    if query.service_from:
        clauses.append(f"substr({start}, 1, 10) >= {param()}")
        args.append(query.service_from.isoformat())
    if query.service_to:
        clauses.append(f"substr({start}, 1, 10) <= {param()}")
        args.append(query.service_to.isoformat())
    if query.location:
        clauses.append(f"{json_text(LOCATION)} = {param()}")
        args.append(query.location)
    if query.setting:
        clauses.append(f"{json_text(CLAIM_TYPE)} = {param()}")
        args.append(CLAIM_TYPE_OF.get(query.setting, "(none)"))
    return "".join(f" AND {c}" for c in clauses), args


def _service_day(start: str | None) -> date | None:
    try:
        return date.fromisoformat(start[:10]) if start else None
    except ValueError:
        return None


def _instant(start: str | None) -> datetime | None:
    """billablePeriod.start as an instant (FHIR dateTime with its zone; D25 writes one)."""
    try:
        moment = datetime.fromisoformat(start) if start and len(start) > 10 else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _json_list(value: Any) -> list[Any]:
    """An aggregated JSON array column ('[]' or NULL when there is nothing)."""
    if value is None:
        return []
    parsed = json.loads(value) if isinstance(value, str) else value
    return list(parsed) if isinstance(parsed, list) else []


def claim_version(
    row: Any, recorded_at: datetime, delivered_at: datetime | None
) -> ClaimVersion | None:
    """A row of the versions query as a report row (None: a Claim of an unknown type)."""
    setting = SETTING_OF.get(str(row["claim_type"] or ""))
    if setting is None:
        return None
    drugs = [d for d in _json_list(row["drugs"]) if isinstance(d, list) and len(d) == 2]
    return ClaimVersion(
        claim_id=str(row["claim_id"]),
        version=int(row["version"]),
        held=row["status"] == "draft",
        recorded_at=recorded_at,
        service_date=_service_day(row["start"]),
        administered_at=_instant(row["start"]),
        location=str(row["location"] or ""),
        setting=setting,
        holds=tuple(str(h) for h in _json_list(row["holds"]) if h),
        unmatched_drugs=tuple(DrugCode(str(s or ""), str(c)) for s, c in drugs if c),
        delivered_at=delivered_at,
    )


def coded_claim(row: Any) -> CodedClaim | None:
    """A row of the coded-claims query as lines to price (None: no date or unknown type)."""
    setting = SETTING_OF.get(str(row["claim_type"] or ""))
    day = _service_day(row["start"])
    if setting is None or day is None:
        return None
    lines = tuple(
        line for item in _json_list(row["items"]) if (line := _line(item, day)) is not None
    )
    return CodedClaim(str(row["claim_id"]), day, str(row["location"] or ""), setting, lines)


def _line(item: Sequence[Any], claim_day: date) -> ChargeLine | None:
    """[code, units, servicedDate] of a Claim item as a line pricing understands."""
    if not isinstance(item, list) or len(item) != 3 or not item[0]:
        return None
    code = str(item[0])
    try:
        units = int(Decimal(str(item[1])))
    except (InvalidOperation, ValueError):
        return None
    kind = (
        LineKind.ADMINISTRATION
        if code[:1].isdigit() or code in ADMINISTRATION_HCPCS
        else LineKind.DRUG
    )
    return ChargeLine(kind, code, units, _service_day(item[2]) or claim_day, (), ())
