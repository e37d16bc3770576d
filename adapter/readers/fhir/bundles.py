"""The resources of one parsed JSON document: Bundles opened (nested ones too, to a sane depth,
a subscription notification's status entry dropped), each resource an `Entry` with its path,
its location and its keys; and the index references are resolved through (`index_entries`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from adapter.core.model import InboundMessage
from adapter.readers.fhir.elements import JsonObject
from adapter.readers.fhir.failures import failed
from adapter.readers.fhir.keys import Keys, content_key, resource_keys
from adapter.readers.fhir.reading import Located

_NOTIFICATION_TYPES = frozenset({"subscription-notification", "history"})
_NOTIFICATION_STATUS = frozenset({"SubscriptionStatus", "Parameters"})
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")
_MAX_BUNDLE_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource found in the input, before it is read."""

    resource: JsonObject
    rtype: str
    path: str  # FHIRPath-like: `Bundle.entry[2].resource`, or the resource type
    where: str  # location prefix: `demo.json, ` or `feed.ndjson line 3, `
    full_url: str | None
    keys: Keys


Found = Entry | InboundMessage  # an input error is reported where it was found


def flatten(
    value: object, path: str, where: str, full_url: str | None, depth: int
) -> Iterator[Found]:
    """Resources of a document: Bundles are opened (nested ones too, to a sane depth)."""
    if not isinstance(value, dict):
        yield failed(content_key(value), where, path, "not a JSON object")
        return
    rtype = value.get("resourceType")
    if not isinstance(rtype, str) or not _TYPE_NAME.fullmatch(rtype):
        problem = "missing resourceType" if rtype is None else "resourceType is not a type name"
        yield failed(content_key(value), where, path, problem)
        return
    path = path or rtype
    if rtype != "Bundle":
        yield Entry(value, rtype, path, where, full_url, resource_keys(value, rtype, full_url))
    elif depth >= _MAX_BUNDLE_DEPTH:
        yield failed(content_key(value), where, path, "Bundles nested too deeply")
    else:
        yield from _bundle(value, path, where, depth)


def _bundle(bundle: JsonObject, path: str, where: str, depth: int) -> Iterator[Found]:
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        yield failed(content_key(bundle), where, f"{path}.entry", "expected an array")
        return
    kind = bundle.get("type")
    notification = isinstance(kind, str) and kind in _NOTIFICATION_TYPES
    for index, entry in enumerate(entries):
        epath = f"{path}.entry[{index}]"
        if not isinstance(entry, dict):
            yield failed(content_key(entry), where, epath, "not a JSON object")
            continue
        resource = entry.get("resource")
        if resource is None:
            yield _resourceless(entry, f"{where}{epath}")
            continue
        if notification and index == 0 and _type_of(resource) in _NOTIFICATION_STATUS:
            continue
        full_url = entry.get("fullUrl")
        url = full_url if isinstance(full_url, str) and full_url.strip() else None
        yield from flatten(resource, f"{epath}.resource", where, url, depth + 1)


def _resourceless(entry: JsonObject, location: str) -> InboundMessage:
    """A DELETE in a transaction/history, an id-only notification: nothing to read here."""
    request = entry.get("request")
    method = request.get("method") if isinstance(request, dict) else None
    url = entry.get("fullUrl") or (request.get("url") if isinstance(request, dict) else None)
    key = f"fhir:{url}" if isinstance(url, str) and url.strip() else content_key(entry)
    reason = "bundle entry without a resource"
    if isinstance(method, str) and _TYPE_NAME.fullmatch(method):
        reason = f"{reason} (request {method})"
    return InboundMessage(key, "Bundle.entry", skip_reason=reason)


def _type_of(value: object) -> str:
    rtype = value.get("resourceType") if isinstance(value, dict) else None
    return rtype if isinstance(rtype, str) else ""


def index_entries(entries: Iterable[Entry]) -> Mapping[str, Located]:
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
