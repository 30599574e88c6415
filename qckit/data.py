"""Official-format files in and out: validation, the pairs table, category paths.

The CIKM AnalytiCup 2025 files are JSON lines, one object a line::

    {"id": 1, "task": "QC", "language": "fr", "origin_query": "...", "category_path": "a,b,c", "label": 1}

QI rows carry ``item_title`` instead of ``category_path``; test files have no ``label``. CSV and Parquet
files with the same columns are read too (chosen by extension: .jsonl/.json, .csv, .parquet/.pq).
Every loader returns the pairs table of DESIGN.md (``id, task, language, query, target, label, origin,
source_id``) and every problem is a ``DataError`` naming the file, the 1-based line and the field.

Example:
    >>> report = validate_file("data/train_QC.jsonl")
    >>> print(report.format())                 # rows, tasks, languages, labels, warnings, errors
    >>> df = read_pairs("data/train_QC.jsonl")  # raises DataError("data/train_QC.jsonl:17: field ...")
    >>> parse_category_path("home & garden,arts,crafts & sewing,soap making")
    ['home & garden', 'arts,crafts & sewing', 'soap making']
"""
from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from qckit import BASE_COLUMNS, LANGUAGES, TASKS
from qckit.demo import write_demo
from qckit.runs import atomic_path

if TYPE_CHECKING:
    from qckit.config import Params

TARGET_FIELDS = {"QC": "category_path", "QI": "item_title"}
OFFICIAL_FIELDS = ("id", "task", "language", "origin_query", "category_path", "item_title", "label")
REQUIRED_FIELDS = ("id", "task", "language", "origin_query")
PAIRS_DTYPES: dict[str, Any] = {
    "id": "int64", "task": str, "language": str, "query": str, "target": str,
    "label": "Int8", "origin": str, "source_id": "Int64",
}
WARNING_KINDS = ("empty_query", "empty_target", "duplicate_rows", "conflicting_pairs", "unknown_fields")
SPLITS = ("train", "dev", "test")
MAX_ERRORS = 50
MAX_EXAMPLES = 5
_FILE_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_DUPLICATE_KEYS = ["task", "language", "query", "target", "label"]
_PAIR_KEYS = ["task", "query", "target"]


class DataError(ValueError):
    """A problem in a data file, located by file, 1-based line (None: the whole file) and field.

    For CSV the header is line 1; Parquet has no lines, so ``line`` is the 1-based row number.

    Example:
        >>> str(DataError("data/train.jsonl", 17, "label", "expected 0 or 1, got 2"))
        "data/train.jsonl:17: field 'label': expected 0 or 1, got 2"
    """

    def __init__(self, file: str | Path, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.message = str(file), line, field, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: field '{self.field}': {self.message}" if self.field else f"{where}: {self.message}"

    def __reduce__(self):  # keep the four attributes through pickling (worker processes)
        return (DataError, (self.file, self.line, self.field, self.message))


@dataclass
class FileReport:
    """What ``validate_file`` found in one file. ``examples`` maps a warning to its first line numbers."""

    path: str
    rows: int = 0
    errors: list[DataError] = field(default_factory=list)
    more_errors: int = 0
    warnings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WARNING_KINDS, 0))
    examples: dict[str, list[int]] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    has_labels: bool = False
    unknown_fields: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.more_errors

    def format(self) -> str:
        """A readable summary: counts, warnings with example lines, then the errors."""
        status = "OK" if self.ok else _plural(self.error_count, "error")
        out = [f"{self.path}: {status}, {_plural(self.rows, 'row')}"]
        if self.tasks:
            out.append(f"  tasks: {_join_counts(self.tasks)}")
            out.append(f"  languages: {_join_counts(self.languages)}")
            out.append(f"  labels: {_join_counts(self.labels)}")
        for kind, n in self.warnings.items():
            if n:
                shown = self.examples.get(kind, [])
                more = len(shown) < n and kind != "conflicting_pairs"  # that one counts pairs, not lines
                lines = ", ".join(map(str, shown)) + ", ..." * more
                names = f" {', '.join(self.unknown_fields)}" if kind == "unknown_fields" else ""
                word = "line" if len(shown) == 1 else "lines"
                out.append(f"  warning: {kind.replace('_', ' ')}{names}: {n:,} ({word} {lines})")
        out += [f"  {err}" for err in self.errors]
        if self.more_errors:
            out.append(f"  ... and {self.more_errors:,} more errors")
        return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _join_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())


# reading: bytes -> raw frame ---------------------------------------------------------------------
@dataclass
class _Raw:
    """Rows that parsed with the right types, in official field names, plus a ``line`` column."""

    frame: pd.DataFrame
    rows: int
    errors: list[DataError]
    unknown_fields: list[str]


