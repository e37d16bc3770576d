"""Typed facts stay typed: no module decides anything by reading text we (or a library) wrote.

The review behind issue 11 found the ERR location re-read from the error text with a regex,
AR chosen by `startswith` on a skip reason, an unread header told by the dedup key's prefix,
a FHIR entry's type and id split back out of its dedup key, and the MLLP server reading its
own ACK's MSA to learn the code. Each is gone; these scans (with `ast`, nothing imported) keep
them gone, and each scan is shown to fail on a made-up module first.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.hl7_answers import HandlerResult

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "adapter"

STRING_METHODS = frozenset(
    {"startswith", "endswith", "removeprefix", "removesuffix", "partition", "rpartition",
     "split", "rsplit", "find", "rfind", "index", "rindex", "count"}
)  # fmt: skip
REGEX_FUNCTIONS = frozenset({"match", "search", "fullmatch", "finditer", "findall", "sub"})
# attributes that hold text for people (or opaque keys): read, never parsed
TEXT_ATTRIBUTES = frozenset(
    {"message", "location", "diagnostics", "skip_reason", "reason", "dedup_key"}
)
# who may read an ACK's MSA: the clients reading a peer's ACK, never a module that answers
READS_PEER_ACKS = ("adapter/cli/send.py", "adapter/outbox/", "adapter/hl7/msh.py")
# the one module that builds the unread-header key (the reader); nobody reads it back
KEY_BUILDERS = ("adapter/readers/hl7v2",)
# Known and left, each with why (none today: the SQLite "locked" retry reads sqlite_errorcode).
ALLOWED: frozenset[tuple[str, str]] = frozenset()


def _text_of(node: ast.expr, caught: set[str]) -> str | None:
    """What `node` is, when it is text this scan protects: `str(exc)` or `x.<text attribute>`."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "str"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in caught
    ):
        return "str(exc)"
    if isinstance(node, ast.Attribute) and node.attr in TEXT_ATTRIBUTES:
        return f".{node.attr}"
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute) and node.attr == "args" and _is_caught(node.value, caught):
        return "exc.args"
    return None


def _is_caught(node: ast.expr, caught: set[str]) -> bool:
    return isinstance(node, ast.Name) and node.id in caught


def findings(source: str) -> Iterator[str]:
    """Each place the source matches, tests, splits or regex-reads protected text."""
    tree = ast.parse(source)
    caught = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            what = _text_of(node.func.value, caught)
            if what and node.func.attr in STRING_METHODS:
                yield f"{node.func.attr}() on {what}"
            module = node.func.value
            regex = isinstance(module, ast.Name) and module.id == "re"
            pattern = node.func.attr in REGEX_FUNCTIONS and (regex or node.func.attr != "sub")
            if pattern and any(_text_of(arg, caught) for arg in node.args):
                yield f"regex over {next(_text_of(a, caught) for a in node.args if _text_of(a, caught))}"
        elif isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                what = _text_of(right, caught)
                if isinstance(op, ast.In | ast.NotIn) and what:
                    yield f"'in' over {what}"


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


class TestTheScanItself:
    """Each pattern the review found, written out, is caught; ordinary code is not."""

    @pytest.mark.parametrize(
        "source",
        [
            pytest.param(
                "def f(m):\n    return m.skip_reason.startswith('unsupported')", id="skip"
            ),
            pytest.param("def f(m):\n    return m.dedup_key.startswith('hl7:unread:')", id="key"),
            pytest.param("def f(m):\n    return m.dedup_key.partition('/')", id="split-key"),
            pytest.param("import re\ndef f(e):\n    return re.search('RXA', e.location)", id="re"),
            pytest.param("def f(p):\n    return P.match(p.error.location)", id="pattern"),
            pytest.param(
                "def f():\n    try:\n        g()\n    except OSError as exc:\n"
                "        return 'locked' in str(exc)",
                id="exception-text",
            ),
            pytest.param(
                "def f():\n    try:\n        g()\n    except OSError as exc:\n"
                "        return exc.args[0].startswith('x')",
                id="exception-args",
            ),
            pytest.param("def f(e):\n    return 'MSH' in e.message", id="in-message"),
        ],
    )
    def test_a_known_anti_pattern_is_found(self, source: str) -> None:
        assert list(findings(source))

    @pytest.mark.parametrize(
        "source",
        [
            "def f(url):\n    return url.startswith('https://')",
            "def f(m):\n    return store.get(m.dedup_key)",
            "def f(e):\n    return Issue(e.path, f'{e.location}: {e.message}')",
            "def f(e):\n    return e.message[:200]",
        ],
    )
    def test_reading_input_and_passing_text_on_is_not(self, source: str) -> None:
        assert list(findings(source)) == []


def test_no_module_decides_by_matching_its_own_or_a_librarys_text() -> None:
    found = sorted(
        (path, finding)
        for path, source in _sources()
        for finding in findings(source)
        if (path, finding) not in ALLOWED
    )
    assert found == []


def test_the_allow_list_holds_only_what_is_still_there() -> None:
    """An allowed finding that was fixed leaves the list (it must not shelter a new one)."""
    present = {(path, f) for path, source in _sources() for f in findings(source)}
    assert present >= ALLOWED


def test_nobody_tells_an_unread_header_by_the_dedup_keys_prefix() -> None:
    """The reader builds `UNREAD_KEY_PREFIX` keys; ingest knows the header was unread because
    the reader gave no control id (typed), never by the key's spelling."""
    users = [
        path
        for path, source in _sources()
        if "UNREAD_KEY_PREFIX" in source and not path.startswith(KEY_BUILDERS)
    ]
    assert users == []


def test_only_the_clients_read_an_acks_msa() -> None:
    """An answering module knows the code of each ACK it built (`HandlerResult.ack_code`)."""
    readers = [
        path
        for path, source in _sources()
        if "read_msa" in source and not path.startswith(READS_PEER_ACKS)
    ]
    assert readers == []


def test_a_handler_result_with_an_ack_must_say_its_code() -> None:
    """No bare ACK whose code someone would read back from MSA: `ack_code` has no default."""
    ack_code = next(f for f in dataclasses.fields(HandlerResult) if f.name == "ack_code")
    assert ack_code.default is dataclasses.MISSING
    with pytest.raises(TypeError):
        HandlerResult(b"MSH|^~\\&|A\rMSA|AA|1\r")  # type: ignore[call-arg]


def test_the_sqlite_wal_switch_retries_a_locked_file_by_its_result_code(tmp_path: Path) -> None:
    """SQLITE_BUSY (told by `sqlite_errorcode`, once by the text "locked") is waited out until
    the holder lets go; any other error, or a lock past the deadline, is raised."""
    import sqlite3
    import threading
    import time

    from adapter.store.sqlite.connection import _enable_wal

    path = tmp_path / "wal.db"
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as caught:
        _enable_wal(waiter, time.monotonic() + 0.05)
    assert caught.value.sqlite_errorcode == sqlite3.SQLITE_BUSY
    threading.Timer(0.1, holder.rollback).start()
    _enable_wal(waiter, time.monotonic() + 5)
    assert waiter.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.close()
    waiter.close()
