"""The report queries (the `Reports` port) on real SQLite and PostgreSQL alike.

The Claims are the coder's own shape (`encounter_resources` of hand-built encounters),
saved through the coding path (lease, save_coding, outbox), re-coded and delivered as the
service does it; the rows each store gives back are compared with what was saved.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adapter.core.catalog import Catalog
from adapter.core.charges import ChargeLine, CodedEncounter, LineKind
from adapter.core.emit.claim import OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.holds import Hold, HoldReason
from adapter.core.mappings import Mappings, Setting
from adapter.core.model import Code, CodeSystem
from adapter.core.report_payment import payment_by_month
from adapter.core.report_rows import ClaimVersion, DrugCode, ReportFilter
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.store.base import EncounterState, Store
from tests.test_store import LATER, factory, link, message, store  # noqa: F401

EST = timezone(timedelta(hours=-5))
MAPPINGS = Mappings(catalog=Catalog.build([], []))
PRICES = load_mappings(default_mappings_dir()).prices
NDC_X = "99999000101"
WEST, EAST = "Infusion 2 West", "Infusion 3 East"


def _lines(day: date, *codes: tuple[str, int]) -> tuple[ChargeLine, ...]:
    return tuple(
        ChargeLine(
            LineKind.ADMINISTRATION if code[0].isdigit() else LineKind.DRUG,
            code,
            units,
            day,
            ("R13",),
            ("hl7:S:1#RXA1",),
        )
        for code, units in codes
    )


def _coded(
    key: str, setting: str, start: datetime, *holds: Hold, lines: tuple[ChargeLine, ...] = ()
) -> CodedEncounter:
    return CodedEncounter(
        encounter_key=key,
        patient_id="MRN-1",
        setting=setting,
        lines=lines,
        diagnoses=("C50.911",),
        holds=holds,
        period_start=start,
        period_end=start + timedelta(minutes=30),
    )


MISSING = Hold(HoldReason.MISSING_STOP_TIME, "RXA-20 empty", "hl7:S:1#RXA1")
UNKNOWN = Hold(
    HoldReason.UNKNOWN_DRUG, "no catalog entry", "hl7:S:2#RXA1", (Code(CodeSystem.NDC, NDC_X),)
)
A_START = datetime(2026, 1, 15, 9, 0, tzinfo=EST)
B_START = datetime(2026, 1, 20, 10, 0, tzinfo=EST)
C_START = datetime(2026, 2, 3, 8, 0, tzinfo=EST)
PEMBRO = _lines(date(2026, 1, 15), ("96413", 1), ("J9271", 200))
HYDRATION = _lines(date(2026, 2, 3), ("96360", 1), ("96361", 2), ("J7030", 1))


async def _save(db: Store, n: int, coded: CodedEncounter, location: str, at: datetime) -> None:
    """One coding of the encounter through the store's coding path, queued for `fhir`."""
    await db.add_message(message(f"hl7:S:{n}"), [link(coded.encounter_key, close=True)])
    (lease,) = [
        lease
        for lease in await db.lease_ready(at, at, "coder", 300, 100)
        if lease.encounter.key == coded.encounter_key
    ]
    resources = encounter_resources(coded, MAPPINGS, OutputOptions(provider_display=location))
    rows = [(r["resourceType"], r["id"], r["status"], r) for r in resources]
    state = EncounterState.HELD if coded.holds else EncounterState.CODED
    detail = " ".join(h.reason.value for h in coded.holds)
    await db.save_coding(lease, state, detail, rows, at, "fhir")


@pytest.fixture
async def filled(store: Store) -> Store:  # noqa: F811
    """A: office, 2 West, held twice-missing-stop then coded and delivered; B: hospital,
    3 East, held as unknown drug; C: office, 2 West, coded, not delivered."""
    t = LATER
    office, hospital = Setting.OFFICE, Setting.HOSPITAL_OUTPATIENT
    held_a = _coded("visit:A", office, A_START, MISSING, MISSING, lines=PEMBRO)
    await _save(store, 1, held_a, WEST, t)
    await _save(store, 2, _coded("visit:B", hospital, B_START, UNKNOWN), EAST, t)
    await _save(store, 3, _coded("visit:C", office, C_START, lines=HYDRATION), WEST, t)
    coded_a = _coded("visit:A", office, A_START, lines=PEMBRO)
    await _save(store, 4, coded_a, WEST, t + timedelta(hours=2))
    for delivery in await store.due_deliveries(t + timedelta(days=1), 1000):
        if delivery.resource_type == "Claim" and delivery.version == 2:  # A's coded version
            await store.mark_delivered(delivery.id, t + timedelta(hours=3))
    return store