def _read_raw(path: Path) -> _Raw:
    kind = _FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise DataError(path, None, None,
                        f"unknown file type '{path.suffix}'; expected .jsonl, .json, .csv or .parquet")
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError(path, None, None, "is a directory, not a data file") from None
    except OSError as err:
        raise DataError(path, None, None, f"cannot read file ({err.strerror or err})") from None
    if kind == "parquet":
        return _read_parquet(path, data)
    data = _check_text(path, data)
    return _read_jsonl(path, data) if kind == "jsonl" else _read_csv(path, data)


def _check_text(path: Path, data: bytes) -> bytes:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(path, 1, None, "file is UTF-16 (it starts with a UTF-16 byte-order mark); "
                        "expected UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is still UTF-8 (Excel writes one)
        data = data[3:]
    if not data.strip():
        raise DataError(path, None, None, "file is empty (no rows)")
    return data


def _read_jsonl(path: Path, data: bytes) -> _Raw:
    # Written by hand: no library reports line- and field-level errors for JSON lines at this speed.
    # Arrow's C++ reader parses clean files in a fraction of pandas.read_json's time; only when it
    # fails, or finds a type or gap it cannot pin to a line, does the Python pass below locate it.
    return _jsonl_fast(data) or _jsonl_by_line(path, data)


_NUL_BYTES = "contains NUL bytes: the file looks like UTF-16 without a byte-order mark; expected UTF-8"
_LATIN1 = "expected UTF-8 text (was the file saved as latin-1 or cp1252?)"
# Explicit types: inference would turn a column of date-like queries into timestamps. A value of
# another type (an id "7", a label 1.0) makes arrow fail, and the line-by-line pass says where.
_ARROW_SCHEMA = pa.schema([(name, pa.int64() if name in ("id", "label") else pa.string())
                           for name in OFFICIAL_FIELDS])


def _jsonl_fast(data: bytes) -> _Raw | None:
    options = pa_json.ParseOptions(explicit_schema=_ARROW_SCHEMA, unexpected_field_behavior="infer")
    try:
        table = pa_json.read_json(pa.BufferReader(data), parse_options=options)
        table.validate(full=True)  # arrow parses without checking UTF-8; this checks it, in C++
    except pa.ArrowException:
        return None
    lines = _row_lines(data, table.num_rows)
    # a missing or null required field: only the slow pass can tell which of the two it is
    if lines is None or any(table.column(name).null_count for name in REQUIRED_FIELDS):
        return None
    extra = [name for name in table.column_names if name not in OFFICIAL_FIELDS]
    frame = pd.DataFrame({name: _column(table, name) for name in OFFICIAL_FIELDS})
    frame["line"] = lines
    frame["extra"] = np.logical_or.reduce([table.column(n).is_valid().to_numpy(zero_copy_only=False)
                                           for n in extra]) if extra else False
    return _Raw(frame, table.num_rows, [], sorted(extra))


def _column(table: pa.Table, name: str) -> pd.Series:
    if name not in table.column_names or pa.types.is_null(table.schema.field(name).type):
        return pd.Series([None] * table.num_rows, dtype="Int64" if name == "label" else object)
    if name == "label":
        return table.column(name).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return table.column(name).to_pandas()


def _row_lines(data: bytes, rows: int) -> np.ndarray | None:
    """1-based line of each row arrow parsed; None when rows and lines do not pair up one to one."""
    raw = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(raw == ord("\n")) + 1))
    starts = starts[starts < len(raw)]  # no line after a final newline
    # arrow skips whitespace-only lines, so a line starting with whitespace needs a closer look
    if len(starts) == rows and not np.isin(raw[starts], list(b" \t\r\n")).any():
        return np.arange(1, rows + 1)
    filled = [i for i, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    # arrow also accepts two objects on one line, which is not JSON lines: the slow pass says where
    return np.asarray(filled, dtype=np.int64) if len(filled) == rows else None


def _jsonl_by_line(path: Path, data: bytes) -> _Raw:
    columns: dict[str, list] = {name: [] for name in OFFICIAL_FIELDS}
    lines, extra, errors, unknown, rows = [], [], [], set(), 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        rows += 1
        obj, problem = _parse_line(raw)
        problems = [(None, problem)] if problem else _record_problems(obj)
        if problems:
            errors += [DataError(path, lineno, name, message) for name, message in problems]
            continue
        for name in OFFICIAL_FIELDS:
            columns[name].append(obj.get(name))
        keys = obj.keys() - set(OFFICIAL_FIELDS)
        unknown |= keys
        extra.append(bool(keys))
        lines.append(lineno)
    dtypes = {"id": "int64", "label": "Int64"}
    frame = pd.DataFrame({name: pd.Series(values, dtype=dtypes.get(name, object))
                          for name, values in columns.items()})
    frame["line"] = np.asarray(lines, dtype=np.int64)
    frame["extra"] = np.asarray(extra, dtype=bool)
    return _Raw(frame, rows, errors, sorted(unknown))


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    if b"\x00" in raw:
        return None, _NUL_BYTES
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line"
        return None, f"not valid UTF-8 ({where}); {_LATIN1}"
    hint = "; a .json file must hold JSON lines, one object a line" if text.lstrip().startswith("[") else ""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"invalid JSON: {err.msg} (column {err.colno}){hint}"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object {{...}} on each line, got {_show(obj)}{hint}"
    return obj, None


def _record_problems(obj: dict) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = [(n, "missing from the row") for n in REQUIRED_FIELDS if n not in obj]
    value = obj.get("id")
    if "id" in obj and not (type(value) is int and -(2**63) <= value < 2**63):
        out.append(("id", f"expected an integer, got {_show(value)}"))
    for name in ("task", "language", "origin_query", "category_path", "item_title"):
        value = obj.get(name)
        # a null target field counts as absent (the row/task check reports it); a null query does not
        if (name in REQUIRED_FIELDS and name in obj or value is not None) and not isinstance(value, str):
            out.append((name, f"expected a string, got {_show(value)}"))
    value = obj.get("label")
    if value is not None and type(value) is not int:
        out.append(("label", f"expected 0 or 1 (an integer), got {_show(value)}"))
    elif value is not None and value not in (0, 1):
        out.append(("label", _label_message(value)))
    return out


def _label_message(value: Any) -> str:
    return f"expected 0 or 1, got {value}"


def _show(value: Any) -> str:
    """A JSON value as the file has it, with its kind: ``"7" (a string)``, ``true (a boolean)``."""
    kinds = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "an array",
             dict: "an object"}
    if value is None:
        return "null"
    text = json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({kinds.get(type(value), type(value).__name__)})"


