"""PostgreSQL restart test: the adapter on PostgreSQL under steady MLLP load while the database
is stopped, kept down a few seconds and started again.

What it checks: while PostgreSQL is down the adapter answers AE (it never holds a message
unanswered for long, and never AAs a message it could not store); once PostgreSQL is back the
adapter recovers by itself (same process, no restart) and the messages that got AE, resent
by the load generator, are stored; nothing acknowledged AA/CA is lost or duplicated and every
visit is coded exactly once (the same checks as bench/crash_test.py, bench/harness/verify.py).

Prints key=value lines, among them pg_restart_lost, pg_restart_ae (AE/AR/CE/CR answers from
the stop until the first AA after the start) and pg_restart_recovery_s (seconds from the
start command returning, i.e. PostgreSQL accepting connections, to the first AA); exits 1 when
anything acknowledged was lost, something is duplicated, or the adapter did not recover
within --recover-timeout (60 s); 2 when the harness itself failed.

PostgreSQL is ALWAYS started again at the end (try/finally), also on failure or Ctrl-C.
Needs root (pg_ctlcluster) and the local cluster of /etc/postgresql.

Usage: python bench/pg_restart_test.py [--seed N] [--down 5] [--mode fast|immediate] ...
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from harness.load import LoadConfig, LoadGenerator, Recorder, probe
from harness.pg import PG_URL as DEFAULT_PG_URL
from harness.pg import FreezableProxy, drop_test_schema
from harness.proc import AdapterProcess, interrupt_on_signals
from harness.traffic import Traffic
from harness.verify import (
    batch_expected,
    log_counts,
    print_verdict,
    read_store,
    verify,
    wait_settled,
)

# MSH-15/16 of the probes sent while PostgreSQL is down ("original": neither field).
PROBE_MODES = ("original", "AL/NE", "AL/AL", "NE/AL", "ER/NE", "SU/NE", "NE/NE")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--cluster", default=None, help="VERSION/NAME; default: the one cluster here")
    p.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of load before the stop")
    p.add_argument("--down", type=float, default=5.0, help="seconds PostgreSQL stays stopped")
    p.add_argument("--after", type=float, default=20.0, help="seconds of load after the start")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--mode", choices=("fast", "immediate", "smart"), default="fast")
    p.add_argument(
        "--scenario",
        choices=("restart", "freeze"),
        default="restart",
        help="restart: pg_ctlcluster stop/start (default). freeze: the adapter reaches\n"
        "PostgreSQL through a proxy that stops relaying for --down seconds without closing\n"
        "anything (a network partition / stalled host); PostgreSQL itself is not touched",
    )
    p.add_argument("--connections", type=int, default=6)
    p.add_argument(
        "--rate", type=float, default=150, help="messages/s over all connections (0: unlimited)"
    )
    p.add_argument("--max-visits", type=int, default=20000)
    p.add_argument("--recover-timeout", type=float, default=60.0)
    p.add_argument("--settle-timeout", type=float, default=180.0)
    p.add_argument("--keep", action="store_true", help="keep the work dir and the schema")
    return p.parse_args()


class Cluster:
    """pg_ctlcluster for one local cluster."""

    def __init__(self, spec: str | None) -> None:
        if spec is None:
            versions = sorted(os.listdir("/etc/postgresql"))
            if len(versions) != 1:
                raise SystemExit(f"several clusters {versions}: pass --cluster VERSION/NAME")
            spec = f"{versions[0]}/main"
        self.version, _, self.name = spec.partition("/")

    def ctl(self, action: str, *extra: str, timeout: float = 120.0) -> int:
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", *extra, self.version, self.name]
        cmd.append(action)
        run = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if run.returncode != 0 and action != "status":
            sys.stderr.write(run.stderr.decode(errors="replace"))
        return run.returncode

    def running(self) -> bool:
        return self.ctl("status") == 0

    def ensure_running(self) -> bool:
        for _ in range(5):
            if self.running():
                return True
            self.ctl("start")
            time.sleep(1)
        return self.running()


def main() -> int:
    ns = parse_args()
    interrupt_on_signals()
    seed = ns.seed if ns.seed is not None else int(time.time()) % 1_000_000
    random.seed(seed)
    cluster = Cluster(ns.cluster)
    if not cluster.running():
        print("pg_restart_result=ERROR (PostgreSQL is not running to begin with)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="pg-restart-test-"))
    schema = f"pgrestart_{seed}_{int(time.time()) % 100000}"
    proxy: FreezableProxy | None = None
    adapter_url = ns.pg_url
    if ns.scenario == "freeze":
        pg_port = urlsplit(ns.pg_url).port or 5432
        proxy = FreezableProxy(pg_port)
        adapter_url = ns.pg_url.replace(f":{pg_port}/", f":{proxy.port}/", 1)
        if adapter_url == ns.pg_url:
            raise SystemExit("--scenario freeze needs a URL of the form postgresql://u@h:PORT/db")
    adapter = AdapterProcess(adapter_url, workdir / "adapter.log", schema=schema)
    print(f"pg_restart_seed={seed}", flush=True)
    print(f"pg_restart_workdir={workdir}", flush=True)
    print(f"pg_restart_schema={schema}", flush=True)
    print(
        f"pg_restart_cluster={cluster.version}/{cluster.name} scenario={ns.scenario}"
        + (f" mode={ns.mode}" if ns.scenario == "restart" else ""),
        flush=True,
    )
    recorder = Recorder()
    load: LoadGenerator | None = None
    ok = False
    try:
        adapter.start()
        adapter.wait_ready()
        config = LoadConfig(
            port=lambda: adapter.mllp_port,
            connections=ns.connections,
            max_visits=ns.max_visits,
            seed=seed,
            rate=ns.rate,
        )
        traffic = Traffic("PR", seed)
        load = LoadGenerator(traffic, config, recorder)
        started = time.monotonic()
        load.start()
        outage_ae = 0
        recoveries: list[float | None] = []  # first AA after the start command was issued
        recoveries_ready: list[float] = []  # ... after it returned (PostgreSQL ready)
        by_mode: dict[str, int] = {}
        aa_while_down = 0
        held_max = 0.0
        answer_kinds: dict[str, int] = {}
        readyz_down: list[int] = []
        probes: dict[str, list[str]] = {}
        for n in range(1, ns.restarts + 1):
            time.sleep(ns.warmup)
            pid_before = adapter.proc.pid if adapter.proc else None
            t_stop0 = time.monotonic()
            if proxy is not None:
                proxy.frozen.set()
                stop_rc = 0
            else:
                stop_rc = cluster.ctl("stop", "-m", ns.mode)
            t_stop1 = time.monotonic()
            half = t_stop1 + ns.down / 2
            time.sleep(max(0.0, half - time.monotonic()))
            readyz_down.append(adapter.readyz(timeout=5.0))
            if n == 1:  # what each acknowledgement mode gets while the database is down
                messages = [
                    traffic.visit(ns.max_visits + 1 + k, force_mode=mode).messages[0]
                    for k, mode in enumerate(PROBE_MODES)
                ]
                recorder.probes.extend(messages)
                payloads = [m.payload for m in messages]
                with ThreadPoolExecutor(len(payloads)) as pool:
                    answers = pool.map(lambda p: probe(adapter.mllp_port, p, 1.0), payloads)
                    probes.update(zip(PROBE_MODES, answers, strict=True))
            time.sleep(max(0.0, t_stop1 + ns.down - time.monotonic()))
            t_start0 = time.monotonic()
            if proxy is not None:
                proxy.frozen.clear()
                start_rc = 0
            else:
                start_rc = cluster.ctl("start")
            t_start1 = time.monotonic()
            deadline = t_start1 + ns.recover_timeout
            first_aa = None
            while time.monotonic() < deadline:
                first_aa = recorder.first_accept_after(t_start0)
                if first_aa is not None:
                    break
                time.sleep(0.05)
            recovery = None if first_aa is None else first_aa - t_start0
            recoveries.append(recovery)
            if first_aa is not None:
                recoveries_ready.append(max(0.0, first_aa - t_start1))
            window_end = first_aa if first_aa is not None else time.monotonic()
            codes = recorder.codes_between(t_stop0, window_end)
            for code, count in codes.items():
                answer_kinds[code] = answer_kinds.get(code, 0) + count
            outage_ae += sum(codes[c] for c in ("AE", "AR", "CE", "CR"))
            for key, count in _codes_by_mode(recorder, traffic, t_stop0, window_end).items():
                by_mode[key] = by_mode.get(key, 0) + count
            down_codes = recorder.codes_between(t_stop1, t_start0)
            aa_while_down += down_codes["AA"] + down_codes["CA"]
            held_max = max(held_max, recorder.max_latency_between(t_stop0, window_end + 20))
            errors = recorder.errors_between(t_stop0, window_end)
            same_process = adapter.proc is not None and adapter.proc.pid == pid_before
            print(
                f"  restart {n}: stop rc={stop_rc} at {t_stop0 - started:.2f}s took"
                f" {t_stop1 - t_stop0:.2f}s; down {t_start0 - t_stop1:.2f}s; start rc={start_rc}"
                f" took {t_start1 - t_start0:.2f}s; first AA"
                f" {'never' if recovery is None else f'{recovery:.2f}s after the start command'};"
                f" answers in the outage {dict(sorted(codes.items()))};"
                f" sender errors {dict(errors)}; /readyz while down {readyz_down[-1]};"
                f" adapter process unchanged={same_process and adapter.running()}",
                flush=True,
            )
            if recovery is None:
                break
        if all(r is not None for r in recoveries):
            time.sleep(ns.after)
        finished = load.finish(timeout=60.0)
        load_seconds = time.monotonic() - started
        visits = sorted(recorder.completed_visits, key=lambda v: v.index)
        settle_s, pending = wait_settled(
            ns.pg_url, schema, (v.encounter_key for v in visits), ns.settle_timeout
        )
        readyz_after = adapter.readyz()
        shutdown_s = adapter.terminate()
        expected = batch_expected(visits, workdir)
        verdict = verify(read_store(ns.pg_url, schema), recorder, visits, expected)
        logged = log_counts(adapter.log_path)
        known = [r for r in recoveries if r is not None]
        worst = max(known, default=0.0) if len(known) == len(recoveries) else None
        print(f"pg_restart_lost={verdict.lost}")
        print(f"pg_restart_ae={outage_ae}")
        print(f"pg_restart_recovery_s={'never' if worst is None else f'{worst:.2f}'}")
        print(f"pg_restart_duplicates={verdict.duplicates}")
        print(f"pg_restart_messages_acked={verdict.acked}")
        print(
            "pg_restart_recovery_after_pg_ready_s=" + ",".join(f"{r:.2f}" for r in recoveries_ready)
        )
        print(f"pg_restart_aa_while_down={aa_while_down}")
        print(
            "pg_restart_outage_answers_by_mode="
            + ",".join(f"{k}:{n}" for k, n in sorted(by_mode.items()))
        )
        print(f"pg_restart_max_ack_latency_s={held_max:.2f}")
        print(
            "pg_restart_outage_answers="
            + ",".join(f"{c}:{n}" for c, n in sorted(answer_kinds.items()))
        )
        print(
            "pg_restart_probe_while_down="
            + " ".join(f"{mode}:{'+'.join(codes) or 'none'}" for mode, codes in probes.items())
        )
        probe_accepted = sum(
            1 for codes in probes.values() if any(c in ("AA", "CA") for c in codes)
        )
        print(f"pg_restart_readyz_while_down={','.join(map(str, readyz_down))}")
        print(f"pg_restart_readyz_after={readyz_after}")
        print(f"pg_restart_visits_completed={len(visits)}")
        print(f"pg_restart_visits_unfinished={len(recorder.unfinished_visits)}")
        print(f"pg_restart_messages_sent={recorder.sent} pg_restart_resent={recorder.resent}")
        print(
            "pg_restart_sender_errors=" + ",".join(f"{k}:{n}" for k, n in recorder.errors.items())
        )
        print("pg_restart_adapter_log=" + ",".join(f"{k}:{n}" for k, n in sorted(logged.items())))
        print(f"pg_restart_adapter_starts={adapter.starts}")
        print(f"pg_restart_load_seconds={load_seconds:.1f}")
        print(f"pg_restart_settle_s={settle_s:.1f} pg_restart_unsettled={len(pending)}")
        print(f"pg_restart_shutdown_s={'hang' if shutdown_s is None else f'{shutdown_s:.2f}'}")
        print_verdict("pg_restart", verdict, duplicates_breakdown=False)
        ok = (
            verdict.clean
            and worst is not None
            and worst <= ns.recover_timeout
            and adapter.starts == 1
            and probe_accepted == 0
            and finished
            and not recorder.unfinished_visits
            and not recorder.rejected
            and shutdown_s is not None
        )
        print(f"pg_restart_result={'PASS' if ok else 'FAIL'}", flush=True)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("pg_restart_result=INTERRUPTED", flush=True)
        return 130
    except Exception:
        traceback.print_exc()
        print("pg_restart_result=ERROR", flush=True)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing may stop the clean-up below
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if load is not None:
            load.abort.set()
        if proxy is not None:
            proxy.close()
        up = cluster.ensure_running()
        print(f"pg_restart_postgres_running_at_exit={up}", flush=True)
        adapter.kill9()
        if not ns.keep and up:
            drop_test_schema(ns.pg_url, schema)
        if ok and not ns.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _codes_by_mode(
    recorder: Recorder, traffic: Traffic, start: float, end: float
) -> dict[str, int]:
    """Answers in [start, end) by the sender's acknowledgement mode ("AL/NE->AE": 3)."""
    with recorder.lock:
        answers = [(cid, code) for at, cid, code in recorder.answers if start <= at < end]
    out: dict[str, int] = {}
    for cid, code in answers:
        n = int(cid[len(traffic.prefix) :].partition("M")[0])
        key = f"{traffic.visit(n).mode}->{code}"
        out[key] = out.get(key, 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
