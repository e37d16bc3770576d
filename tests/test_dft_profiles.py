"""DFT receiver profiles (mappings/dft_profiles/*.toml) and the chargemaster they name:
validated once at load, every fault one message naming the file and the key or line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter.dft_profiles_loader import (
    DEFAULT_PROFILE,
    PROFILES_DIR,
    DftProfileError,
    load_dft_profile,
)
from adapter.hl7.dft_profile import (
    ClaimKind,
    CodeField,
    CreditQuantity,
    HL7Version,
    ModifierPlacement,
    OptionalField,
)
from adapter.mappings_loader import default_mappings_dir, load_mappings

SHIPPED = default_mappings_dir()
CHARGEMASTER_HEADER = "code,modifiers,transaction_code,description\n"


def test_every_shipped_profile_loads_with_its_departments_checked_against_locations() -> None:
    mappings = load_mappings(SHIPPED)
    names = sorted(p.stem for p in (SHIPPED / PROFILES_DIR).glob("*.toml"))
    assert names == ["cpt-in-ft1-7-2.3", "generic-2.5.1"]
    for name in names:
        assert load_dft_profile(SHIPPED, name, mappings).name == name


def test_the_generic_profile_is_the_default_and_reads_as_documented() -> None:
    profile = load_dft_profile(SHIPPED)
    assert profile.name == DEFAULT_PROFILE == "generic-2.5.1"
    assert profile.version is HL7Version.V2_5_1
    assert profile.procedure_code_in == (CodeField.FT1_25,)
    assert profile.modifiers is ModifierPlacement.FT1_26
    assert profile.encounters == frozenset(ClaimKind)
    assert OptionalField.NDC in profile.fill and OptionalField.DG1 in profile.fill
    item = profile.chargemaster.exact("J9045", ("JW",))
    assert item is not None and item.transaction_code == "63690451"
    assert profile.chargemaster.lookup("J9045", ("JZ",)) == profile.chargemaster.exact("J9045", ())
    assert profile.departments["ONCINF"].code == "ONC-INF"


def test_the_cpt_in_ft1_7_profile_speaks_2_3_with_modifiers_on_the_code() -> None:
    profile = load_dft_profile(SHIPPED, "cpt-in-ft1-7-2.3")
    assert profile.version is HL7Version.V2_3
    assert profile.procedure_code_in == (CodeField.FT1_7, CodeField.FT1_25)
    assert profile.modifiers is ModifierPlacement.CODE_SUFFIX
    assert profile.encounters == {ClaimKind.PROFESSIONAL}
    assert OptionalField.NDC not in profile.fill
    assert profile.credit_quantity is CreditQuantity.POSITIVE


def _site(tmp_path: Path, profile: str, chargemaster: str = CHARGEMASTER_HEADER) -> Path:
    (tmp_path / PROFILES_DIR).mkdir()
    (tmp_path / PROFILES_DIR / "site.toml").write_text(profile, encoding="utf-8")
    (tmp_path / "cdm.csv").write_text(chargemaster, encoding="utf-8")
    for name in SHIPPED.glob("*.csv"):
        if not (tmp_path / name.name).exists():
            shutil.copy(name, tmp_path / name.name)
    return tmp_path


BAD_PROFILES = [
    ('hl7_version = "2.6"\n', "hl7_version: '2.6' is not one of 2.3, 2.4, 2.5.1"),
    ("colour = 1\n", "colour: unknown key"),
    ('[ft1]\nmodifier = "FT1-26"\n', "ft1.modifier: unknown key"),
    (
        'hl7_version = "2.3"\n[ft1]\nfill = []\n',
        "ft1.modifiers: FT1-26 does not exist in HL7 2.3",
    ),
    (
        'hl7_version = "2.4"\n[ft1]\nfill = ["FT1-29"]\n',
        "ft1.fill: FT1-29 (NDC) does not exist in HL7 2.4",
    ),
    (
        '[ft1]\nprocedure_code = ["FT1-7"]\nmodifiers = "chargemaster"\n',
        "ft1.modifiers: chargemaster needs FT1-7",
    ),
    ('[ft1]\nprocedure_code = ["FT1-8"]\n', "ft1.procedure_code: 'FT1-8' is not one of"),
    ("[ft1]\nprocedure_code = []\n", "ft1.procedure_code: is empty"),
    ('[ft1]\nfill = ["FT1-13", "FT1-13"]\n', "ft1.fill: lists a value twice"),
    ('[ft1]\nfill = ["PV1-7"]\n', "ft1.fill: 'PV1-7' is not one of"),
    ('[ft1]\ncredit_quantity = "minus"\n', "ft1.credit_quantity: 'minus' is not one of"),
    ('[msh]\nsending_application = "A|B"\n', "msh.sending_application: 'A|B' is not allowed"),
    ('[msh]\nprocessing_id = "X"\n', "msh.processing_id: 'X' is not allowed"),
    ('encounters = ["dental"]\n', "encounters: 'dental' is not one of"),
    ("encounters = []\n", "encounters: is empty"),
    ("[dg1]\nsend = 1\n", "dg1.send: must be true or false"),
    ('[departments]\nNOWHERE = "X"\n', "departments.NOWHERE: is not a location code"),
    ("[departments]\nONCINF = 3\n", "departments.ONCINF: must be a code or"),
    ('[departments]\nONCINF = { code = "X", txt = "y" }\n', "departments.ONCINF.txt: unknown key"),
    ('chargemaster = "missing.csv"\n', "missing.csv: file is missing"),
    ("hl7_version = \n", "Invalid value"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_PROFILES)
def test_a_wrong_profile_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, problem: str
) -> None:
    site = _site(tmp_path, text)
    with pytest.raises(DftProfileError) as raised:
        load_dft_profile(site, "site", load_mappings(site))
    message = str(raised.value)
    assert message.startswith(str(site / PROFILES_DIR / "site.toml")) or "missing.csv" in message
    assert problem in message


BAD_CHARGEMASTERS = [
    ("code,modifier,transaction_code,description\n", "line 1: header must be"),
    (CHARGEMASTER_HEADER + "9641,,X,\n", "line 2: code '9641' is not a 5-character"),
    (CHARGEMASTER_HEADER + "J9045,JWX,X,\n", "line 2: modifier 'JWX' is not"),
    (CHARGEMASTER_HEADER + "J9045,JW JW,X,\n", "line 2: a modifier is given twice"),
    (CHARGEMASTER_HEADER + "J9045,,,\n", "line 2: transaction_code must be"),
    (CHARGEMASTER_HEADER + "J9045,,A|B,\n", "line 2: transaction_code must be"),
    (CHARGEMASTER_HEADER + "J9045,,X,\n\nJ9045,,Y,\n", "line 4: J9045 is already given"),
    (CHARGEMASTER_HEADER + "J9045,59 JW,X,\nJ9045,JW 59,Y,\n", "line 3: J9045 59 JW is already"),
    (CHARGEMASTER_HEADER + "J9045,,X\n", "line 2: expected 4 fields"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_CHARGEMASTERS)
def test_a_wrong_chargemaster_row_is_refused_naming_the_file_and_the_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    site = _site(tmp_path, 'chargemaster = "cdm.csv"\n', text)
    with pytest.raises(DftProfileError) as raised:
        load_dft_profile(site, "site")
    assert str(raised.value).startswith(str(site / "cdm.csv"))
    assert problem in str(raised.value)


def test_chargemaster_modifiers_are_matched_in_any_order_and_case(tmp_path: Path) -> None:
    site = _site(tmp_path, 'chargemaster = "cdm.csv"\n', CHARGEMASTER_HEADER + "j9045,jw 59,X1,\n")
    profile = load_dft_profile(site, "site")
    item = profile.chargemaster.exact("J9045", ("JW", "59"))
    assert item is not None and item.transaction_code == "X1"


def test_a_profile_name_that_is_not_a_file_name_is_refused() -> None:
    with pytest.raises(DftProfileError, match="not a file name"):
        load_dft_profile(SHIPPED, "../secrets")


def test_a_missing_profile_is_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DftProfileError, match="file is missing"):
        load_dft_profile(tmp_path, "nobody")
