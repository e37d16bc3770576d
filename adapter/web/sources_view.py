"""What the encounter page needs from the stored messages: the administrations as assembled
(for the timeline) and, for each administration, the messages that carried it.

The messages are read again through the current tables, exactly as the coder reads them
(readers, `collect`, `assemble_noted`), so the picture shows what was coded. A message the
current tables cannot read adds nothing here (it is the coder's and replay's business).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from adapter.core.assembly import assemble_noted
from adapter.core.feed import collect
from adapter.core.mappings import Mappings
from adapter.core.model import Administration, InboundMessage
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.store.base import StoredMessage

FHIR_MAR_PREFIX = "fhir:MedicationAdministration/"


@dataclass(frozen=True, slots=True)
class Sources:
    administrations: tuple[Administration, ...]
    # administration source id -> the messages carrying it ("RAS^O17 EP260123S2502")
    messages_of: Mapping[str, tuple[str, ...]]


def read_sources(
    key: str, stored: Sequence[StoredMessage], mappings: Mappings, site_tz: tzinfo
) -> Sources:
    inbound: list[InboundMessage] = []
    messages_of: dict[str, list[str]] = {}
    for message in stored:
        reader = read_hl7 if message.format == "hl7" else read_fhir
        try:
            read = reader(message.raw, mappings, site_tz, f"message {message.id}")
        except ValueError:
            continue
        inbound.extend(read)
        label = message_label(message)
        for one in read:
            for event in one.events:
                if isinstance(event, Administration):
                    seen = messages_of.setdefault(event.source_id, [])
                    if label not in seen:
                        seen.append(label)
    encounters, _notes = assemble_noted(collect(inbound).events, site_tz)
    encounter = next((e for e in encounters if e.key == key), None)
    admins = encounter.administrations if encounter is not None else ()
    return Sources(admins, {k: tuple(v) for k, v in messages_of.items()})


def message_label(message: StoredMessage) -> str:
    """A message as a biller names it to the interface team: type and control id."""
    control = message.control_id or f"#{message.id}"
    return f"{message.kind} {control}"


def source_label(source_id: str) -> str:
    """An administration as the feed names it: a FHIR resource, or the HL7 source id."""
    if source_id.startswith(FHIR_MAR_PREFIX):
        return "MedicationAdministration/" + source_id[len(FHIR_MAR_PREFIX) :]
    return source_id
