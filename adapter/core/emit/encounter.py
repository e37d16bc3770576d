"""A coded encounter as its resources: the Claim, one ChargeItem per line, the review Task."""

from __future__ import annotations

from adapter.core.charges import CodedEncounter, Outcome
from adapter.core.emit.charge_item import build_charge_item, charge_item_ids
from adapter.core.emit.claim import OutputOptions, build_claim
from adapter.core.emit.datatypes import JSON
from adapter.core.emit.facts import Facts
from adapter.core.emit.task import build_task
from adapter.core.mappings import Mappings


def encounter_resources(
    coded: CodedEncounter, mappings: Mappings, options: OutputOptions
) -> list[JSON]:
    """The Claim, one ChargeItem per line and, when held (D22), one review Task.

    Skipped encounters produce nothing: they are counted, not billed (D2).
    """
    if coded.outcome is Outcome.SKIPPED:
        return []
    facts = Facts.of(coded)
    resources = [build_claim(facts, mappings, options)]
    pairs = zip(coded.lines, charge_item_ids(coded), strict=True)
    resources += [build_charge_item(facts, line, item_id) for line, item_id in pairs]
    if facts.held:
        resources.append(build_task(facts, mappings))
    return resources
