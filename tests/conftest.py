"""Session-wide log capture, so `test_no_phi_in_logs` can check every line the suite logged.

Why here: the PHI requirement is about every log line emitted during the whole test run,
and only a conftest sees the whole session. What it does, and nothing else:

1. Configures structlog as production does (`adapter.logs.configure`: `drop_phi`, the
   filtering logger, JSON lines on stderr, which pytest shows for a failing test), at the
   lowest level (debug) so no line escapes the check by being filtered out.
2. Puts a recording processor just before the last processor of structlog's chain (the
   renderer), so it sees each event exactly as it is about to be printed: after
   `drop_phi`, with the exception text already formatted. Tests that call
   `structlog.configure` or use `structlog.testing.capture_logs` keep working: every way of
   (re)configuring structlog is wrapped so that the recorder is put back in place (in
   `capture_logs` it sits before `LogCapture`, which sees the events unchanged). The
   recorder never changes or drops an event.
3. Adds a handler to the stdlib root logger (level left as it is, WARNING by default, as in
   production where nothing configures stdlib logging) for what aiohttp, asyncio and other
   libraries log, tracebacks included.
4. Moves `tests/test_no_phi_in_logs.py` to the end of the run, so it sees every line.

The lines are kept in memory for the session (`session_log_lines` fixture). Under
pytest-xdist each worker would see only its own tests' lines; the suite does not use it.
Logs printed by a child process (the `serve` test runs the CLI in a subprocess) are not
captured.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import pytest
import structlog
import structlog._config
import structlog.testing

from adapter.logs import configure as configure_adapter_logs

PHI_TEST_MODULE = "test_no_phi_in_logs.py"

SESSION_LOG_LINES: list[str] = []  # appended from any thread (the service may log off-loop)
_LOCK = threading.Lock()


def _record(line: str) -> None:
    with _LOCK:
        SESSION_LOG_LINES.append(line)


def record_structlog_event(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The recorder processor: one JSON line per event, the event passed on untouched."""
    shown: dict[str, Any] = dict(event_dict)
    if shown.get("exc_info"):  # not yet formatted (a chain without format_exc_info)
        shown = dict(structlog.processors.format_exc_info(_logger, method, shown))
    _record(f"structlog {method} " + json.dumps(shown, default=repr, sort_keys=True))
    return event_dict


def _with_recorder(processors: Iterable[Any]) -> list[Any]:
    """The chain with the recorder before its last processor (in place when given a list:
    `capture_logs` relies on the list's identity)."""
    chain = processors if isinstance(processors, list) else list(processors)
    if record_structlog_event not in chain:
        chain.insert(max(len(chain) - 1, 0), record_structlog_event)
    return chain


def _wrap_configure(original: Callable[..., None]) -> Callable[..., None]:
    def configure(*args: Any, **kwargs: Any) -> None:
        if args:  # `processors` is the only positional parameter used in practice
            args = (_with_recorder(args[0]), *args[1:])
        elif kwargs.get("processors") is not None:
            kwargs["processors"] = _with_recorder(kwargs["processors"])
        original(*args, **kwargs)
        if not args and kwargs.get("processors") is None:
            _with_recorder(structlog.get_config()["processors"])

    configure.__wrapped__ = original  # type: ignore[attr-defined]
    return configure


def _wrap_reset(original: Callable[[], None]) -> Callable[[], None]:
    def reset_defaults() -> None:
        original()
        _with_recorder(structlog.get_config()["processors"])

    return reset_defaults


class _StdlibRecorder(logging.Handler):
    """Every stdlib record that reaches the root logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _record("stdlib " + self.format(record))
        except Exception:  # a record that cannot be formatted: keep what can be read
            _record(f"stdlib {record.levelname} {record.name} {record.msg!r}")


def pytest_configure(config: pytest.Config) -> None:
    """Install the capture before any test module is imported."""
    configure_adapter_logs(log_format="json", level="debug")
    structlog.configure = _wrap_configure(structlog.configure)
    structlog._config.configure = _wrap_configure(structlog._config.configure)
    structlog.testing.configure = _wrap_configure(structlog.testing.configure)  # type: ignore[attr-defined]
    structlog.reset_defaults = _wrap_reset(structlog.reset_defaults)
    structlog._config.reset_defaults = _wrap_reset(structlog._config.reset_defaults)
    _with_recorder(structlog.get_config()["processors"])
    logging.getLogger().addHandler(_StdlibRecorder())
    config.addinivalue_line(
        "markers", "fuzz: large fuzz runs, only with ADAPTER_FUZZ=1 (make fuzz)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The PHI check reads the lines every other test produced: it runs last."""
    last = [item for item in items if item.path.name == PHI_TEST_MODULE]
    if last:
        items[:] = [item for item in items if item.path.name != PHI_TEST_MODULE] + last


@pytest.fixture(scope="session")
def session_log_lines() -> list[str]:
    """Every log line recorded so far in this session (structlog events and stdlib records)."""
    return SESSION_LOG_LINES


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing browser test leaves a screenshot of its page in test-artifacts/."""
    outcome = yield
    report = outcome.get_result()
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None:
        from tests.browser_support import screenshot

        try:
            path = screenshot(page, f"FAILED-{item.name}")
            report.sections.append(("screenshot", str(path)))
        except Exception as exc:  # a crashed page must not hide the test's own failure
            report.sections.append(("screenshot", f"not taken: {exc}"))
