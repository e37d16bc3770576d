"""FHIR R4 / R5 JSON to inbound messages: one per resource of interest.

Accepts one resource, a Bundle of any type (entries flattened, nested Bundles
too, a subscription notification's status entry dropped) or NDJSON. The input
is parsed once with the stdlib and walked as plain dicts: building validated
model objects would cost far more than the few elements a charge needs (see
docs/feed-conventions.md for the elements read).

Nothing raises for bad input: unparseable JSON, a resource missing what a
charge needs, or a malformed element each become one `InboundMessage` with an
`InputError` naming the file, line and JSON path, and every other resource is
still read. Messages name paths and types, never values that may be PHI.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from types import MappingProxyType

from adapter.core.mappings import Mappings
from adapter.core.model import Event, InboundMessage, InputError, Unsupported
from adapter.readers.fhir_json import (
    JsonObject,
    ReadError,
    check_id,
    get_object,
    json_float,
)
from adapter.readers.fhir_medadmin import read_administration
from adapter.readers.fhir_reading import Located, Reading, Scope, Skip, contained_index
from adapter.readers.fhir_visit import read_condition, read_coverage, read_encounter

__all__ = ["load_json", "read_fhir"]

_READERS: Mapping[str, Callable[[Reading], Event | Skip]] = MappingProxyType(
    {
        "MedicationAdministration": read_administration,
        "Encounter": read_encounter,
        "Condition": read_condition,
        "Coverage": read_coverage,
    }
)
_SKIPPED: Mapping[str, str] = MappingProxyType({"Patient": "patient identity only"})
_RESOLUTION_ONLY = frozenset({"Medication"})  # read through references, never emitted
_NOTIFICATION_TYPES = frozenset({"subscription-notification", "history"})
_NOTIFICATION_STATUS = frozenset({"SubscriptionStatus", "Parameters"})
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")
_MAX_BUNDLE_DEPTH = 4
_UNKNOWN_KIND = "unknown"


@dataclass(frozen=True, slots=True)
class _Keys:
    """How a resource is known: as a source (all versions), by id, and which version."""

    source: str
    own_id: str
    version: str  # meta.versionId, "" when absent
    by_content: bool  # no id, identifier or fullUrl: `source` is already a content hash


@dataclass(frozen=True, slots=True)
class _Entry:
    """One resource found in the input, before it is read."""

    resource: JsonObject
    rtype: str
    path: str  # FHIRPath-like: `Bundle.entry[2].resource`, or the resource type
    where: str  # location prefix: `demo.json, ` or `feed.ndjson line 3, `
    full_url: str | None
    keys: _Keys


_Found = _Entry | InboundMessage  # an input error is reported where it was found


def read_fhir(
    data: str | bytes, mappings: Mappings, site_tz: tzinfo, origin: str = ""
) -> tuple[InboundMessage, ...]:
    """Every resource of interest in a FHIR JSON body or file, in input order.

    `origin` (a file name, a peer) prefixes every error location. Timestamps
    without an offset are read in `site_tz` (D25).
    """
    text = _decode(data, origin)
    if isinstance(text, InboundMessage):
        return (text,)
    found = list(_documents(text, origin))
    scope = Scope(mappings, site_tz, _index(f for f in found if isinstance(f, _Entry)))
    messages: list[InboundMessage] = []
    for item in found:
        message = item if isinstance(item, InboundMessage) else _read_entry(item, scope)
        if message is not None:
            messages.append(message)
    return tuple(messages)


# --- input --------------------------------------------------------------------------------


def _decode(data: str | bytes, origin: str) -> str | InboundMessage:
    """UTF-8 text without a byte-order mark (some exports write one)."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        digest = hashlib.sha256(data).hexdigest()[:32]
        where = _place(origin, f"byte {exc.start}")
        return _unplaced(f"fhir:sha256:{digest}", where, "not UTF-8 text")


