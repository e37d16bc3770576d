"""Exactly once per version, as the receiver sees it, across kill -9: the crash harness's
DFT property (bench/crash_test.py) in CI size, with real processes and sockets.

`charge-adapter serve` runs as a subprocess on SQLite and sends its DFT^P03s to
bench/dft_receiver.py (python-hl7's MLLP server) in another process, which ACKs slowly
so the kill lands while a DFT waits for its ACK. The adapter is killed with SIGKILL once
DFTs flow, restarted, and the receiver's log is then checked against the store: no
coded version missing, every duplicate a byte-identical same-MSH-10 resend, and each
encounter's charges at the receiver (CG minus CD) equal to its current Claim.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from crash_test import start_receiver, stop_receiver, wait_dft_drained  # noqa: E402
from dft_receiver import STORE_QUERIES, check, read_received, summary  # noqa: E402
from harness.load import LoadConfig, LoadGenerator, Recorder  # noqa: E402
from harness.proc import AdapterProcess  # noqa: E402
from harness.traffic import Traffic  # noqa: E402
from harness.verify import fetch, wait_settled  # noqa: E402

from tests.dft_support import POSTED_AT, mappings, only_encounter, profile  # noqa: E402


def _wait_for_lines(path: Path, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(read_received(path))
        if n >= at_least:
            return n
        time.sleep(0.05)
    return len(read_received(path))


def test_a_kill_9_while_dfts_flow_loses_no_version_and_resends_only_the_same_msh_10(
    tmp_path: Path,
) -> None:
    received = tmp_path / "received.jsonl"
    receiver, port = start_receiver(received, ae_share=0.1, seed=3, ack_delay=0.05)
    url = f"sqlite:///{tmp_path / 'adapter.db'}"
    adapter = AdapterProcess(
        url,
        tmp_path / "adapter.log",
        schema=None,
        extra_env={
            "ADAPTER_DFT_URL": f"mllp://127.0.0.1:{port}",
            "ADAPTER_DFT_ACK_TIMEOUT_SECONDS": "3",
            "ADAPTER_DELIVERY_BACKOFF_BASE_SECONDS": "0.1",
            "ADAPTER_DELIVERY_BACKOFF_MAX_SECONDS": "0.5",
            "ADAPTER_LOG_LEVEL": "warning",
        },
    )
    recorder = Recorder()
    load: LoadGenerator | None = None
    try:
        adapter.start()
        adapter.wait_ready()
        config = LoadConfig(port=lambda: adapter.mllp_port, connections=3, max_visits=60, seed=3)
        load = LoadGenerator(Traffic("DK", 3), config, recorder)
        load.start()
        assert _wait_for_lines(received, 8, 30) >= 8, adapter.log_tail()
        adapter.kill9()  # a DFT is most likely waiting for its (slow) ACK now
        adapter.start()
        adapter.wait_ready()
        assert load.finish(timeout=30)
        keys = [v.encounter_key for v in recorder.completed_visits]
        _, unsettled = wait_settled(url, "public", keys, 30)
        assert not unsettled
        _, unsent = wait_dft_drained(url, "public", 30)
        assert unsent == 0
    finally:
        if load is not None:
            load.abort.set()
        adapter.kill9()
        stop_receiver(receiver)
    verdict = check(fetch(url, "public", STORE_QUERIES), read_received(received))
    assert verdict.problems == []
    assert verdict.clean
    # Enough traffic got through to mean something (39-60 of 60 visits, by how loaded the machine
    # is); the exact count is not the property, the equalities around it are.
    assert verdict.queued >= 20
    assert verdict.distinct == verdict.queued
    assert verdict.resends_same_msh10 >= verdict.ae_answers > 0


# --- the check can fail ------------------------------------------------------------------


def _one_dft() -> tuple[dict[str, list[dict[str, object]]], dict[str, object], str]:
    from adapter.hl7.dft import Dft, DftVisit, build_dft

    encounter, coded = only_encounter("S17")
    built = build_dft(
        coded,
        DftVisit.of(encounter),
        profile("generic-2.5.1"),
        version=1,
        posted_at=POSTED_AT,
        labels=mappings().code_labels,
        released=True,
    )
    assert isinstance(built, Dft)
    claim = {
        "item": [
            {
                "productOrService": {"coding": [{"code": c.procedure_code}]},
                "modifier": [{"coding": [{"code": m}]} for m in c.modifiers],
                "servicedDate": c.service_date.isoformat(),
                "quantity": {"value": c.quantity},
            }
            for c in built.debits
        ]
    }
    key = coded.encounter_key
    store: dict[str, list[dict[str, object]]] = {
        "dft_outbox": [
            {
                "destination": "dft:generic-2.5.1",
                "resource_id": "c1",
                "version": 1,
                "payload": built.text,
                "delivered_at": "x",
                "rejected_at": None,
            }
        ],
        "claims": [
            {"resource_id": "c1", "version": 1, "encounter_key": key, "body": json.dumps(claim)}
        ],
        "postings": [{"destination": "dft:generic-2.5.1", "encounter_key": key, "version": 1}],
        "states": [{"key": key, "state": "coded"}],
    }
    record = {**summary(built.text), "ack": "AA", "digest": "d1"}
    return store, record, built.text


def test_the_receiver_check_passes_one_dft_received_once_and_its_identical_resend() -> None:
    store, record, _ = _one_dft()
    verdict = check(store, [record, dict(record)])
    assert verdict.clean, verdict.problems
    assert verdict.resends_same_msh10 == 1


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ("not received", "missing"),
        ("resent with other content", "resends_differing"),
        ("charged under another MSH-10", "double_charges"),
        ("a line missing", "net_mismatch"),
        ("claim never considered", "not_considered"),
    ],
)
def test_the_receiver_check_finds_each_kind_of_failure(change: str, failure: str) -> None:
    store, record, _ = _one_dft()
    records = [record]
    if change == "not received":
        records = []
        store["claims"] = []
    elif change == "resent with other content":
        records = [record, {**record, "digest": "d2"}]
    elif change == "charged under another MSH-10":
        other = {**record, "msh10": "DOTHER"}
        payload = str(store["dft_outbox"][0]["payload"]).replace(str(record["msh10"]), "DOTHER")
        store["dft_outbox"].append({**store["dft_outbox"][0], "payload": payload})
        records = [record, other]
        store["claims"] = []
    elif change == "a line missing":
        records = [{**record, "ft1": record["ft1"][:-1]}]  # type: ignore[index]
    elif change == "claim never considered":
        store["postings"] = []
    verdict = check(store, records)
    assert not verdict.clean
    assert getattr(verdict, failure) >= 1
