"""CSV rows with their file and line, and the cell checks every table uses.

The first fault stops loading with `MappingError("<file> line <n>: <problem>")`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from adapter.core.mappings import table_key
from adapter.errors import EXIT_CONFIG, AdapterError, Disposition
from adapter.hl7.ack import AckCode
from adapter.mappings_loader.tables import COLUMNS, EARLIER_COLUMNS


class MappingError(AdapterError, ValueError):
    """A table in `mappings/` is wrong; the message names the file, the line and the fault.

    A configuration error wherever it is met (`charge-adapter code`, `dead-letters
    reprocess`): exit 2. The service wraps it at start-up in a `StartupError` naming
    ADAPTER_MAPPINGS_DIR; a reload keeps the old tables and answers it."""

    DISPOSITION = Disposition(AckCode.AE, 500, dead_letter=False, exit_code=EXIT_CONFIG)


E = TypeVar("E", bound=StrEnum)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Row:
    """One data line of a table: its cells by column and where it came from."""

    path: Path
    line: int  # 1-based physical line, the header being line 1
    cells: Mapping[str, str]

    def __getitem__(self, column: str) -> str:
        return self.cells[column]

    @property
    def where(self) -> str:
        return f"{self.path} line {self.line}"

    def error(self, problem: str) -> MappingError:
        return MappingError(f"{self.where}: {problem}")


def read_table(directory: Path, name: str) -> tuple[Row, ...]:
    """Every non-blank row of one table, after checking its header and field count."""
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8-sig")  # a site may save it from a spreadsheet
    except FileNotFoundError:
        raise MappingError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = numbered_records(text, path)
    columns = COLUMNS[name]
    header = tuple(next(lines, (1, []))[1])
    if header in EARLIER_COLUMNS.get(name, ()):
        rows = (make_row(path, line, cells, header) for line, cells in lines if any(cells))
        return tuple(Row(r.path, r.line, {c: r.cells.get(c, "") for c in columns}) for r in rows)
    check_header(list(header), path, columns)
    return tuple(make_row(path, line, cells, columns) for line, cells in lines if any(cells))


def numbered_records(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """CSV records with their line numbers (a quoted cell may span lines), cells stripped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for cells in reader:
            yield reader.line_num, [cell.strip() for cell in cells]
    except csv.Error as exc:
        raise MappingError(f"{path} line {reader.line_num}: {exc}") from None


def check_header(header: list[str], path: Path, columns: tuple[str, ...]) -> None:
    """Columns are matched by name and order, so a shifted column cannot load silently."""
    if tuple(header) != columns:
        found = ",".join(header) if header else "nothing"
        raise MappingError(f"{path} line 1: header must be {','.join(columns)} (found {found})")


def make_row(path: Path, line: int, cells: list[str], columns: tuple[str, ...]) -> Row:
    if len(cells) != len(columns):
        raise MappingError(
            f"{path} line {line}: expected {len(columns)} fields ({','.join(columns)}), "
            f"found {len(cells)}"
        )
    return Row(path, line, dict(zip(columns, cells, strict=True)))


def nonempty(row: Row, column: str) -> str:
    value = row[column]
    if not value:
        raise row.error(f"{column} is empty")
    return value


def matching(row: Row, column: str, pattern: re.Pattern[str], what: str) -> str:
    value = row[column]
    if not pattern.fullmatch(value):
        raise row.error(f"{column} {value!r} is not {what}")
    return value


def one_of(row: Row, column: str, allowed: Sequence[str], what: str) -> str:
    value = row[column]
    if value not in allowed:
        raise row.error(f"unknown {what} {value!r} (expected one of {', '.join(allowed)})")
    return value


def enum_cell(row: Row, column: str, enum: type[E], what: str, allowed: Sequence[str] = ()) -> E:
    return enum(one_of(row, column, allowed or [e.value for e in enum], what))


def positive_decimal(row: Row, column: str) -> Decimal:
    """A Decimal > 0: billing units are money-adjacent, so never a float."""
    value = row[column]
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise row.error(f"{column} {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise row.error(f"{column} {value!r} must be a number greater than 0")
    return amount


def nonnegative_decimal(row: Row, column: str) -> Decimal:
    """A rate or RVU: a Decimal >= 0 (an RVU of 0 is real: carrier-priced codes carry it)."""
    value = row[column]
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise row.error(f"{column} {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise row.error(f"{column} {value!r} must be a number of 0 or more")
    return amount


def iso_date(row: Row, column: str) -> date:
    value = row[column]
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise row.error(f"{column} {value!r} is not a date (YYYY-MM-DD)") from None


def by_key(rows: Iterable[Row], key: Callable[[Row], str], what: str) -> dict[str, Row]:
    """Rows by key; a second row with the same key is an error, not a silent override."""
    seen: dict[str, Row] = {}
    for row in rows:
        value = key(row)
        if value in seen:
            raise row.error(f"duplicate {what} {value!r} (first on line {seen[value].line})")
        seen[value] = row
    return seen


def upper_code(row: Row) -> str:
    """Lookup codes are matched case-insensitively, so they are stored upper-case."""
    return nonempty(row, "code").upper()


def vocabulary_code(row: Row) -> str:
    """Route and method rows are matched as `Mappings.route` looks them up (`table_key`):
    two rows that differ only in case or spacing are the same row, and refused as such."""
    return table_key(nonempty(row, "code"))


def read_only(items: Mapping[str, T]) -> Mapping[str, T]:
    return MappingProxyType(dict(items))