def _decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(path, line, None, _NUL_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        message = f"not valid UTF-8 (byte 0x{data[err.start]:02x}); {_LATIN1}"
        raise DataError(path, line, None, message) from None


def _check_columns(path: Path, columns: Sequence[str], kind: str) -> None:
    missing = [c for c in REQUIRED_FIELDS if c not in columns]
    if not {"category_path", "item_title"} & set(columns):
        missing.append("category_path")
    if missing:
        names, has = ", ".join(f"'{c}'" for c in missing), ", ".join(map(str, columns))
        raise DataError(path, 1 if kind == "CSV" else None, missing[0],
                        f"{kind} file lacks column(s) {names} (it has: {has}); a row needs id, task, "
                        "language, origin_query and category_path (QC) or item_title (QI)")


def _read_csv(path: Path, data: bytes) -> _Raw:
    text = _decode_text(path, data)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(path, None, None, "file is empty (no header, no rows)") from None
    except pd.errors.ParserError as err:
        found = re.search(r"line (\d+)", str(err))
        raise DataError(path, int(found.group(1)) if found else None, None, f"not valid CSV: {err}") from None
    _check_columns(path, list(df.columns), "CSV")
    if df.empty:
        raise DataError(path, None, None, "file has a header but no rows")
    lines = np.arange(2, len(df) + 2)  # the header is line 1 (quoted multi-line cells shift this)
    id_ok = df["id"].str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool)
    label = df["label"] if "label" in df else pd.Series("", index=df.index)
    label_ok = label.isin(["0", "1", ""]).to_numpy()
    errors = _cell_errors(path, lines, ~id_ok, "id", df["id"], "expected an integer, got {!r}")
    errors += _cell_errors(path, lines, ~label_ok, "label", label, "expected 0 or 1, got {!r}")
    good = id_ok & label_ok
    df = df[good]
    frame = pd.DataFrame({
        "id": df["id"].astype("int64"), "task": df["task"], "language": df["language"],
        "origin_query": df["origin_query"],
        # CSV cannot leave a cell out: an empty cell of the other task's target column is "absent"
        "category_path": _csv_target(df, "category_path", "QI"),
        "item_title": _csv_target(df, "item_title", "QC"),
        "label": pd.to_numeric(label[good].where(label[good].ne(""))).astype("Int64"),
        "line": lines[good],
    })
    unknown = sorted(set(df.columns) - set(OFFICIAL_FIELDS))
    frame["extra"] = bool(unknown)
    return _Raw(frame.reset_index(drop=True), len(good), errors, unknown)


def _csv_target(df: pd.DataFrame, name: str, other_task: str) -> pd.Series:
    if name not in df:
        return pd.Series(None, index=df.index, dtype=object)
    col = df[name].astype(object)
    return col.mask(df["task"].eq(other_task) & col.eq(""), None)


def _cell_errors(path: Path, lines: np.ndarray, bad: np.ndarray, name: str, values: pd.Series,
                 template: str) -> list[DataError]:
    return [DataError(path, int(line), name, template.format(v))
            for line, v in zip(lines[bad], values.to_numpy()[bad])]


