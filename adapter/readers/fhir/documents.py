"""The input of `read_fhir` as JSON documents: bytes decoded, one JSON document or NDJSON (one
object per line), a bare JSON array of resources; every FHIR body is parsed by `load_json`.

A line or a document that does not parse becomes one `InboundMessage` with its `InputError`
(file, line, column); with NDJSON the other lines are still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterator

from adapter.core.model import InboundMessage
from adapter.readers.fhir.bundles import Found, flatten
from adapter.readers.fhir.failures import unparseable, unplaced


def resources_in(data: str | bytes, origin: str) -> list[Found]:
    """Every resource of the input (Bundles opened) and every input error, in input order."""
    text = _decode(data, origin)
    if isinstance(text, InboundMessage):
        return [text]
    return list(_documents(text, origin))


def _decode(data: str | bytes, origin: str) -> str | InboundMessage:
    """UTF-8 text without a byte-order mark (some exports write one)."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        digest = hashlib.sha256(data).hexdigest()[:32]
        where = _place(origin, f"byte {exc.start}")
        return unplaced(f"fhir:sha256:{digest}", where, "not UTF-8 text")


def _documents(text: str, origin: str) -> Iterator[Found]:
    """One JSON document, or NDJSON (one object per line, or a parse that stops after one)."""
    if not text.strip():
        return
    if _looks_like_ndjson(text):
        yield from _ndjson(text, origin)
        return
    try:
        value = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            yield from _ndjson(text, origin)
            return
        yield unparseable(text, _place(origin, f"line {exc.lineno} column {exc.colno}"), exc.msg)
        return
    except (ValueError, RecursionError) as exc:
        yield unparseable(text, _place(origin, "document"), _load_problem(exc))
        return
    yield from _top_level(value, f"{origin}, " if origin else "")


def _looks_like_ndjson(text: str) -> bool:
    """Whether the first two non-blank lines are each a whole object.

    Deciding before parsing means a corrupt first line of an NDJSON export
    costs that line only, not the file; pretty-printed JSON never looks so.
    """
    lines: list[str] = []
    for line in io.StringIO(text):
        stripped = line.strip()
        if stripped:
            lines.append(stripped)
            if len(lines) == 2:
                return all(item.startswith("{") and item.endswith("}") for item in lines)
    return False


def _ndjson(text: str, origin: str) -> Iterator[Found]:
    """One resource per line; a bad line is reported and the others still read."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = _place(origin, f"line {number}")
        try:
            value = _loads(line)
        except json.JSONDecodeError as exc:
            yield unparseable(line, f"{where} column {exc.colno}", exc.msg)
            continue
        except (ValueError, RecursionError) as exc:
            yield unparseable(line, where, _load_problem(exc))
            continue
        yield from _top_level(value, f"{where}, ")


def _top_level(value: object, where: str) -> Iterator[Found]:
    """A resource, or a bare JSON array of resources (some exports write one)."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, "", f"{where}item {index}, ", None, 0)
    else:
        yield from flatten(value, "", where, None, 0)


def _loads(text: str) -> object:
    """JSON with NUL characters (`\\u0000`) read as U+FFFD.

    Why: FHIR strings may not hold control characters, PostgreSQL text cannot hold
    a NUL at all (the store would refuse the message, even as a dead letter), and an
    identifier must read the same at ingest and when the coder re-reads it.
    """
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    return load_json(text)


def load_json(text: str) -> object:
    """`json.loads` as every FHIR body is read: NaN, Infinity and a number that would
    overflow to infinity (`1e999`) raise ValueError. Huge integers (a dose of 10^400) parse,
    exactly, and are refused with their path where they are read (`get_decimal`)."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_json_float)


def _json_float(text: str) -> float:
    """`json.loads(parse_float=...)`: a literal such as `1e999` would silently be infinity."""
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _reject_constant(name: str) -> object:
    """NaN and Infinity are not JSON, and not amounts a charge can use."""
    raise ValueError(f"{name} is not a JSON number")


def _load_problem(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return "not a JSON number (NaN, Infinity, out of range or too many digits)"


def _place(origin: str, where: str) -> str:
    return f"{origin} {where}" if origin else where
