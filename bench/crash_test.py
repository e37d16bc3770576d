"""Crash test: kill -9 the adapter under load, five times, and prove nothing acknowledged is lost
and nothing is charged twice.

`charge-adapter serve` runs as a subprocess on its own store (a fresh SQLite file, or with
`--store postgres` a fresh PostgreSQL schema, dropped afterwards). Several MLLP connections
send realistic visits (ADT^A04, RAS^O17, ADT^A03 from fixtures/scenarios, made unique) and
record every message answered AA (or CA). Meanwhile the adapter is killed with SIGKILL at
seeded random moments and restarted; the senders reconnect and resend whatever was not
acknowledged, as an interface engine does. Then the adapter codes everything (A03 closes
each visit) and the store is checked directly (see bench/harness/verify.py).

Charges out: the adapter also sends a DFT^P03 per coded version to a real MLLP receiver
(bench/dft_receiver.py, python-hl7's server, its own process, never killed), which ACKs
AA, or AE for a share of first deliveries (`--dft-ae-share`). After the kills the outbox
drains and the receiver's log is checked against the store: no coded version missing,
every duplicate a byte-identical resend under the same MSH-10, and per encounter the
charges the receiver holds (CG minus CD) equal to the current Claim's lines.

Prints key=value lines, among them crash_lost, crash_duplicates, crash_kills,
crash_messages_acked, crash_dft_versions_missing and crash_dft_duplicates_same_msh10 /
crash_dft_duplicates_other; exits 1 when anything acknowledged was lost, anything is duplicated,
or the final state is otherwise wrong; 2 when the harness itself failed.

Usage: python bench/crash_test.py [--store sqlite|postgres] [--seed N] [--duration S] ...
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from dft_receiver import STORE_QUERIES, check, print_dft_verdict, read_received
from harness.load import LoadConfig, LoadGenerator, Recorder
from harness.pg import PG_URL as DEFAULT_PG_URL
from harness.pg import drop_test_schema
from harness.proc import PYTHON, AdapterProcess, interrupt_on_signals
from harness.traffic import Traffic
from harness.verify import (
    batch_expected,
    fetch,
    inject_faults,
    log_counts,
    print_verdict,
    read_store,
    verify,
    wait_settled,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (a fresh schema)")
    p.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--connections", type=int, default=6)
    p.add_argument(
        "--rate", type=float, default=200, help="messages/s over all connections (0: unlimited)"
    )
    p.add_argument("--max-visits", type=int, default=6000, help="visit budget (3 messages each)")
    p.add_argument("--settle-timeout", type=float, default=120.0)
    p.add_argument(
        "--lease-seconds",
        type=int,
        default=10,
        help="ADAPTER_LEASE_SECONDS (the service default, 120, delays re-coding the encounters\n"
        "a killed process had leased by up to that long: its successor has a new replica id)",
    )
    p.add_argument(
        "--dft-ae-share",
        type=float,
        default=0.05,
        help="share of first DFT deliveries the receiver answers AE (then resent)",
    )
    p.add_argument("--dft-timeout", type=float, default=120.0, help="seconds for the DFTs to drain")
    p.add_argument(
        "--workers", type=int, default=1, help="ADAPTER_WORKERS (kill -9 hits the supervisor)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir / schema for autopsy")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="test the checker: delete one acked message and duplicate one ChargeItem in the\n"
        "store before checking; passes only if it reports lost=1 and duplicates=1",
    )
    return p.parse_args()


def kill_schedule(rnd: random.Random, kills: int, duration: float) -> list[tuple[float, float]]:
    """(seconds after the load starts, seconds the adapter stays down) per kill."""
    times = sorted(rnd.uniform(3.0, max(4.0, duration - 5.0)) for _ in range(kills))
    return [(round(t, 2), round(rnd.uniform(0.0, 1.5), 2)) for t in times]


def main() -> int:
    ns = parse_args()
    interrupt_on_signals()
    seed = ns.seed if ns.seed is not None else int(time.time()) % 1_000_000
    rnd = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="crash-test-"))
    schema = f"crash_{seed}_{int(time.time()) % 100000}"
    url = f"sqlite:///{workdir / 'adapter.db'}" if ns.store == "sqlite" else ns.pg_url
    received_path = workdir / "dft_received.jsonl"
    receiver, receiver_port = start_receiver(received_path, ns.dft_ae_share, seed)
    adapter = AdapterProcess(
        url,
        workdir / "adapter.log",
        schema=schema,
        extra_env={
            "ADAPTER_LEASE_SECONDS": str(ns.lease_seconds),
            "ADAPTER_DFT_URL": f"mllp://127.0.0.1:{receiver_port}",
            "ADAPTER_DFT_ACK_TIMEOUT_SECONDS": "5",
            "ADAPTER_DELIVERY_BACKOFF_BASE_SECONDS": "0.2",
            "ADAPTER_DELIVERY_BACKOFF_MAX_SECONDS": "2",
            "ADAPTER_WORKERS": str(ns.workers),
        },
    )
    schedule = kill_schedule(rnd, ns.kills, ns.duration)
    print(f"crash_seed={seed}", flush=True)
    print(f"crash_store={ns.store}", flush=True)
    print(f"crash_workers={ns.workers}", flush=True)
    print(f"crash_workdir={workdir}", flush=True)
    if ns.store == "postgres":
        print(f"crash_schema={schema}", flush=True)
    print("crash_schedule=" + " ".join(f"{t}s(down {d}s)" for t, d in schedule), flush=True)
    recorder = Recorder()
    load: LoadGenerator | None = None
    ok = False
    try:
        adapter.start()
        adapter.wait_ready()
        traffic = Traffic("CR", seed)
        config = LoadConfig(
            port=lambda: adapter.mllp_port,
            connections=ns.connections,
            max_visits=ns.max_visits,
            seed=seed,
            rate=ns.rate,
        )
        load = LoadGenerator(traffic, config, recorder)
        started = time.monotonic()
        load.start()
        kills = 0
        restart_seconds: list[float] = []
        for i, (at, down) in enumerate(schedule, 1):
            time.sleep(max(0.0, started + at - time.monotonic()))
            if not adapter.running():
                raise RuntimeError("the adapter died on its own")
            acked = recorder.accepted_count()
            adapter.kill9()
            kills += 1
            killed_at = time.monotonic() - started
            time.sleep(down)
            adapter.start()
            ready = adapter.wait_ready()
            restart_seconds.append(ready)
            print(
                f"  kill {i}: SIGKILL at {killed_at:.2f}s (acked so far {acked}),"
                f" down {down}s, ready again after {ready:.2f}s",
                flush=True,
            )
        time.sleep(max(0.0, started + ns.duration - time.monotonic()))
        finished = load.finish(timeout=60.0)
        load_seconds = time.monotonic() - started
        visits = sorted(recorder.completed_visits, key=lambda v: v.index)
        settle_s, pending = wait_settled(
            url, schema, (v.encounter_key for v in visits), ns.settle_timeout
        )
        dft_drain_s, dft_pending = wait_dft_drained(url, schema, ns.dft_timeout)
        shutdown_s = adapter.terminate()
        stop_receiver(receiver)
        dft = check(fetch(url, schema, STORE_QUERIES), read_received(received_path))
        expected = batch_expected(visits, workdir)
        if ns.self_test:
            inject_faults(url, schema, recorder, visits)
        store = read_store(url, schema)
        logged = log_counts(adapter.log_path)
        verdict = verify(store, recorder, visits, expected)
        answers = {code: n for code, n in sorted(_codes(recorder).items())}
        print(f"crash_kills={kills}")
        print(f"crash_messages_acked={verdict.acked}")
        print(f"crash_lost={verdict.lost}")
        print(f"crash_duplicates={verdict.duplicates}")
        print(f"crash_visits_completed={len(visits)}")
        print(f"crash_visits_unfinished={len(recorder.unfinished_visits)}")
        print(f"crash_messages_sent={recorder.sent} crash_messages_resent={recorder.resent}")
        print("crash_answers=" + ",".join(f"{c}:{n}" for c, n in answers.items()))
        print("crash_sender_errors=" + ",".join(f"{k}:{n}" for k, n in recorder.errors.items()))
        print(f"crash_load_seconds={load_seconds:.1f}")
        print(f"crash_msgs_per_s={verdict.acked / max(load_seconds, 0.001):.0f}")
        print(
            "crash_commit_without_ack="
            f"{logged['stored-duplicate']} (resends the store already had: killed between"
            " commit and ACK)"
        )
        print("crash_adapter_log=" + ",".join(f"{k}:{n}" for k, n in sorted(logged.items())))
        print(f"crash_restart_ready_s_max={max(restart_seconds, default=0):.2f}")
        print(f"crash_settle_s={settle_s:.1f} crash_unsettled={len(pending)}")
        print(f"crash_shutdown_s={'hang' if shutdown_s is None else f'{shutdown_s:.2f}'}")
        print_verdict("crash", verdict)
        print(f"crash_dft_drain_s={dft_drain_s:.1f} crash_dft_unsent={dft_pending}")
        print_dft_verdict("crash", dft)
        ok = (
            verdict.clean
            and dft.clean
            and dft_pending == 0
            and finished
            and not recorder.unfinished_visits
            and not recorder.rejected
            and shutdown_s is not None
        )
        if ns.self_test:
            ok = verdict.lost == 1 and verdict.duplicates == 1
            print(f"crash_self_test={'PASS' if ok else 'FAIL'}", flush=True)
            return 0 if ok else 1
        print(f"crash_result={'PASS' if ok else 'FAIL'}", flush=True)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("crash_result=INTERRUPTED", flush=True)
        return 130
    except Exception:
        traceback.print_exc()
        print("crash_result=ERROR", flush=True)
        return 2
    finally:
        if load is not None:
            load.abort.set()
        adapter.kill9()
        stop_receiver(receiver)
        if not ns.keep:
            if ns.store == "postgres":
                drop_test_schema(ns.pg_url, schema)
            if ok:
                shutil.rmtree(workdir, ignore_errors=True)


def start_receiver(
    out: Path, ae_share: float, seed: int, ack_delay: float = 0.0
) -> tuple[subprocess.Popen[str], int]:
    """bench/dft_receiver.py in its own process; it and its port."""
    script = Path(__file__).with_name("dft_receiver.py")
    args = [PYTHON, str(script), f"--out={out}", f"--ae-share={ae_share}", f"--seed={seed}"]
    args.append(f"--ack-delay={ack_delay}")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port="):
        proc.kill()
        raise RuntimeError("the DFT receiver did not start")
    return proc, int(line.strip().partition("=")[2])


def stop_receiver(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


_DFT_PENDING = {
    "pending": "SELECT count(*) AS n FROM outbox WHERE destination LIKE 'dft:%'"
    " AND delivered_at IS NULL AND rejected_at IS NULL",
    "ahead": "SELECT count(*) AS n FROM resource_versions rv LEFT JOIN dft_postings p"
    " ON p.encounter_key = rv.encounter_key WHERE rv.resource_type = 'Claim' AND rv.is_current"
    " AND rv.encounter_key <> '' AND rv.version > COALESCE(p.version, 0)",
}


def wait_dft_drained(url: str, schema: str, timeout: float) -> tuple[float, int]:
    """Poll until every DFT queued is delivered and no current Claim waits to be queued;
    (seconds, DFTs still to send or queue)."""
    started = time.monotonic()
    left = -1
    while time.monotonic() - started < timeout:
        rows = fetch(url, schema, _DFT_PENDING)
        left = int(rows["pending"][0]["n"]) + int(rows["ahead"][0]["n"])
        if left == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started, left


def _codes(recorder: Recorder) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _t, _cid, code in recorder.answers:
        counts[code] = counts.get(code, 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
