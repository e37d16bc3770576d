"""Expected outcome of every acceptance scenario, derived by hand from the rules.

Sources: the team's rule set with its worked scenarios S01-S34 (the rules restated in
docs/coding-rules.md, R1-R45, and docs/decisions.md, D1-D27, which win where they settle
something), mappings/reference/drug-catalog-seed.csv (class, billing unit, package amount,
container) and the OPPS Addendum B copy beside it (status indicator `N` = packaged: no JW/JZ
in hospital outpatient). Nothing here was taken from the adapter's code: it is the oracle the
adapter is tested against, and `rules` shows the arithmetic behind every number.

Fixtures: `fixtures/scenarios/<id>.hl7` (ADT^A04, RAS^O17, ADT^A03) and
`fixtures/scenarios/<id>.json` (FHIR R4 Bundle) describe the same visit; both must
produce the same outcome.

How to compare:
- `lines` lists every Claim line (administration and drug lines), order-insensitive,
  aggregated per (code, modifiers, service date): two 96415 units on one date are one
  line of 2 units. A JW line is its own line (R36). Modifiers are compared as a set.
- `service_date` is given only where the date is what the scenario tests (D9); a line
  without it matches any date.
- `diagnoses` is the full Claim diagnosis order (D19-D21).
- `holds` are the D22 reason codes of the charge-review Task (the Claim is then a
  draft carrying the same lines); `skipped` is set when no Claim is expected.
- `options` are the settings the scenario runs with where they differ from the
  shipped defaults, or where the scenario is about that setting (S20 pins the G0498
  option off, S21 on).

Abbreviations in `rules`: d = running minutes; ADD(d) = 0 if d <= 60 else
floor((d-60)/60) + (1 if (d-60) mod 60 > 30 else 0) (coding-rules 1.5); SDV/MDV/PBP =
single-dose vial / multiple-dose vial / pharmacy bulk package (catalog `container`);
"SI" = OPPS status indicator (Addendum B, Oct 2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXCLUDED",
    "FIXTURE_DIR",
    "SCENARIOS",
    "SCENARIOS_BY_ID",
    "ExpectedLine",
    "Scenario",
]

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"


@dataclass(frozen=True)
class ExpectedLine:
    """One Claim line: code, units, modifiers, and the service date when it matters."""

    code: str
    units: int
    modifiers: tuple[str, ...] = ()
    service_date: str | None = None  # ISO date, only when a scenario needs it


@dataclass(frozen=True)
class Scenario:
    """One acceptance scenario: its setting and everything the Claim must say."""

    id: str
    title: str
    setting: str  # "office" | "hospital-outpatient"
    lines: tuple[ExpectedLine, ...]  # every Claim line, administration and drug lines
    diagnoses: tuple[str, ...]  # the full expected ICD-10-CM order (D19-D21)
    holds: tuple[str, ...] = ()  # D22 reason codes expected
    skipped: str = ""  # expected skip reason, e.g. "nothing billable"
    options: tuple[tuple[str, str], ...] = ()  # e.g. (("pump_code_g0498", "true"),)
    rules: str = ""  # the rule/decision ids and arithmetic that justify the expectation


def _l(code: str, units: int, *modifiers: str, on: str | None = None) -> ExpectedLine:
    return ExpectedLine(code, units, tuple(modifiers), on)


OFFICE = "office"
HOPD = "hospital-outpatient"
NOTHING = "nothing billable"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "S01",
        "Zoledronic acid 4 mg IV 10:00-10:15: a 15-minute infusion is a push",
        OFFICE,
        (_l("96374", 1), _l("J3489", 4, "JZ")),
        ("C79.51", "C50.911"),
        rules=(
            "D4/R9: d=15 <= 15 and the method is IVPB (not a documented push) -> push; "
            "therapeutic class (D11) -> initial therapeutic push 96374 (R13). "
            "J3489 1 mg/unit: 4/1 = 4 (R34). NDC 63323-0961-98 = 4 mg SDV: 1 vial, "
            "discard 0 -> JZ (D17, R37). Supportive-only visit: no Z51.1x, source order "
            "C79.51, C50.911 (D20; R41 treatment directed at the metastasis)."
        ),
    ),
    Scenario(
        "S02",
        "Zoledronic acid 4 mg IV 10:00-10:16: 16 minutes is an infusion",
        OFFICE,
        (_l("96365", 1), _l("J3489", 4, "JZ")),
        ("C79.51", "C50.911"),
        rules=(
            "D4: d=16 -> infusion; initial therapeutic infusion 96365, ADD(16)=0 -> no "
            "96366 (R18). J3489 4 units JZ as S01. Diagnoses as S01 (D20)."
        ),
    ),
    Scenario(
        "S03",
        "Irinotecan 342 mg 09:00-10:30 from 300+40+40 mg SDVs (waste documented)",
        OFFICE,
        (_l("96413", 1), _l("J9206", 18), _l("J9206", 1, "JW")),
        ("Z51.11", "C18.7"),
        rules=(
            "d=90 -> 96413 x1, ADD(90)=0 (R18). J9206 20 mg/unit: 342/20 = 17.1 -> 18 "
            "(R34). Feed documents discard 38 mg (OBX WASTE / discarded-amount), which "
            "wins (D17): opened = 342+38 = 380 mg -> floor(380/20) = 19 - 18 = 1 JW "
            "(R36). (Computed from the 300 mg NDC alone it would be 2 vials = 600 mg -> "
            "JW 12, which is why the waste is documented.) Chemotherapy -> Z51.11 "
            "first, then C18.7 (D19)."
        ),
    ),
    Scenario(
        "S04",
        "Irinotecan 342 mg 09:00-10:31: 31 minutes past the hour adds 96415",
        OFFICE,
        (_l("96413", 1), _l("96415", 1), _l("J9206", 18), _l("J9206", 1, "JW")),
        ("Z51.11", "C18.7"),
        rules=(
            "d=91: ADD = floor(31/60)=0 + (31 > 30) = 1 -> 96415 x1 (R18). Drug lines "
            "and diagnoses as S03 (documented discard 38 mg -> JW 1)."
        ),
    ),
    Scenario(
        "S05",
        "Gemcitabine 120 min then oxaliplatin 120 min (GEMOX), hospital outpatient",
        HOPD,
        (
            _l("96413", 1),
            _l("96417", 1),
            _l("96415", 2),
            _l("J9201", 9),
            _l("J9263", 340),
        ),
        ("Z51.11", "C24.0"),
        rules=(
            "Scenario says 'either' setting: fixture is hospital outpatient (PV1-3 ONCINF). "
            "Initial chemo infusion 96413 + ADD(120) = floor(60/60)=1 + (0>30)=0 -> 1; "
            "sequential chemo infusion 96417 + ADD(120) = 1; 96415 total 2 (R18, R19; "
            "published answer AAPC-4T). Gemcitabine 1.8 g = 1800 mg / 200 = 9 (D16 unit "
            "conversion); oxaliplatin 170/0.5 = 340. Both SDVs (1 g and 200 mg) would "
            "give JW in the office (2x1000-1800 -> JW 1; 200-170 -> JW 60) but J9201 and "
            "J9263 have OPPS SI N (packaged): no JW, no JZ, no JW line (D17/D18). "
            "Z51.11, C24.0 (D19)."
        ),
    ),
    Scenario(
        "S06",
        "Three premedication infusions, doxorubicin 155 min, hydration with indication",
        OFFICE,
        (
            _l("96413", 1),
            _l("96415", 2),
            _l("96367", 3),
            _l("96361", 1),
            _l("J2469", 10, "JZ"),
            _l("J1100", 12),
            _l("J1453", 150, "JZ"),
            _l("J9000", 10, "JZ"),
            _l("J7040", 1, "JZ"),
        ),
        ("Z51.11", "C50.911", "E86.0"),
        rules=(
            "Doxorubicin 14:10-16:45 d=155 is the initial (chemo > therapeutic > "
            "hydration, D3/R14): 96413 + ADD(155) = floor(95/60)=1 + (35>30)=1 = 2 -> "
            "96415 x2 (published AAPC-RFE). Palonosetron 13:00-13:20 (20), dexamethasone "
            "13:20-13:40 (20), fosaprepitant 13:40-14:10 (30): each >= 16 min, sequential "
            "infusion of a new drug -> 96367 x3 (R19). NS 500 mL 16:45-18:00 carries an "
            "indication (E86.0) -> hydration (D12), after another initial: 96361 units = "
            "1 + ADD(75)=0 = 1 (R21); listed answer's condition 'only if documented' is "
            "met. Drugs: palonosetron 250 mcg / 25 mcg = 10, SDV 250 mcg, discard 0 -> "
            "JZ; dexamethasone 12 mg from MDV -> 12, no modifier (D18); fosaprepitant "
            "150/1 = 150, 150 mg SDV -> JZ; doxorubicin 100/10 = 10, 2x50 mg SDV = 100 -> "
            "JZ; NS 500 mL bag -> J7040 x1 (D18a: HCPCS by bag volume), office -> JZ. "
            "Diagnoses: Z51.11, neoplasm C50.911, then the rest E86.0 (D19)."
        ),
    ),
    Scenario(
        "S07",
        "Therapeutic infusion 30 min then chemotherapy 115 min",
        OFFICE,
        (
            _l("96413", 1),
            _l("96415", 1),
            _l("96367", 1),
            _l("J1453", 150, "JZ"),
            _l("J9263", 260),
            _l("J9263", 40, "JW"),
        ),
        ("Z51.11", "C20"),
        rules=(
            "The scenario's antibiotic is replaced by fosaprepitant 150 mg (a catalog "
            "therapeutic drug): an uncatalogued antibiotic would put the visit on an "
            "unknown-drug hold (D14); the coding is the same. Oxaliplatin 10:05-12:00 "
            "d=115 is the initial by hierarchy (R14): 96413 + ADD(115) = 0 + (55>30) = 1 "
            "-> 96415 x1 (published AAPC-PRO). Fosaprepitant 09:30-10:00 d=30 -> 96367 "
            "(R19). J1453 150 from a 150 mg SDV -> JZ. J9263 130/0.5 = 260; documented "
            "discard 20 mg (100+50 mg vials opened) wins over the 100 mg NDC's computed "
            "200 mg (D17): floor(150/0.5) = 300 - 260 = 40 JW (R36). Z51.11, C20."
        ),
    ),
    Scenario(
        "S08",
        "Oxaliplatin with concurrent leucovorin 09:33-12:15, same line",
        OFFICE,
        (
            _l("96413", 1),
            _l("96415", 2),
            _l("96368", 1),
            _l("J9263", 270),
            _l("J9263", 30, "JW"),
            _l("J0640", 13),
            _l("J0640", 1, "JW"),
        ),
        ("Z51.11", "C18.2"),
        rules=(
            "d=162: 96413 + ADD(162) = floor(102/60)=1 + (42>30)=1 = 2 -> 96415 x2. "
            "Leucovorin (therapeutic, D11) overlaps the chemo for 162 >= 16 min through "
            "the same access from its own bag -> concurrent 96368 x1 (D6, R25). "
            "Containers picked from the catalog: oxaliplatin NDC 63323-0750-10 = 50 mg "
            "SDV; 135/0.5 = 270; fewest vials covering 135 mg = 3 = 150 mg -> floor(150/"
            "0.5) = 300 - 270 = 30 JW. Leucovorin NDC 25021-0816-30 = 350 mg SDV; "
            "632/50 = 12.64 -> 13; 2 vials = 700 mg -> floor(700/50) = 14 - 13 = 1 JW "
            "(D17, R36). Z51.11, C18.2."
        ),
    ),
    Scenario(
        "S09",
        "R-CHOP day: pushes, rituximab-abbs 312 min, concurrent famotidine",
        OFFICE,
        (
            _l("96413", 1),
            _l("96415", 4),
            _l("96417", 1),
            _l("96411", 2),
            _l("96367", 1),
            _l("96368", 1),
            _l("96375", 3),
            _l("Q5115", 38),
            _l("Q5115", 2, "JW"),
            _l("J1200", 1, "JZ"),
            _l("J2469", 10, "JZ"),
            _l("J1453", 150, "JZ"),
            _l("J1100", 10, "JZ"),
            _l("J1308", 80, "JZ"),
            _l("J9000", 5, "JZ"),
            _l("J9370", 2),
            _l("J9075", 150),
            _l("J9075", 50, "JW"),
        ),
        ("Z51.11", "Z51.12", "C83.30"),
        holds=("waste-undetermined",),
        rules=(
            "Rituximab-abbs 09:03-14:15 d=312 (immunotherapy, 964xx) is the initial: "
            "96413 + ADD(312) = floor(252/60)=4 + (12>30)=0 = 4 -> 96415 x4 (published "
            "AAPC-25). Cyclophosphamide 15:13-15:56 d=43 -> 96417, ADD 0. Doxorubicin "
            "IVP 14:35 and vincristine 14:46-14:56 (d=10 <= 15 -> push, D4) -> 96411 x2 "
            "(R23). Fosaprepitant 08:19-08:45 d=26 -> 96367. Famotidine 10:40-11:10 in "
            "its own bag on the rituximab line, overlap 30 >= 16 -> 96368 (D6, R25). "
            "Diphenhydramine IVP 08:14, palonosetron IVP 08:14, dexamethasone IVP 09:06 "
            "-> 96375 x3 (R13, R24). Drugs: Q5115 375/10 = 37.5 -> 38; 100 mg SDVs: 4 "
            "= 400 -> 40 - 38 = 2 JW. J1200 25 mg -> 1 unit (up to 50 mg), 50 mg SDV, "
            "discard 25 < 1 unit -> JZ. J2469 0.25 mg = 250 mcg / 25 = 10 JZ. J1453 150 "
            "JZ. J1100 10 mg from a 10 mg SDV -> 10 JZ. J1308 famotidine 20 mg / 0.25 = "
            "80, premixed 20 mg bag -> JZ. J9000 50/10 = 5, 50 mg SDV -> JZ. "
            "Cyclophosphamide: J9070 has no 2026Q1 NDCs; catalog NDC 10019-0956-01 is "
            "J9075 (5 mg/unit), 1 g SDV: 750/5 = 150, floor(1000/5) = 200 - 150 = 50 JW. "
            "Vincristine J9370: 1.4 mg -> 2 units; every vincristine NDC in the catalog "
            "has container 'unknown', and office drugs are separately payable -> hold "
            "waste-undetermined (D17); the draft line carries no JW/JZ. Listed answer "
            "gave only Q5115 x38 among drug lines. Diagnoses: both Z codes, Z51.11 "
            "first (D19), then C83.30."
        ),
    ),
    Scenario(
        "S10",
        "Office: three pushes, paclitaxel 180 min, carboplatin 30 min",
        OFFICE,
        (
            _l("96413", 1),
            _l("96415", 2),
            _l("96417", 1),
            _l("96375", 3),
            _l("J9267", 315),
            _l("J9045", 12),
            _l("J1100", 12),
            _l("J2469", 10, "JZ"),
            _l("J1200", 1, "JZ"),
        ),
        ("Z51.11", "C56.9"),
        rules=(
            "Paclitaxel 09:30-12:30 d=180: 96413 + ADD(180) = floor(120/60)=2 + 0 = 2. "
            "Carboplatin 12:35-13:05 d=30 -> 96417. Three IVPs (dexamethasone, "
            "palonosetron, diphenhydramine) -> 96375 x3. J9267 315/1 = 315 and J9045 "
            "600/50 = 12 from MDVs -> no modifier (D18, R35); J1100 12 from MDV -> none; "
            "J2469 250 mcg/25 = 10 from 0.25 mg SDV -> JZ; J1200 25 mg -> 1 unit, 50 mg "
            "SDV, discard below one unit -> JZ (R37). The source already sends Z51.11: "
            "no duplicate (D19): Z51.11, C56.9."
        ),
    ),
    Scenario(
        "S11",
        "Hospital outpatient version of S10: packaged drugs carry no JW/JZ",
        HOPD,
        (
            _l("96413", 1),
            _l("96415", 2),
            _l("96417", 1),
            _l("96375", 3),
            _l("J9267", 315),
            _l("J9045", 12),
            _l("J1100", 12),
            _l("J2469", 10),
            _l("J1200", 1),
        ),
        ("Z51.11", "C56.9"),
        rules=(
            "Same administrations as S10 (R14 hierarchy in both settings, D3). "
            "Addendum B: J9267, J9045, J1100, J2469, J1200 all SI N -> no JW/JZ "
            "(D17/D18), matching the listed answer. Revenue codes (not compared here): "
            "0335 chemo administration, 0260 for 96375, 0636 drugs (R44). Z51.11 added "
            "(D19), C56.9."
        ),
    ),
    Scenario(
        "S12",
        "Cisplatin with ordered pre- and post-hydration, hospital outpatient",
        HOPD,
        (
            _l("96413", 1),
            _l("96361", 2),
            _l("J9060", 14),
            _l("J7030", 1),
            _l("J7040", 1),
        ),
        ("Z51.11", "C34.90"),
        rules=(
            "Cisplatin 09:00-10:00 d=60 -> 96413, ADD 0; it is the initial although the "
            "hydration started first (R14). Both NS bags carry an indication (nephro"
            "toxicity prevention) -> hydration (D12), sequential, not concurrent "
            "(touching times, no overlap). Each evaluated on its own (R11): pre 60 min "
            "-> 1 + ADD(60)=0 = 1; post 45 min -> 1 -> 96361 x2 (R21). J9060 140/10 = "
            "14 (MDV; SI N). Bags: 1000 mL -> J7030 x1, 500 mL -> J7040 x1 (D18a), "
            "hospital outpatient -> packaged, no modifier (D18a; SI N). Z51.11, C34.90."
        ),
    ),
    Scenario(
        "S13",
        "Hydration for dehydration 09:00-11:35 with a gemcitabine piggyback 09:00-09:30",
        OFFICE,
        (
            _l("96413", 1),
            _l("96361", 2),
            _l("J9201", 9),
            _l("J9201", 1, "JW"),
            _l("J7030", 1, "JZ"),
        ),
        ("Z51.11", "C25.9", "E86.0"),
        rules=(
            "Gemcitabine 09:00-09:30 d=30 -> 96413. The NS (indication E86.0 -> "
            "hydration, D12) runs concurrently with it for 30 min: that part is never "
            "billed (D12, R25, NCCI B.5); the rest 09:30-11:35 = 125 min -> 96361 units "
            "= 1 + ADD(125) = 1 + (floor(65/60)=1 + (5>30)=0) = 2 (R21). J9201 1800/200 "
            "= 9; NDC 63323-0125-53 = 1 g SDV, 2 vials = 2000 -> floor(2000/200) = 10 - 9 "
            "= 1 JW. DEVIATION (D18a): the listed answer bills J7030 without modifier; "
            "in the office a fluid bag is a single-dose container -> J7030 x1 JZ. "
            "DEVIATION (D19): listed order '(E86.0, C25.9)'; D19 puts the neoplasm before "
            "the rest, although the source ranks E86.0 first: Z51.11, C25.9, E86.0."
        ),
    ),
    Scenario(
        "S14",
        "Pembrolizumab 200 mg in NS 100 mL with a KVO saline line",
        OFFICE,
        (_l("96413", 1), _l("J9271", 200, "JZ")),
        ("Z51.12", "C34.90"),
        rules=(
            "Pembrolizumab (immunotherapy, D11) 10:00-10:30 d=30 -> 96413 (premixed bag "
            "sent as RXC / Medication with an inactive NS base). NS 250 mL 09:55-10:40 "
            "has no indication -> keep-vein-open carrier: no 96360/96361 and no fluid "
            "line (D12); the 100 mL carrier inside the premixed bag is never billed "
            "either (D12). J9271 200/1 = 200; NDC 00006-3026-02 = 100 mg SDV, 2 vials = "
            "200, discard 0 -> JZ. Z51.12, C34.90 (D19)."
        ),
    ),
    Scenario(
        "S15",
        "Pembrolizumab 30 min, pemetrexed 10 min (a push), carboplatin 30 min",
        OFFICE,
        (
            _l("96413", 1),
            _l("96417", 1),
            _l("96411", 1),
            _l("J9271", 200, "JZ"),
            _l("J9305", 90),
            _l("J9305", 10, "JW"),
            _l("J9045", 10),
        ),
        ("Z51.11", "Z51.12", "C34.90"),
        rules=(
            "Pembrolizumab 09:00-09:30 and carboplatin 09:50-10:20 are complex infusions: "
            "one 96413, one 96417 (R19). Pemetrexed 09:35-09:45 d=10 <= 15 -> push (D4) "
            "after a chemo initial -> 96411 (R23). J9271 200 JZ (2x100 mg SDV). J9305 "
            "900/10 = 90; NDC 00002-7623-01 = 500 mg SDV, 2 vials = 1000 -> 100 - 90 = 10 "
            "JW. J9045 500/50 = 10 (MDV, none). Source sends Z51.12 and C34.90; the "
            "adapter adds Z51.11 and puts it first (D19): Z51.11, Z51.12, C34.90."
        ),
    ),
    Scenario(
        "S16",
        "Nivolumab 210 mg from 100+100+40 mg vials (waste documented)",
        OFFICE,
        (_l("96413", 1), _l("J9299", 210), _l("J9299", 30, "JW")),
        ("Z51.12", "C43.9"),
        rules=(
            "d=30 -> 96413. J9299 1 mg/unit: 210. The feed documents 30 mg discarded "
            "(the 100+100+40 mg vials opened); it wins over any computed waste (D17) - "
            "computed from the administered 100 mg NDC it would be 3x100 = 300 (JW 90) "
            "and the catalog least-waste combination 100+120 = 220 (JW 10). opened = 240 "
            "-> 240 - 210 = 30 JW. Z51.12, C43.9."
        ),
    ),
    Scenario(
        "S17",
        "Hospital outpatient nivolumab 480 mg from two 240 mg SDVs",
        HOPD,
        (_l("96413", 1), _l("J9299", 480, "JZ")),
        ("Z51.12", "C64.1", "C78.01"),
        rules=(
            "d=30 -> 96413 (rev 0335, R44). J9299 480; NDC 00003-3734-13 = 240 mg SDV, "
            "2 vials = 480, discard 0. Addendum B: J9299 SI K (separately payable) -> JZ "
            "applies in hospital outpatient (D17). Diagnoses: Z51.12, then the neoplasms "
            "by source priority (DG1-15 / rank): C64.1 (priority 1) before C78.01 "
            "(priority 2), although C78.01 is sent first (D19)."
        ),
    ),
    Scenario(
        "S18",
        "Discard smaller than one billing unit: JZ, no JW line",
        OFFICE,
        (
            _l("96409", 1),
            _l("96375", 1),
            _l("J9190", 1, "JZ"),
            _l("J0640", 1, "JZ"),
        ),
        ("Z51.11", "C18.7"),
        rules=(
            "The scenario's generic drug (unit 100 mg, 100 mg SDV, 70 mg given) is made "
            "concrete with two catalog drugs whose whole vial is one billing unit: 5-FU "
            "J9190 (500 mg/unit) 350 mg from a 500 mg SDV (63323-0117-10) -> ceil(0.7) = "
            "1, floor(500/500) - 1 = 0 -> JZ; leucovorin J0640 (50 mg/unit) 35 mg from a "
            "50 mg SDV (71288-0160-10) -> 1, discard 15 mg < 1 unit -> JZ (R37, NOR-JZ). "
            "Administrations: 5-FU IVP 09:05 is the initial by hierarchy although "
            "leucovorin IVP came first at 09:00 (R14): 96409; leucovorin -> 96375. "
            "Z51.11, C18.7."
        ),
    ),
    Scenario(
        "S19a",
        "Waste (a): pemetrexed 870 mg from nine 100 mg SDVs -> 87 + JW 3",
        OFFICE,
        (_l("96409", 1), _l("J9305", 87), _l("J9305", 3, "JW")),
        ("Z51.11", "C34.11"),
        rules=(
            "S19 split in three encounters. (a) unit 10 mg, 100 mg SDV, 70 mg used from "
            "the last vial, as a realistic dose: pemetrexed 870 mg, NDC 63323-0134-10 "
            "(100 mg SDV) -> 9 vials = 900; 870/10 = 87; floor(900/10) = 90 - 87 = 3 JW "
            "(published RHEUM pattern: x7 + JW x3). Infusion 10:00-10:10 d=10 -> push "
            "(D4): chemo push initial 96409. Z51.11, C34.11."
        ),
    ),
    Scenario(
        "S19b",
        "Waste (b): bevacizumab 377 mg from a 400 mg SDV -> 38 + JW 2",
        OFFICE,
        (_l("96413", 1), _l("J9035", 38), _l("J9035", 2, "JW")),
        ("Z51.12", "C20"),
        rules=(
            "(b) 77 mg used from the last 100 mg: bevacizumab 377 mg (5 mg/kg x 75.4 kg) "
            "from NDC 50242-0061-01 (400 mg SDV): 377/10 = 37.7 -> 38 (round the dose "
            "up), floor(400/10) = 40 - 38 = 2 JW (round the waste down; R36; published "
            "pattern x8 + JW x2). d=30 -> 96413. Immunotherapy -> Z51.12, C20."
        ),
    ),
    Scenario(
        "S19c",
        "Waste (c): doxorubicin 97 mg from two 50 mg SDVs -> 10 JZ",
        OFFICE,
        (_l("96409", 1), _l("J9000", 10, "JZ")),
        ("Z51.11", "C49.22"),
        rules=(
            "(c) 7 mg used of the last 10 mg unit: doxorubicin 97 mg IVP (60 mg/m2) from "
            "NDC 63323-0883-30 (50 mg SDV): 2 vials = 100; 97/10 = 9.7 -> 10; floor(100/"
            "10) - 10 = 0 -> no JW line, JZ (R37, as S18). Documented push -> 96409. "
            "Z51.11, C49.22."
        ),
    ),
    Scenario(
        "S20",
        "FOLFOX + bevacizumab with a 46 h portable pump, commercial payer",
        OFFICE,
        (
            _l("96413", 1),
            _l("96417", 1),
            _l("96415", 1),
            _l("96368", 1),
            _l("96411", 1),
            _l("96416", 1),
            _l("J9035", 40, "JZ"),
            _l("J9263", 340),
            _l("J9263", 60, "JW"),
            _l("J0640", 16),
            _l("J0640", 4, "JW"),
            _l("J9190", 12),
        ),
        ("Z51.11", "Z51.12", "C18.7", "C78.7"),
        options=(("pump_code_g0498", "false"),),
        rules=(
            "Bevacizumab 09:00-09:30 (30) and oxaliplatin 09:35-11:35 (120): 96413 + "
            "96417, ADD(30)=0 and ADD(120)=1 -> 96415 x1. Leucovorin 09:35-11:35 own bag, "
            "same line, overlap 120 -> 96368 (D6, R25). 5-FU IVP 11:40 -> 96411 (R23). "
            "5-FU 4800 mg by portable pump from 11:50 (method PUMP, expected 46 h > 8 h) "
            "-> 96416 (D13; G0498 option off by default); the pump has no stop time "
            "by nature and is not held (D5 concerns time-based codes). Drugs: J9035 "
            "400/10 = 40, 400 mg SDV, discard 0 -> JZ; J9263 170/0.5 = 340, 200 mg SDV "
            "(60505-6132-08) -> 400 - 340 = 60 JW; J0640 800/50 = 16, 2x500 mg SDV "
            "(63323-0711-00) -> floor(1000/50) = 20 - 16 = 4 JW; J9190 (800+4800)/500 = "
            "11.2 -> 12 summed per HCPCS and date (D16, R34), both 5-FU from pharmacy "
            "bulk packages (63323-0117-51/-61) -> no JW/JZ (D18; settles the listed "
            "'container decides'). Diagnoses: Z51.11, Z51.12, C18.7, C78.7 (D19)."
        ),
    ),
    Scenario(
        "S21",
        "As S20, Medicare, practice-supplied pump: G0498 instead of 96416",
        OFFICE,
        (
            _l("96413", 1),
            _l("96417", 1),
            _l("96415", 1),
            _l("96368", 1),
            _l("96411", 1),
            _l("G0498", 1),
            _l("J9035", 40, "JZ"),
            _l("J9263", 340),
            _l("J9263", 60, "JW"),
            _l("J0640", 16),
            _l("J0640", 4, "JW"),
            _l("J9190", 12),
        ),
        ("Z51.11", "Z51.12", "C18.7", "C78.7"),
        options=(("pump_code_g0498", "true"),),
        rules=(
            "Identical administrations to S20 with payer Medicare Part B and the G0498 "
            "payer setting on (D13, R27): the pump initiation is G0498 x1 instead of "
            "96416; everything else as S20."
        ),
    ),
    Scenario(
        "S22",
        "Pump disconnect visit (day 3 of S20): port flushed, nothing else given",
        OFFICE,
        (),
        (),
        skipped=NOTHING,
        rules=(
            "D13: the disconnect visit bills no administration code (included in 96416/"
            "G0498). The only administration is a 10 mL NS flush via the port without "
            "indication -> carrier fluid: no code, no fluid line (D12). No line -> no "
            "Claim, skip 'nothing billable'. The listed hospital-outpatient 96523 "
            "alternative does not apply (office fixture; D13 settles no code)."
        ),
    ),
    Scenario(
        "S23",
        "Ondansetron IVP then hydration 23:48-01:30 across midnight, hospital",
        HOPD,
        (
            _l("96374", 1, on="2026-01-21"),
            _l("96361", 1, on="2026-01-21"),
            _l("96361", 1, on="2026-01-22"),
            _l("J2405", 8, on="2026-01-21"),
            _l("J7040", 1, on="2026-01-21"),
        ),
        ("E86.0", "R11.2", "T45.1X5A", "C18.7"),
        rules=(
            "Ondansetron IVP 23:40 is the initial (therapeutic push outranks hydration, "
            "R14): 96374. NS with indication E86.0 (D12) 23:48-01:30 d=102 -> 96361 units "
            "= 1 + ADD(102) = 1 + (42>30) = 2 (R21). DEVIATION (D9): the listed answer "
            "dates both units on the start date (HCPro-MN); D9 dates each line by the "
            "start of its time block: unit 1 (23:48-00:48) on 2026-01-21, unit 2 "
            "(00:48-01:30, 42 min) on 2026-01-22. One encounter, one initial (R17); "
            "billable period 01-21..01-22. J2405 8 mg/1 mg = 8 (SI N, none); 500 mL bag "
            "-> J7040 x1, packaged (D18a). Supportive-only visit: source order (D20)."
        ),
    ),
    Scenario(
        "S24",
        "Rituximab 700 mg 22:00-01:40 across midnight, hospital",
        HOPD,
        (
            _l("96413", 1, on="2026-01-22"),
            _l("96415", 1, on="2026-01-22"),
            _l("96415", 2, on="2026-01-23"),
            _l("J9312", 70, "JZ", on="2026-01-22"),
        ),
        ("Z51.12", "C83.30"),
        rules=(
            "d=220: 96413 + ADD(220) = floor(160/60)=2 + (40>30)=1 = 3 -> 96415 x3 "
            "(R18), one initial (R17). Blocks: 22:00-23:00 initial and 23:00-00:00 on "
            "2026-01-22; 00:00-01:00 and 01:00-01:40 on 2026-01-23 (D9). J9312 700/10 = "
            "70; NDC 50242-0051-21 = 100 mg SDV, 7 vials = 700, discard 0; SI K -> JZ "
            "(D17). Z51.12, C83.30."
        ),
    ),
    Scenario(
        "S25",
        "Carboplatin 500 mg, start 10:00, no stop time, no rate/volume",
        OFFICE,
        (_l("J9045", 10),),
        ("Z51.11", "C56.9"),
        holds=("missing-stop-time",),
        rules=(
            "No stop time (RXA-4 empty / effectivePeriod without end) and no rate or "
            "infused volume: no time-based administration code, encounter held "
            "missing-stop-time (D5, R32); the drug line stays: J9045 500/50 = 10, MDV "
            "-> no modifier. No per-payer push fallback by default. Z51.11, C56.9."
        ),
    ),
    Scenario(
        "S26",
        "Carboplatin 500 mg in 250 mL at 500 mL/h, full volume infused, no stop time",
        OFFICE,
        (_l("96413", 1), _l("J9045", 10)),
        ("Z51.11", "C56.9"),
        rules=(
            "D5: stop = start + volume/rate = 10:00 + 250/500 h = 10:30 -> d=30 >= 16 -> "
            "96413, ADD 0. J9045 10 (MDV). Z51.11, C56.9."
        ),
    ),
    Scenario(
        "S27",
        "Cisplatin via port and etoposide via peripheral IV at the same time",
        HOPD,
        (
            _l("96413", 1),
            _l("96413", 1, "59"),
            _l("J9060", 12),
            _l("J9181", 18),
        ),
        ("Z51.11", "C34.31"),
        holds=("separate-access-review",),
        rules=(
            "Scenario says 'either': fixture is hospital outpatient. Cisplatin 10:00-"
            "11:00 at RAC (port) and etoposide 10:00-10:50 at LMFA (peripheral) overlap "
            "at different documented sites: draft 96413 + 96413-59 (R16, one initial per "
            "access site in OPPS) and hold separate-access-review because the medical "
            "need cannot be read from the feed (D10a). Different access -> not "
            "'concurrent' (D6), so no concurrent-chemotherapy hold (D7). ADD(60) = "
            "ADD(50) = 0. J9060 120/10 = 12, J9181 180/10 = 18: both MDV and SI N -> no "
            "modifier. Z51.11, C34.31."
        ),
    ),
    Scenario(
        "S28",
        "Oxaliplatin 120 min with leucovorin and fosaprepitant both concurrent",
        HOPD,
        (
            _l("96413", 1),
            _l("96415", 1),
            _l("96368", 1),
            _l("J9263", 320),
            _l("J0640", 16),
            _l("J1453", 150),
        ),
        ("Z51.11", "C19"),
        rules=(
            "Oxaliplatin 09:00-11:00 d=120 -> 96413 + ADD(120)=1 -> 96415 x1. Leucovorin "
            "(overlap 120) and fosaprepitant (overlap 30) are therapeutic, own bags, same "
            "line -> concurrent, reported once per encounter: 96368 x1 (R25, D6). J9263 "
            "160/0.5 = 320; J0640 760/50 = 15.2 -> 16; J1453 150. All SI N -> no JW/JZ "
            "even from SDVs (D18). Z51.11, C19."
        ),
    ),
    Scenario(
        "S29",
        "One premixed palonosetron+dexamethasone bag, then docetaxel 60 min",
        OFFICE,
        (
            _l("96413", 1),
            _l("96367", 1),
            _l("J9171", 150),
            _l("J2469", 10, "JZ"),
            _l("J1100", 12),
        ),
        ("Z51.11", "C50.912"),
        rules=(
            "The bag (RXC additives palonosetron 0.25 mg + dexamethasone 12 mg, base NS "
            "50 mL; FHIR Medication with two active ingredients) is one administration "
            "(R8): 09:00-09:20 d=20 -> one 96367 (R19). Docetaxel 09:30-10:30 d=60 -> "
            "96413. Drugs per dose: J2469 250 mcg/25 = 10, 0.25 mg SDV -> JZ; J1100 12 "
            "from MDV -> none; J9171 150 from NDC 00409-0201-20 (160 mg MDV) -> none. "
            "The NS base is a carrier: no line (D12). Z51.11, C50.912."
        ),
    ),
    Scenario(
        "S30a",
        "Ondansetron IVP 09:00 and 10:00 around irinotecan, hospital outpatient",
        HOPD,
        (
            _l("96413", 1),
            _l("96375", 1),
            _l("96376", 1),
            _l("J9206", 15),
            _l("J2405", 16),
        ),
        ("Z51.11", "C18.4"),
        rules=(
            "S30 split by setting. Irinotecan 09:10-10:40 d=90 -> 96413, ADD 0. First "
            "ondansetron push -> 96375; the same drug pushed again 60 > 30 min later -> "
            "96376, facilities only (R24). J9206 300/20 = 15, J2405 8+8 = 16 summed per "
            "date (D16); both SI N -> no JW/JZ. Z51.11, C18.4."
        ),
    ),
    Scenario(
        "S30b",
        "Ondansetron IVP 09:00 and 10:00 around irinotecan, office",
        OFFICE,
        (
            _l("96413", 1),
            _l("96375", 1),
            _l("J9206", 15, "JZ"),
            _l("J2405", 16, "JZ"),
        ),
        ("Z51.11", "C18.4"),
        rules=(
            "As S30a in the office: 96376 is not reportable by the practice (R24), so "
            "only 96375 x1. J9206 300 mg from a 300 mg SDV (00009-7529-05) -> 15 JZ; "
            "J2405 16 from 4 mg SDVs (2 per 8 mg dose, discard 0) -> JZ."
        ),
    ),
    Scenario(
        "S31",
        "Bortezomib 2.6 mg SC from a 3.5 mg SDV",
        OFFICE,
        (_l("96401", 1), _l("J9041", 26), _l("J9041", 9, "JW")),
        ("Z51.11", "C90.00"),
        rules=(
            "Subcutaneous non-hormonal antineoplastic (bortezomib is chemotherapy, D11) "
            "-> 96401 x1 (R28); an injection needs no stop time (D5). J9041 0.1 mg/unit: "
            "2.6/0.1 = 26; 3.5 mg SDV -> floor(3.5/0.1) = 35 - 26 = 9 JW. Z51.11, C90.00."
        ),
    ),
    Scenario(
        "S32",
        "Docetaxel 60 min then denosumab 120 mg SC",
        OFFICE,
        (
            _l("96413", 1),
            _l("96372", 1),
            _l("J9171", 150),
            _l("J0897", 120, "JZ"),
        ),
        ("Z51.11", "C61", "C79.51"),
        rules=(
            "Docetaxel 09:00-10:00 d=60 -> 96413. Denosumab is 'therapeutic' in the "
            "catalog (D11) -> SC therapeutic injection 96372 (R28), no modifier (no PTP "
            "table is loaded in the default set-up). J9171 150 (160 mg MDV, none); J0897 "
            "120/1 = 120 from a 120 mg SDV (Xgeva 55513-0730-01) -> JZ. Z51.11, then "
            "the neoplasms in source rank: C61, C79.51."
        ),
    ),
    Scenario(
        "S33",
        "Hydration only for chemotherapy-induced dehydration, 130 min, hospital",
        HOPD,
        (_l("96360", 1), _l("96361", 1), _l("J7030", 1)),
        ("E86.0", "T45.1X5A", "C16.9"),
        rules=(
            "NS 1000 mL with indication E86.0 09:00-11:10 d=130 is the only service: "
            "96360 (d >= 31) + ADD(130) = floor(70/60)=1 + (10>30)=0 = 1 -> 96361 x1 "
            "(R20). 1000 mL bag -> J7030 x1, hospital outpatient packaged -> no modifier "
            "(D18a). No Z51.1x (D20): source order E86.0, T45.1X5A, C16.9 (R43)."
        ),
    ),
    Scenario(
        "S33b",
        "Hydration only, 09:00-09:30: under 31 minutes, nothing billable",
        HOPD,
        (),
        (),
        skipped=NOTHING,
        rules=(
            "S33's variant as its own encounter: NS 500 mL with indication, d=30 < 31 -> "
            "96360 not reportable (R20); the bag is billed only with reportable "
            "hydration (R38) -> no line -> no Claim, skip 'nothing billable'."
        ),
    ),
)

EXCLUDED: tuple[tuple[str, str], ...] = (
    (
        "S34",
        "E/M visit codes (99214-25, G0463-25) are out of scope: they come from professional "
        "documentation, not the MAR (D26).",
    ),
)

SCENARIOS_BY_ID: dict[str, Scenario] = {s.id: s for s in SCENARIOS}
