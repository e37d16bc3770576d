"""Query text both stores share (search filters, the held worklist) and their tallies.

Each store gives its placeholder style and JSON accessor; the SQL holds only those and
constant paths, never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from adapter.store.ports import (
    EncounterState,
    HeldQuery,
    SearchQuery,
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
