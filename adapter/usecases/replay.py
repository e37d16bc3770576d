"""Replay (use case): read stored messages again through the current mappings (a mapping fix).

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

import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo

from tqdm import tqdm

from adapter.config import Settings
from adapter.core.mappings import Mappings
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.store.ports import Inbox, MessageStatus, ReplayOutcome, Store, StoredMessage
from adapter.usecases.close_and_code import Coder, CoderConfig
from adapter.usecases.context import service_coding_context
from adapter.usecases.ingest import refusal_for
from adapter.usecases.links import links_for
from adapter.usecases.ports import CodingMetrics

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

    store: Inbox
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


async def replay_stored(
    replayer: Replayer,
    selection: ReplaySelection,
    code_now: Callable[[], Awaitable[int]] | None,
) -> ReplaySummary:
    """Replay the selection (each page one transaction), then, when `code_now` is given and
    anything was read, code what it touched."""
    read, relinked, dead = await replayer.run(selection)
    coded = await code_now() if code_now is not None and read else 0
    return ReplaySummary(read, relinked, dead, coded, tuple(replayer.refused))


def replay_coder(
    store: Store, settings: Settings, mappings: Mappings, metrics: CodingMetrics
) -> Coder:
    """The coder a replay, its dry run or a dead letter's reprocess uses: the service's
    coder (same context, quiet period, lease, destination) under a replay owner, so its
    leases are told apart from the running service's."""
    config = CoderConfig(
        owner=f"replay-{settings.replica_id}",
        quiet_period=timedelta(minutes=settings.quiet_period_minutes),
        lease_seconds=settings.lease_seconds,
        destination=settings.fhir_base_url or None,
    )
    ctx = service_coding_context(settings, mappings)
    return Coder(store, ctx, config, lambda: datetime.now(UTC), metrics)
