"""A small, explicit drug catalog and builders for coding-rule tests.

The facts (billing units, vial sizes, containers, OPPS status) are written
here, next to the tests that depend on them, so every expectation can be
checked by hand against coding-rules.md without reading the shipped tables.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

from adapter.core.assembly import Encounter
from adapter.core.catalog import Catalog, Container, Drug, DrugClass, Product
from adapter.core.charges import CodedEncounter
from adapter.core.coder import CodingContext, code_encounter
from adapter.core.mappings import Mappings, Setting, TableVersion
from adapter.core.model import (
    Action,
    Administration,
    AdminStatus,
    Code,
    CodeSystem,
    Diagnosis,
    Ingredient,
    IngredientRole,
    Method,
    PatientClass,
    Quantity,
    Route,
    Visit,
)
from adapter.core.options import CodingOptions

NY = ZoneInfo("America/New_York")
DAY = date(2026, 1, 15)

C, IM, H, T, HY = (
    DrugClass.CHEMOTHERAPY,
    DrugClass.IMMUNOTHERAPY,
    DrugClass.HORMONAL,
    DrugClass.THERAPEUTIC,
    DrugClass.HYDRATION,
)
SDV, MDV = Container.SINGLE_DOSE, Container.MULTIPLE_DOSE

# hcpcs, name, class, unit amount, unit, [(ndc, package amount, container)]
DRUGS: list[tuple[str, str, DrugClass, str, str, list[tuple[str, str, Container]]]] = [
    ("J9206", "irinotecan", C, "20", "mg", [("10000000101", "40", SDV), ("10000000102", "100", SDV), ("10000000103", "300", SDV)]),
    ("J3489", "zoledronic acid", T, "1", "mg", [("10000000201", "4", SDV)]),
    ("J9271", "pembrolizumab", IM, "1", "mg", [("10000000301", "100", SDV)]),
    ("J9299", "nivolumab", IM, "1", "mg", [("10000000401", "40", SDV), ("10000000402", "100", SDV), ("10000000403", "120", SDV), ("10000000404", "240", SDV)]),
    ("J9045", "carboplatin", C, "50", "mg", [("10000000501", "600", MDV)]),
    ("J9267", "paclitaxel", C, "1", "mg", [("10000000601", "300", MDV)]),
    ("J9263", "oxaliplatin", C, "0.5", "mg", [("10000000701", "200", SDV)]),
    ("J0640", "leucovorin", T, "50", "mg", [("10000000801", "500", SDV)]),
    ("J9190", "fluorouracil", C, "500", "mg", [("10000000901", "5000", Container.PHARMACY_BULK)]),
    ("J9035", "bevacizumab", IM, "10", "mg", [("10000001001", "400", SDV)]),
    ("J9041", "bortezomib", C, "0.1", "mg", [("10000001101", "3.5", SDV)]),
    ("J0897", "denosumab", T, "1", "mg", [("10000001201", "120", SDV)]),
    ("J9217", "leuprolide", H, "7.5", "mg", [("10000001301", "22.5", SDV)]),
    ("J2405", "ondansetron", T, "1", "mg", [("10000001401", "4", SDV)]),
    ("J1100", "dexamethasone", T, "1", "mg", [("10000001501", "120", MDV)]),
    ("J2469", "palonosetron", T, "0.025", "mg", [("10000001601", "0.25", SDV)]),
    ("J1200", "diphenhydramine", T, "50", "mg", [("10000001701", "50", SDV)]),
    ("J1453", "fosaprepitant", T, "1", "mg", [("10000001801", "150", SDV)]),
    ("J9060", "cisplatin", C, "10", "mg", [("10000001901", "100", MDV)]),
    ("J9201", "gemcitabine", C, "200", "mg", [("10000002001", "1000", SDV)]),
    ("J9171", "docetaxel", C, "1", "mg", [("10000002101", "160", MDV), ("10000002102", "20", Container.UNKNOWN)]),
    ("J9312", "rituximab", IM, "10", "mg", [("10000002201", "100", SDV)]),
    ("J7030", "sodium chloride 0.9%", HY, "1000", "mL", [("10000009001", "1000", Container.NOT_APPLICABLE), ("10000009002", "250", Container.NOT_APPLICABLE)]),
    ("J7040", "sodium chloride 0.9%", HY, "500", "mL", [("10000009003", "500", Container.NOT_APPLICABLE)]),
    ("J7050", "sodium chloride 0.9%", HY, "250", "mL", [("10000009002", "250", Container.NOT_APPLICABLE)]),
]  # fmt: skip

PACKAGED = ("J1100", "J2405", "J2469", "J1200", "J1453", "J0640", "J9045", "J9267", "J7030", "J7040", "J7050", "J3489")  # fmt: skip


def catalog() -> Catalog:
    drugs = [Drug(h, n, c, Decimal(a), u) for h, n, c, a, u, _ in DRUGS]
    products = [
        Product(ndc, h, Decimal(size), cont)
        for h, _, _, _, _, ps in DRUGS
        for ndc, size, cont in ps
    ]
    return Catalog.build(drugs, products)


MAPPINGS = Mappings(
    catalog=catalog(),
    opps_status=MappingProxyType({h: "N" for h in PACKAGED} | {"J9271": "K", "J9299": "K"}),
    table_versions=(TableVersion("crosswalk", date(2026, 1, 1), date(2026, 3, 31)),),
)


def at(hhmm: str, day: int = 15) -> datetime:
    hours, minutes = hhmm.split(":")
    return datetime(2026, 1, day, int(hours), int(minutes), tzinfo=NY)


def ndc_of(hcpcs: str, index: int = 0) -> str:
    return next(ps[index][0] for h, *_, ps in DRUGS if h == hcpcs)


_counter = Counter[str]()


def admin(
    drug: str,
    dose: str,
    start: str,
    end: str | None = None,
    *,
    route: Route = Route.IV,
    method: Method = Method.UNSPECIFIED,
    site: str | None = None,
    indicated: bool = False,
    status: AdminStatus = AdminStatus.COMPLETED,
    wasted: str | None = None,
    ndc: int | None = 0,
    end_day: int = 15,
    day: int = 15,
    extra: tuple[Ingredient, ...] = (),
    rate: str | None = None,
    volume: str | None = None,
    expected_minutes: int | None = None,
    source_id: str | None = None,
    action: Action = Action.ADD,
) -> Administration:
    """One administration; `drug` is a HCPCS of the test catalog, coded by NDC unless ndc=None."""
    _counter["n"] += 1
    code = (
        Code(CodeSystem.NDC, ndc_of(drug, ndc))
        if ndc is not None and drug.startswith("J")
        else Code(CodeSystem.HCPCS, drug)
    )
    return Administration(
        source_id=source_id or f"test:{_counter['n']}",
        patient_id="test|1",
        start=at(start, day),
        end=at(end, end_day) if end else None,
        ingredients=(Ingredient((code,), quantity(dose)), *extra),
        visit_id="V1",
        route=route,
        method=method,
        access_site=site,
        indications=(Code(CodeSystem.ICD10CM, "E86.0"),) if indicated else (),
        status=status,
        wasted=quantity(wasted) if wasted else None,
        rate=quantity(rate) if rate else None,
        volume=quantity(volume) if volume else None,
        expected_minutes=expected_minutes,
        action=action,
    )


def quantity(text: str) -> Quantity:
    value, unit = text.split()
    return Quantity(Decimal(value), unit)


def base_fluid(ml: str) -> Ingredient:
    return Ingredient(
        (Code(CodeSystem.NDC, ndc_of("J7030")),), quantity(f"{ml} mL"), IngredientRole.BASE
    )


def push(drug: str, dose: str, start: str, **kw: object) -> Administration:
    return admin(drug, dose, start, None, method=Method.PUSH, **kw)  # type: ignore[arg-type]


def code(
    *admins: Administration,
    setting: str = Setting.OFFICE,
    diagnoses: tuple[str, ...] = ("C18.7",),
    options: CodingOptions | None = None,
    patient_class: PatientClass = PatientClass.OUTPATIENT,
) -> CodedEncounter:
    opts = options or CodingOptions(setting_override=setting)
    visit = Visit(
        "test:visit",
        "test|1",
        "V1",
        patient_class,
        diagnoses=tuple(Diagnosis(c, i + 1, i) for i, c in enumerate(diagnoses)),
    )
    encounter = Encounter("visit:V1", "test|1", visit, tuple(admins), visit.diagnoses, ())
    ctx = CodingContext(MAPPINGS, opts, NY, is_billable)
    return code_encounter(encounter, ctx)


from adapter.icd10 import is_billable  # noqa: E402  (re-exported for the tests)


def lines(coded: CodedEncounter) -> Counter[str]:
    """`96415` -> 2, `J9206-JW` -> 1: units per code+modifiers over all dates."""
    out = Counter[str]()
    for ln in coded.lines:
        out["-".join((ln.code, *ln.modifiers))] += ln.units
    return out


def dated(coded: CodedEncounter) -> Counter[tuple[str, date]]:
    out = Counter[tuple[str, date]]()
    for ln in coded.lines:
        out["-".join((ln.code, *ln.modifiers)), ln.service_date] += ln.units
    return out


def minutes_after(start: str, minutes: int) -> str:
    t = at(start) + timedelta(minutes=minutes)
    return t.strftime("%H:%M")
