"""CSV sheets for people to fill in (review verdicts, translation ratings): safe to open in a spreadsheet.

A cell that starts like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) would run in Excel or
LibreOffice when the sheet is opened: ``guard_cell`` puts the standard leading apostrophe before it (and before
a leading apostrophe, so that the guard can be told from the data), ``unguard_cell`` takes it off again when the
sheet comes back. Sheets are UTF-8 with a byte-order mark (Excel reads UTF-8 only so), comma-separated, every
cell quoted where needed by the csv module, and written atomically, readable by others (0644).

Example:
    >>> guard_cell("=HYPERLINK(...)"), unguard_cell("'=HYPERLINK(...)")
    ("'=HYPERLINK(...)", '=HYPERLINK(...)')
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qckit.runs import atomic_path

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SHEET_FILE_MODE = 0o644


def guard_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it without running it: a leading apostrophe before a formula start
    (``=``, ``+``, ``-``, ``@``, tab, carriage return) or an apostrophe; ``unguard_cell`` undoes it."""
    return "'" + value if value.startswith((*FORMULA_START, "'")) else value


def unguard_cell(value: str) -> str:
    """The cell as exported before ``guard_cell``: one leading apostrophe removed where the guard put it."""
    return value[1:] if value.startswith("'") and value[1:].startswith((*FORMULA_START, "'")) else value


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return guard_cell(str(value))


def write_sheet(path: str | Path, table: pd.DataFrame, columns: Sequence[str] | None = None) -> Path:
    """Write ``table`` (its ``columns``, default all) as a guarded CSV sheet, atomically; returns the path."""
    columns = list(columns or table.columns)
    with atomic_path(path, mode=SHEET_FILE_MODE) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in table[columns].itertuples(index=False):
                writer.writerow([_cell(v) for v in row])
    return Path(path)