def _read_parquet(path: Path, data: bytes) -> _Raw:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, None, None, f"cannot read Parquet ({err})") from None
    _check_columns(path, table.column_names, "Parquet")
    if table.num_rows == 0:
        raise DataError(path, None, None, "file has no rows")
    table = _parquet_types(path, table)
    lines = np.arange(1, table.num_rows + 1)  # Parquet has no lines: the 1-based row number stands in
    missing = np.zeros(table.num_rows, dtype=bool)
    errors = []
    for name in REQUIRED_FIELDS:
        null = table.column(name).is_null().to_numpy(zero_copy_only=False)
        errors += [DataError(path, int(line), name, "missing value (null)") for line in lines[null]]
        missing |= null
    table = table.filter(pa.array(~missing))
    frame = pd.DataFrame({name: _column(table, name) for name in OFFICIAL_FIELDS})
    frame["line"] = lines[~missing]
    unknown = sorted(set(table.column_names) - set(OFFICIAL_FIELDS))
    frame["extra"] = bool(unknown)
    return _Raw(frame, len(lines), errors, unknown)


def _parquet_types(path: Path, table: pa.Table) -> pa.Table:
    """Check column types; cast ids to int64 and labels to int64 (a float column of 0.0/1.0/NaN is
    accepted: pandas stores an integer column with gaps as float)."""
    types = {n: table.schema.field(n).type for n in OFFICIAL_FIELDS if n in table.column_names}
    if not pa.types.is_integer(types["id"]):
        raise DataError(path, None, "id", f"expected integers, the column has type {types['id']}")
    for name in ("task", "language", "origin_query", "category_path", "item_title"):
        ok = name not in types or pa.types.is_string(types[name]) or pa.types.is_large_string(types[name])
        if not ok and not (name in TARGET_FIELDS.values() and pa.types.is_null(types[name])):
            raise DataError(path, None, name, f"expected strings, the column has type {types[name]}")
    label = types.get("label", pa.null())
    if not (pa.types.is_integer(label) or pa.types.is_floating(label) or pa.types.is_null(label)):
        raise DataError(path, None, "label", f"expected integers 0 or 1, the column has type {label}")
    for name in ("id", "label") if "label" in types and not pa.types.is_null(label) else ("id",):
        try:
            column = table.column(name).cast(pa.int64())
        except pa.ArrowInvalid as err:  # 1.5 or NaN in a float label column, ids beyond int64
            raise DataError(path, None, name, f"expected integers ({err})") from None
        table = table.set_column(table.column_names.index(name), name, column)
    return table


# checks on parsed rows ---------------------------------------------------------------------------
def _check_rows(path: Path, frame: pd.DataFrame, languages: Sequence[str]
                ) -> tuple[list[DataError], np.ndarray]:
    """Errors of values and of field combinations, and the mask of rows that have one."""
    # numpy masks: a dozen pandas Series operations would cost more than parsing a small file
    task = frame["task"]
    qc, qi = task.eq("QC").to_numpy(dtype=bool), task.eq("QI").to_numpy(dtype=bool)
    cp, it = frame["category_path"].notna().to_numpy(), frame["item_title"].notna().to_numpy()
    label = frame["label"].to_numpy(dtype="float64", na_value=np.nan)
    checks = [
        ("task", ~(qc | qi), lambda r: f"unknown task {r.task!r}; expected 'QC' or 'QI'"),
        ("language", ~frame["language"].isin(languages).to_numpy(dtype=bool),
         lambda r: f"unknown language code {r.language!r}; expected one of {', '.join(languages)}"
                   + " (Vietnamese is 'vn')" * (r.language == "vi")),
        ("item_title", qc & it & ~cp, "task 'QC' takes 'category_path', found 'item_title'"),
        ("category_path", qi & cp & ~it, "task 'QI' takes 'item_title', found 'category_path'"),
        ("item_title", qc & it & cp, "a QC row holds only 'category_path', not 'item_title'"),
        ("category_path", qi & it & cp, "a QI row holds only 'item_title', not 'category_path'"),
        ("category_path", qc & ~cp & ~it, "missing from the row (a QC row needs category_path)"),
        ("item_title", qi & ~cp & ~it, "missing from the row (a QI row needs item_title)"),
        ("label", ~np.isnan(label) & (label != 0) & (label != 1), lambda r: _label_message(r.label)),
    ]
    errors, bad = [], np.zeros(len(frame), dtype=bool)
    for name, mask, message in checks:
        if not mask.any():
            continue
        bad |= mask
        errors += [DataError(path, int(row.line), name, message(row) if callable(message) else message)
                   for row in frame[mask].itertuples(index=False)]
    errors += _mixed_labels(path, frame) + _repeated_ids(path, frame)
    return errors, bad


