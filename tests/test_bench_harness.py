"""The benchmark harness (bench/harness/) and the scripts over it.

Why here: bench/ is neither type-checked nor run by the suite (`make bench` takes half an
hour), so a module moved in adapter/ or a harness function renamed would only show when
someone next runs a benchmark. These tests import every script, and run the harness
pieces that can run in seconds against a real `charge-adapter serve`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from harness import load, proc, report  # noqa: E402
from harness import traffic as feed  # noqa: E402

SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_imports_against_this_checkout(script: str) -> None:
    if script == "fuzz_atheris" and importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is installed by hand (docs/fuzzing.md)")
    module = importlib.import_module(script)
    entry = "facts" if script == "machine" else "main"  # machine.py is also run_all's library
    assert callable(getattr(module, entry, None)), f"bench/{script}.py has no {entry}()"


def test_each_crash_test_visit_has_its_own_patient_visit_and_control_ids() -> None:
    traffic = feed.Traffic("T", seed=7)
    first, second = traffic.visit(1), traffic.visit(2)
    for visit in (first, second):
        kinds = [m.kind for m in visit.messages]
        assert kinds == ["ADT^A04", "RAS^O17", "ADT^A03"]
        for message in visit.messages:
            text = message.payload.decode()
            assert f"|{visit.visit_id}" in text  # PV1-19 in every message of the visit
            assert f"|{message.control_id}|" in text.split("\r")[0]  # MSH-10
    ids = {m.control_id for v in (first, second) for m in v.messages}
    assert len(ids) == 6
    assert first.visit_id != second.visit_id


def test_throughput_traffic_keeps_the_templates_clinical_content() -> None:
    """Only identifiers change: the RXA segments are those of the scenario file."""
    templates = feed.load_templates()
    rendered = feed.visit_messages(len(templates) + 3)  # template 3, second time round
    _, template = templates[3]
    ras = rendered[1].decode().split("\r")
    assert [s for s in ras if s.startswith("RXA")] == [
        s for s in template[1] if s.startswith("RXA")
    ]


def test_regimen_visit_closes_with_its_discharge_and_the_batch_feed_leaves_it_out() -> None:
    with_a03 = feed.regimen_messages(4, "Q")
    without = feed.regimen_messages(4, "Q", discharge=False)
    assert without == with_a03[:2]
    assert "ADT^A03" in with_a03[2].split("\r")[0]
    assert sum(s.startswith("RXA|") for s in with_a03[1].split("\r")) == len(feed.REGIMEN)


@pytest.mark.parametrize(
    ("values", "baselines", "expected"),
    [
        ([10.0, 30.0, 20.0], [100.0, 100.0, 100.0], 0.2),
        ([50.0, 50.0], [100.0, 0.0], 0.5),  # a round without a baseline is left out
        ([], [], None),
    ],
)
def test_ratio_is_the_median_of_rounds_each_against_its_own_baseline(
    values: list[float], baselines: list[float], expected: float | None
) -> None:
    assert report.median_ratio(values, baselines) == expected


@pytest.mark.parametrize(
    ("value", "check", "expected"),
    [
        ("0.6", "ge:0.5", "ok"),
        ("0.4", "ge:0.5", "MISS"),
        ("21", "le:20", "MISS"),
        ("yes", "eq:yes", "ok"),
        ("skipped", "ge:1", ""),
        ("n/a", "le:20", ""),
    ],
)
def test_verdict_against_a_target(value: str, check: str, expected: str) -> None:
    assert report.verdict(value, check) == expected


def test_parse_keys_reads_only_key_value_lines() -> None:
    text = "== table\nfigure  1\ningest_ratio_sqlite=0.08\nnot a key=1\ncrash_lost=0\n"
    assert report.parse_keys(text) == {"ingest_ratio_sqlite": "0.08", "crash_lost": "0"}


def test_start_adapter_serves_on_free_ports_and_reports_its_rss_and_cpu(tmp_path: Path) -> None:
    adapter = proc.start_adapter(tmp_path, "harness")
    try:
        assert adapter.readyz() == 200
        assert adapter.rss_kib() > 10_000  # tables loaded: tens of MiB
        assert adapter.cpu_seconds() > 0
        assert (tmp_path / "harness.db").exists()
    finally:
        status = adapter.stop(30)
    assert status == 0
    assert adapter.readyz(timeout=1) == 0


def test_a_port_someone_else_listens_on_counts_as_taken_and_is_free_once_closed() -> None:
    """What start_adapter asks after a failed start, to tell a lost port race (start again
    on new ports) from any other start-up failure (reported)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    assert proc._taken(port)
    listener.close()
    assert not proc._taken(port)


def test_tree_cpu_counts_the_cpu_of_a_child_process_too() -> None:
    """`ADAPTER_WORKERS=N` serves from child processes: the CPU per message must count them."""
    sleeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c',"
            " 'import time\\nend = time.process_time() + 0.6\\n"
            "while time.process_time() < end: pass\\ntime.sleep(30)']); p.wait()",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.tree_cpu_seconds(sleeper.pid) < 0.55:
            time.sleep(0.1)
        assert len(proc.descendants(sleeper.pid)) == 2
        assert proc.tree_cpu_seconds(sleeper.pid) >= 0.55
        assert proc.cpu_seconds(sleeper.pid) < 0.4  # the parent alone would miss it
    finally:
        for pid in proc.descendants(sleeper.pid)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sleeper.kill()
        sleeper.wait(10)


@pytest.mark.parametrize("script", ["baseline_server.py", "peer_server.py"])
def test_the_bare_server_and_the_python_hl7_peer_ack_every_message(script: str) -> None:
    with proc.baseline_server(script) as (_server, port):
        result = load.run_loadgen(port, connections=2, duration=0.5, warmup=0.1)
    assert result["acked"] > 10
    assert result["rejected"] == 0 and not result["error"]


def test_the_commit_stream_limit_commits_durably_one_row_at_a_time(tmp_path: Path) -> None:
    import ingest_cpu

    stream = ingest_cpu.commit_stream(tmp_path, 0.3)
    assert stream["commits_per_s"] > 10
    assert 0 < stream["p50_ms"] <= stream["p99_ms"]
