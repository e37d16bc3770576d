"""Connection deadlines (`adapter.listeners.deadlines`): one sweeper timer per server.

The limits themselves (idle, frame deadline, handler timeout) are pinned on real sockets in
test_mllp.py and test_mllp_limits.py; here, how often the sweeper looks and that a wait it
cuts is told apart from anyone else's cancellation.
"""

from __future__ import annotations

import asyncio

import pytest

from adapter.listeners.deadlines import Deadline, Sweeper, tick_for


@pytest.mark.parametrize(
    ("limits", "tick"),
    [
        ((300.0, 30.0, 30.0), 1.0),  # the service's defaults: a cut within a second
        ((0.2, 60.0, None), 0.02),  # a test's short idle timeout: a tenth of it
        ((0.01,), 0.005),  # never busier than every 5 ms
        ((None, None), 1.0),
    ],
)
def test_the_sweeper_looks_ten_times_per_shortest_limit_within_5_ms_and_1_s(
    limits: tuple[float | None, ...], tick: float
) -> None:
    assert tick_for(*limits) == pytest.approx(tick)


async def _waiter(deadline_of: list[Deadline], outcome: list[str]) -> None:
    task = asyncio.current_task()
    assert task is not None
    deadline = Deadline(task)
    deadline_of.append(deadline)
    loop = asyncio.get_running_loop()
    deadline.arm(loop.time() + 0.05, "idle")
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        reason = deadline.expired()
        if not reason:
            outcome.append("cancelled")
            raise
        outcome.append(reason)
    await asyncio.sleep(0)  # the task goes on after its deadline was taken back
    outcome.append("went on")


async def test_a_wait_past_its_deadline_is_cut_with_its_reason_and_the_task_goes_on() -> None:
    deadlines: list[Deadline] = []
    outcome: list[str] = []
    sweeper = Sweeper(lambda: deadlines, tick=0.01)
    task = asyncio.create_task(_waiter(deadlines, outcome))
    await asyncio.sleep(0)
    sweeper.start()
    await asyncio.wait_for(task, 2)
    sweeper.stop()
    assert outcome == ["idle", "went on"]
    assert task.cancelling() == 0  # the cancellation was taken back


async def test_someone_elses_cancellation_is_not_taken_for_a_deadline() -> None:
    deadlines: list[Deadline] = []
    outcome: list[str] = []
    task = asyncio.create_task(_waiter(deadlines, outcome))
    await asyncio.sleep(0)
    task.cancel()  # a stop, before any deadline passed
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]


async def test_the_sweeper_stops_looking_when_there_is_nothing_to_watch() -> None:
    watched: list[Deadline] = []
    sweeper = Sweeper(lambda: watched, tick=0.01)
    sweeper.start()
    await asyncio.sleep(0.05)
    assert not sweeper.running  # no timer left behind on an idle server
