"""`charge-adapter code` as a user runs it: a real process, real files, exit codes, stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = [ROOT / "fixtures/scenarios" / n for n in ("S09.hl7", "S11.hl7", "S20.json", "S25.hl7")]
SAMPLES = sorted((ROOT / "fixtures/samples").rglob("*.hl7")) + sorted(
    (ROOT / "fixtures/samples").rglob("*.json")
)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """A real process through the console entry point (pays simple-icd-10-cm's 1.5 s import)."""
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "code", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_demo_feed_prints_a_bundle_of_claims_and_ends_stderr_with_the_summary() -> None:
    done = run(*DEMO)
    assert done.returncode == 0, done.stderr
    bundle = json.loads(done.stdout)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types.count("Claim") == 4 and types.count("Task") == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("summary: messages=")
    assert "held=2" in last and "errors=0" in last


def test_same_input_gives_byte_identical_output_d24() -> None:
    assert run(*DEMO).stdout == run(*DEMO).stdout


def test_unreadable_message_exits_2_names_the_segment_and_keeps_the_others() -> None:
    done = run(ROOT / "fixtures/hl7v2/bad_messages.hl7", DEMO[0])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "bad_messages.hl7 message 2" in done.stderr and "RXA-3" in done.stderr
    assert json.loads(done.stdout)["entry"], "the readable messages must still be coded"


def run_in_process(
    capsys: pytest.CaptureFixture[str], *args: str | Path
) -> subprocess.CompletedProcess[str]:
    """The same `main()` in this process: fast enough to run over every sample file."""
    code = main(["code", *map(str, args)])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_bad_fhir_resource_exits_2_with_the_json_path(capsys: pytest.CaptureFixture[str]) -> None:
    done = run_in_process(capsys, ROOT / "fixtures/fhir/bad_resources.json")
    assert done.returncode == 2
    assert "Bundle.entry[" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_and_unknown_format_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    done = run_in_process(capsys, tmp_path / "missing.hl7", junk)
    assert done.returncode == 2
    assert "missing.hl7: cannot read file" in done.stderr
    assert "notes.txt: not an HL7 v2" in done.stderr


def test_duplicate_message_control_ids_are_processed_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    once = run_in_process(capsys, DEMO[0])
    twice = run_in_process(capsys, DEMO[0], DEMO[0])
    assert once.stdout == twice.stdout
    assert "duplicates=3" in twice.stderr


def test_bad_mapping_table_fails_at_start_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    shutil.copytree(ROOT / "mappings", tmp_path / "m")
    routes = tmp_path / "m/routes.csv"
    routes.write_text(routes.read_text() + "XX,sideways\n")
    done = run_in_process(capsys, "--mappings", tmp_path / "m", DEMO[0])
    assert done.returncode == 2
    assert "routes.csv line" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_real_sample_is_read_without_a_crash(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Coded, held, skipped or reported: never a traceback (issue: samples from other projects)."""
    done = run_in_process(capsys, sample)
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("summary:")


def test_make_demo_prints_only_the_bundle_on_stdout_and_says_why_d27_warns() -> None:
    """`make demo > claims.json` must hold JSON only: make's own lines go to stderr or nowhere.

    The demo days are in January 2026 while the newest HCPCS and OPPS tables end 2025-12-31:
    the D27 warnings are expected, and the demo says so before them. Run as a person types it:
    without the MAKELEVEL/MAKEFLAGS of a `make test` around this test (make 4.3 prints its
    "Entering directory" line for a nested make before it reads the Makefile).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "demo"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bundle = json.loads(done.stdout)
    assert bundle["resourceType"] == "Bundle"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert all("D27" in line for line in warnings)
    if warnings:
        explained = done.stderr.index("2025-12-31 (newest available)")
        assert explained < done.stderr.index(warnings[0])