async def test_every_claim_version_comes_back_with_its_holds_codes_and_delivery(
    filled: Store,
) -> None:
    rows = await filled.claim_versions(ReportFilter())
    by_claim: dict[str, list[ClaimVersion]] = {}
    for row in rows:
        by_claim.setdefault(row.claim_id, []).append(row)
    assert sorted(len(v) for v in by_claim.values()) == [1, 1, 2]
    a1, a2 = next(v for v in by_claim.values() if len(v) == 2)
    assert (a1.version, a1.held, a1.holds) == (1, True, ("missing-stop-time",) * 2)
    assert (a2.version, a2.held, a2.holds) == (2, False, ())
    assert a2.delivered_at == LATER + timedelta(hours=3)
    assert a1.delivered_at is None
    assert a2.recorded_at == LATER + timedelta(hours=2)
    assert a1.administered_at == A_START and a1.service_date == date(2026, 1, 15)
    assert (a1.location, a1.setting) == (WEST, Setting.OFFICE)
    [b] = [r for r in rows if r.location == EAST]
    assert (b.held, b.holds) == (True, ("unknown-drug",))
    assert b.unmatched_drugs == (DrugCode(CodeSystem.NDC, NDC_X),)
    assert b.setting == Setting.HOSPITAL_OUTPATIENT


@pytest.mark.parametrize(
    ("query", "dates"),
    [
        (ReportFilter(location=WEST), {A_START.date(), C_START.date()}),
        (ReportFilter(setting=Setting.HOSPITAL_OUTPATIENT), {B_START.date()}),
        (ReportFilter(setting=Setting.OFFICE), {A_START.date(), C_START.date()}),
        (ReportFilter(service_from=date(2026, 1, 16)), {B_START.date(), C_START.date()}),
        (ReportFilter(service_to=date(2026, 1, 20)), {A_START.date(), B_START.date()}),
        (ReportFilter(date(2026, 1, 15), date(2026, 1, 15)), {A_START.date()}),
        (ReportFilter(location="Nowhere"), set()),
    ],
)
async def test_the_filters_run_in_the_database(
    filled: Store, query: ReportFilter, dates: set[date]
) -> None:
    assert {r.service_date for r in await filled.claim_versions(query)} == dates


async def test_coded_claims_are_the_current_coded_versions_with_their_lines(filled: Store) -> None:
    coded = await filled.coded_claims(ReportFilter())
    assert sorted((c.service_date, c.setting, c.location) for c in coded) == [
        (date(2026, 1, 15), Setting.OFFICE, WEST),
        (date(2026, 2, 3), Setting.OFFICE, WEST),
    ]  # B is held: not priced
    a = next(c for c in coded if c.service_date == date(2026, 1, 15))
    assert [(ln.kind, ln.code, ln.units, ln.service_date) for ln in a.lines] == [
        (LineKind.ADMINISTRATION, "96413", 1, date(2026, 1, 15)),
        (LineKind.DRUG, "J9271", 200, date(2026, 1, 15)),
    ]
    jan, feb = payment_by_month(coded, PRICES).months
    assert (jan.office.total, feb.office.total) == (Decimal("12064.56"), Decimal("55.36"))
    assert [c.service_date for c in await filled.coded_claims(ReportFilter(location=EAST))] == []


async def test_locations_are_those_of_the_current_claims(filled: Store) -> None:
    assert await filled.report_locations() == [WEST, EAST]


async def test_an_empty_store_has_no_rows(store: Store) -> None:  # noqa: F811
    assert await store.claim_versions(ReportFilter()) == []
    assert await store.coded_claims(ReportFilter()) == []
    assert await store.report_locations() == []
