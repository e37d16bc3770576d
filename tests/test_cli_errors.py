"""The CLI's one error edge: any `AdapterError` a command raises is one line and its exit code.

`adapter/cli/main.py:refuse` translates the error tree by each error's `disposition`, never
by its text; these drive `main()` itself (no subprocess) with a bad setting and a bad mapping
table, and `refuse` with each kind of error, and check the documented codes (README: exit 2
for a setting or a file a setting names, 3 when the environment refused) and the single
stderr line. `serve` configures logging for the process, so its refusals are run as real
subprocesses in tests/test_operating.py and tests/test_startup_unwinds.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter.cli.main import main, refuse
from adapter.errors import EXIT_CONFIG, EXIT_STARTUP, SettingsError, StartupError
from adapter.mappings_loader import MappingError
from adapter.setting_names import SettingName

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings"
S01 = ROOT / "fixtures" / "scenarios" / "S01.hl7"


@pytest.fixture(name="env")
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ADAPTER_* variable of the test process leaks into the command."""
    import os

    for name in [n for n in os.environ if n.startswith("ADAPTER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ADAPTER_DATABASE_URL", f"sqlite:///{tmp_path}/adapter.db")
    return monkeypatch


def _broken_tables(tmp_path: Path) -> Path:
    tables = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, tables)
    with (tables / "routes.csv").open("a", encoding="utf-8") as f:
        f.write("XX\n")
    return tables


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("charge-adapter:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_bad_setting_exits_2_with_one_line_naming_it(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("ADAPTER_MLLP_PORT", "many")
    assert main(["settings"]) == EXIT_CONFIG
    line = _one_line(capsys.readouterr().err)
    assert "mllp_port" in line.lower()
    assert "'many'" in line


def test_a_bad_mapping_table_for_code_exits_2_naming_file_and_line(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = _broken_tables(tmp_path)
    assert main(["code", "--mappings", str(tables), str(S01)]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing coded without the tables
    line = _one_line(captured.err)
    assert "routes.csv line" in line


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SettingsError("ADAPTER_X: not a number"), EXIT_CONFIG),
        (MappingError("routes.csv line 2: expected 2 fields"), EXIT_CONFIG),
        (
            StartupError("MLLP port 2575 on 127.0.0.1 is in use", SettingName.MLLP_PORT),
            EXIT_STARTUP,
        ),
        (StartupError("mapping tables: x", SettingName.MAPPINGS_DIR, EXIT_CONFIG), EXIT_CONFIG),
    ],
    ids=["setting", "mapping", "startup", "startup-config"],
)
def test_refuse_prints_the_message_and_returns_the_disposition_exit_code(
    error: SettingsError | MappingError | StartupError,
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert error.disposition.exit_code == code
    assert refuse(error) == code
    assert capsys.readouterr().err == f"charge-adapter: {error.message}\n"