def _documents(text: str, origin: str) -> Iterator[_Found]:
    """One JSON document, or NDJSON (one object per line, or a parse that stops after one)."""
    if not text.strip():
        return
    if _looks_like_ndjson(text):
        yield from _ndjson(text, origin)
        return
    try:
        value = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            yield from _ndjson(text, origin)
            return
        yield _unparseable(text, _place(origin, f"line {exc.lineno} column {exc.colno}"), exc.msg)
        return
    except (ValueError, RecursionError) as exc:
        yield _unparseable(text, _place(origin, "document"), _load_problem(exc))
        return
    yield from _top_level(value, f"{origin}, " if origin else "")


def _looks_like_ndjson(text: str) -> bool:
    """Whether the first two non-blank lines are each a whole object.

    Deciding before parsing means a corrupt first line of an NDJSON export
    costs that line only, not the file; pretty-printed JSON never looks so.
    """
    lines: list[str] = []
    for line in io.StringIO(text):
        stripped = line.strip()
        if stripped:
            lines.append(stripped)
            if len(lines) == 2:
                return all(item.startswith("{") and item.endswith("}") for item in lines)
    return False


def _ndjson(text: str, origin: str) -> Iterator[_Found]:
    """One resource per line; a bad line is reported and the others still read."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = _place(origin, f"line {number}")
        try:
            value = _loads(line)
        except json.JSONDecodeError as exc:
            yield _unparseable(line, f"{where} column {exc.colno}", exc.msg)
            continue
        except (ValueError, RecursionError) as exc:
            yield _unparseable(line, where, _load_problem(exc))
            continue
        yield from _top_level(value, f"{where}, ")


def _top_level(value: object, where: str) -> Iterator[_Found]:
    """A resource, or a bare JSON array of resources (some exports write one)."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, "", f"{where}item {index}, ", None, 0)
    else:
        yield from _flatten(value, "", where, None, 0)


def _loads(text: str) -> object:
    """JSON with NUL characters (`\\u0000`) read as U+FFFD.

    Why: FHIR strings may not hold control characters, PostgreSQL text cannot hold
    a NUL at all (the store would refuse the message, even as a dead letter), and an
    identifier must read the same at ingest and when the coder re-reads it.
    """
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    return load_json(text)


