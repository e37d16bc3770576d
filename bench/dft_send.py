"""Charges out: DFT^P03 messages per second delivered to a receiver that ACKs at once.

In-process, the way `serve` wires it (`adapter.web.app.start_state` with
`ADAPTER_DFT_URL` set): a backlog of `--encounters` closed visits is ingested and coded
(each coded version queues its DFT in the outbox), the background workers paused; then
the outbox worker (`Deliverer.run_once`, the DFT^P03 MLLP sink) is timed from its first
pass until every DFT is delivered. The receiver answers AA at once: by default a bare
MLLP responder in the adapter's own event loop (`--receiver inline`: it reads MSH-10 and
answers, no parse, no process switch per round trip, so the figure is the adapter's own
pace even on a loaded machine), or bench/dft_receiver.py in its own process (`--receiver
process`: python-hl7 parses each DFT, and the figure carries the machine's scheduling
latency, two process switches per message).

Figure: `dft_per_s` (SQLite; target >= 500), `dft_per_s_postgres` with `--store both`;
beside it `dft_cpu_ms_per_msg` (the adapter process's CPU per delivered DFT, all its
threads), which a loaded machine changes far less than the rate.
Each delivered DFT is one store read of the due batch share, one MLLP round trip on the
kept connection, one `mark_delivered` commit.

Usage: python bench/dft_send.py [--quick] [--encounters N] [--store sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.inprocess import paused_service
from harness.pg import PG_URL, adrop_schema, new_schema, pg_available
from harness.proc import PYTHON
from harness.report import print_keys
from harness.traffic import ingest_backlog

RECEIVER = Path(__file__).with_name("dft_receiver.py")


def start_receiver(out: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [PYTHON, str(RECEIVER), f"--out={out}"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port="):
        proc.kill()
        raise RuntimeError("the DFT receiver did not start")
    return proc, int(line.strip().partition("=")[2])


async def send_store(store: str, encounters: int, workdir: Path, port: int) -> dict[str, float]:
    """Ingest and code the backlog, then time the outbox worker; port 0: a receiver in
    this event loop."""
    server = None
    if port == 0:
        server = await asyncio.start_server(_answer_aa, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    try:
        return await _send_store(store, encounters, workdir, port)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


async def _answer_aa(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """AA for every MLLP frame, by its MSH-10, as soon as the frame is complete."""
    try:
        while True:
            frame = await reader.readuntil(b"\x1c\r")
            msh = frame.lstrip(b"\x0b").split(b"\r", 1)[0].split(b"|")
            control_id = msh[9] if len(msh) > 9 else b""
            ack = b"MSH|^~\\&|BILL|HOSP|CHG|INF|20260202||ACK|A" + control_id + b"|P|2.5.1\r"
            writer.write(b"\x0b" + ack + b"MSA|AA|" + control_id + b"\r\x1c\r")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _send_store(store: str, encounters: int, workdir: Path, port: int) -> dict[str, float]:
    schema = new_schema("dftsend") if store == "postgres" else ""
    url = PG_URL if schema else f"sqlite:///{workdir / 'dft.db'}"
    service = paused_service(
        url,
        database_schema=schema or "public",
        replica_id=f"bench-dft-{store}",
        dft_url=f"mllp://127.0.0.1:{port}",
        log_level="warning",
    )
    try:
        async with service as state:
            accepted = await ingest_backlog(state, encounters, f"F{store[0].upper()}")
            if accepted != 3 * encounters:
                raise RuntimeError(f"{store}: {accepted} of {3 * encounters} messages accepted")
            await state.coder.run_once()
            queued = (await state.store.counts()).outbox_pending
            deliverer = state.deliverer
            assert deliverer is not None
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            delivered = 0
            while True:
                done = await deliverer.run_once()
                delivered += done
                if not done:
                    break
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            left = (await state.store.counts()).outbox_pending
    finally:
        if schema:
            await adrop_schema(schema)
    if left:
        raise RuntimeError(f"{store}: {left} DFTs still queued")
    return {"queued": queued, "delivered": delivered, "seconds": seconds, "cpu": cpu}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 encounters")
    p.add_argument("--encounters", type=int, default=0, help="default 2000 (--quick: 300)")
    p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--receiver", choices=("inline", "process"), default="inline")
    ns = p.parse_args()
    encounters = ns.encounters or (300 if ns.quick else 2000)
    stores = ["sqlite", "postgres"] if ns.store == "both" else [ns.store]
    if "postgres" in stores and not pg_available():
        print("dft_send: PostgreSQL not reachable, SQLite only", file=sys.stderr)
        stores.remove("postgres")
    workdir = Path(tempfile.mkdtemp(prefix="dft-send-"))
    receiver, port = (None, 0)
    if ns.receiver == "process":
        receiver, port = start_receiver(workdir / "received.jsonl")
    keys: dict[str, object] = {"dft_encounters": encounters, "dft_receiver": ns.receiver}
    try:
        for store in stores:
            run = asyncio.run(send_store(store, encounters, workdir, port))
            suffix = "" if store == "sqlite" else f"_{store}"
            keys[f"dft_per_s{suffix}"] = round(run["delivered"] / max(run["seconds"], 1e-9))
            keys[f"dft_delivered{suffix}"] = int(run["delivered"])
            keys[f"dft_seconds{suffix}"] = round(run["seconds"], 2)
            cpu_ms = 1000 * run["cpu"] / max(run["delivered"], 1)
            keys[f"dft_cpu_ms_per_msg{suffix}"] = round(cpu_ms, 3)
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print_keys(keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
