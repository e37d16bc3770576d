"""Replay's dry run (use case): what a replay would change per encounter, writing nothing.

The outcomes are read as a replay reads them (`Replayer.pages`, `MessageReader`); each
touched encounter is then coded from the messages it would have afterwards, the way the
coder will code it (a standing review override included), and compared with its current
Claim and Task. `charge-adapter replay --dry-run` prints the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from adapter.core.claim_diff import ClaimDiff, diff_claims
from adapter.core.ids import claim_id, task_id
from adapter.core.review_decision import open_holds
from adapter.store._common import is_patient_key
from adapter.store.ports import (
    EncounterRow,
    Encounters,
    EncounterState,
    Inbox,
    MessageStatus,
    ReplayOutcome,
    Resources,
    StoredMessage,
)
from adapter.usecases.close_and_code import Coder
from adapter.usecases.replay import PAGE, Replayer, ReplaySelection, ReplaySummary


@dataclass(frozen=True, slots=True)
class EncounterChange:
    """What a replay would change in one encounter's billing."""

    claim_id: str
    before_state: str  # the encounter's state now ("new" when it has no row yet)
    after_state: str
    claim_before: str  # Claim status now ("" when none)
    claim_after: str
    diff: ClaimDiff
    holds_opened: tuple[str, ...]
    holds_closed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return (
            self.before_state == "new"
            or not self.diff.empty
            or bool(self.holds_opened or self.holds_closed)
            or self.claim_before != self.claim_after
        )

    def lines(self) -> list[str]:
        if self.before_state == "new":
            return [f"encounter {self.claim_id}: new (coded when it closes)"]
        claim = f"{self.claim_before or 'none'} -> {self.claim_after or 'none'}"
        states = f"{self.before_state} -> {self.after_state}"
        out = [f"encounter {self.claim_id}: {states}, Claim {claim}"]
        out += [f"  {line}" for line in self.diff.lines()]
        out += [f"  hold opened: {code}" for code in self.holds_opened]
        out += [f"  hold closed: {code}" for code in self.holds_closed]
        return out


@dataclass(frozen=True, slots=True)
class DryRunReport:
    read: int
    relinked: int
    dead: int
    encounters: int
    changed: int


@dataclass(frozen=True, slots=True)
class _Move:
    """A message whose status or encounters the replay would change."""

    message: StoredMessage
    keys: frozenset[str]  # encounter keys it would be linked to (none when it dies)


class DryRunStore(Inbox, Encounters, Resources, Protocol):
    """What a dry run reads: current links, the encounters' messages, rows and resources."""


@dataclass
class DryRun:
    """A replay that writes nothing: the outcomes are read as a replay reads them, then
    each touched encounter is coded from the messages it would have afterwards, the way
    the coder will code it (a standing review override included), and compared with its
    current Claim and Task."""

    replayer: Replayer
    coder: Coder
    store: DryRunStore
    moves: dict[int, _Move] = field(default_factory=dict)
    touched: dict[str, str] = field(default_factory=dict)  # encounter key -> patient key

    async def run(self, selection: ReplaySelection, out: TextIO) -> DryRunReport:
        read = relinked = dead = 0
        store = self.store
        async for page in self.replayer.pages(selection):
            outcomes = [self.replayer.reader.outcome(m) for m in page]
            current = await store.message_links([m.id for m in page])
            for message, outcome in zip(page, outcomes, strict=True):
                read += 1
                dead += outcome.error is not None
                relinked += outcome.error is None
                self._note(message, outcome, current[message.id], out)
        changed = 0
        keys = list(self.touched)
        for start in range(0, len(keys), PAGE):
            for change in await self._changes(keys[start : start + PAGE]):
                if change.changed:
                    changed += 1
                    print("\n".join(change.lines()), file=out)
        print(
            f"dry run: encounters={len(keys)} changed={changed} unchanged={len(keys) - changed}"
            " (nothing was written)",
            file=out,
        )
        return DryRunReport(read, relinked, dead, len(keys), changed)

    def _note(
        self, message: StoredMessage, outcome: ReplayOutcome, linked: list[str], out: TextIO
    ) -> None:
        new = {link.encounter_key: link.patient_key for link in outcome.links}
        old = set(linked)
        for key in sorted(old | set(new)):
            if not is_patient_key(key):
                self.touched.setdefault(key, new.get(key, message.patient_key))
        revived = message.status is MessageStatus.DEAD and outcome.error is None
        if outcome.error is not None and message.status is MessageStatus.ACCEPTED:
            print(f"message {message.id} ({message.control_id}) would become a dead letter: "
                  f"{outcome.error}", file=out)  # fmt: skip
        if revived:
            print(f"dead letter {message.id} ({message.control_id}) would be accepted", file=out)
        if revived or outcome.error is not None or old != set(new):
            self.moves[message.id] = _Move(message, frozenset(new))

    async def _changes(self, keys: list[str]) -> list[EncounterChange]:
        store = self.store
        wanted = [(key, self.touched[key]) for key in keys]
        found = await store.messages_for_encounters(wanted)
        changes = []
        for key in keys:
            messages = self._after(key, found[key])
            row = await store.get_encounter(key)
            changes.append(await self._change(key, row, messages))
        return changes

    def _after(self, key: str, linked: list[StoredMessage]) -> list[StoredMessage]:
        """The encounter's messages once the replay is applied."""
        kept = {m.id: m for m in linked if m.id not in self.moves or key in self.moves[m.id].keys}
        for move in self.moves.values():
            if key in move.keys:
                kept.setdefault(move.message.id, move.message)
        return [kept[i] for i in sorted(kept)]

    async def _change(
        self, key: str, row: EncounterRow | None, messages: list[StoredMessage]
    ) -> EncounterChange:
        store = self.store
        before_state = "new" if row is None else row.state.value
        recoded = row is not None and row.state is not EncounterState.OPEN
        claim_row = await store.read_resource("Claim", claim_id(key))
        task_row = await store.read_resource("Task", task_id(key))
        before = None if claim_row is None else json.loads(claim_row.body)
        holds_before = open_holds(None if task_row is None else json.loads(task_row.body))
        if not recoded:  # not coded yet: it is coded when it closes, as it would be anyway
            after_claim: dict[str, Any] | None = before
            after_state, holds_after = before_state, holds_before
        else:
            planned = await self.coder.plan(key, EncounterState.DIRTY, messages)
            after_claim = next((r for r in planned.resources if r["resourceType"] == "Claim"), None)
            after_state = planned.state.value
            holds_after = tuple(dict.fromkeys(h.reason.value for h in planned.coded.holds))
            if planned.state is not EncounterState.HELD:
                holds_after = ()
        return EncounterChange(
            claim_id=claim_id(key),
            before_state=before_state,
            after_state=after_state,
            claim_before="" if before is None else str(before.get("status", "")),
            claim_after="" if after_claim is None else str(after_claim.get("status", "")),
            diff=diff_claims(before, after_claim),
            holds_opened=tuple(h for h in holds_after if h not in holds_before),
            holds_closed=tuple(h for h in holds_before if h not in holds_after),
        )


async def dry_run(
    replayer: Replayer, coder: Coder, store: DryRunStore, selection: ReplaySelection, out: TextIO
) -> ReplaySummary:
    """Print to `out` what replaying the selection would change; nothing is written."""
    report = await DryRun(replayer, coder, store).run(selection, out)
    return ReplaySummary(
        report.read, report.relinked, report.dead, 0, tuple(replayer.refused), True
    )