def _mixed_labels(path: Path, frame: pd.DataFrame) -> list[DataError]:
    has = frame["label"].notna().to_numpy()
    if has.all() or not has.any():
        return []
    # point at the first row of the minority kind: the likely mistake
    mostly_labelled = has.sum() >= (~has).sum()
    line = frame["line"].to_numpy()[~has if mostly_labelled else has][0]
    return [DataError(path, int(line), "label",
                      f"file mixes labelled and unlabelled rows ({(~has).sum():,} of {len(has):,} have no "
                      "label; "
                      f"the first row {'without' if mostly_labelled else 'with'} one is this): train and dev "
                      "files label every row, test files none")]


def _repeated_ids(path: Path, frame: pd.DataFrame) -> list[DataError]:
    repeated = frame["id"].duplicated(keep=False).to_numpy()
    if not repeated.any():
        return []
    sub = frame.loc[repeated, ["id", "line"]]
    first = sub.groupby("id")["line"].transform("min")
    later = sub[sub["line"] > first]
    return [DataError(path, int(line), "id", f"id {ident} already used on line {int(f)}; ids must be unique")
            for ident, line, f in zip(later["id"], later["line"], first[later.index])]


def _to_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Official-field rows (all valid) as the pairs table."""
    qc = frame["task"].eq("QC").to_numpy()
    cp, it = frame["category_path"], frame["item_title"]
    target = cp if qc.all() else it if not qc.any() else cp.where(qc, it)
    n = len(frame)
    text = {"task": frame["task"], "language": frame["language"], "query": frame["origin_query"],
            "target": target}
    return pd.DataFrame({
        "id": frame["id"].to_numpy(dtype=np.int64),
        **{name: col.astype(str).array for name, col in text.items()},
        "label": frame["label"].astype("Int8").array,
        "origin": pd.array(["original"], dtype=str).take(np.zeros(n, dtype=np.intp)),
        "source_id": pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)),  # all NA
    })


def empty_pairs() -> pd.DataFrame:
    """A pairs table with no rows and the base columns' dtypes (e.g. a split without files)."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in PAIRS_DTYPES.items()})


def _inspect(path: str | Path, languages: Sequence[str], full: bool
             ) -> tuple[FileReport, pd.DataFrame | None]:
    """Read and check one file; ``full`` adds the counts and warnings of a report (``read_pairs``
    skips them, and gives up building the table once there is an error)."""
    path = Path(path)
    report = FileReport(path=str(path))
    try:
        raw = _read_raw(path)
    except DataError as err:
        report.errors = [err]
        return report, None
    frame = raw.frame
    errors, bad = _check_rows(path, frame, languages)
    errors = sorted(raw.errors + errors, key=lambda e: e.line or 0)
    report.rows, report.errors = raw.rows, errors[:MAX_ERRORS]
    report.more_errors = max(len(errors) - MAX_ERRORS, 0)
    if not full:
        return report, None if errors else _to_pairs(frame)
    report.unknown_fields = raw.unknown_fields
    report.tasks = _counts(frame["task"])
    report.languages = _counts(frame["language"])
    report.labels = _counts(frame["label"].astype("string").fillna("missing"))
    report.has_labels = bool(frame["label"].notna().any())
    good = frame[~bad] if bad.any() else frame
    pairs = _to_pairs(good)
    _add_warnings(report, pairs, good["line"].to_numpy(), good["extra"].to_numpy(dtype=bool))
    return report, pairs


def _add_warnings(report: FileReport, pairs: pd.DataFrame, lines: np.ndarray, extra: np.ndarray) -> None:
    masks = {
        "empty_query": pairs["query"].str.strip().eq("").to_numpy(),
        "empty_target": pairs["target"].str.strip().eq("").to_numpy(),
        "duplicate_rows": find_duplicates(pairs).to_numpy(),
        "conflicting_pairs": _conflict_rows(pairs).to_numpy(),
        "unknown_fields": extra,
    }
    for kind, mask in masks.items():
        report.warnings[kind] = int(mask.sum())
        report.examples[kind] = [int(x) for x in lines[mask][:MAX_EXAMPLES]]
    report.warnings["conflicting_pairs"] = len(find_conflicts(pairs))  # pairs, not rows


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts(sort=True).items()}


def validate_file(path: str | Path, *, languages: Sequence[str] = LANGUAGES) -> FileReport:
    """Check one data file and count what is in it; never raises for a bad file.

    Errors (the file cannot be used): unreadable, empty, not UTF-8, invalid JSON / CSV / Parquet, a
    line that is not an object, a missing field, a wrong type, a label other than the integers 0 or 1,
    an unknown task, a target field that does not match the task, an unknown language code (codes
    outside ``languages``: a misspelt code would silently become a new language), a repeated id, a mix
    of labelled and unlabelled rows. Warnings (counted, with example lines): empty queries or targets,
    exact duplicate rows, pairs seen with both labels, fields outside the official format.

    Example:
        >>> report = validate_file("data/train_QC.jsonl")
        >>> report.ok, report.warnings["duplicate_rows"], report.examples["duplicate_rows"][:2]
        (True, 33, [246, 2809])
    """
    return _inspect(path, languages, full=True)[0]


