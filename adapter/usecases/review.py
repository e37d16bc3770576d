"""Release a held encounter from review: code it again, or bill the draft as it is.

A held encounter has a draft Claim, planned ChargeItems and a requested Task whose inputs
say why (D22). The biller either fixes the source and asks for a re-code (`recode`: the
encounter is coded again from its stored messages, and may well stay held), or accepts the
draft as it is (`override`, with a note saying why): the Claim becomes active, its
ChargeItems billable and the Task completed, each as a new version queued for delivery.

Each decision is ONE store transaction with its audit entry (`Review.apply_review`): the
state change, the new versions and the audit row commit together or not at all, and the
store re-checks, inside that transaction, that the encounter is still held. The HTTP API
(`web/routes/review.py`) and the workbench (`web/routes/encounter.py`) are thin edges
over `release`; nothing here knows about requests.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from adapter.core.ids import claim_id, is_fhir_id, task_id
from adapter.core.review_decision import claim_overridden, task_completed, without_meta
from adapter.store.ports import (
    AuditEntry,
    EncounterRow,
    Encounters,
    EncounterState,
    ResourceEdit,
    ResourceRow,
    Resources,
    Review,
    ReviewConflictError,
    ReviewDecision,
    SearchQuery,
)

_PAGE = 500


class ReleaseAction(StrEnum):
    RECODE = "recode"
    OVERRIDE = "override"


AUDIT_ACTION = {ReleaseAction.RECODE: "release-recode", ReleaseAction.OVERRIDE: "override"}


class ReviewStore(Encounters, Resources, Review, Protocol):
    """What a release reads and writes: the encounter, its resources, the audit."""


class ReviewError(Exception):
    """A release that cannot be made; `status` is the HTTP answer the edges give."""

    status = 400

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class NotUnderReview(ReviewError):
    """No Claim with this review id, or a Claim without an encounter."""

    status = 404


class NotHeld(ReviewError):
    """The encounter is not (or no longer) held: nothing to release."""

    status = 409


@dataclass(frozen=True, slots=True)
class Released:
    """What a release did. A re-code another worker holds the lease of is "pending": it is
    coded when that worker is done."""

    claim_id: str
    encounter_key: str
    action: ReleaseAction
    outcome: str  # the encounter's state after it ("coded", "held", ...) or "pending"
    encounter: EncounterRow | None  # after the release
    versions: Mapping[str, Any] = field(default_factory=dict)  # override: what was written


async def held_encounter(store: ReviewStore, cid: str) -> str:
    """The encounter key behind a review id (the Claim id); NotUnderReview / NotHeld."""
    claim = await store.read_resource("Claim", cid) if is_fhir_id(cid) else None
    if claim is None:
        raise NotUnderReview(f"no Claim {cid} to review")
    row = await store.get_encounter(claim.encounter_key)
    if row is None:
        raise NotUnderReview(f"Claim {cid} has no encounter")
    if row.state is not EncounterState.HELD:
        raise NotHeld(f"encounter of Claim {cid} is {row.state.value}, not held")
    return row.key


async def release(
    store: ReviewStore,
    code_now: Callable[[], Awaitable[int]],
    cid: str,
    action: ReleaseAction,
    actor: str,
    note: str,
    now: datetime,
    destination: str | None,
) -> Released:
    """Release the held encounter behind review id `cid` (see the module docstring).

    `code_now` runs the coder once (close and code what is due), for a re-code to be
    answered with its outcome; `destination` is where new versions are queued."""
    key = await held_encounter(store, cid)
    try:
        if action is ReleaseAction.RECODE:
            return await recode(store, code_now, key, actor, note, now)
        return await override(store, key, actor, note, now, destination)
    except ReviewConflictError as exc:  # a coder or another release moved it meanwhile
        state = "gone" if exc.found is None else exc.found.value
        raise NotHeld(f"encounter of Claim {cid} is {state}, not held") from exc


async def recode(
    store: ReviewStore,
    code_now: Callable[[], Awaitable[int]],
    key: str,
    actor: str,
    note: str,
    now: datetime,
) -> Released:
    """Mark the encounter to be coded again (DIRTY) with its audit entry, in one
    transaction; then code it now, from its stored messages and the current tables."""
    audit = AuditEntry(now, actor, AUDIT_ACTION[ReleaseAction.RECODE], key, note)
    decision = ReviewDecision(key, EncounterState.HELD, EncounterState.DIRTY, (), audit)
    await store.apply_review(decision, now, None)
    await code_now()
    row = await store.get_encounter(key)
    pending = row is None or row.state in (EncounterState.DIRTY, EncounterState.OPEN)
    outcome = "pending" if pending or row is None else row.state.value
    return Released(claim_id(key), key, ReleaseAction.RECODE, outcome, row)


async def override(
    store: ReviewStore, key: str, actor: str, note: str, now: datetime, destination: str | None
) -> Released:
    """Accept the held draft as billed: new versions of the planned ChargeItems, the Claim
    and the Task, the encounter CODED and the audit entry, all in one transaction."""
    edits: list[ResourceEdit] = []
    for item in await _charge_items(store, key):
        if item.status == "planned":
            body = without_meta(item.body) | {"status": "billable"}
            edits.append(ResourceEdit("ChargeItem", item.resource_id, "billable", _dumps(body)))
    claim = await store.read_resource("Claim", claim_id(key))
    if claim is not None:
        body = claim_overridden(without_meta(claim.body), note)
        edits.append(ResourceEdit("Claim", claim.resource_id, "active", _dumps(body)))
    task = await store.read_resource("Task", task_id(key))
    if task is not None:
        body = task_completed(without_meta(task.body), note, now.isoformat(timespec="seconds"))
        edits.append(ResourceEdit("Task", task.resource_id, "completed", _dumps(body)))
    audit = AuditEntry(now, actor, AUDIT_ACTION[ReleaseAction.OVERRIDE], key, note)
    decision = ReviewDecision(key, EncounterState.HELD, EncounterState.CODED, tuple(edits), audit)
    written = await store.apply_review(decision, now, destination)
    coded = EncounterState.CODED
    return Released(
        claim_id(key), key, ReleaseAction.OVERRIDE, coded.value, None, _versions(written)
    )


def _versions(written: list[ResourceRow]) -> dict[str, Any]:
    """{"ChargeItem": {id: version}, "Claim": version, "Task": version} of what was written."""
    versions: dict[str, Any] = {"ChargeItem": {}}
    for row in written:
        if row.resource_type == "ChargeItem":
            versions["ChargeItem"][row.resource_id] = row.version
        else:
            versions[row.resource_type] = row.version
    return versions


async def _charge_items(store: Resources, key: str) -> list[ResourceRow]:
    """Every current ChargeItem of the encounter (paged through the store's search)."""
    items: list[ResourceRow] = []
    while True:
        query = SearchQuery("ChargeItem", encounter=key, count=_PAGE, offset=len(items))
        rows, total = await store.search(query)
        items += rows
        if not rows or len(items) >= total:
            return items


def _dumps(resource: Mapping[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
