"""The coder codes encounters one by one and saves them in groups (one store transaction
per group): what a group changes about failures and staleness, on SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from adapter.store.base import CodingResult, EncounterState, SaveResult
from adapter.web.app import start_state, stop_state
from adapter.web.state import AppState
from tests.mllp_client import send_messages
from tests.service_fixtures import Clock
from tests.test_service_e2e import SCENARIOS, hl7_messages, quiet_settings

NAMES = sorted(p.name for p in SCENARIOS.glob("S*.hl7"))[:12]


async def _started(tmp_path: Path) -> AppState:
    state = await start_state(quiet_settings(tmp_path), Clock())
    assert state.mllp is not None
    for name in NAMES:
        await send_messages("127.0.0.1", state.mllp.port, hl7_messages(name))
    return state


async def test_every_ready_encounter_is_coded_once_in_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await _started(tmp_path)
    try:
        groups: list[int] = []
        real = state.store.save_codings

        async def counting(
            results: Sequence[CodingResult], now: datetime, destination: str | None
        ) -> list[SaveResult]:
            groups.append(len(results))
            return await real(results, now, destination)

        monkeypatch.setattr(state.store, "save_codings", counting)

        assert await state.coder.run_once() == len(NAMES)
        assert groups == [10, 2]  # save_batch 10
        assert await state.coder.run_once() == 0
    finally:
        await stop_state(state)


async def test_a_result_the_store_refuses_is_given_back_and_its_group_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await _started(tmp_path)
    try:
        real = state.store.save_codings
        refused: list[str] = []

        async def refusing(
            results: Sequence[CodingResult], now: datetime, destination: str | None
        ) -> list[SaveResult]:
            refused[:] = refused or [results[1].lease.encounter.key]
            if any(r.lease.encounter.key == refused[0] for r in results):
                raise RuntimeError("refused")
            return await real(results, now, destination)

        monkeypatch.setattr(state.store, "save_codings", refusing)

        assert await state.coder.run_once() == len(NAMES) - 1  # not retried in the same pass
        row = await state.store.get_encounter(refused[0])
        assert row is not None and row.state is EncounterState.OPEN
        monkeypatch.undo()
        assert await state.coder.run_once() == 1  # its lease was given back
    finally:
        await stop_state(state)
