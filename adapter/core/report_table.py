"""A report as a table (the page shows it, the CSV download is it) and its CSV text.

Why one type: the page's table and the CSV are the same rows, so what a manager sees is
what the spreadsheet gets. The CSV neutralises spreadsheet formula injection: a text cell
starting with `=`, `+`, `-`, `@` (or a tab / carriage return, which some spreadsheets skip
before reading a formula) is prefixed with `'`, so Excel or LibreOffice shows it as text
instead of evaluating it (OWASP "CSV injection"). Numbers are written by us, never as text
from the feed, and stay numbers (a negative lag is a number, not a formula).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

Cell = str | int | Decimal | None

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ReportTable:
    """Column headings and rows of cells; None is an empty cell (no value, not zero)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"row of {len(row)} cells for {len(self.columns)} columns")


def safe_cell(value: Cell) -> str:
    """One CSV cell: text that a spreadsheet would run as a formula is quoted with `'`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return str(value)


def csv_text(table: ReportTable, note: Sequence[str] = ()) -> str:
    """The table as CSV (RFC 4180: CRLF, quoted when needed), headings first.

    `note` cells (e.g. the expected-payment label) are added as a last column, on the
    heading row only as its name and on every row as its value, so the file stays one
    rectangular table a spreadsheet filters without losing the label.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in table.columns] + ["note"] * bool(note))
    label = " ".join(note)
    for row in table.rows:
        writer.writerow([safe_cell(c) for c in row] + [safe_cell(label)] * bool(note))
    return out.getvalue()
