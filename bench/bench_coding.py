"""Throughput and memory of the batch path: read → assemble → code → Claim JSON.

Prints administrations per second for HL7 v2 and FHIR input, each beside
baselines measured in the same run on the same input (this machine is noisy:
compare ratios, not absolute numbers):

- `split`: only splitting the ER7 text into segments and fields / `json.loads`
  (the floor any reader pays);
- `hl7apy`: hl7apy's full `parse_message` on a sample of the same messages
  (why the reader tokenizes ER7 itself).

Usage: python bench/bench_coding.py [--encounters N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from harness.traffic import REGIMEN, regimen_messages

from adapter.core.charges import CodedEncounter
from adapter.core.options import CodingOptions
from adapter.dft_profiles_loader import load_dft_profile
from adapter.hl7.dft import DftVisit, build_dft
from adapter.icd10 import is_billable
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.runtime import tune_gc
from adapter.usecases.batch import Pipeline

TZ = ZoneInfo("America/New_York")
ADMINS_PER_ENCOUNTER = len(REGIMEN)


def hl7_feed(encounters: int) -> bytes:
    """A04 and RAS of the regimen per encounter, one message per line (a batch file)."""
    out = [m for n in range(encounters) for m in regimen_messages(n, discharge=False)]
    return ("\n".join(out) + "\n").encode()


def fhir_feed(encounters: int) -> bytes:
    lines = []
    base = datetime(2026, 1, 5, 8, 0, tzinfo=TZ)
    for n in range(encounters):
        day = base + timedelta(days=n % 60)
        enc = f"enc-{n}"
        entries: list[dict[str, object]] = [
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": enc,
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "subject": {"reference": f"Patient/p{n}"},
                    "location": [{"location": {"reference": "Location/ONCINF"}}],
                    "diagnosis": [{"condition": {"reference": f"Condition/c{n}"}, "rank": 1}],
                }
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": f"c{n}",
                    "subject": {"reference": f"Patient/p{n}"},
                    "encounter": {"reference": f"Encounter/{enc}"},
                    "code": {
                        "coding": [
                            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C34.90"}
                        ]
                    },
                }
            },
        ]
        clock = day
        for i, (ndc, dose, unit, minutes, method) in enumerate(REGIMEN):
            effective = (
                {
                    "effectivePeriod": {
                        "start": clock.isoformat(),
                        "end": (clock + timedelta(minutes=minutes)).isoformat(),
                    }
                }
                if minutes
                else {"effectiveDateTime": clock.isoformat()}
            )
            resource_: dict[str, object] = {
                "resourceType": "MedicationAdministration",
                "id": f"ma-{n}-{i}",
                "status": "completed",
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": ndc}]
                },
                "subject": {"reference": f"Patient/p{n}"},
                "context": {"reference": f"Encounter/{enc}"},
                **effective,
                "dosage": {
                    "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                    "method": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0165",
                                "code": method,
                            }
                        ]
                    },
                    "dose": {"value": float(dose), "unit": unit},
                },
            }
            if unit == "mL":
                resource_["reasonCode"] = [
                    {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E86.0"}]}
                ]
            entries.append({"resource": resource_})
            clock += timedelta(minutes=(minutes or 5) + 5)
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        lines.append(json.dumps(bundle))
    return ("\n".join(lines) + "\n").encode()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_pipeline(data: bytes, origin: str) -> int:
    mappings = load_mappings(default_mappings_dir())
    pipeline = Pipeline(mappings, CodingOptions(), TZ, pretty=False)
    pipeline.feed_file(data, origin)
    result = pipeline.close()
    coded = sum(1 for c in result.coded if c.lines)
    if result.errors or coded != len(result.coded):
        raise SystemExit(f"bench input did not code cleanly: {result.summary_line()}")
    return len(result.resources)


def dft_rate(data: bytes) -> tuple[float, int]:
    """DFT^P03 built per second (generic 2.5.1 profile) for the coded encounters of `data`;
    the message build only, no transport. Returns (messages/s, FT1 lines per message)."""
    mappings = load_mappings(default_mappings_dir())
    pipeline = Pipeline(mappings, CodingOptions(), TZ, pretty=False)
    pipeline.feed_file(data, "bench.hl7")
    coded: tuple[CodedEncounter, ...] = pipeline.close().coded
    profile = load_dft_profile(default_mappings_dir(), "generic-2.5.1", mappings)
    posted_at = datetime(2026, 2, 2, 7, 30, tzinfo=TZ)

    def build_all() -> None:
        for encounter in coded:
            visit = DftVisit(encounter.patient_id)
            build_dft(
                encounter, visit, profile, version=1, posted_at=posted_at,
                labels=mappings.code_labels,
            )  # fmt: skip

    seconds = timed(build_all)
    lines = sum(len(c.lines) for c in coded) // max(1, len(coded))
    return len(coded) / seconds, lines


def hl7apy_rate(data: bytes, sample: int) -> float:
    from hl7apy.parser import parse_message

    messages = [m for m in data.decode().split("\n") if m][:sample]
    seconds = timed(lambda: [parse_message(m, find_groups=True) for m in messages])
    return len(messages) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encounters", type=int, default=2000)
    ns = parser.parse_args()
    n = ns.encounters
    admins = n * ADMINS_PER_ENCOUNTER
    load_mappings(default_mappings_dir())  # warm imports and the ICD tables
    is_billable("C34.90")
    startup_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hl7 = hl7_feed(n)
    fhir = fhir_feed(n)
    tune_gc()  # as the CLI does
    split_s = timed(
        lambda: [[s.split("|") for s in m.split("\r")] for m in hl7.decode().split("\n")]
    )
    json_s = timed(lambda: [json.loads(line) for line in fhir.splitlines() if line])
    hl7_s = timed(lambda: run_pipeline(hl7, "bench.hl7"))
    fhir_s = timed(lambda: run_pipeline(fhir, "bench.ndjson"))
    ras_per_s = hl7apy_rate(hl7, 200)
    dft_per_s, dft_lines = dft_rate(hl7)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("encounters", f"{n}"),
        ("administrations", f"{admins}"),
        ("hl7 read->claim JSON, admin/s", f"{admins / hl7_s:,.0f}"),
        ("fhir read->claim JSON, admin/s", f"{admins / fhir_s:,.0f}"),
        ("baseline: ER7 split only, admin/s", f"{admins / split_s:,.0f}"),
        ("baseline: json.loads only, admin/s", f"{admins / json_s:,.0f}"),
        ("baseline: hl7apy parse_message, messages/s", f"{ras_per_s:,.0f}"),
        ("hl7 pipeline msgs/s vs hl7apy parse only", f"{(2 * n / hl7_s) / ras_per_s:.1f}x"),
        (f"DFT^P03 built ({dft_lines} FT1 each), messages/s", f"{dft_per_s:,.0f}"),
        ("RSS after start-up (tables loaded), MiB", f"{startup_mb:,.0f}"),
        ("peak RSS (whole batch in memory), MiB", f"{peak_mb:,.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"hl7_admin_per_s={admins / hl7_s:.0f}")
    print(f"fhir_admin_per_s={admins / fhir_s:.0f}")
    print(f"dft_build_per_s={dft_per_s:.0f}")
    print(f"startup_rss_mib={startup_mb:.0f}")
    print(f"peak_rss_mib={peak_mb:.0f}")


if __name__ == "__main__":
    main()