def load_json(text: str) -> object:
    """`json.loads` as every FHIR body is read: NaN, Infinity and a number that would
    overflow to infinity (`1e999`) raise ValueError. Huge integers (a dose of 10^400) parse,
    exactly, and are refused with their path where they are read (`get_decimal`)."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=json_float)


def _reject_constant(name: str) -> object:
    """NaN and Infinity are not JSON, and not amounts a charge can use."""
    raise ValueError(f"{name} is not a JSON number")


def _load_problem(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return "not a JSON number (NaN, Infinity, out of range or too many digits)"


def _place(origin: str, where: str) -> str:
    return f"{origin} {where}" if origin else where


# --- flattening ---------------------------------------------------------------------------


def _flatten(
    value: object, path: str, where: str, full_url: str | None, depth: int
) -> Iterator[_Found]:
    """Resources of a document: Bundles are opened (nested ones too, to a sane depth)."""
    if not isinstance(value, dict):
        yield _failed(_content_key(value), where, path, "not a JSON object")
        return
    rtype = value.get("resourceType")
    if not isinstance(rtype, str) or not _TYPE_NAME.fullmatch(rtype):
        problem = "missing resourceType" if rtype is None else "resourceType is not a type name"
        yield _failed(_content_key(value), where, path, problem)
        return
    path = path or rtype
    if rtype != "Bundle":
        yield _Entry(value, rtype, path, where, full_url, _keys(value, rtype, full_url))
    elif depth >= _MAX_BUNDLE_DEPTH:
        yield _failed(_content_key(value), where, path, "Bundles nested too deeply")
    else:
        yield from _bundle(value, path, where, depth)


def _bundle(bundle: JsonObject, path: str, where: str, depth: int) -> Iterator[_Found]:
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        yield _failed(_content_key(bundle), where, f"{path}.entry", "expected an array")
        return
    kind = bundle.get("type")
    notification = isinstance(kind, str) and kind in _NOTIFICATION_TYPES
    for index, entry in enumerate(entries):
        epath = f"{path}.entry[{index}]"
        if not isinstance(entry, dict):
            yield _failed(_content_key(entry), where, epath, "not a JSON object")
            continue
        resource = entry.get("resource")
        if resource is None:
            yield _resourceless(entry, f"{where}{epath}")
            continue
        if notification and index == 0 and _type_of(resource) in _NOTIFICATION_STATUS:
            continue
        full_url = entry.get("fullUrl")
        url = full_url if isinstance(full_url, str) and full_url.strip() else None
        yield from _flatten(resource, f"{epath}.resource", where, url, depth + 1)


def _resourceless(entry: JsonObject, location: str) -> InboundMessage:
    """A DELETE in a transaction/history, an id-only notification: nothing to read here."""
    request = entry.get("request")
    method = request.get("method") if isinstance(request, dict) else None
    url = entry.get("fullUrl") or (request.get("url") if isinstance(request, dict) else None)
    key = f"fhir:{url}" if isinstance(url, str) and url.strip() else _content_key(entry)
    reason = "bundle entry without a resource"
    if isinstance(method, str) and _TYPE_NAME.fullmatch(method):
        reason = f"{reason} (request {method})"
    return InboundMessage(key, "Bundle.entry", skip_reason=reason)


def _type_of(value: object) -> str:
    rtype = value.get("resourceType") if isinstance(value, dict) else None
    return rtype if isinstance(rtype, str) else ""


def _index(entries: Iterator[_Entry]) -> Mapping[str, Located]:
    """Resources by fullUrl and by `Type/id`; the first wins (a history Bundle is newest first)."""
    index: dict[str, Located] = {}
    for entry in entries:
        located = Located(entry.path, entry.resource, entry.keys.own_id)
        if entry.full_url:
            index.setdefault(entry.full_url, located)
        rid = entry.resource.get("id")
        if isinstance(rid, str) and rid.strip():
            index.setdefault(f"{entry.rtype}/{rid.strip()}", located)
    return index


# --- reading ------------------------------------------------------------------------------


def _keys(res: JsonObject, rtype: str, full_url: str | None) -> _Keys:
    """Id, else business identifier (stable when a transaction re-mints urns), else fullUrl."""
    rid = res.get("id")
    meta = res.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    version = version.strip() if isinstance(version, str) else ""
    identifier = _first_identifier(res)
    if isinstance(rid, str) and rid.strip():
        return _Keys(f"{rtype}/{rid.strip()}", rid.strip(), version, False)
    if identifier is not None:
        return _Keys(f"{rtype}?identifier={identifier}", identifier, version, False)
    if full_url:
        return _Keys(full_url, full_url, version, False)
    source = f"{rtype}@{_content_key(res).removeprefix('fhir:')}"
    return _Keys(source, source, version, True)


def _dedup_key(entry: _Entry, read: bool) -> str:
    """`fhir:<source>/_history/<version>`; without a version, a content hash for what we read.

    An EHR that sends no `meta.versionId` would otherwise see its status
    updates (in-progress -> completed -> entered-in-error) dropped as re-sends.
    """
    keys = entry.keys
    if keys.version:
        return f"fhir:{keys.source}/_history/{keys.version}"
    if keys.by_content or not read:
        return f"fhir:{keys.source}"
    return f"fhir:{keys.source}#{_content_key(entry.resource).removeprefix('fhir:')}"


def _first_identifier(res: JsonObject) -> str | None:
    """`<system>|<value>` of the first identifier with a value (stable across re-sends)."""
    identifiers = res.get("identifier")
    if not isinstance(identifiers, list):
        return None
    for identifier in identifiers:
        if isinstance(identifier, dict):
            value, system = identifier.get("value"), identifier.get("system")
            if isinstance(value, str) and value.strip():
                return f"{system.strip() if isinstance(system, str) else ''}|{value.strip()}"
    return None


def _read_entry(entry: _Entry, scope: Scope) -> InboundMessage | None:
    if entry.rtype in _RESOLUTION_ONLY:
        return None
    keys = entry.keys
    reader = _READERS.get(entry.rtype)
    if reader is None:
        try:
            _check_ids(entry.resource, entry.path)
        except ReadError as exc:
            key = _dedup_key(entry, read=False)
            return _failed(key, entry.where, exc.path, exc.message, entry.rtype, keys.source)
        key = _dedup_key(entry, read=False)
        if entry.rtype in _SKIPPED:
            reason = _SKIPPED[entry.rtype]
            return InboundMessage(
                key, entry.rtype, skip_reason=reason, control_id=keys.source,
                resource_id=_own_id(entry.resource),
            )  # fmt: skip
        reason = f"unsupported resource type {entry.rtype}"
        unsupported = Unsupported.RESOURCE_TYPE
        return InboundMessage(
            key, entry.rtype, skip_reason=reason, control_id=keys.source,
            unsupported=unsupported, resource_id=_own_id(entry.resource),
        )  # fmt: skip
    dedup = _dedup_key(entry, read=True)
    try:
        _check_ids(entry.resource, entry.path)
        contained = contained_index(entry.resource, entry.path)
        reading = Reading(entry.resource, entry.path, keys.source, keys.own_id, scope, contained)
        outcome = reader(reading)
    except ReadError as exc:
        return _failed(dedup, entry.where, exc.path, exc.message, entry.rtype, keys.source)
    except (
        RecursionError,
        ArithmeticError,
        ValueError,
        TypeError,
        LookupError,
        AttributeError,
    ) as exc:
        # A reader bug must not stop the feed; the type name is safe, the message may not be.
        problem = f"unexpected {type(exc).__name__} while reading (adapter defect)"
        return _failed(dedup, entry.where, entry.path, problem, entry.rtype, keys.source)
    rid = _own_id(entry.resource)
    if isinstance(outcome, Skip):
        return InboundMessage(
            dedup, entry.rtype, skip_reason=outcome.reason, control_id=keys.source,
            resource_id=rid,
        )  # fmt: skip
    return InboundMessage(
        dedup, entry.rtype, events=(outcome,), control_id=keys.source, resource_id=rid
    )


def _check_ids(resource: JsonObject, path: str) -> None:
    """`id` and `meta.versionId` are FHIR ids: they become keys, and keys reach the store and
    URLs (an id holding U+0000 or 65 characters is not one)."""
    if "id" in resource:
        check_id(resource["id"], f"{path}.id")
    meta = get_object(resource, "meta", path)
    if meta is not None and "versionId" in meta:
        check_id(meta["versionId"], f"{path}.meta.versionId")


# --- errors -------------------------------------------------------------------------------


def _failed(
    key: str,
    where: str,
    path: str,
    message: str,
    kind: str = _UNKNOWN_KIND,
    control_id: str = "",
) -> InboundMessage:
    """An error at a JSON path (`path`: FHIRPath-like, "" for the document itself); the
    location is `where` (origin, line) followed by it, and the path travels typed too."""
    error = InputError(f"{where}{path or 'document'}", message, path=path)
    return InboundMessage(key, kind, error=error, control_id=control_id)


def _unplaced(key: str, location: str, message: str) -> InboundMessage:
    """An error before any JSON path exists (bytes, a line that is no JSON)."""
    return InboundMessage(key, _UNKNOWN_KIND, error=InputError(location, message))


def _unparseable(text: str, location: str, message: str) -> InboundMessage:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return _unplaced(f"fhir:sha256:{digest}", location, message)


def _own_id(resource: JsonObject) -> str:
    """`Resource.id` as the dedup key has it ("" when absent): the Location of its entry."""
    rid = resource.get("id")
    return rid.strip() if isinstance(rid, str) else ""


def _content_key(value: object) -> str:
    """A key that is the same for the same content, whatever the key order (re-sends dedupe)."""
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        canonical = repr(type(value))
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"fhir:sha256:{digest}"
