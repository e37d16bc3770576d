"""A biller's override, as resource bodies: made once by the review API, kept by re-codes.

`POST /review/{id}/release` with `override` turns a held draft into what is billed: the
ChargeItems `billable`, the Claim `active` with the note as an extension, the Task
`completed` with the note as its output. The same transformation is applied again when
the encounter is re-coded (an interface engine resending the visit under new MSH-10s)
and the re-code bills exactly the same lines and diagnoses: the decision stands, and the
resources come out identical, so no new version is written. A re-code that bills
something else reopens the review (see `adapter.usecases.close_and_code`).

Pure: JSON bodies in and out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapter.core.emit.urls import HOLD_REASON

JSON = dict[str, Any]

EXT_OVERRIDE_NOTE = "https://charge-adapter.org/fhir/StructureDefinition/override-note"
TASK_OUTPUT = "https://charge-adapter.org/fhir/CodeSystem/task-output"
OVERRIDE_OUTPUT_CODE = "override-note"
_BEFORE_EXTENSION = ("resourceType", "id", "meta", "implicitRules", "language", "text",
                     "contained")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Override:
    """A standing override: the biller's note and when it was made (Task.lastModified)."""

    note: str
    when: str


def standing_override(task: Mapping[str, Any] | None) -> Override | None:
    """The override a current Task records, if it is one (completed, with the note)."""
    if task is None or task.get("status") != "completed":
        return None
    for output in task.get("output", ()):
        codings = output.get("type", {}).get("coding", ())
        if any(c.get("system") == TASK_OUTPUT and c.get("code") == OVERRIDE_OUTPUT_CODE
               for c in codings):  # fmt: skip
            return Override(str(output.get("valueString", "")), str(task.get("lastModified", "")))
    return None


def open_holds(task: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The hold reason codes a current Task keeps open (a requested review Task)."""
    if task is None or task.get("status") != "requested":
        return ()
    codes: list[str] = []
    for item in task.get("input", ()):
        concept = item.get("valueCodeableConcept") or {}
        codes += [
            str(c.get("code", ""))
            for c in concept.get("coding", ())
            if c.get("system") == HOLD_REASON
        ]
    return tuple(dict.fromkeys(codes))


def is_override(claim: Mapping[str, Any]) -> bool:
    """A Claim version written by an override (it carries the note)."""
    return any(e.get("url") == EXT_OVERRIDE_NOTE for e in claim.get("extension", ()))


def apply_override(resources: Sequence[Mapping[str, Any]], override: Override) -> list[JSON]:
    """The coder's resources of a held encounter, as the override made them."""
    out: list[JSON] = []
    for resource in resources:
        kind = resource.get("resourceType")
        if kind == "ChargeItem" and resource.get("status") == "planned":
            out.append(dict(resource) | {"status": "billable"})
        elif kind == "Claim":
            out.append(claim_overridden(resource, override.note))
        elif kind == "Task":
            out.append(task_completed(resource, override.note, override.when))
        else:
            out.append(dict(resource))
    return out


def claim_overridden(claim: Mapping[str, Any], note: str) -> JSON:
    return with_note_extension(dict(claim) | {"status": "active"}, note)


def with_note_extension(resource: Mapping[str, Any], note: str) -> JSON:
    """The override note as an extension, in the R4 element position (after id/meta/text)."""
    note_ext = {"url": EXT_OVERRIDE_NOTE, "valueString": note}
    others = [e for e in resource.get("extension", []) if e.get("url") != EXT_OVERRIDE_NOTE]
    out = {k: v for k, v in resource.items() if k in _BEFORE_EXTENSION}
    out["extension"] = [*others, note_ext]
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out


def task_completed(task: Mapping[str, Any], note: str, when: str) -> JSON:
    """Task completed, lastModified `when`, and the note as its output (R4 element order)."""
    out: JSON = {}
    for name, value in task.items():
        if name in ("lastModified", "output"):
            continue
        out[name] = "completed" if name == "status" else value
        if name == "authoredOn":
            out["lastModified"] = when
    out.setdefault("lastModified", when)
    out["output"] = [
        {
            "type": {"coding": [{"system": TASK_OUTPUT, "code": OVERRIDE_OUTPUT_CODE}]},
            "valueString": note,
        }
    ]
    return out


def without_meta(body: str) -> JSON:
    """A stored JSON body without versionId/lastUpdated: the store sets them on a new
    version; other meta elements (profile, tag) stay, right after id."""
    resource: JSON = json.loads(body)
    meta = resource.pop("meta", None)
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        resource = _with_meta(resource, kept) if kept else resource
    return resource


def _with_meta(resource: JSON, meta: JSON) -> JSON:
    out: JSON = {}
    for name, value in resource.items():
        out[name] = value
        if name == "id":
            out["meta"] = meta
    return out
