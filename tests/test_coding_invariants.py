"""Invariants over random encounters (hypothesis): what must hold whatever the feed sends."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.core.charges import CodedEncounter
from adapter.core.infusion_time import additional_hours
from adapter.core.model import Administration, Method
from tests.coding_support import admin, at, code

DRUG_POOL = ["J9206", "J9263", "J9271", "J0640", "J1453", "J2405", "J3489", "J9045", "J7030"]
INITIALS = {"96360", "96365", "96374", "96409", "96413"}
HOUR_CODES = {"96413", "96365", "96417", "96367"}
ADDON_CODES = {"96415", "96366"}


@st.composite
def administrations(draw: st.DrawFn) -> list[Administration]:
    count = draw(st.integers(min_value=1, max_value=6))
    result = []
    for i in range(count):
        drug = draw(st.sampled_from(DRUG_POOL))
        start = draw(st.integers(min_value=0, max_value=600))
        minutes = draw(st.integers(min_value=1, max_value=400))
        is_push = draw(st.booleans()) and drug != "J7030"
        begin = at("07:00") + timedelta(minutes=start)
        a = admin(
            drug,
            "1000 mL" if drug == "J7030" else "100 mg",
            begin.strftime("%H:%M"),
            None if is_push else (begin + timedelta(minutes=minutes)).strftime("%H:%M"),
            end_day=15 if (begin + timedelta(minutes=minutes)).day == 15 else 16,
            method=Method.PUSH if is_push else Method.UNSPECIFIED,
            indicated=drug == "J7030" and draw(st.booleans()),
            source_id=f"hyp:{i}",
        )
        result.append(a)
    return result


def documented_minutes(admins: list[Administration]) -> dict[str, int]:
    return {a.source_id: int(((a.end or a.start) - a.start).total_seconds() // 60) for a in admins}


def _signature(coded: CodedEncounter) -> Counter[tuple[str, tuple[str, ...], str, int]]:
    return Counter(
        (ln.code, ln.modifiers, ln.service_date.isoformat(), ln.units) for ln in coded.lines
    )


@settings(max_examples=150, deadline=None)
@given(administrations())
def test_billed_infusion_hours_never_exceed_documented_minutes(
    admins: list[Administration],
) -> None:
    coded = code(*admins)
    minutes = documented_minutes(admins)
    billed = sum(ln.units for ln in coded.lines if ln.code in HOUR_CODES | ADDON_CODES)
    sources = {s for ln in coded.lines if ln.code in HOUR_CODES | ADDON_CODES for s in ln.sources}
    allowed = sum(1 + additional_hours(minutes[s]) for s in sources if minutes[s] >= 16)
    assert billed <= allowed
    assert all(minutes[s] >= 16 for s in sources)


@settings(max_examples=150, deadline=None)
@given(administrations())
def test_one_initial_code_per_encounter_per_access_site(admins: list[Administration]) -> None:
    coded = code(*admins)
    initials = sum(ln.units for ln in coded.lines if ln.code in INITIALS and not ln.modifiers)
    assert initials <= 1


@settings(max_examples=100, deadline=None)
@given(administrations(), st.randoms())
def test_line_order_in_the_feed_does_not_change_the_claim(
    admins: list[Administration], rnd
) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(admins)
    rnd.shuffle(shuffled)
    first, second = code(*admins), code(*shuffled)
    assert _signature(first) == _signature(second)
    assert first.diagnoses == second.diagnoses
    assert set(first.holds) == set(second.holds)


@settings(max_examples=50, deadline=None)
@given(administrations())
def test_recoding_is_idempotent(admins: list[Administration]) -> None:
    assert code(*admins) == code(*admins)


@settings(max_examples=150, deadline=None)
@given(administrations())
def test_hydration_minutes_billed_never_exceed_unshared_fluid_time(
    admins: list[Administration],
) -> None:
    """Each 96360/96361 unit stands for at least 31 minutes not shared with a drug (R21, R25)."""
    coded = code(*admins)
    minutes = documented_minutes(admins)
    for ln in coded.lines:
        if ln.code in ("96360", "96361"):
            assert all(minutes[s] >= 31 for s in ln.sources)
    fluid_units = sum(ln.units for ln in coded.lines if ln.code in ("96360", "96361"))
    fluid_minutes = sum(minutes[a.source_id] for a in admins if a.indications)
    assert fluid_units * 31 <= fluid_minutes + 30 * fluid_units


@settings(max_examples=150, deadline=None)
@given(administrations())
def test_concurrent_96368_at_most_once_and_96268_never_exists_r25_r31_r45(
    admins: list[Administration],
) -> None:
    coded = code(*admins, setting="hospital-outpatient")
    assert sum(ln.units for ln in coded.lines if ln.code == "96368") <= 1
    assert not [ln for ln in coded.lines if ln.code == "96268"]
