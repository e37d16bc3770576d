"""Replay: read stored messages again through the current mappings (e.g. after a mapping fix).

Every message keeps its id and raw bytes; only its status, error and encounter links
change. Encounters it touches are marked for re-coding, and re-coding writes new versions
of the same deterministic resources (D24), so a replay never duplicates a charge.

What is replayed (issue: nothing refused is ever billed):
- without names, every ACCEPTED message (received at or after `--since`): a dead letter
  was answered AE/AR, so the sender knows it was refused, and it is never re-read by a
  sweep;
- `--message` names messages by the control id the feed sent (MSH-10, FHIR resource id);
  only accepted ones are replayed, a dead letter found under it is reported, not read;
- `--dead-letter` names dead letters by their stored id: the one way a refused message
  (after the feed or the mappings were fixed) is read again and may be accepted. A
  truncated raw (the head of an oversize frame) is refused even then, and the store
  itself refuses to accept one.

Messages are streamed from the store a page at a time, and each page's outcome is
written in one transaction: memory stays flat however many messages are stored.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from adapter.config import Settings
from adapter.core.ids import claim_id, task_id
from adapter.core.mappings import Mappings
from adapter.mappings_loader import load_mappings
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.service.claim_diff import ClaimDiff, diff_claims
from adapter.service.ingest import refusal_for
from adapter.service.links import links_for
from adapter.service.metrics import Metrics
from adapter.service.review_decision import open_holds
from adapter.store import open_store
from adapter.store._common import is_patient_key
from adapter.store.base import (
    EncounterRow,
    EncounterState,
    MessageStatus,
    ReplayOutcome,
    Store,
    StoredMessage,
)
from adapter.usecases.close_and_code import Coder, CoderConfig
from adapter.usecases.context import service_coding_context

PAGE = 200  # messages read, and written in one transaction, at a time


@dataclass(frozen=True, slots=True)
class ReplaySelection:
    """Which stored messages to read again (see the module docstring)."""

    since: datetime | None = None
    control_ids: tuple[str, ...] = ()
    dead_letter_ids: tuple[int, ...] = ()

    @property
    def named(self) -> bool:
        return bool(self.control_ids or self.dead_letter_ids)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A named message that was not replayed, and why (said to the operator)."""

    name: str  # "--message RAS0002", "--dead-letter 17"
    reason: str


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    read: int
    relinked: int
    dead: int
    coded: int
    refused: tuple[Refusal, ...] = ()
    dry_run: bool = False

    def __str__(self) -> str:
        mode = "replay (dry run, nothing written)" if self.dry_run else "replay"
        return (
            f"{mode}: messages={self.read} relinked={self.relinked} dead={self.dead} "
            f"encounters_coded={self.coded} refused={len(self.refused)}"
        )


@dataclass(frozen=True, slots=True)
class MessageReader:
    """Reads one stored message through the given mappings: its replay outcome. Pure."""

    mappings: Mappings
    site_tz: tzinfo
    cutoff: time | None

    def outcome(self, message: StoredMessage) -> ReplayOutcome:
        reader = read_hl7 if message.format == "hl7" else read_fhir
        inbound = reader(message.raw, self.mappings, self.site_tz, f"message {message.id}")
        good = [m for m in inbound if m.error is None and m.unsupported is None]
        if not good:
            errors = [f"{m.error.location}: {m.error.message}" for m in inbound if m.error]
            refusal = refusal_for(message.format, inbound)
            text = "; ".join(errors) or "nothing readable"
            return ReplayOutcome(message.id, (), text, refusal.reason.value, refusal.location)
        events = [e for m in good for e in m.events]
        links = tuple(links_for(events, self.site_tz, self.cutoff))
        return ReplayOutcome(message.id, links, None)


