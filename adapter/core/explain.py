"""Account for every administration read: the line(s) it billed, the hold, or why nothing.

A lost administration is lost revenue no one sees. This module answers, for each
administration event a reader produced, exactly one of:
- CODED: the charge lines it contributed to (on an active Claim);
- HELD: its encounter is held for review; its own hold reasons (and the encounter's),
  and the draft lines it contributed to;
- SKIPPED: the typed reason it bills nothing (`AdminSkip`, or the encounter's own
  skip reason from the coder, e.g. inpatient).

Every reason is an enum value rendered by its value, so a reason added to an enum
elsewhere shows here without a change to this module. An administration this module
cannot account for is `AdminSkip.UNACCOUNTED`: the tests require it never appears.

Pure: the feed as read, the assembled encounters and their coding in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from adapter.core.assembly import Encounter
from adapter.core.catalog import Catalog
from adapter.core.charges import ChargeLine, CodedEncounter, EncounterSkip, Outcome
from adapter.core.classify import Kind, classify
from adapter.core.feed import FeedResult
from adapter.core.holds import Hold
from adapter.core.ids import claim_id
from adapter.core.model import Action, Administration, AdminStatus, InboundMessage, Route
from adapter.core.options import CodingOptions


class Fate(StrEnum):
    CODED = "coded"
    HELD = "held"
    SKIPPED = "skipped"


class AdminSkip(StrEnum):
    """Why one administration bills nothing (the encounter may still bill others)."""

    DUPLICATE_MESSAGE = "duplicate-message"  # its message was already read (same key)
    MESSAGE_REFUSED = "message-refused"  # its message has an input error: nothing of it is read
    SUPERSEDED = "superseded-by-correction"  # a later RXA-21 U/D (FHIR correction) replaced it
    RESENT = "superseded-by-a-later-copy"  # a later message carried it again: that copy bills
    SAME_IDENTITY = "same-identity-as-a-later-one-in-its-message"  # the feed's ids collide
    DELETION = "correction-deleting-an-earlier-administration"  # RXA-21 D itself
    ENTERED_IN_ERROR = "entered-in-error"  # RXA-20/21 or FHIR status: removes its original
    NOT_GIVEN = "not-given"  # RXA-20 NA/RE, FHIR not-done (D23)
    CARRIER_FLUID = "carrier-fluid"  # a fluid without indication carries a drug (R7, D12)
    HYDRATION_NOT_BILLABLE = "hydration-not-separately-billable"  # concurrent, < 31 min (R21)
    PUSH_NOT_SEPARATELY_BILLABLE = "push-not-separately-billable"  # same drug again (R24)
    ORAL = "oral-route"  # no administration code for an oral drug
    NO_ADMINISTRATION_CODE = "no-administration-code"  # no code in 96360-96549 applies
    NO_LINE = "no-line-under-the-coding-rules"  # coded, but no rule gave it a line
    UNACCOUNTED = "unaccounted"  # never expected: the explain tests fail on it


_BY_KIND = {
    Kind.CARRIER: AdminSkip.CARRIER_FLUID,
    Kind.HYDRATION: AdminSkip.HYDRATION_NOT_BILLABLE,
    Kind.PUSH: AdminSkip.PUSH_NOT_SEPARATELY_BILLABLE,
}


@dataclass(frozen=True, slots=True)
class Original:
    """The message a duplicate repeats: its input and 1-based number there."""

    origin: str
    message: int

    def __str__(self) -> str:
        return f"duplicate of {self.origin} message {self.message}"


@dataclass(frozen=True, slots=True)
class AdminExplanation:
    """What became of one administration event, and where it was read."""

    origin: str  # the input file (or the caller's origin)
    message: int  # 1-based number of its message in that input
    message_key: str  # the message's dedup key: hl7:<sender>:<MSH-10>:<digest> | fhir:...
    position: int  # 1-based number of the administration in its message
    admin: Administration
    fate: Fate
    reason: StrEnum | str = ""  # SKIPPED: an AdminSkip, or the coder's encounter skip reason
    holds: tuple[Hold, ...] = ()  # HELD: its own hold reasons, then the encounter's
    lines: tuple[ChargeLine, ...] = ()  # the lines it contributed to (draft when HELD)
    encounter_key: str = ""
    original: Original | None = None  # DUPLICATE_MESSAGE: the copy that was read


@dataclass(frozen=True, slots=True)
class MessageNote:
    """A message that contributed no administration: read with no RXA, skipped, or refused."""

    origin: str
    message: int
    message_key: str
    kind: str
    text: str  # "no administration", the skip reason, or the located input error


@dataclass(frozen=True, slots=True)
class Explanation:
    administrations: tuple[AdminExplanation, ...]
    messages: tuple[MessageNote, ...]


@dataclass(frozen=True, slots=True)
class ExplainInput:
    """The batch as coded: each message with its origin, and what the core made of them."""

    messages: Sequence[tuple[str, InboundMessage]]  # (origin, message), in feed order
    feed: FeedResult  # `collect` of exactly those messages
    encounters: Sequence[Encounter]
    coded: Sequence[CodedEncounter]  # one per encounter, same order


def explain(batch: ExplainInput, catalog: Catalog, options: CodingOptions) -> Explanation:
    placed = _placed(batch.encounters, batch.coded)
    duplicates = dict(zip(batch.feed.duplicates_at, batch.feed.duplicate_of, strict=True))
    later = _Successors.of(batch.messages, set(duplicates))
    admins: list[AdminExplanation] = []
    notes: list[MessageNote] = []
    numbers: dict[str, int] = {}
    places: list[Original] = []  # each message's input and number, by feed position
    for index, (origin, message) in enumerate(batch.messages):
        number = numbers[origin] = numbers.get(origin, 0) + 1
        places.append(Original(origin, number))
        original = places[duplicates[index]] if index in duplicates else None
        events = [e for e in message.events if isinstance(e, Administration)]
        if not events or message.error is not None:
            notes.append(_note(origin, number, message, original))
        for position, admin in enumerate(events, 1):
            where = (origin, number, message.dedup_key, position, admin)
            if message.error is not None:
                admins.append(AdminExplanation(*where, Fate.SKIPPED, AdminSkip.MESSAGE_REFUSED))
            elif original is not None:
                skip = AdminSkip.DUPLICATE_MESSAGE
                admins.append(AdminExplanation(*where, Fate.SKIPPED, skip, original=original))
            elif id(admin) in placed:
                admins.append(_placed_fate(where, admin, placed[id(admin)], catalog, options))
            else:
                admins.append(AdminExplanation(*where, Fate.SKIPPED, later.reason(admin, index)))
    return Explanation(tuple(admins), tuple(notes))


def _placed(
    encounters: Sequence[Encounter], coded: Sequence[CodedEncounter]
) -> dict[int, CodedEncounter]:
    """Each administration object the assembly kept, to the coding of its encounter."""
    return {id(a): c for e, c in zip(encounters, coded, strict=True) for a in e.administrations}


Name = tuple[str, str, str]
_CORRECTION = (Action.UPDATE, Action.DELETE)


@dataclass(frozen=True, slots=True)
class _Successors:
    """The administrations read, in feed order, by the names the assembly finds an
    earlier copy by: the identity (patient + source id), and for a correction with a
    new identity the family (patient + correction key: order + RXA-1/RXA-2)."""

    order: dict[Name, list[Administration]]
    place: dict[int, tuple[int, dict[Name, int]]]  # id -> (message index, index per name)

    @classmethod
    def of(
        cls, messages: Sequence[tuple[str, InboundMessage]], duplicates: set[int]
    ) -> _Successors:
        order: dict[Name, list[Administration]] = {}
        place: dict[int, tuple[int, dict[Name, int]]] = {}
        for index, (_, message) in enumerate(messages):
            if index in duplicates or message.error is not None:
                continue
            for event in message.events:
                if isinstance(event, Administration):
                    at: dict[Name, int] = {}
                    for name in _names(event):
                        at[name] = len(order.setdefault(name, []))
                        order[name].append(event)
                    place[id(event)] = (index, at)
        return cls(order, place)

    def reason(self, admin: Administration, index: int) -> AdminSkip:
        """Why the assembly left this administration out: only a later one can do so."""
        if admin.action is Action.DELETE:
            return AdminSkip.DELETION
        if admin.status is AdminStatus.ENTERED_IN_ERROR:
            return AdminSkip.ENTERED_IN_ERROR
        identity, family = _names(admin)
        after = self._after(admin, identity)
        if after:
            nxt = after[0]
            if _is_correction(nxt):
                return AdminSkip.SUPERSEDED
            same_message = self.place[id(nxt)][0] == index
            return AdminSkip.SAME_IDENTITY if same_message else AdminSkip.RESENT
        if any(_is_correction(n) for n in self._after(admin, family)):
            return AdminSkip.SUPERSEDED
        return AdminSkip.UNACCOUNTED

    def _after(self, admin: Administration, name: Name) -> list[Administration]:
        seen = self.order.get(name, [])
        return seen[self.place[id(admin)][1][name] + 1 :]


def _is_correction(admin: Administration) -> bool:
    return admin.action in _CORRECTION or admin.status is AdminStatus.ENTERED_IN_ERROR


def _names(admin: Administration) -> tuple[Name, Name]:
    family = admin.correction_key or admin.source_id
    return ("id", admin.patient_id, admin.source_id), ("family", admin.patient_id, family)


def _placed_fate(
    where: tuple[str, int, str, int, Administration],
    admin: Administration,
    coded: CodedEncounter,
    catalog: Catalog,
    options: CodingOptions,
) -> AdminExplanation:
    key = coded.encounter_key
    if admin.status is AdminStatus.NOT_DONE:
        return AdminExplanation(*where, Fate.SKIPPED, AdminSkip.NOT_GIVEN, encounter_key=key)
    if coded.outcome is Outcome.SKIPPED:
        # a whole-encounter reason (inpatient) is the reason; for "nothing billable",
        # what this administration was says more (a carrier fluid, an oral drug)
        reason: StrEnum | str = coded.skip_reason
        if coded.skip_reason == EncounterSkip.NOTHING_BILLABLE:
            reason = _why_nothing(admin, catalog, options)
        return AdminExplanation(*where, Fate.SKIPPED, reason, encounter_key=key)
    lines = tuple(ln for ln in coded.lines if admin.source_id in ln.sources)
    own = tuple(h for h in coded.holds if h.source_id == admin.source_id)
    if coded.outcome is Outcome.HELD and (lines or own):
        others = tuple(h for h in coded.holds if h.source_id != admin.source_id)
        return AdminExplanation(*where, Fate.HELD, "", own + others, lines, key)
    if lines:
        return AdminExplanation(*where, Fate.CODED, "", (), lines, key)
    reason = _why_nothing(admin, catalog, options)
    return AdminExplanation(*where, Fate.SKIPPED, reason, encounter_key=key)


def _why_nothing(admin: Administration, catalog: Catalog, options: CodingOptions) -> AdminSkip:
    """Why an administration the coder saw gave no line: what it was classified as."""
    item = classify(admin, catalog, options)
    if item.kind in _BY_KIND:
        return _BY_KIND[item.kind]
    if admin.route is Route.ORAL:
        return AdminSkip.ORAL
    if item.kind is Kind.UNCODED:
        return AdminSkip.NO_ADMINISTRATION_CODE
    return AdminSkip.NO_LINE


def _note(
    origin: str, number: int, message: InboundMessage, original: Original | None
) -> MessageNote:
    if message.error is not None:
        text = f"error: {message.error.location}: {message.error.message}"
    elif original is not None:  # before its own reason: a duplicate is not read at all
        text = f"skipped: {AdminSkip.DUPLICATE_MESSAGE} ({original})"
    elif message.skip_reason:
        text = f"skipped: {message.skip_reason}"
    else:
        text = "no administration"
    return MessageNote(origin, number, message.dedup_key, message.kind, text)


def render(explanation: Explanation) -> Iterable[str]:
    """One line per administration (and per message without one), grouped by input."""
    by_origin: dict[str, list[tuple[int, int, str]]] = {}
    for a in explanation.administrations:
        by_origin.setdefault(a.origin, []).append((a.message, a.position, _admin_line(a)))
    for n in explanation.messages:
        text = f"  message {n.message} {n.kind} {n.message_key}: {n.text}"
        by_origin.setdefault(n.origin, []).append((n.message, 0, text))
    for origin, lines in by_origin.items():
        yield f"explain: {origin}"
        yield from (text for *_, text in sorted(lines))


def _admin_line(a: AdminExplanation) -> str:
    drug = _drug(a.admin)
    head = (
        f"  message {a.message} {a.message_key} administration {a.position}"
        f" [{a.admin.source_id}] {drug} {a.admin.start.isoformat(timespec='minutes')}"
    )
    if a.fate is Fate.SKIPPED:
        detail = f" ({a.original})" if a.original is not None else ""
        return f"{head}: skipped: {a.reason}{detail}"
    lines = ", ".join(_line_text(ln) for ln in a.lines) or "no line"
    claim = claim_id(a.encounter_key)
    if a.fate is Fate.CODED:
        return f"{head}: coded: {lines} (Claim {claim})"
    holds = "; ".join(_hold_text(h, a.admin) for h in a.holds) or "encounter held"
    return f"{head}: held: {holds}; draft lines {lines} (Claim {claim})"


def _hold_text(hold: Hold, admin: Administration) -> str:
    about = (
        f" (on {hold.source_id})" if hold.source_id and hold.source_id != admin.source_id else ""
    )
    return f"{hold.reason}: {hold.detail}{about}"


def _line_text(line: ChargeLine) -> str:
    mods = "-" + "-".join(line.modifiers) if line.modifiers else ""
    return f"{line.code}{mods} x{line.units}"


def _drug(admin: Administration) -> str:
    for ingredient in admin.ingredients:
        for code in ingredient.codes:
            if code.code:
                return code.code
        if ingredient.text:
            return ingredient.text
    return "(no drug code)"