def read_pairs(path: str | Path, *, languages: Sequence[str] = LANGUAGES) -> pd.DataFrame:
    """Load one file into the pairs table, validated; raise ``DataError`` if it has any error.

    The error is the first one found, with a count and a few more in its message when there are several.
    Warnings are not computed here (``validate_file`` and ``load_pairs`` deal with them).

    Example:
        >>> df = read_pairs("data/dev_QC.jsonl")
        >>> df.columns.tolist()
        ['id', 'task', 'language', 'query', 'target', 'label', 'origin', 'source_id']
    """
    report, pairs = _inspect(path, languages, full=False)
    if report.errors:
        first, n = report.errors[0], report.error_count
        if n == 1:
            raise first
        more = "\n".join(f"  {e}" for e in report.errors[1:4])
        raise DataError(first.file, first.line, first.field,
                        f"{first.message}\n{n - 1:,} more errors, e.g.\n{more}\n"
                        f"(run `qckit validate {first.file}` to list them)")
    return pairs


# table-level helpers ------------------------------------------------------------------------------
def find_duplicates(df: pd.DataFrame) -> pd.Series:
    """Rows that repeat an earlier row with the same task, language, query, target and label."""
    return df.duplicated(_DUPLICATE_KEYS, keep="first")


def find_conflicts(df: pd.DataFrame) -> pd.DataFrame:
    """Pairs (task, query, target) seen with both labels, with ``rows``, ``positives``, ``negatives``.

    Example:
        >>> find_conflicts(df).head()   # task, query, target, rows, positives, negatives
    """
    labelled = df[df["label"].notna()]
    grouped = labelled["label"].astype("int64").groupby([labelled[k] for k in _PAIR_KEYS], sort=False)
    out = grouped.agg(rows="size", positives="sum").reset_index()
    out["negatives"] = out["rows"] - out["positives"]
    return out[(out["positives"] > 0) & (out["negatives"] > 0)].reset_index(drop=True)


def _conflict_rows(df: pd.DataFrame) -> pd.Series:
    labelled = df["label"].notna()
    kinds = df.loc[labelled].groupby(_PAIR_KEYS, sort=False)["label"].transform("nunique")
    return (kinds > 1).reindex(df.index, fill_value=False)


def _empty_rows(df: pd.DataFrame) -> pd.Series:
    return df["query"].str.strip().eq("") | df["target"].str.strip().eq("")


Filter = Callable[[pd.DataFrame], pd.Series]


def _apply_filters(df: pd.DataFrame, filters: list[tuple[str, Filter | None]], by: str
                   ) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Drop the rows each filter flags, in order; count the rows left per value of ``by`` after each."""
    left = {"read": _counts(df[by])}
    for name, flag in filters:
        if flag is not None and len(df):
            df = df[~flag(df).to_numpy(dtype=bool)]
        left[name] = _counts(df[by])
    return df.reset_index(drop=True), left


def _dropped(left: dict[str, dict[str, int]], key: str | None = None) -> dict[str, int]:
    """Rows each filter removed (for one ``by`` value, or all), from ``_apply_filters``' counts."""
    stages = list(left)
    total = {s: left[s].get(key, 0) if key is not None else sum(left[s].values()) for s in stages}
    return {s: total[p] - total[s] for p, s in zip(stages, stages[1:])}


def _read_all(paths: Sequence[Path], drop_duplicates: bool, languages: Sequence[str]) -> pd.DataFrame:
    """Every file concatenated with a ``_file`` column; ids checked across files."""
    frames = [read_pairs(p, languages=languages).assign(_file=str(p)) for p in paths]
    if not frames:
        return empty_pairs().assign(_file=pd.Series(dtype=str))
    df = pd.concat(frames, ignore_index=True)
    shared = df[df["id"].duplicated(keep=False)]
    if len(shared):
        distinct = shared.drop_duplicates(["id", *_DUPLICATE_KEYS])
        clash = distinct[distinct["id"].duplicated(keep=False)]
        if len(clash) or not drop_duplicates:
            rows = (clash if len(clash) else shared).head(2)
            what = "different rows" if len(clash) else "the same row (drop_duplicates=False keeps both)"
            ident, (a, b) = int(rows["id"].iloc[0]), rows["_file"].tolist()
            raise DataError(b, None, "id", f"id {ident} is used for {what} in {a} and {b}; ids must be "
                            f"unique across files ({shared['id'].nunique():,} ids are shared)")
    return df


