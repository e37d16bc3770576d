"""No fixture patient's name, MRN or birth date in any log line of the whole test run.

`tests/conftest.py` records every structlog event (as it is about to be rendered, after
`drop_phi`) and every stdlib log record of the session, and runs this module last. The
check itself first pushes every fixture through the real service (MLLP, `POST /hl7`,
`POST /fhir`, `POST/PUT /fhir/{type}`, searches by patient, coding), so it always has
service lines to look at, even when this module is run alone; then it scans everything
the session logged.

PHI tokens, from `fixtures/**/*.hl7` and `fixtures/**/*.json` (and `*.ndjson`):

- PID-3: the ID (first component) of every repetition (MRNs, and the SSNs some samples put
  there);
- PID-5: family name (every non-empty subcomponent of XPN.1, e.g. `EVERYMAN&&&&Aniston`),
  given name (XPN.2) and further given names (XPN.3), every repetition;
- PID-7: the birth date as YYYYMMDD and as YYYY-MM-DD;
- Patient resources (anywhere: top level, Bundle entries, contained): `name[].family`,
  `name[].given[]`, `identifier[].value`, `birthDate` (as written and as YYYYMMDD).

A token is kept when it has at least 4 characters; identifiers made only of digits need at
least 6, because counts, byte sizes, ports and message ids in log lines are short numbers
(a sample MRN `1234` would match `bytes=1234`). A token matches case-sensitively (as the
fixtures spell it) and only as a whole word: not preceded or followed by a letter or digit,
so `Iris` does not match `irish` and `NS100101` does not match `NS1001012`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.hl7.er7 import split_messages
from tests.mllp_client import send_messages
from tests.service_fixtures import (
    FHIR_JSON,
    HL7_TYPE,
    Clock,
    as_transaction,
    make_settings,
    running_client,
    state_of,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MIN_LENGTH = 4
MIN_DIGITS = 6
MIN_MLLP_LINES = 100  # the fixtures alone send more than 200 HL7 messages over MLLP
MIN_HTTP_LINES = 50
INBOUND = ("MedicationAdministration", "Encounter", "Condition", "Patient", "Coverage")


# --- what counts as PHI ---------------------------------------------------------------------


def _keep(token: str) -> bool:
    token = token.strip()
    if token.isdigit():
        return len(token) >= MIN_DIGITS
    return len(token) >= MIN_LENGTH


def _add(found: dict[str, str], token: str, source: str) -> None:
    token = token.strip()
    if _keep(token):
        found.setdefault(token, source)


def _hl7_tokens(path: Path, found: dict[str, str]) -> None:
    text = path.read_bytes().decode("latin-1")
    for chunk in split_messages(text):
        msh = chunk.lines[0]
        fs = msh[3] if len(msh) > 3 and msh.startswith("MSH") else "|"
        comp, rep, sub = (msh[4:8] + "^~\\&")[0], (msh[5:6] or "~"), (msh[7:8] or "&")
        for line in chunk.lines:
            if not line.startswith("PID" + fs):
                continue
            fields = [*line.split(fs), "", "", "", "", "", "", "", ""]
            where = f"{path.relative_to(ROOT)} PID"
            for repetition in fields[3].split(rep):
                _add(found, repetition.split(comp)[0], where + "-3")
            for repetition in fields[5].split(rep):
                parts = repetition.split(comp)
                for part in parts[:3]:
                    for piece in part.split(sub):
                        _add(found, piece, where + "-5")
            birth = fields[7].split(comp)[0][:8]
            if len(birth) == 8 and birth.isdigit():
                _add(found, birth, where + "-7")
                _add(found, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", where + "-7")


def _json_documents(path: Path) -> Iterator[object]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        yield json.loads(text)
    except json.JSONDecodeError:  # NDJSON
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)


def _patients(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("resourceType") == "Patient":
            yield node
        for child in node.values():
            yield from _patients(child)
    elif isinstance(node, list):
        for child in node:
            yield from _patients(child)


def _fhir_tokens(path: Path, found: dict[str, str]) -> None:
    where = str(path.relative_to(ROOT))
    for document in _json_documents(path):
        for patient in _patients(document):
            for name in patient.get("name") or []:
                _add(found, str(name.get("family", "")), where + " Patient.name")
                for given in name.get("given") or []:
                    _add(found, str(given), where + " Patient.name")
            for identifier in patient.get("identifier") or []:
                _add(found, str(identifier.get("value", "")), where + " Patient.identifier")
            birth = str(patient.get("birthDate", ""))
            _add(found, birth, where + " Patient.birthDate")
            _add(found, birth.replace("-", ""), where + " Patient.birthDate")


def phi_tokens() -> dict[str, str]:
    """Every PHI token of the fixtures, with where it was first found."""
    found: dict[str, str] = {}
    for path in sorted(FIXTURES.rglob("*.hl7")):
        _hl7_tokens(path, found)
    for pattern in ("*.json", "*.ndjson"):
        for path in sorted(FIXTURES.rglob(pattern)):
            _fhir_tokens(path, found)
    return found


@dataclass(frozen=True, slots=True)
class Leak:
    token: str
    source: str
    line: str


def find_phi(lines: Iterable[str], tokens: dict[str, str]) -> list[Leak]:
    """Lines holding a token as a whole word (see the module docstring for the rules)."""
    alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
    pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
    leaks = []
    for line in lines:
        for match in pattern.finditer(line):
            leaks.append(Leak(match.group(0), tokens[match.group(0)], line))
    return leaks


# --- the fixtures through the service ---------------------------------------------------------


def _hl7_fixture_messages() -> list[bytes]:
    """Every HL7 message of every fixture file, one payload each (CR-separated segments)."""
    out = []
    for path in sorted(FIXTURES.rglob("*.hl7")):
        text = path.read_bytes().decode("latin-1")
        for chunk in split_messages(text):
            out.append(("\r".join(chunk.lines) + "\r").encode("latin-1"))
    return out


def _fhir_requests() -> Iterator[tuple[str, str, bytes]]:
    """(method, path, body) for every FHIR fixture, to the endpoint that takes it."""
    for path in sorted(FIXTURES.rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(document, dict):
            continue
        rtype = document.get("resourceType")
        if rtype == "Bundle":
            body = as_transaction(document) if path.parent.name == "scenarios" else document
            yield "POST", "/fhir", json.dumps(body).encode()
        elif rtype in INBOUND and isinstance(document.get("id"), str):
            yield "PUT", f"/fhir/{rtype}/{document['id']}", path.read_bytes()
        elif isinstance(rtype, str):
            yield "POST", f"/fhir/{rtype}", path.read_bytes()
    for path in sorted(FIXTURES.rglob("*.ndjson")):
        yield "POST", "/fhir", path.read_bytes()


async def _exercise_service(tmp_path: Path, tokens: dict[str, str]) -> None:
    clock = Clock()
    async with running_client(make_settings(tmp_path), clock) as client:
        state = state_of(client)
        assert state.mllp is not None
        hl7 = _hl7_fixture_messages()
        acks = await send_messages("127.0.0.1", state.mllp.port, hl7, timeout=30)
        assert len(acks) == len(hl7)
        for payload in hl7[:40]:
            response = await client.post("/hl7", data=payload, headers={"Content-Type": HL7_TYPE})
            assert response.status in (200, 204)
        for method, path, body in _fhir_requests():
            response = await client.request(
                method, path, data=body, headers={"Content-Type": FHIR_JSON}
            )
            assert response.status < 500, (path, await response.text())
        clock.advance(hours=12)
        await state.coder.run_once()
        for token in sorted(tokens)[:60]:  # searches with PHI in the query string
            response = await client.get("/fhir/Claim", params={"patient": token})
            assert response.status == 200
        response = await client.get("/review")
        assert response.status == 200


# --- the checks -----------------------------------------------------------------------------


def test_the_scanner_finds_a_planted_name_and_ignores_lookalikes() -> None:
    tokens = {"Halvorsen": "x", "NS100101": "y", "19610422": "z"}
    lines = [
        'structlog info {"event": "oops", "who": "Halvorsen^Greta"}',
        "stdlib ERROR aiohttp.server patient=NS100101&x",
        "structlog info dob 19610422",
        "structlog info Halvorsens NS1001012 119610422 message_id=19610422x",
    ]
    assert [leak.token for leak in find_phi(lines, tokens)] == ["Halvorsen", "NS100101", "19610422"]


def test_fixture_phi_rules_pick_names_mrns_and_birth_dates() -> None:
    tokens = phi_tokens()
    for expected in ("Halvorsen", "Greta", "NS100101", "19610422", "1961-04-22", "EVERYMAN"):
        assert expected in tokens
    assert "1234" not in tokens and "M" not in tokens  # too short to tell from a count


async def test_no_fixture_phi_in_any_log_line_of_the_session(
    tmp_path: Path, session_log_lines: list[str]
) -> None:
    tokens = phi_tokens()
    await _exercise_service(tmp_path, tokens)
    lines = list(session_log_lines)
    mllp = [line for line in lines if '"event": "mllp.message"' in line]
    http = [line for line in lines if '"event": "http.' in line]
    assert len(mllp) >= MIN_MLLP_LINES, f"only {len(mllp)} mllp.message lines were recorded"
    assert len(http) >= MIN_HTTP_LINES, f"only {len(http)} http.* lines were recorded"
    assert any('"event": "encounter.coded"' in line for line in lines)
    leaks = find_phi(lines, tokens)
    report = "\n".join(f"{leak.token!r} ({leak.source}): {leak.line[:300]}" for leak in leaks)
    assert not leaks, f"{len(leaks)} log line(s) carry fixture PHI:\n{report}"