@dataclass
class Replayer:
    """Walks the selection, reads each message again and writes (or only reports) it."""

    store: Store
    reader: MessageReader
    clock: Callable[[], datetime]
    progress: bool = False
    refused: list[Refusal] = field(default_factory=list)

    async def pages(self, selection: ReplaySelection) -> AsyncIterator[list[StoredMessage]]:
        """The selected messages, a page at a time (named ones: one page)."""
        if selection.named:
            named = await self._named(selection)
            if named:
                yield named
            return
        after = 0
        with tqdm(
            total=await self.store.count_replayable(selection.since),
            disable=not self.progress,
            file=sys.stderr,
            # a terminal that reports no size (0x0) would hide the bar: 80x24 then
            ncols=shutil.get_terminal_size().columns,
            nrows=shutil.get_terminal_size().lines,
            unit="msg",
            desc="replay",
        ) as bar:
            while True:
                page = await self.store.replay_page(after, PAGE, selection.since)
                if not page:
                    return
                yield page
                bar.update(len(page))
                after = page[-1].id

    async def run(self, selection: ReplaySelection, *, write: bool = True) -> tuple[int, int, int]:
        """(read, relinked, dead); with `write` False nothing is written."""
        read = relinked = dead = 0
        async for page in self.pages(selection):
            outcomes = [self.reader.outcome(m) for m in page]
            if write:
                await self.store.apply_replay(outcomes, self.clock())
            read += len(outcomes)
            dead += sum(1 for o in outcomes if o.error is not None)
            relinked += sum(1 for o in outcomes if o.error is None)
        return read, relinked, dead

    async def _named(self, selection: ReplaySelection) -> list[StoredMessage]:
        chosen: dict[int, StoredMessage] = {}
        for control_id in selection.control_ids:
            for message in await self._by_control_id(control_id):
                chosen[message.id] = message
        for message_id in selection.dead_letter_ids:
            letter = await self._dead_letter(message_id)
            if letter is not None:
                chosen[letter.id] = letter
        return [chosen[k] for k in sorted(chosen)]

    async def _by_control_id(self, control_id: str) -> list[StoredMessage]:
        found = await self.store.find_messages([control_id])
        accepted = [m for m in found if m.status is MessageStatus.ACCEPTED]
        dead = [m for m in found if m.status is MessageStatus.DEAD]
        name = f"--message {control_id}"
        if not found:
            self.refused.append(Refusal(name, "no stored message has this control id"))
        elif dead:
            ids = ", ".join(str(m.id) for m in dead)
            self.refused.append(
                Refusal(
                    name,
                    f"dead letter(s) {ids} under this control id not replayed: a refused "
                    "message is read again only when named with --dead-letter",
                )
            )
        return accepted

    async def _dead_letter(self, message_id: int) -> StoredMessage | None:
        name = f"--dead-letter {message_id}"
        message = await self.store.get_message(message_id)
        if message is None:
            self.refused.append(Refusal(name, "no stored message has this id"))
            return None
        if message.truncated:
            self.refused.append(
                Refusal(
                    name,
                    "only the head of an oversize frame was kept: it can never be accepted; "
                    "ask the sender to resend the message",
                )
            )
            return None
        return message


async def replay(
    settings: Settings,
    selection: ReplaySelection,
    *,
    code: bool = True,
    progress: bool | None = None,
    dry_run: bool = False,
    out: TextIO | None = None,
) -> ReplaySummary:
    """Replay the selection against the configured store, then code what it touched.

    `dry_run`: print to `out` what would change per encounter, and write nothing."""
    mappings = load_mappings(Path(settings.mappings_dir))
    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    await store.migrate()
    try:
        replayer = Replayer(
            store,
            MessageReader(mappings, settings.tz, settings.cutoff),
            lambda: datetime.now(UTC),
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        if dry_run:
            coder = coder_for(store, settings, mappings)
            report = await DryRun(replayer, coder).run(selection, out or sys.stdout)
            return ReplaySummary(
                report.read, report.relinked, report.dead, 0, tuple(replayer.refused), True
            )
        read, relinked, dead = await replayer.run(selection)
        coded = await _code(store, settings, mappings) if code and read else 0
        return ReplaySummary(read, relinked, dead, coded, tuple(replayer.refused))
    finally:
        await store.close()


# --- dry run ------------------------------------------------------------------------------


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


@dataclass
class DryRun:
    """A replay that writes nothing: the outcomes are read as a replay reads them, then
    each touched encounter is coded from the messages it would have afterwards, the way
    the coder will code it (a standing review override included), and compared with its
    current Claim and Task."""

    replayer: Replayer
    coder: Coder
    moves: dict[int, _Move] = field(default_factory=dict)
    touched: dict[str, str] = field(default_factory=dict)  # encounter key -> patient key

    async def run(self, selection: ReplaySelection, out: TextIO) -> DryRunReport:
        read = relinked = dead = 0
        store = self.replayer.store
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
        store = self.replayer.store
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
        store = self.replayer.store
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


def coder_for(store: Store, settings: Settings, mappings: Mappings) -> Coder:
    """The coder a replay (or its dry run) uses: the service's, under a replay owner."""
    ctx = service_coding_context(settings, mappings)
    config = CoderConfig(
        owner=f"replay-{settings.replica_id}",
        quiet_period=timedelta(minutes=settings.quiet_period_minutes),
        lease_seconds=settings.lease_seconds,
        destination=settings.fhir_base_url or None,
    )
    return Coder(store, ctx, config, lambda: datetime.now(UTC), Metrics())


async def _code(store: Store, settings: Settings, mappings: Mappings) -> int:
    return await coder_for(store, settings, mappings).run_once()


def print_refusals(refused: Sequence[Refusal], out: TextIO) -> None:
    for refusal in refused:
        print(f"refused: {refusal.name}: {refusal.reason}", file=out)
