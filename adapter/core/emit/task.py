"""The review Task of a held encounter (D22): one input per hold reason, each with a sentence a
biller can act on.
"""

from __future__ import annotations

from adapter.core.emit.datatypes import JSON, concept, patient_reference
from adapter.core.emit.facts import Facts
from adapter.core.emit.urls import HOLD_REASON, TASK_CODE, TASK_INPUT
from adapter.core.holds import Hold
from adapter.core.ids import task_id
from adapter.core.mappings import Mappings


def build_task(facts: Facts, mappings: Mappings) -> JSON:
    """The D22 review Task: one input per hold reason, each with a sentence a biller can act on."""
    coded = facts.coded
    count = len(coded.holds)
    return {
        "resourceType": "Task",
        "id": task_id(coded.encounter_key),
        "status": "requested",
        "intent": "order",
        "code": concept(TASK_CODE, "charge-review"),
        "description": f"Charge review: {count} hold{'s' if count != 1 else ''} on this encounter",
        "focus": {"reference": f"Claim/{facts.claim_id}"},
        "for": patient_reference(coded.patient_id),
        "authoredOn": facts.created,
        "input": [_task_input(hold, mappings) for hold in coded.holds],
    }


def _task_input(hold: Hold, mappings: Mappings) -> JSON:
    """R4 Task.input has no text of its own: the sentence is the value's CodeableConcept.text."""
    value = concept(HOLD_REASON, hold.reason.value)
    value["text"] = hold_text(hold, mappings)
    return {"type": concept(TASK_INPUT, "hold-reason"), "valueCodeableConcept": value}


def hold_text(hold: Hold, mappings: Mappings) -> str:
    """The site's sentence for the reason, then what exactly to fix (codes, NDCs, source ids)."""
    sentence = mappings.hold_reasons.get(hold.reason.value)
    parts = [sentence.sentence if sentence else "", hold.detail]
    if hold.source_id and hold.source_id not in hold.detail:
        parts.append(f"(source {hold.source_id})")
    text = " ".join(p.strip() for p in parts if p.strip())
    return text or hold.reason.value
