"""`ADAPTER_EVENT_LOOP`: the same service on asyncio's loop (the default) or on uvloop's.

uvloop is an optional extra (`charge-adapter[uvloop]`); the bench measures what it saves
(docs/performance.md). What an operator relies on: asked for, it is the loop that runs
(the start-up line says which), messages are kept and acknowledged as on asyncio, SIGTERM
stops the service cleanly, and a wrong or missing loop stops the start naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from adapter.config import _event_loop_problems
from tests.test_operating import EXIT_CONFIG, adapter, service_env
from tests.test_workers import healthy, message, send_each, serve_process, wait_for


def _started_lines(log: Path) -> list[dict[str, object]]:
    """The `service.started` lines written so far (the last line may be half written)."""
    found = []
    for line in log.read_text().splitlines():
        if '"service.started"' in line:
            with contextlib.suppress(json.JSONDecodeError):
                found.append(json.loads(line))
    return found


@pytest.mark.parametrize(("setting", "loop", "workers"), [
    ("uvloop", "uvloop", "1"), ("uvloop", "uvloop", "2"), ("asyncio", "asyncio", "1"),
])  # fmt: skip
def test_the_service_runs_on_the_loop_it_is_told_and_keeps_every_message(
    tmp_path: Path, setting: str, loop: str, workers: str
) -> None:
    env = service_env(
        tmp_path, ADAPTER_EVENT_LOOP=setting, ADAPTER_WORKERS=workers, ADAPTER_LOG_LEVEL="info"
    )
    log = tmp_path / "serve.log"
    proc = serve_process(env, log)
    try:
        count = int(workers)
        wait_for(lambda: healthy(env) and len(_started_lines(log)) == count, what="started")
        payloads = [message(f"L{i:02d}", f"ML{i:02d}") for i in range(12)]
        acks = asyncio.run(send_each(int(env["ADAPTER_MLLP_PORT"]), payloads))
        assert all(b"MSA|AA|" in ack for ack in acks)
        assert {line["event_loop"] for line in _started_lines(log)} == {loop}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    rows = sqlite3.connect(tmp_path / "adapter.db").execute(
        "SELECT count(*) FROM messages WHERE status = 'accepted'"
    )
    assert rows.fetchone()[0] == len(payloads)


@pytest.mark.parametrize("value", ["trio", "UVLOOP", ""])
def test_an_unknown_event_loop_is_a_setting_error_naming_it(tmp_path: Path, value: str) -> None:
    done = adapter("settings", env=service_env(tmp_path, ADAPTER_EVENT_LOOP=value), timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert "event_loop" in done.stderr


def test_uvloop_asked_for_but_not_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    [problem] = _event_loop_problems("uvloop")
    assert "charge-adapter[uvloop]" in problem
    assert _event_loop_problems("asyncio") == []
