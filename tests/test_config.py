"""Settings: defaults, TOML file, ADAPTER_* variables, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.config import Settings, load_settings
from adapter.errors import SettingsError


def test_defaults_need_nothing_set() -> None:
    s = load_settings({})
    assert (s.mllp_port, s.http_port) == (2575, 8080)
    assert s.database_url == "sqlite:///./var/adapter.db"
    assert s.quiet_period_minutes == 240
    assert s.cutoff is None


def test_environment_overrides_toml_which_overrides_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "adapter.toml"
    toml.write_text('[adapter]\nmllp_port = 3000\nhttp_port = 9000\nend_of_day_cutoff = "20:00"\n')
    s = load_settings({"ADAPTER_CONFIG_FILE": str(toml), "ADAPTER_HTTP_PORT": "9100"})
    assert (s.mllp_port, s.http_port) == (3000, 9100)
    assert s.cutoff is not None and s.cutoff.hour == 20


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ADAPTER_MLLP_PORT": "abc"}, "ADAPTER_MLLP_PORT: 'abc' is not a valid int"),
        ({"ADAPTER_HTTP_PORT": "70000"}, "http_port=70000"),
        ({"ADAPTER_SITE_TZ": "Mars/Base"}, "site_tz=Mars/Base"),
        ({"ADAPTER_DEFAULT_SETTING": "clinic"}, "default_setting=clinic"),
        ({"ADAPTER_END_OF_DAY_CUTOFF": "25:99"}, "end_of_day_cutoff"),
        ({"ADAPTER_PUMP_G0498": "maybe"}, "ADAPTER_PUMP_G0498"),
        ({"ADAPTER_FHIR_BASE_URL": "ftp://x"}, "fhir_base_url"),
        ({"ADAPTER_MAPPINGS_DIR": "/nonexistent"}, "mappings_dir"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=None) as info:
        load_settings(env)
    assert fragment in str(info.value)


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "adapter.toml"
    toml.write_text("mllp_prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({}, str(toml))


def test_secrets_are_masked_for_display() -> None:
    s = Settings(
        database_url="postgresql://user:secret@db:5432/x",
        fhir_auth_header="Authorization: Bearer t",
    )
    shown = s.masked()
    assert "secret" not in str(shown) and "Bearer t" not in str(shown)
    assert shown["database_url"].endswith("@db:5432/x")
