"""A billing system's DFT^P03 inbound interface, as a separate process, and the check of
what it received against what the adapter stored.

The receiver is python-hl7's asyncio MLLP server (an implementation independent of the
adapter's sink). For every message it appends one JSON line to `--out` (flushed before
the ACK, as a receiver commits before it answers), then ACKs: AA, or AE for a seeded
share of first deliveries (`--ae-share`), so the adapter's same-MSH-10 resend is
exercised on purpose as well as by kill -9. It prints `port=N` once it listens.

`check` is the crash tests' verdict on the receiver's side (bench/crash_test.py):
- missing: a DFT the adapter queued whose MSH-10 never arrived, or a current Claim
  version the adapter never considered for the receiver;
- duplicates: a second copy of an MSH-10 is a resend (fine, the receiver's duplicate
  check drops it) only when it is byte-identical; a charge (FT1-2 with CG) arriving under
  two different MSH-10s is a double charge;
- net: per encounter, the charges the receiver holds (CG minus CD, one copy per MSH-10)
  equal the current Claim's lines (code, modifiers, date, units) of a coded encounter, and
  nothing for a held or skipped one that was never posted.

Usage: python bench/dft_receiver.py --out FILE [--port 0] [--ae-share 0.05] [--seed N]
       [--ack-delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp

# --- the receiver ------------------------------------------------------------------------


def _leaf(segment: hl7.Segment, number: int, component: int = 1, rep: int = 1) -> str:
    if number >= len(segment) or not str(segment[number]):
        return ""
    try:
        return str(segment.extract_field(1, number, rep, component, 1))
    except IndexError:
        return ""


def _reps(segment: hl7.Segment, number: int) -> list[str]:
    if number >= len(segment) or not str(segment[number]):
        return []
    return [r for r in str(segment[number]).split("~") if r]


def summary(text: str) -> dict[str, Any]:
    """What the check needs of one DFT, read by python-hl7."""
    message = hl7.parse(text)
    msh = message.segment("MSH")
    pv1 = message.segment("PV1")
    pid = message.segment("PID")
    ft1s = []
    for s in message.segments("FT1"):
        code = _leaf(s, 25) or _leaf(s, 7)
        ft1s.append(
            {
                "id": _leaf(s, 2),
                "date": _leaf(s, 4)[:8],
                "type": _leaf(s, 6),
                "code": code,
                "modifiers": sorted(m.split("^")[0] for m in _reps(s, 26)),
                "qty": int(_leaf(s, 10) or 0),
            }
        )
    return {
        "msh10": _leaf(msh, 10),
        "patient": _leaf(pid, 3),
        "visit": _leaf(pv1, 19),
        "ft1": ft1s,
    }


class Receiver:
    def __init__(self, out: Path, ae_share: float, seed: int, ack_delay: float = 0.0) -> None:
        self.out = out.open("a", encoding="utf-8")
        self.ae_share = ae_share
        self.ack_delay = ack_delay
        self.rnd = random.Random(seed)
        self.seen: set[str] = set()

    async def handle(
        self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
    ) -> None:
        try:
            while True:
                message = await reader.readmessage()
                text = str(message)
                record = summary(text)
                cid = record["msh10"]
                first = cid not in self.seen
                code = "AE" if first and self.rnd.random() < self.ae_share else "AA"
                if code == "AA":
                    self.seen.add(cid)
                record["ack"] = code
                record["digest"] = hashlib.sha256(text.encode()).hexdigest()[:16]
                self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
                self.out.flush()
                if self.ack_delay:
                    await asyncio.sleep(self.ack_delay)
                writer.writeblock(str(message.create_ack(code)).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def serve(ns: argparse.Namespace) -> None:
    receiver = Receiver(Path(ns.out), ns.ae_share, ns.seed, ns.ack_delay)
    server = await hl7.mllp.start_hl7_server(receiver.handle, "127.0.0.1", ns.port)
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    receiver.out.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="JSON lines, one per message received")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ae-share", type=float, default=0.0, help="first deliveries answered AE")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ack-delay", type=float, default=0.0, help="seconds before each ACK")
    ns = p.parse_args()
    asyncio.run(serve(ns))
    return 0


# --- the check ---------------------------------------------------------------------------

STORE_QUERIES = {
    "dft_outbox": "SELECT destination, resource_id, version, payload, delivered_at, rejected_at"
    " FROM outbox WHERE destination LIKE 'dft:%'",
    "claims": "SELECT resource_id, version, encounter_key, body FROM resource_versions"
    " WHERE resource_type = 'Claim' AND is_current",
    "postings": "SELECT destination, encounter_key, version FROM dft_postings"
    " WHERE encounter_key <> ''",
    "states": "SELECT key, state FROM encounters",
}


@dataclass
class DftVerdict:
    queued: int = 0  # DFT outbox rows
    received: int = 0  # messages the receiver got (every copy)
    distinct: int = 0  # distinct MSH-10s
    missing: int = 0  # queued, never received AA
    not_considered: int = 0  # current Claim versions never looked at for the receiver
    resends_same_msh10: int = 0
    resends_differing: int = 0  # the same MSH-10 with other content
    double_charges: int = 0  # a CG transaction id under two MSH-10s
    net_mismatch: int = 0  # encounters whose held charges differ from the Claim
    unknown: int = 0  # received MSH-10s the adapter never queued
    ae_answers: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        bad = self.missing + self.not_considered + self.resends_differing + self.double_charges
        return bad + self.net_mismatch + self.unknown == 0

    def note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def read_received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _msh10(payload: str) -> str:
    first = payload.split("\r", 1)[0].split("|")
    return first[9] if len(first) > 9 else ""


def _claim_lines(body: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    lines: Counter[tuple[str, str, str]] = Counter()
    for item in body.get("item", []):
        code = item["productOrService"]["coding"][0]["code"]
        mods = "+".join(sorted(m["coding"][0]["code"] for m in item.get("modifier", [])))
        day = str(item.get("servicedDate", "")).replace("-", "")
        lines[(code, mods, day)] += int(item.get("quantity", {}).get("value", 0))
    return +lines


def check(store: dict[str, list[dict[str, Any]]], received: Iterable[dict[str, Any]]) -> DftVerdict:
    v = DftVerdict()
    copies: dict[str, list[dict[str, Any]]] = {}
    for record in received:
        v.received += 1
        v.ae_answers += record.get("ack") == "AE"
        copies.setdefault(record["msh10"], []).append(record)
    accepted = {cid: [r for r in rs if r.get("ack") == "AA"] for cid, rs in copies.items()}
    v.distinct = len(copies)
    for cid, records in copies.items():
        v.resends_same_msh10 += len(records) - 1
        if len({r["digest"] for r in records}) > 1:
            v.resends_differing += 1
            v.note(f"MSH-10 {cid} received with different content")
    claim_of: dict[str, str] = {}  # MSH-10 -> Claim id
    for row in store["dft_outbox"]:
        v.queued += 1
        cid = _msh10(str(row["payload"] or ""))
        claim_of[cid] = str(row["resource_id"])
        if row["rejected_at"] is None and not accepted.get(cid):
            v.missing += 1
            v.note(f"MISSING: Claim/{row['resource_id']} v{row['version']} ({cid}) not received")
    for cid in copies:
        if cid not in claim_of:
            v.unknown += 1
            v.note(f"UNKNOWN: received {cid}, which the adapter never queued")
    charged: dict[str, str] = {}
    held: dict[str, Counter[tuple[str, str, str]]] = {}
    for cid, records in accepted.items():
        if not records or cid not in claim_of:
            continue
        net = held.setdefault(claim_of[cid], Counter())
        for ft1 in records[0]["ft1"]:
            key = (ft1["code"], "+".join(ft1["modifiers"]), ft1["date"])
            sign = 1 if ft1["type"] == "CG" else -1
            net[key] += sign * abs(int(ft1["qty"]))
            if ft1["type"] == "CG" and charged.setdefault(ft1["id"], cid) != cid:
                v.double_charges += 1
                v.note(f"DOUBLE CHARGE: FT1-2 {ft1['id']} under {charged[ft1['id']]} and {cid}")
    states = {str(r["key"]): str(r["state"]) for r in store["states"]}
    considered = {(str(r["encounter_key"])): int(r["version"]) for r in store["postings"]}
    for claim in store["claims"]:
        key = str(claim["encounter_key"])
        if int(claim["version"]) > considered.get(key, 0):
            v.not_considered += 1
            v.note(f"NOT CONSIDERED: Claim/{claim['resource_id']} v{claim['version']}")
        state = states.get(key)
        body = json.loads(claim["body"])
        want = _claim_lines(body) if state == "coded" else Counter()
        got = +held.get(str(claim["resource_id"]), Counter())
        if state in ("coded", "held", "skipped") and got != want and (state == "coded" or got):
            v.net_mismatch += 1
            v.note(
                f"NET MISMATCH: Claim/{claim['resource_id']} ({state}) {dict(got)} != {dict(want)}"
            )
    return v


def print_dft_verdict(prefix: str, v: DftVerdict) -> None:
    print(f"{prefix}_dft_queued={v.queued} {prefix}_dft_received={v.received}")
    print(f"{prefix}_dft_distinct_msh10={v.distinct} {prefix}_dft_ae_answers={v.ae_answers}")
    print(f"{prefix}_dft_versions_missing={v.missing + v.not_considered}")
    print(f"{prefix}_dft_duplicates_same_msh10={v.resends_same_msh10}")
    print(f"{prefix}_dft_duplicates_other={v.resends_differing + v.double_charges + v.unknown}")
    print(f"{prefix}_dft_net_mismatch={v.net_mismatch}")
    for text in v.problems:
        print(f"  problem: {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
