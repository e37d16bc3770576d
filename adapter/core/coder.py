"""Code one encounter: the single entry point of the coding engine.

Pure: an assembled `Encounter`, the tables and the options in; a
`CodedEncounter` out. The ICD-10-CM validity check is passed in as a function
so the engine stays free of any loaded global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from adapter.core.admin_codes import code_administrations
from adapter.core.assembly import Encounter
from adapter.core.charges import (
    ChargeLine,
    CodedEncounter,
    EncounterSkip,
    LineKind,
    TableWarning,
)
from adapter.core.classify import Classified, classify
from adapter.core.diagnoses import order_diagnoses
from adapter.core.drug_lines import code_drugs
from adapter.core.holds import Hold
from adapter.core.mappings import Mappings, Setting
from adapter.core.model import AdminStatus, PatientClass
from adapter.core.options import CodingOptions
from adapter.core.periods import PeriodStatus

IcdCheck = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class CodingContext:
    """Everything the engine needs besides the encounter; built once at start-up."""

    mappings: Mappings
    options: CodingOptions
    site_tz: tzinfo
    is_billable_icd: IcdCheck


def code_encounter(encounter: Encounter, ctx: CodingContext) -> CodedEncounter:
    setting, pos = _setting(encounter, ctx)
    base = _skeleton(encounter, setting, pos)
    if is_inpatient(encounter):
        return replace(base, skip_reason="inpatient")  # D2
    if has_several_patients(encounter):
        return replace(base, skip_reason=EncounterSkip.SHARED_VISIT)
    given = sorted(
        (a for a in encounter.administrations if a.status is not AdminStatus.NOT_DONE),
        key=lambda a: (a.start, a.source_id),  # feed order must not change the claim
    )
    items = [classify(a, ctx.mappings.catalog, ctx.options) for a in given]
    admin = code_administrations(items, setting, ctx.options, ctx.site_tz)
    drugs = code_drugs(
        items,
        admin.reported_hydration,
        ctx.mappings.catalog,
        ctx.mappings.opps_status,
        setting,
        ctx.site_tz,
    )
    lines = _ordered((*admin.lines, *drugs.lines))
    holds = _item_holds(items) + admin.holds + drugs.holds
    if not lines and not holds:
        return replace(base, skip_reason=EncounterSkip.NOTHING_BILLABLE)
    dx = order_diagnoses(
        encounter.diagnoses, drugs.classes_given, ctx.options.z_order, ctx.is_billable_icd
    )
    return replace(
        base,
        lines=lines,
        diagnoses=dx.codes,
        holds=_unique(holds + dx.holds),
        warnings=_table_warnings(lines, ctx),
    )


def is_inpatient(encounter: Encounter) -> bool:
    """D2: the visit's class when known (a later A08 may change it), else what the
    administrations' own messages said (PV1-2 `I` without a PV1-19)."""
    visit = encounter.visit
    if visit is not None and visit.patient_class is not PatientClass.UNKNOWN:
        return visit.patient_class is PatientClass.INPATIENT
    return any(a.patient_class is PatientClass.INPATIENT for a in encounter.administrations)


def has_several_patients(encounter: Encounter) -> bool:
    """A visit number that names more than one patient (their administrations, or the
    visit's own PID): billing it would put one patient's drugs, diagnoses or payer on
    another's claim. Ids that differ only by a missing assigning authority
    (`NRH|E1` and `|E1`) are taken as the same patient."""
    ids = {a.patient_id for a in encounter.administrations} | encounter.visit_patients
    if encounter.visit is not None:
        ids.add(encounter.visit.patient_id)
    bare = {pid.split("|", 1)[1] if pid.startswith("|") else pid for pid in ids}
    with_authority = {pid for pid in bare if "|" in pid}
    plain = {pid for pid in bare if "|" not in pid}
    plain -= {pid.split("|", 1)[1] for pid in with_authority}
    return len(with_authority) + len(plain) > 1


def _setting(encounter: Encounter, ctx: CodingContext) -> tuple[str, str]:
    """D1: CLI override, else the location mapping, else the configured default."""
    visit = encounter.visit
    codes = [visit.location, visit.facility] if visit else []
    codes += [a.location for a in encounter.administrations]
    rule = ctx.mappings.location(*codes)
    setting = ctx.options.setting_override or (rule.setting if rule else "")
    setting = setting or ctx.options.default_setting
    pos = rule.place_of_service if rule and rule.setting == setting else ""
    if setting == Setting.OFFICE and not pos:
        pos = "11"  # R1
    return setting, pos


def _skeleton(encounter: Encounter, setting: str, pos: str) -> CodedEncounter:
    starts = [a.start for a in encounter.administrations]
    ends = [a.end or a.start for a in encounter.administrations]
    coverage = encounter.coverages[0] if encounter.coverages else None
    return CodedEncounter(
        encounter_key=encounter.key,
        patient_id=encounter.patient_id,
        setting=setting,
        lines=(),
        diagnoses=(),
        holds=(),
        period_start=min(starts) if starts else _visit_time(encounter, "start"),
        period_end=max(ends) if ends else _visit_time(encounter, "end"),
        place_of_service=pos,
        coverage_payer=coverage.payer if coverage else "",
        coverage_id=coverage.source_id if coverage else "",
    )


def _visit_time(encounter: Encounter, which: str) -> datetime | None:
    if encounter.visit is None:
        return None
    value: datetime | None = getattr(encounter.visit, which)
    return value


def _item_holds(items: list[Classified]) -> tuple[Hold, ...]:
    return tuple(h for c in items for h in c.holds)


def _unique(holds: tuple[Hold, ...]) -> tuple[Hold, ...]:
    return tuple(dict.fromkeys(holds))


_KIND_ORDER = {LineKind.ADMINISTRATION: 0, LineKind.DRUG: 1, LineKind.WASTE: 1}


def _ordered(lines: tuple[ChargeLine, ...]) -> tuple[ChargeLine, ...]:
    """Stable claim order whatever the feed order: administration codes, then drugs, by date."""
    return tuple(
        sorted(
            lines,
            key=lambda ln: (
                ln.service_date,
                _KIND_ORDER[ln.kind],
                ln.code,
                ln.kind is LineKind.WASTE,
                ln.modifiers,
            ),
        )
    )


def _table_warnings(lines: tuple[ChargeLine, ...], ctx: CodingContext) -> tuple[TableWarning, ...]:
    """D27: a service date past the newest loaded CMS table is coded, with a warning."""
    if not lines:
        return ()
    last = max(ln.service_date for ln in lines)
    return tuple(
        TableWarning(t.name, t.effective_end, last)
        for t in ctx.mappings.table_versions
        if t.status_on(last) is PeriodStatus.PAST_PERIOD
    )
