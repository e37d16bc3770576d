"""One resource being read, and what it can see: its contained resources and the rest of the input.

References are resolved here, in the order FHIR defines: `#id` is a contained
resource, `urn:uuid:` a Bundle fullUrl, `Type/id` (relative or absolute) a
resource of the same input. Patient and Encounter references become the keys
the assembly groups by, so every resource type derives them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo

from adapter.core.mappings import Mappings
from adapter.readers.fhir.elements import JsonObject, ReadError, get_object, get_objects, get_str


@dataclass(frozen=True, slots=True)
class Located:
    """A resource reached by reference, with its own path (errors inside it name that path)."""

    path: str
    resource: JsonObject
    own_id: str  # its id, else the fallback key `resource_keys` gives it


@dataclass(frozen=True, slots=True)
class Skip:
    """A resource read and deliberately not turned into an event, with the reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Scope:
    """What every resource of one input shares."""

    mappings: Mappings
    site_tz: tzinfo
    bundled: Mapping[str, Located]  # by fullUrl and by `Type/id`


@dataclass(frozen=True, slots=True)
class Reading:
    """One resource, its JSON path, and the keys `read_fhir` derived for it."""

    resource: JsonObject
    path: str
    source_key: str  # `Type/id`, else the entry's fullUrl, else a content hash
    own_id: str  # the resource id, else the same fallback as source_key
    scope: Scope
    contained: Mapping[str, Located]

    @property
    def source_id(self) -> str:
        """Stable across versions, so a later version replaces the earlier (D23, D24)."""
        return f"fhir:{self.source_key}"

    def resolve(self, reference: str) -> Located | None:
        """The contained or bundled resource a literal reference points to, if present."""
        if reference.startswith("#"):
            return self.contained.get(reference[1:])
        found = self.scope.bundled.get(reference)
        if found is None:
            parts = split_reference(reference)
            if parts is not None:
                found = self.scope.bundled.get(f"{parts[0]}/{parts[1]}")
        return found

    def patient_id(self, key: str) -> str:
        """The patient key: `Patient/123`, or `<system>|<value>` for an identifier-only reference.

        Required: a resource nobody can attribute to a patient cannot be billed.
        """
        element = f"{self.path}.{key}"
        ref = get_object(self.resource, key, self.path)
        if ref is None:
            raise ReadError(element, "missing: no patient reference")
        reference = get_str(ref, "reference", element)
        if reference is not None:
            return self._patient_reference(reference)
        identified = identifier_key(ref, element)
        if identified is None:
            raise ReadError(element, "has neither a reference nor an identifier")
        return identified

    def _patient_reference(self, reference: str) -> str:
        """Bundle-local and absolute references reduce to `Type/id` when the id is known."""
        if reference.startswith(("urn:", "#")):
            found = self.resolve(reference)
            if found is None:
                return reference
            rtype, rid = found.resource.get("resourceType"), found.resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str) and rid.strip():
                return f"{rtype}/{rid.strip()}"
            return reference
        parts = split_reference(reference)
        return reference if parts is None else f"{parts[0]}/{parts[1]}"

    def encounter_id(self, *keys: str) -> str | None:
        """The visit key from the first present Encounter reference among `keys`."""
        for key in keys:
            ref = get_object(self.resource, key, self.path)
            if ref is None:
                continue
            element = f"{self.path}.{key}"
            reference = get_str(ref, "reference", element)
            if reference is not None:
                return self.id_of(reference, "Encounter")
            return identifier_key(ref, element)
        return None

    def id_of(self, reference: str, rtype: str) -> str | None:
        """`Encounter/abc` -> `abc`; a urn names the bundled resource's key, else itself.

        The bundled resource's key is the one `read_fhir` gave it (its id, else
        its identifier or fullUrl), so the Encounter's Visit and the
        administrations pointing to it agree. A reference to another type (R4
        MedicationAdministration.context may be an EpisodeOfCare) is not a visit.
        """
        if reference.startswith(("urn:", "#")):
            found = self.resolve(reference)
            if found is None:
                return reference
            if found.resource.get("resourceType") != rtype:
                return None
            return found.own_id
        parts = split_reference(reference)
        if parts is None or parts[0] != rtype:
            return None
        return parts[1]


def identifier_key(ref: JsonObject, path: str) -> str | None:
    """`<system>|<value>` of a Reference.identifier, the HL7 reader's `<authority>|<id>` shape."""
    identifier = get_object(ref, "identifier", path)
    if identifier is None:
        return None
    inner = f"{path}.identifier"
    value = get_str(identifier, "value", inner)
    if value is None:
        return None
    return f"{get_str(identifier, 'system', inner) or ''}|{value}"


def contained_index(resource: JsonObject, path: str) -> Mapping[str, Located]:
    """Contained resources by id, each with its own path."""
    index: dict[str, Located] = {}
    for item_path, item in get_objects(resource, "contained", path):
        rid = get_str(item, "id", item_path)
        if rid is not None:
            index.setdefault(rid, Located(item_path, item, rid))
    return index


def split_reference(reference: str) -> tuple[str, str] | None:
    """(type, id) of a relative or absolute literal reference; version suffix ignored."""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        return None
    return parts[-2], parts[-1]
