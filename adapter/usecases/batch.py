"""Batch code: read → collect → assemble → code → FHIR for a batch of files, in memory.

The use case behind `charge-adapter code FILES` (cli/main.py reads the files and prints) and
the coding benchmarks. No store: every encounter is closed at the end of the batch. The
service runs the same core steps around its store (usecases/close_and_code.py); this
module only sequences the pure core and the readers, it opens no files itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Any

from adapter.core.assembly import AssemblyNotes, Encounter, assemble_noted
from adapter.core.charges import CodedEncounter, EncounterSkip, Outcome, TableWarning
from adapter.core.coder import code_encounter
from adapter.core.emit.bundle import bundle, dumps
from adapter.core.emit.claim import OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.explain import ExplainInput, Explanation, explain
from adapter.core.feed import FeedResult, collect
from adapter.core.mappings import Mappings
from adapter.core.model import InboundMessage, InputError
from adapter.core.options import CodingOptions
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.usecases.context import coding_context


@dataclass(frozen=True, slots=True)
class PipelineResult:
    coded: tuple[CodedEncounter, ...]
    resources: tuple[dict[str, Any], ...]
    bundle_json: str
    errors: tuple[InputError, ...]
    warnings: tuple[str, ...]
    messages: int
    duplicates: int
    skipped_messages: int
    encounters: tuple[Encounter, ...] = ()
    feed: FeedResult | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.coded if c.outcome is outcome)

    def summary_line(self, unreadable_files: int = 0) -> str:
        return (
            f"summary: messages={self.messages} duplicates={self.duplicates} "
            f"skipped_messages={self.skipped_messages} "
            f"encounters coded={self.count(Outcome.CODED)} held={self.count(Outcome.HELD)} "
            f"skipped={self.count(Outcome.SKIPPED)} errors={len(self.errors) + unreadable_files}"
        )


def table_warnings(found: Iterable[TableWarning]) -> tuple[str, ...]:
    """One line per stale table (D27), naming the latest service date that used it."""
    latest: dict[tuple[str, date], date] = {}
    for w in found:
        key = (w.table, w.effective_end)
        latest[key] = max(latest.get(key, w.service_date), w.service_date)
    return tuple(
        f"{table} table is effective to {end.isoformat()} but coded service dates up to "
        f"{last.isoformat()} (D27: newest table used)"
        for (table, end), last in sorted(latest.items())
    )


def assembly_warnings(notes: AssemblyNotes) -> tuple[str, ...]:
    """What assembly kept apart or could not match, counted: ids only, never patient data."""
    found = []
    if notes.shared_ids:
        found.append(
            f"{notes.shared_ids} order/administration ids (ORC-3 or ORC-2 with RXA-1/RXA-2) "
            "are used by more than one patient: each patient's administrations are kept apart"
        )
    if notes.unmatched_updates:
        found.append(
            f"{notes.unmatched_updates} corrections (RXA-21 U) matched no earlier "
            "administration of their patient: each is coded as given"
        )
    if notes.unmatched_deletes:
        found.append(
            f"{notes.unmatched_deletes} deletions (RXA-21 D, entered-in-error) matched no "
            "earlier administration of their patient: nothing was removed"
        )
    return tuple(found)


def reused_control_id_warnings(count: int) -> tuple[str, ...]:
    """Messages whose sender used their MSH-10 before for other content: read, not dropped."""
    if not count:
        return ()
    return (
        f"{count} messages reuse an earlier message's sender and control id (MSH-10) with "
        "other content: each was read as a message of its own, not dropped as a re-send",
    )


def shared_visit_warnings(count: int) -> tuple[str, ...]:
    """Encounters not billed because their visit number names several patients."""
    if not count:
        return ()
    return (
        f"{count} visit numbers (PV1-19, FHIR Encounter) name more than one patient: not "
        "billed, since no claim may mix patients; correct the visit numbers and re-send",
    )


def sniff_format(data: bytes) -> str:
    """`fhir` for JSON / NDJSON, `hl7` for ER7 (with or without MLLP bytes), else ``."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n\x0b")[:16]
    if head.startswith((b"{", b"[")):
        return "fhir"
    if head.startswith((b"MSH", b"FHS", b"BHS")):
        return "hl7"
    return ""


@dataclass
class Pipeline:
    mappings: Mappings
    options: CodingOptions
    site_tz: tzinfo
    output: OutputOptions = field(default_factory=OutputOptions)
    pretty: bool = True  # indent=2 for people; compact is ~5x faster to encode
    messages: list[InboundMessage] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # the input of each message

    def feed_file(self, data: bytes, origin: str) -> None:
        """Read one file's messages into the feed; an unknown format is one input error."""
        kind = sniff_format(data)
        if kind == "fhir":
            read = read_fhir(data, self.mappings, self.site_tz, origin)
        elif kind == "hl7":
            read = read_hl7(data, self.mappings, self.site_tz, origin)
        else:
            error = InputError(origin, "not an HL7 v2 (MSH...) or FHIR JSON file")
            read = (InboundMessage(f"file:{origin}", "unknown", error=error),)
        self.messages.extend(read)
        self.origins.extend(origin for _ in read)

    def explain(self, result: PipelineResult) -> Explanation:
        """Every administration read, and what became of it (`charge-adapter code --explain`)."""
        assert result.feed is not None, "explain the result of this pipeline's close()"
        batch = ExplainInput(
            tuple(zip(self.origins, self.messages, strict=True)),
            result.feed,
            result.encounters,
            result.coded,
        )
        return explain(batch, self.mappings.catalog, self.options)

    def close(self) -> PipelineResult:
        """Close every encounter (end of the batch) and build the output Bundle."""
        feed = collect(self.messages)
        ctx = coding_context(self.mappings, self.options, self.site_tz)
        encounters, notes = assemble_noted(feed.events, self.site_tz)
        coded = tuple(code_encounter(e, ctx) for e in encounters)
        resources = tuple(
            r for c in coded for r in encounter_resources(c, self.mappings, self.output)
        )
        digest = hashlib.sha256("|".join(r["id"] for r in resources).encode()).hexdigest()
        text = dumps(bundle(resources, f"batch-{digest[:16]}"), pretty=self.pretty)
        shared = sum(1 for c in coded if c.skip_reason == EncounterSkip.SHARED_VISIT)
        warnings = (
            reused_control_id_warnings(feed.reused_control_ids)
            + assembly_warnings(notes)
            + shared_visit_warnings(shared)
            + table_warnings(w for c in coded for w in c.warnings)
        )
        return PipelineResult(
            coded=coded,
            resources=resources,
            bundle_json=text,
            errors=feed.errors,
            warnings=warnings,
            messages=feed.messages,
            duplicates=feed.duplicates,
            skipped_messages=len(feed.skipped) - feed.duplicates,
            encounters=encounters,
            feed=feed,
        )


def code_files(
    files: Iterable[tuple[str, bytes]],
    mappings: Mappings,
    options: CodingOptions,
    site_tz: tzinfo,
) -> tuple[Pipeline, PipelineResult]:
    """Code a batch: each (name, content) read in order, then every encounter closed and
    coded; the pipeline is returned too, for `--explain`."""
    pipeline = Pipeline(mappings, options, site_tz)
    for name, data in files:
        pipeline.feed_file(data, name)
    return pipeline, pipeline.close()