def load_pairs(paths: str | Path | Iterable[str | Path], *, drop_empty: bool = True,
               drop_duplicates: bool = True, conflicts: str = "keep",
               languages: Sequence[str] = LANGUAGES) -> tuple[pd.DataFrame, dict]:
    """Read many files into one pairs table; drop empty rows, duplicates and conflicting pairs.

    Args:
        paths: one path or several; each is validated (``read_pairs``).
        drop_empty: drop rows whose query or target is empty after stripping whitespace.
        drop_duplicates: drop rows repeating an earlier (task, language, query, target, label) row,
            across files too. The same id in two files is an error unless the rows are identical and
            this is on (then the later copy goes as a duplicate).
        conflicts: ``"keep"`` every row, or ``"drop"`` every row of a pair seen with both labels.

    Returns:
        The table and ``{"files": {path: counts}, "total": counts}`` where counts are ``rows`` (read),
        ``empty``, ``duplicates``, ``conflicts`` (dropped) and ``kept``.

    Example:
        >>> df, info = load_pairs(["train_QC.jsonl", "train_QI.jsonl"], conflicts="drop")
        >>> info["total"]
        {'rows': 71610, 'empty': 1, 'duplicates': 33, 'conflicts': 0, 'kept': 71576}
    """
    if conflicts not in ("keep", "drop"):
        raise ValueError(f"conflicts must be 'keep' or 'drop', got {conflicts!r}")
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    df = _read_all(paths, drop_duplicates, languages)
    filters = [("empty", _empty_rows if drop_empty else None),
               ("duplicates", find_duplicates if drop_duplicates else None),
               ("conflicts", _conflict_rows if conflicts == "drop" else None)]
    df, left = _apply_filters(df, filters, by="_file")

    def counts(key: str | None) -> dict[str, int]:
        read = left["read"].get(key, 0) if key is not None else sum(left["read"].values())
        dropped = _dropped(left, key)
        return {"rows": read, **dropped, "kept": read - sum(dropped.values())}

    info = {"files": {str(p): counts(str(p)) for p in paths}, "total": counts(None)}
    return df.drop(columns="_file"), info


