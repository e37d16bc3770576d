"""The settings' names (`adapter/setting_names.py:SettingName`) against the settings, the docs
and the errors that name them.

One member per `Settings` field, in order, each with a default (a setting an operator must
set would make `charge-adapter serve` fail out of the box) and a row in a settings table
(the README's, or docs/charges-out.md for the DFT ones), so a new setting cannot be added
in one place only. The loader reads exactly these names, and an error about one setting
carries its member, not a string to be read back.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from adapter.config import Settings, load_settings, unknown_variables
from adapter.errors import SettingsError, StartupError
from adapter.setting_names import SettingName
from adapter.startup import listen_error

ROOT = Path(__file__).resolve().parents[1]
TABLES = (ROOT / "README.md", ROOT / "docs" / "charges-out.md")


def _documented() -> set[str]:
    """Every `ADAPTER_*` name in the first cell of a Markdown table row."""
    names: set[str] = set()
    for path in TABLES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("| `ADAPTER_"):
                first = line.split("|")[1]
                names.update(re.findall(r"`(ADAPTER_[A-Z0-9_]+)`", first))
    return names


def test_one_name_per_settings_field_in_the_same_order() -> None:
    assert [name.field for name in SettingName] == [f.name for f in fields(Settings)]
    assert all(name.value == f"ADAPTER_{name.field.upper()}" for name in SettingName)


def test_every_setting_has_a_default() -> None:
    missing = [
        f.name for f in fields(Settings) if f.default is MISSING and f.default_factory is MISSING
    ]
    assert missing == []


def test_every_setting_has_a_row_in_a_settings_table() -> None:
    assert sorted(set(SettingName) - _documented()) == []


def test_the_loader_reads_exactly_these_names() -> None:
    assert load_settings({SettingName.MLLP_PORT: "2999"}).mllp_port == 2999
    assert unknown_variables({name: "x" for name in SettingName}) == []


def test_a_value_that_does_not_convert_names_its_setting() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({SettingName.HTTP_PORT: "eighty"})
    assert refused.value.setting is SettingName.HTTP_PORT
    assert refused.value.message.startswith("ADAPTER_HTTP_PORT: 'eighty'")


def test_a_start_up_error_names_its_setting_as_a_member() -> None:
    error = listen_error(OSError(98, "in use"), "MLLP", "127.0.0.1", 2575, SettingName.MLLP_PORT)
    assert isinstance(error, StartupError)
    assert error.setting is SettingName.MLLP_PORT
    assert error.message.endswith("(ADAPTER_MLLP_PORT)")