# writing ------------------------------------------------------------------------------------------
def write_official(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a pairs table as an official JSON-lines file, atomically.

    Field order as in the official files: ``id, task, language, origin_query, category_path`` (QC) or
    ``item_title`` (QI), ``label``; ``label`` is left out where it is missing. Extra columns are ignored.

    Example:
        >>> write_official(read_pairs("dev_QC.jsonl"), "copy.jsonl")  # read_pairs gives the table back
    """
    unknown = set(df["task"]) - set(TASKS)
    if unknown:
        raise ValueError(f"cannot write tasks {sorted(unknown)}; expected 'QC' or 'QI'")
    labels = df["label"].astype("Int8").tolist() if "label" in df else [pd.NA] * len(df)
    columns = zip(df["id"].tolist(), df["task"].tolist(), df["language"].tolist(), df["query"].tolist(),
                  df["target"].tolist(), labels)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for ident, task, language, query, target, label in columns:
                row = {"id": int(ident), "task": task, "language": language, "origin_query": query,
                       TARGET_FIELDS[task]: target}
                if label is not pd.NA:
                    row["label"] = int(label)
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


# category paths -----------------------------------------------------------------------------------
# Level names with a bare comma inside, found in the CIKM QC sample by splitting on bare commas and
# looking for a fragment always followed by the same one where the pair makes no sense as parent and
# child ("arts" > "crafts & sewing", "pizza" > "burgers"); most are AliExpress category names.
COMMA_LEVELS = (
    "arts,crafts & sewing",
    "kitchen,dining & bar",
    "sports shoes,clothing&accessories",
    "vr,ar devices& accessories",
    "roller,skateboard",
    "car mp4,mp5",
    "switch,sockets and accessories",
    "pizza,burgers",
)
_LEVEL_SEPARATOR = re.compile(r",(?! )")  # a comma followed by a space is inside a level name


@functools.lru_cache(maxsize=8)
def _comma_fragments(known_levels: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for name in known_levels:
        parts = tuple(_LEVEL_SEPARATOR.split(name.lower()))
        if len(parts) > 1:
            out.setdefault(parts[0], []).append(parts)
    for options in out.values():
        options.sort(key=len, reverse=True)  # the longest known name wins
    return out


def parse_category_path(path: str, known_levels: Iterable[str] = COMMA_LEVELS) -> list[str]:
    """Split an official comma-joined category path into its level names.

    A comma followed by a space never separates levels ("flags, banners & accessories"); a bare comma
    does, except inside the names of ``known_levels`` ("arts,crafts & sewing"). Pass
    ``(*COMMA_LEVELS, "my,level")`` to add names. Matching ignores case; names keep the path's text.

    Example:
        >>> parse_category_path("home & garden,arts,crafts & sewing,soap making,soap molds")
        ['home & garden', 'arts,crafts & sewing', 'soap making', 'soap molds']
    """
    if not path.strip():
        return []
    parts = _LEVEL_SEPARATOR.split(path)
    known = _comma_fragments(tuple(known_levels))
    levels, i = [], 0
    while i < len(parts):
        for option in known.get(parts[i].lower(), ()):
            if tuple(p.lower() for p in parts[i:i + len(option)]) == option:
                levels.append(",".join(parts[i:i + len(option)]))
                i += len(option)
                break
        else:
            levels.append(parts[i])
            i += 1
    return levels


def category_depth(path: str, known_levels: Iterable[str] = COMMA_LEVELS) -> int:
    """Number of levels of a category path (0 for an empty one)."""
    return len(parse_category_path(path, known_levels))


def top_level(path: str, known_levels: Iterable[str] = COMMA_LEVELS) -> str:
    """The first level of a category path ("" for an empty one)."""
    levels = parse_category_path(path, known_levels)
    return levels[0] if levels else ""


# the splits of step 01 ----------------------------------------------------------------------------
def _split_files(params: Params, raw_dir: Path) -> dict[str, list[Path]]:
    data = params.data
    if data.source == "demo":
        written = write_demo(raw_dir, seed=params.demo.seed, noise_rate=params.demo.noise_rate,
                             queries_per_language=params.demo.queries_per_language)
        return {s: [Path(written[f"{s}_{t}"]) for t in data.tasks if f"{s}_{t}" in written] for s in SPLITS}
    return {"train": [Path(p) for p in data.train], "dev": [Path(p) for p in data.dev],
            "test": [Path(p) for p in data.test]}


def _over_cap(df: pd.DataFrame, cap: int, seed: int) -> pd.Series:
    """Rows left out of a seeded sample of at most ``cap`` rows per task, stratified by language and label."""
    shuffled = df.sample(frac=1.0, random_state=np.random.default_rng(seed))
    strata = [shuffled["task"], shuffled["language"], shuffled["label"].astype("Int64").fillna(-1)]
    rank = shuffled.groupby(strata, sort=False).cumcount()
    size = shuffled.groupby(strata, sort=False)["id"].transform("size")
    # each stratum spread evenly over [0, 1): the cap smallest keys keep every stratum's share
    key = (rank + 0.5) / size
    keep = key.groupby(shuffled["task"]).rank(method="first") <= cap
    return ~keep.reindex(df.index)


def load_splits(params: Params, raw_dir: str | Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Step 01's loader: train, dev and test pairs tables as ``params.data`` asks.

    ``data.source == "demo"`` writes the synthetic files into ``raw_dir`` (``qckit.demo.write_demo``);
    otherwise ``data.train/dev/test`` are read. Only ``data.tasks`` are kept; train keeps only
    ``data.train_languages`` when set; train and dev drop empty rows, duplicates and conflicting pairs
    as configured; ``data.max_rows`` caps each split and task (seeded, stratified by language and label).
    Test rows are never dropped for content: a submission needs a prediction for every test id.

    Returns:
        ``{"train", "dev", "test"}`` tables (test may have no rows) and counts per split: ``files``,
        ``rows`` (per task, after each filter: ``read, tasks, languages, empty, duplicates, conflicts,
        max_rows``), ``dropped`` (rows each filter removed) and ``kept``.

    Example:
        >>> splits, counts = load_splits(load_params("params/smoke.yaml"), "outputs/x/data/raw")
        >>> counts["train"]["dropped"]
        {'tasks': 0, 'languages': 0, 'empty': 0, 'duplicates': 2, 'conflicts': 0, 'max_rows': 0}
    """
    data, seed = params.data, params.run.seed
    files = _split_files(params, Path(raw_dir))
    languages = tuple(dict.fromkeys([*LANGUAGES, *(data.train_languages or [])]))
    splits, counts = {}, {"source": data.source}
    for split, paths in files.items():
        cleaned = split != "test"
        filters = [
            ("tasks", lambda d: ~d["task"].isin(data.tasks)),
            ("languages", (lambda d: ~d["language"].isin(data.train_languages))
             if split == "train" and data.train_languages else None),
            ("empty", _empty_rows if cleaned and data.drop_empty else None),
            ("duplicates", find_duplicates if cleaned and data.drop_duplicates else None),
            ("conflicts", _conflict_rows if cleaned and data.conflicts == "drop" else None),
            ("max_rows", (lambda d: _over_cap(d, data.max_rows, seed)) if data.max_rows else None),
        ]
        df = _read_all(paths, drop_duplicates=cleaned and data.drop_duplicates, languages=languages)
        df, left = _apply_filters(df, filters, by="task")
        splits[split] = df.drop(columns="_file")[list(BASE_COLUMNS)]
        counts[split] = {"files": [str(p) for p in paths], "rows": left, "dropped": _dropped(left),
                         "kept": len(df)}
    return splits, counts
