"""Official-format files in and out: validation, the pairs table, category paths.

The CIKM AnalytiCup 2025 files are JSON lines, one object a line::

    {"id": 1, "task": "QC", "language": "fr", "origin_query": "...", "category_path": "a,b,c", "label": 1}

QI rows carry ``item_title`` instead of ``category_path``; test files have no ``label``. A .jsonl/.json file
that holds one JSON array of such objects (``[{...}, {...}]``, indented or not) is read too, each element a
row located by the line it starts on. CSV, TSV and Parquet files with the same columns are read as well. The
format is told by the content, never by the name (the official files are ``train_QC.txt`` etc.): gzip is
decompressed first, ``PAR1`` is Parquet, a first character ``{`` or ``[`` is JSON, anything else CSV (or TSV,
when the header has tabs); the extension only decides what an unrecognisable file is reported as. A row
without ``task`` (or with a null one) gets it from its fields: ``category_path`` is QC, ``item_title`` QI.

Ids are kept as they are: integers when every id of a file is one, else strings. ``language`` may be any code
(an unfamiliar one is a warning, ``qckit.languages``) or absent (detected from the query). A team's own files
are read through a ``Layout`` (``qckit.layout``: ``data.columns``, ``data.positive_if``, ``data.task``), each
row renamed and relabelled before the same checks, and errors name the file's own fields.

Text must be valid Unicode: a lone surrogate escape (``"\ud800"``, what a cut emoji leaves in query logs)
or bytes that are not UTF-8 are errors naming the line and field, never replaced silently.
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

import csv
import functools
import gzip
import io
import json
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from qckit import BASE_COLUMNS, LANGUAGES, TASKS
from qckit.demo import write_demo
from qckit.languages import detect_languages, familiar_language
from qckit.layout import OFFICIAL, Layout
from qckit.runs import atomic_path

if TYPE_CHECKING:
    from qckit.config import Params

TARGET_FIELDS = {"QC": "category_path", "QI": "item_title"}
OFFICIAL_FIELDS = ("id", "task", "language", "origin_query", "category_path", "item_title", "label")
REQUIRED_FIELDS = ("id", "task", "origin_query")
# ``task`` may be left out (the target field tells it), and ``language`` (detected from the query)
_ROW_REQUIRED = ("id", "origin_query")
# ``id`` and ``source_id`` are integers when every id is one, else strings (ids are kept verbatim)
PAIRS_DTYPES: dict[str, Any] = {
    "id": "int64", "task": str, "language": str, "query": str, "target": str,
    "label": "Int8", "origin": str, "source_id": "Int64",
}
WARNING_KINDS = ("empty_query", "empty_target", "duplicate_rows", "conflicting_pairs", "unknown_fields",
                 "empty_category_level", "unfamiliar_language")
SPLITS = ("train", "dev", "test")
MAX_ERRORS = 50
MAX_EXAMPLES = 5
# only for a file whose content is not recognisable: which reader's errors describe it best
_FILE_KINDS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet",
               ".pq": "parquet"}
_GZIP_MAGIC, _PARQUET_MAGIC = b"\x1f\x8b", b"PAR1"
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

    def __str__(self) -> str:  # control characters and lone surrogates escaped: safe to print and encode
        file, message = _printable(self.file), _printable(self.message, keep="\n")
        where = file if self.line is None else f"{file}:{self.line}"
        return f"{where}: field '{_printable(self.field)}': {message}" if self.field else f"{where}: {message}"

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
    inferred_tasks: int = 0  # rows without ``task``, given one from their target field
    detected_languages: int = 0  # rows without ``language``, given the identifier's guess from the query
    unknown_fields: list[str] = field(default_factory=list)
    unfamiliar_languages: list[str] = field(default_factory=list)
    label_sources: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> the file's values, counted
    layout: Layout = field(default=OFFICIAL, repr=False, compare=False)
    lines: np.ndarray | None = field(default=None, repr=False, compare=False)  # each row's line (read_pairs)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.more_errors

    def format(self) -> str:
        """A readable summary: counts, warnings with example lines, then the errors."""
        status = "OK" if self.ok else _plural(self.error_count, "error")
        out = [f"{_printable(self.path)}: {status}, {_plural(self.rows, 'row')}"]
        if self.tasks:
            out.append(f"  tasks: {_join_counts(self.tasks)}")
            if self.inferred_tasks:
                out.append(f"  task inferred from the fields for {_plural(self.inferred_tasks, 'row')}")
            out.append(f"  languages: {_join_counts(self.languages)}")
            if self.detected_languages:
                candidates = ", ".join(self.layout.detect_languages or LANGUAGES)
                out.append(f"  language detected from the query for {_plural(self.detected_languages, 'row')} "
                           f"(py3langid, among {candidates}; set data.detect_languages to change them)")
            out.append(f"  labels: {_join_counts(self.labels)}")
            for label, values in self.label_sources.items():
                shown = ", ".join(f"{_printable(v)} ({n:,})" for v, n in list(values.items())[:6])
                more = ", ..." * (len(values) > 6)
                rule = self.layout.positive_if.spec if self.layout.positive_if else ""
                out.append(f"  label {label} from {self.layout.file_name('label')} ({rule}): {shown}{more}")
        for kind, n in self.warnings.items():
            if n:
                shown = self.examples.get(kind, [])
                more = len(shown) < n and kind != "conflicting_pairs"  # that one counts pairs, not lines
                lines = ", ".join(map(str, shown)) + ", ..." * more
                names = {"unknown_fields": self.unknown_fields, "unfamiliar_language": self.unfamiliar_languages
                         }.get(kind, [])
                names = f" {', '.join(map(_printable, names))}" if names else ""
                word = "line" if len(shown) == 1 else "lines"
                what = _WARNING_TEXT.get(kind, kind.replace("_", " "))
                out.append(f"  warning: {what}{names}: {n:,} ({word} {lines})")
        out += [f"  {err}" for err in self.errors]
        if self.more_errors:
            out.append(f"  ... and {self.more_errors:,} more errors")
        return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _join_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{_printable(k)} {v:,}" for k, v in counts.items())


_WARNING_TEXT = {"empty_category_level": "category path with an empty level (a trailing, leading or double comma)",
                 "unfamiliar_language": "language code that is neither the kit's nor a BCP-47 / ISO 639 code"}


def _printable(text: str, keep: str = "") -> str:
    """``text`` with control characters, lone surrogates and other unprintable characters escaped
    (``\\x1b``, ``\\ud800``): what a message shows of a file's content or name is safe to print and to encode."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)


# reading: bytes -> raw frame ---------------------------------------------------------------------
@dataclass
class _Raw:
    """Rows that parsed with the right types, in official field names, plus a ``line`` column."""

    frame: pd.DataFrame
    rows: int
    errors: list[DataError]
    unknown_fields: list[str]
    inferred: int = 0
    detected: int = 0


def _read_raw(path: Path, layout: Layout = OFFICIAL) -> _Raw:
    kind, data = _sniff(path, _read_bytes(path))
    if layout.custom:
        raw = _read_mapped(path, kind, data, layout)
    elif kind == "parquet":
        raw = _read_parquet(path, data)
    elif kind == "json":
        raw = _read_jsonl(path, data)
    else:
        raw = _read_csv(path, data, delimiter="\t" if kind == "tsv" else ",")
    return _detect_language(path, _infer_tasks(path, raw), layout)


def _sniff(path: Path, data: bytes) -> tuple[str, bytes]:
    """The format of a file's bytes ("parquet", "json", "csv" or "tsv") and the bytes to parse (gzip
    decompressed; text checked by ``_check_text``). The name never refuses a file: it only picks the
    reader for content that none recognises, so that its errors say what is wrong."""
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(path, None, None, f"cannot decompress gzip ({err})") from None
    if data.startswith(_PARQUET_MAGIC):
        return "parquet", data
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    hint = _FILE_KINDS.get(suffixes[-1] if suffixes else "")
    if hint == "parquet" and data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"["):
        return "parquet", data  # named Parquet, not recognisably JSON: the Parquet reader says what is wrong
    data = _check_text(path, data)
    first = data.lstrip(b" \t\r\n")[:1]
    if first in (b"{", b"[") or hint == "json":
        return "json", data
    header = next((line for line in data.split(b"\n") if line.strip()), b"")
    return ("tsv" if header.count(b"\t") > header.count(b",") else "csv"), data


def file_kind(path: str | Path) -> str:
    """How a data file is read, by its content: "json" (JSON lines or a JSON array, gzip or not), "csv"
    (CSV or TSV) or "parquet"; a ``DataError`` if it cannot be read.

    Example:
        >>> file_kind("data/train_QC.txt")
        'json'
    """
    path = Path(path)
    kind = _sniff(path, _read_bytes(path))[0]
    return "csv" if kind == "tsv" else kind


def _infer_tasks(path: Path, raw: _Raw) -> _Raw:
    """Rows without a task get one from their target field; a row with neither or both is an error."""
    frame = raw.frame
    absent = frame["task"].isna().to_numpy(dtype=bool)
    if not absent.any():
        return raw
    cp, it = frame["category_path"].notna().to_numpy(), frame["item_title"].notna().to_numpy()
    bad = absent & (cp == it)
    errors = [DataError(path, int(line), "task",
                        "missing from the row, and it cannot be inferred: the row has "
                        + ("both category_path and item_title" if both else "neither category_path (QC) nor "
                           "item_title (QI)"))
              for line, both in zip(frame["line"].to_numpy()[bad], cp[bad])]
    task = frame["task"].astype(object).copy()
    task[absent & cp & ~it] = "QC"
    task[absent & it & ~cp] = "QI"
    frame = frame.assign(task=task)[~bad].reset_index(drop=True)
    return _Raw(frame, raw.rows, raw.errors + errors, raw.unknown_fields, int((absent & ~bad).sum()))


def _detect_language(path: Path, raw: _Raw, layout: Layout) -> _Raw:
    """Rows without a language (no column, or null) get the language identifier's guess from their query."""
    frame = raw.frame
    absent = frame["language"].isna().to_numpy(dtype=bool)
    if not absent.any():
        return raw
    try:
        guesses = detect_languages(frame["origin_query"][absent].astype(str).tolist(),
                                   layout.detect_languages or LANGUAGES)
    except (ImportError, ValueError) as err:
        line = int(frame["line"].to_numpy()[absent][0])
        raise DataError(path, line, layout.file_name("language"),
                        f"missing from {_plural(int(absent.sum()), 'row')}, and it cannot be detected: {err}") from None
    language = frame["language"].astype(object).copy()
    language[absent] = guesses
    return _Raw(frame.assign(language=language), raw.rows, raw.errors, raw.unknown_fields, raw.inferred,
                int(absent.sum()))


def _read_bytes(path: Path) -> bytes:
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError
        if not stat.S_ISREG(mode):  # a pipe or a device could block or never end
            raise DataError(path, None, None, "is not a regular file (a pipe, socket or device)")
        return path.read_bytes()
    except IsADirectoryError:
        raise DataError(path, None, None, "is a directory, not a data file") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL character in the path
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise DataError(path, None, None, f"cannot read file ({reason})") from None


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
    if _ARRAY_START.match(data):
        items = _array_items(path, data)
        if items is not None:
            return _rows(path, items)
    return _jsonl_fast(data) or _rows(path, _json_items(path, data))


_NUL_BYTES = "contains NUL bytes: the file looks like UTF-16 without a byte-order mark; expected UTF-8"
_LATIN1 = "expected UTF-8 text (was the file saved as latin-1 or cp1252?)"
_ARRAY_START = re.compile(rb"[ \t\r\n]*\[")
_OBJECT_START = re.compile(rb"[ \t\r\n]*\{")
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NULL_LINE, _NULL_FIRST = re.compile(rb"\n[ \t\r]*null"), re.compile(rb"[ \t\r]*null")
_ARRAY_NOTE = "the file starts with '[' and is read as one JSON array of objects"
# Explicit types: inference would turn a column of date-like queries into timestamps. A value of
# another type (an id "7", a label 1.0) makes arrow fail, and the line-by-line pass says where.
_ARROW_SCHEMA = pa.schema([(name, pa.int64() if name in ("id", "label") else pa.string())
                           for name in OFFICIAL_FIELDS])


def _utf8_message(raw: bytes, start: int, where: str) -> str:
    if raw[start] == 0xED and start + 1 < len(raw) and 0xA0 <= raw[start + 1] <= 0xBF:
        return (f"not valid UTF-8 ({where}): an encoded UTF-16 surrogate, half of a character such as an "
                "emoji cut in two; repair or remove it")
    return f"not valid UTF-8 ({where}); {_LATIN1}"


def _jsonl_fast(data: bytes) -> _Raw | None:
    # pyarrow's reader (26.0) crashes the whole process, a segfault, on a block whose first row starts with
    # `null`: a file with a line starting so goes to the Python pass (the check costs ms only where "null" is)
    if b"null" in data and (_NULL_LINE.search(data) or _NULL_FIRST.match(data)):
        return None
    options = pa_json.ParseOptions(explicit_schema=_ARROW_SCHEMA, unexpected_field_behavior="infer")
    try:
        table = pa_json.read_json(pa.BufferReader(data), parse_options=options)
        # arrow parses without checking UTF-8; this checks it, in C++ (a lone surrogate escape fails the parse)
        table.validate(full=True)
        names = table.column_names  # a field name that is not UTF-8 fails here
    except (pa.ArrowException, UnicodeDecodeError):
        return None
    lines = _row_lines(data, table.num_rows)
    # a missing or null required field: only the slow pass can tell which of the two it is
    # (a file without a task field is fine: every task is absent, then inferred)
    if lines is None or any(table.column(name).null_count for name in REQUIRED_FIELDS if name in names):
        return None
    extra = [name for name in names if name not in OFFICIAL_FIELDS]
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


# (1-based line, the parsed object or None, problems as (field, message)) of one row
_Item = tuple[int, "dict | None", list[tuple[str | None, str]]]


def _json_items(path: Path, data: bytes) -> Iterator[_Item]:
    """The rows of a JSON-lines file, one a non-blank line; a file of multi-line objects is one error."""
    _check_spread_object(path, data)
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if raw.strip():
            yield (lineno, *_parse_line(raw))


def _rows(path: Path, items: Iterable[_Item], layout: Layout = OFFICIAL) -> _Raw:
    columns: dict[str, list] = {name: [] for name in OFFICIAL_FIELDS}
    lines, extra, errors, unknown, rows, sources = [], [], [], set(), 0, []
    label_column = layout.file_name("label")
    for lineno, obj, problems in items:
        rows += 1
        if obj is not None and layout.custom:
            source = obj.get(label_column)
            obj, mapping = layout.apply(obj)
            problems = problems + mapping
        if obj is not None:
            problems = _record_problems(obj) + problems
        if problems:
            errors += [DataError(path, lineno, layout.file_name(name) if name else None, message)
                       for name, message in problems]
            continue
        for name in OFFICIAL_FIELDS:
            columns[name].append(obj.get(name))
        keys = obj.keys() - set(OFFICIAL_FIELDS)
        unknown |= keys
        extra.append(bool(keys))
        lines.append(lineno)
        if layout.positive_if is not None:
            sources.append(source)
    frame = pd.DataFrame({name: _id_series(values) if name == "id" else
                          pd.Series(values, dtype="Int64" if name == "label" else object)
                          for name, values in columns.items()})
    frame["line"] = np.asarray(lines, dtype=np.int64)
    frame["extra"] = np.asarray(extra, dtype=bool)
    if layout.positive_if is not None:
        frame["source_label"] = pd.Series([None if v is None else str(v) for v in sources], dtype=object)
    return _Raw(frame, rows, errors, sorted(unknown))


def _id_series(values: list) -> pd.Series:
    """Ids as int64 when every one is an integer, else all as strings (``7`` and ``"7"`` are then one id)."""
    if all(type(v) is int for v in values):
        return pd.Series(values, dtype="int64")
    return pd.Series([str(v) for v in values], dtype=object)


# a team's own files (data.columns, data.positive_if, data.task): every row through the layout ----------
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def _read_mapped(path: Path, kind: str, data: bytes, layout: Layout) -> _Raw:
    """Rows of any format renamed and relabelled by ``layout``, then checked as official rows are."""
    if kind == "json":
        items = _array_items(path, data) if _ARRAY_START.match(data) else None
        return _rows(path, _json_items(path, data) if items is None else items, layout)
    if kind == "parquet":
        table = _parquet_table(path, data, lambda names: _check_layout_columns(path, names, layout, "Parquet"))
        try:
            records = table.to_pylist()
        except UnicodeDecodeError:
            raise DataError(path, None, None, "a text column holds bytes that are not valid UTF-8") from None
        return _rows(path, ((i, rec, _text_problems(rec)) for i, rec in enumerate(records, 1)), layout)
    records = _csv_records(path, _decode_text(path, data), "\t" if kind == "tsv" else ",")
    if len(records) < 2:
        raise DataError(path, None, None, "file has a header but no rows" if records else "file is empty")
    header = records[0][2]
    _check_layout_columns(path, header, layout, "CSV")

    def items() -> Iterator[_Item]:
        for first, last, cells in records[1:]:
            if len(cells) != len(header):
                yield first, None, [(None, _width_message(len(cells), header, first, last))]
            else:
                yield first, _csv_object(header, cells, layout), []
    return _rows(path, items(), layout)


def _csv_object(header: list[str], cells: list[str], layout: Layout) -> dict:
    """A CSV row as the JSON object it stands for: an empty cell is absent, integer ids and labels are numbers."""
    obj = {name: cell for name, cell in zip(header, cells) if cell != ""}
    for name in (layout.file_name("id"), layout.file_name("label")):
        value = obj.get(name)
        if value is not None and _INTEGER.fullmatch(value):
            obj[name] = int(value)
    return obj


def _check_layout_columns(path: Path, names: Sequence[str], layout: Layout, kind: str) -> None:
    """A header that cannot give the kit's fields through ``layout`` is one error, not one per row."""
    where = 1 if kind == "CSV" else None
    for column, message in layout.clashes(names) + layout.missing(names):
        raise DataError(path, where, column, f"{kind} file has {message}")
    mapped = {column: name for name, column in layout.columns}
    official = [("category_path" if mapped.get(n) == "target" else
                 {"query": "origin_query"}.get(mapped.get(n, n), mapped.get(n, n))) for n in names]
    _check_columns(path, official, kind, hint=True)
    if "target" in mapped.values() and layout.task is None and "task" not in official:
        raise DataError(path, where, "task", f"{kind} file has no task column: its {layout.file_name('target')!r} "
                        "may be a category path (QC) or an item title (QI); set data.task or map a task column "
                        "(data.columns.task)")


def _parse_line(raw: bytes) -> tuple[dict | None, list[tuple[str | None, str]]]:
    if b"\x00" in raw:
        return None, [(None, _NUL_BYTES)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, [(None, _utf8_message(raw, err.start, f"byte 0x{raw[err.start]:02x} at byte "
                                                            f"{err.start + 1} of the line"))]
    hint = "; JSON lines hold one object a line" if text.lstrip().startswith("[") else ""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return None, [(None, f"invalid JSON: {err.msg} (column {err.colno}){hint}")]
    except (ValueError, RecursionError) as err:  # an integer of thousands of digits; nesting too deep
        return None, [(None, f"invalid JSON: {_json_limit(err)}")]
    if not isinstance(obj, dict):
        return None, [(None, f"expected a JSON object {{...}} on each line, got {_show(obj)}{hint}")]
    # a lone surrogate can only come from a \u escape: the bytes of one are not UTF-8
    return obj, _text_problems(obj) if "\\u" in text else []


def _json_limit(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "arrays or objects nested too deeply"
    return str(err).split(";")[0]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _array_items(path: Path, data: bytes) -> list[_Item] | None:
    """The elements of a file holding one JSON array, each located by the line it starts on.

    None when the file is JSON lines whose first line happens to be an array (``[1, 2]``, then objects):
    the line-by-line pass reports that line. A broken array is one error, where the parser stopped.
    """
    text = _decode_text(path, data)
    first, _, rest = text.lstrip(" \t\r\n").partition("\n")
    if rest.strip() and _is_json(first):
        return None
    decoder, space, items, line, last = json.JSONDecoder(), _JSON_SPACE, [], 1, 0
    escapes = "\\u" in text  # a lone surrogate can only come from a \\u escape
    i = space.match(text, space.match(text).end() + 1).end()  # past the '[' and the space after it
    try:
        while not text.startswith("]", i) or items:
            value, end = decoder.raw_decode(text, i)
            line, last = line + text.count("\n", last, i), i
            if isinstance(value, dict):
                items.append((line, value, _text_problems(value) if escapes else []))
            else:
                items.append((line, None, [(None, "expected a JSON object {...} as each element of the array, "
                                                  f"got {_show(value)}")]))
            i = space.match(text, end).end()
            if not text.startswith(",", i):
                break
            i = space.match(text, i + 1).end()
        if not text.startswith("]", i):
            raise json.JSONDecodeError("Expecting ',' or ']' after an element of the array", text, i)
        i = space.match(text, i + 1).end()
        if i < len(text):
            raise json.JSONDecodeError("Extra data after the array", text, i)
    except json.JSONDecodeError as err:
        comma = err.msg == "Expecting value" and text[:err.pos].rstrip().endswith(",")
        hint = ", a comma after the last element?" * comma
        raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg} (column {err.colno}{hint}); "
                        f"{_ARRAY_NOTE}") from None
    except (ValueError, RecursionError) as err:
        raise DataError(path, line, None, f"invalid JSON: {_json_limit(err)}; {_ARRAY_NOTE}") from None
    if not items:
        raise DataError(path, None, None, "file is an empty JSON array (no rows)")
    return items


def _check_spread_object(path: Path, data: bytes) -> None:
    """One clear error for a file of indented objects (``jq .`` output), not one per line of each."""
    start = _OBJECT_START.match(data)
    if not start:
        return
    begin, newline = start.end() - 1, data.find(b"\n", start.end())
    if _is_json(data[begin:newline if newline >= 0 else len(data)].decode("utf-8", "replace")):
        return
    try:
        text = data[begin:].decode("utf-8")
        value, end = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        return  # a broken first line: the line-by-line pass says where
    if isinstance(value, dict) and "\n" in text[:end]:
        line = data.count(b"\n", 0, begin) + 1
        last = line + text.count("\n", 0, end)
        raise DataError(path, line, None, f"the JSON object on lines {line}-{last} spans several lines; JSON lines "
                        f"hold one object a line (`jq -c . {path.name}` rewrites the file so)")


def _record_problems(obj: dict) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = [(n, "missing from the row") for n in _ROW_REQUIRED if n not in obj]
    value = obj.get("id")
    if "id" in obj and not (type(value) is int and -(2**63) <= value < 2**63 or isinstance(value, str) and value):
        out.append(("id", f"expected an integer or a non-empty string, got {_show(value)}"))
    for name in ("task", "language", "origin_query", "category_path", "item_title"):
        value = obj.get(name)
        # a null target field counts as absent (the row/task check reports it), a null language too (it is
        # detected); a null task or query does not
        if (name in REQUIRED_FIELDS and name in obj or value is not None) and not isinstance(value, str):
            out.append((name, f"expected a string, got {_show(value)}"))
    value = obj.get("label")
    if value is not None and type(value) is not int:
        out.append(("label", f"expected 0 or 1 (an integer), got {_show(value)}"))
    elif value is not None and value not in (0, 1):
        out.append(("label", _label_message(value)))
    return out


def _text_problems(obj: dict) -> list[tuple[str | None, str]]:
    """Lone surrogates (``"\\ud800"``) anywhere in a row, field names and unknown fields included: such text
    cannot be written as UTF-8, so neither the pairs table nor a submission could hold it."""
    out: list[tuple[str | None, str]] = []
    for key, value in obj.items():
        found = _first_surrogate(key)
        if found:
            out.append((key, f"the field name {_surrogate_message(*found)}"))
            continue
        found = _first_surrogate(value)
        if found:
            out.append((key, _surrogate_message(*found)))
    return out


def _first_surrogate(value: Any) -> tuple[str, int] | None:
    stack = [value]
    while stack:  # not recursive: JSON may nest as deep as the parser allows
        value = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                return found.group(), found.start()
        elif isinstance(value, dict):
            stack += [*reversed(value.values()), *reversed(value.keys())]
        elif isinstance(value, list):
            stack += reversed(value)
    return None


def _surrogate_message(char: str, position: int) -> str:
    return (f"holds a lone surrogate escape {_printable(char)} (character {position + 1}): not valid Unicode "
            "text, what an emoji cut in two leaves in query logs; repair or remove it")


def _label_message(value: Any) -> str:
    return f"expected 0 or 1, got {value}"


def _show(value: Any) -> str:
    """A JSON value as the file has it, with its kind: ``"7" (a string)``, ``true (a boolean)``."""
    kinds = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "an array",
             dict: "an object"}
    if value is None:
        return "null"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except ValueError:  # an integer of thousands of digits
        text = f"{type(value).__name__} too large to show"
    text = _printable(text if len(text) <= 40 else text[:37] + "...")
    return f"{text} ({kinds.get(type(value), type(value).__name__)})"


def _decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(path, line, None, _NUL_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(path, line, None, _utf8_message(data, err.start, f"byte 0x{data[err.start]:02x}")) from None


def _check_columns(path: Path, columns: Sequence[str], kind: str, hint: bool = False) -> None:
    where = 1 if kind == "CSV" else None
    repeated = sorted({c for c in columns if list(columns).count(c) > 1})
    if repeated:
        raise DataError(path, where, repeated[0], f"{kind} file has column {_printable(repeated[0])!r} more than "
                        "once")
    missing = [c for c in _ROW_REQUIRED if c not in columns]
    if not {"category_path", "item_title"} & set(columns):
        missing.append("category_path")
    if missing:
        names, has = ", ".join(f"'{c}'" for c in missing), ", ".join(map(str, columns))
        raise DataError(path, where, missing[0],
                        f"{kind} file lacks column(s) {names} (it has: {has}); a row needs id, origin_query and "
                        "category_path (QC) or item_title (QI), and task and language (or they are inferred)"
                        + "; data.columns maps your own column names onto these" * hint)


def _csv_records(path: Path, text: str, delimiter: str = ",") -> list[tuple[int, int, list[str]]]:
    """(first line, last line, cells) of each non-blank CSV record; a quoted cell may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records, previous = [], 0
    # the module's cell limit (128 Ki characters) is process-wide: raised while this pass runs, as arrow's
    # reader has none; a quote never closed then shows as a row over many lines with too few cells
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        for cells in reader:
            start, previous = previous + 1, reader.line_num
            if cells and (len(cells) > 1 or cells[0].strip()):  # pandas skips blank lines too
                records.append((start, previous, cells))
    except csv.Error as err:
        raise DataError(path, previous + 1, None, f"not valid CSV: {err}") from None
    finally:
        csv.field_size_limit(limit)
    return records


def _width_message(cells: int, header: list[str], first: int, last: int) -> str:
    width = len(header)
    if cells > width:
        text = (f"{cells} cells, but the header has {width}: a comma in a cell that is not quoted? Quote cells "
                'that hold commas (category paths do): "a,b,c"')
    else:
        absent = ", ".join(header[cells:])
        text = f"{cells} cells, but the header has {width}: a field is missing (no cell for {absent})"
    if last > first:
        text += f"; the row runs over lines {first}-{last}: a quote that is never closed?"
    return text


def _csv_fast(data: bytes, delimiter: str = ",") -> tuple[list[str], pd.DataFrame, np.ndarray] | None:
    """Header, cells and each row's line, by arrow's C++ reader; None when it fails (a row with a cell too
    many or too few) or its rows do not pair up with the lines (a quoted line break, a lone CR): the csv
    module's pass then says where."""
    options = pa_csv.ConvertOptions(column_types=dict.fromkeys(OFFICIAL_FIELDS, pa.string()),
                                    strings_can_be_null=False)
    try:
        table = pa_csv.read_csv(pa.BufferReader(data), parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                                convert_options=options)
        names = table.column_names
    except (pa.ArrowException, UnicodeDecodeError):
        return None
    lines = _row_lines(data, table.num_rows + 1)  # the header is a line too
    if lines is None or len(set(names)) != len(names) or not table.num_rows:
        return None
    return names, table.to_pandas(), lines[1:]


def _csv_slow(path: Path, text: str, delimiter: str = ","
              ) -> tuple[list[str], pd.DataFrame, np.ndarray, list[DataError], int]:
    """Header, cells and lines of the rows with as many cells as the header, the errors of the others, and
    the number of rows, by Python's csv module: it gives each record's lines and number of cells."""
    records = _csv_records(path, text, delimiter)
    if not records:
        raise DataError(path, None, None, "file is empty (no header, no rows)")
    header = records[0][2]
    _check_columns(path, header, "CSV")
    if len(records) == 1:
        raise DataError(path, None, None, "file has a header but no rows")
    width, cells, lines, errors = len(header), [], [], []
    for first, last, row in records[1:]:
        if len(row) == width:
            cells.append(row)
            lines.append(first)
        else:
            errors.append(DataError(path, first, None, _width_message(len(row), header, first, last)))
    df = pd.DataFrame(dict(zip(header, map(list, zip(*cells)))) if cells else dict.fromkeys(header, []),
                      dtype=object)
    return header, df, np.asarray(lines, dtype=np.int64), errors, len(records) - 1


def _read_csv(path: Path, data: bytes, delimiter: str = ",") -> _Raw:
    # Pandas is not used: it shifts a first row with a cell too many into an index and fills a short row in
    text = _decode_text(path, data)
    fast = _csv_fast(data, delimiter)
    if fast is None:
        header, df, lines, errors, rows = _csv_slow(path, text, delimiter)
    else:
        (header, df, lines), errors, rows = fast, [], len(fast[1])
        _check_columns(path, header, "CSV")
    # CSV cannot leave a cell out: an empty task cell (or no task column) is an absent task, inferred later
    task = df["task"].mask(df["task"].eq(""), None) if "task" in df else pd.Series(None, index=df.index,
                                                                                   dtype=object)
    # ids are integers when every cell is one, else kept as the text they are (verbatim)
    integers = df["id"].str.fullmatch(r"[+-]?[0-9]{1,18}").to_numpy(dtype=bool)
    id_ok = df["id"].str.strip().ne("").to_numpy(dtype=bool)
    label = df["label"] if "label" in df else pd.Series("", index=df.index, dtype=object)
    label_ok = label.isin(["0", "1", ""]).to_numpy(dtype=bool)
    errors += _cell_errors(path, lines, ~id_ok, "id", df["id"], "empty id {!r}: every row needs one")
    errors += _cell_errors(path, lines, ~label_ok, "label", label, "expected 0 or 1, got {!r}")
    good = id_ok & label_ok
    df = df[good]
    # a file without a language column: every row's language is detected; an empty cell is an empty code
    language = (df["language"].mask(df["language"].eq(""), None) if "language" in df
                else pd.Series(None, index=df.index, dtype=object))
    frame = pd.DataFrame({
        "id": df["id"].astype("int64") if integers.all() else df["id"].astype(object), "task": task[good],
        "language": language,
        "origin_query": df["origin_query"],
        # CSV cannot leave a cell out: an empty cell of the other task's target column is "absent"
        "category_path": _csv_target(df, task[good], "category_path", "QI"),
        "item_title": _csv_target(df, task[good], "item_title", "QC"),
        "label": pd.to_numeric(label[good].where(label[good].ne(""))).astype("Int64"),
        "line": lines[good],
    })
    unknown = sorted(set(df.columns) - set(OFFICIAL_FIELDS))
    frame["extra"] = bool(unknown)
    return _Raw(frame.reset_index(drop=True), rows, errors, unknown)


def _csv_target(df: pd.DataFrame, task: pd.Series, name: str, other_task: str) -> pd.Series:
    if name not in df:
        return pd.Series(None, index=df.index, dtype=object)
    col = df[name].astype(object)
    return col.mask((task.eq(other_task) | task.isna()) & col.eq(""), None)


def _cell_errors(path: Path, lines: np.ndarray, bad: np.ndarray, name: str, values: pd.Series,
                 template: str) -> list[DataError]:
    return [DataError(path, int(line), name, template.format(v))
            for line, v in zip(lines[bad], values.to_numpy()[bad])]


def _parquet_table(path: Path, data: bytes, check: Callable[[list[str]], None] | None = None) -> pa.Table:
    """The file's table; ``check`` sees the column names before the data is read."""
    if not data:
        raise DataError(path, None, None, "file is empty (no rows)")
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        names = parquet.schema_arrow.names
    except UnicodeDecodeError:
        raise DataError(path, None, None, "a column name is not valid UTF-8") from None
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(path, None, None, f"cannot read Parquet ({str(err).splitlines()[0]})") from None
    if check is not None:
        check(names)
    try:
        table = parquet.read()
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(path, None, None, f"cannot read Parquet ({str(err).splitlines()[0]})") from None
    if table.num_rows == 0:
        raise DataError(path, None, None, "file has no rows")
    return table


def _read_parquet(path: Path, data: bytes) -> _Raw:
    table = _parquet_types(path, _parquet_table(path, data, lambda names: _check_columns(path, names, "Parquet")))
    lines = np.arange(1, table.num_rows + 1)  # Parquet has no lines: the 1-based row number stands in
    missing = np.zeros(table.num_rows, dtype=bool)
    errors = []
    for name in _ROW_REQUIRED:
        null = table.column(name).is_null().to_numpy(zero_copy_only=False)
        errors += [DataError(path, int(line), name, "missing value (null)") for line in lines[null]]
        missing |= null
    for name in ("id", "task", "language", "origin_query", "category_path", "item_title"):
        bad = _invalid_utf8(table, name)
        errors += [DataError(path, int(line), name, message) for line, message in zip(lines[bad[0]], bad[1])]
        missing |= bad[0]
    table = table.filter(pa.array(~missing))
    frame = pd.DataFrame({name: _column(table, name) for name in OFFICIAL_FIELDS})
    frame["line"] = lines[~missing]
    unknown = sorted(set(table.column_names) - set(OFFICIAL_FIELDS))
    frame["extra"] = bool(unknown)
    return _Raw(frame, len(lines), errors, unknown)


def _invalid_utf8(table: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Rows whose value in a string column is not valid UTF-8 (Parquet writers other than arrow may
    store any bytes), with a message each; arrow's check runs first, in C++."""
    none = np.zeros(table.num_rows, dtype=bool)
    if name not in table.column_names or pa.types.is_null(table.schema.field(name).type):
        return none, []
    column = table.column(name)
    try:
        column.validate(full=True)
        return none, []
    except pa.ArrowInvalid:
        pass
    binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
    messages = {}
    for i, value in enumerate(column.cast(binary).to_pylist()):
        try:
            if value is not None:
                value.decode("utf-8")
        except UnicodeDecodeError as err:
            messages[i] = _utf8_message(value, err.start, f"byte 0x{value[err.start]:02x} at byte {err.start + 1}")
    bad = none.copy()
    bad[list(messages)] = True
    return bad, list(messages.values())


def _parquet_types(path: Path, table: pa.Table) -> pa.Table:
    """Check column types; cast ids to int64 and labels to int64 (a float column of 0.0/1.0/NaN is
    accepted: pandas stores an integer column with gaps as float); dictionary-encoded text (a pandas
    categorical) is decoded."""
    for name in OFFICIAL_FIELDS:
        if name in table.column_names and pa.types.is_dictionary(table.schema.field(name).type):
            try:
                column = table.column(name).cast(table.schema.field(name).type.value_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # the type check below names it
            table = table.set_column(table.column_names.index(name), name, column)
    types = {n: table.schema.field(n).type for n in OFFICIAL_FIELDS if n in table.column_names}
    text_ids = pa.types.is_string(types["id"]) or pa.types.is_large_string(types["id"])
    if not (pa.types.is_integer(types["id"]) or text_ids):
        raise DataError(path, None, "id", f"expected integers or strings, the column has type {types['id']}")
    for name in ("task", "language", "origin_query", "category_path", "item_title"):
        ok = name not in types or pa.types.is_string(types[name]) or pa.types.is_large_string(types[name])
        if not ok and not (name in (*TARGET_FIELDS.values(), "task") and pa.types.is_null(types[name])):
            raise DataError(path, None, name, f"expected strings, the column has type {types[name]}")
    label = types.get("label", pa.null())
    if not (pa.types.is_integer(label) or pa.types.is_floating(label) or pa.types.is_null(label)):
        raise DataError(path, None, "label", f"expected integers 0 or 1, the column has type {label}")
    for name in ("label",) * ("label" in types and not pa.types.is_null(label)) + ("id",) * (not text_ids):
        try:
            column = table.column(name).cast(pa.int64())
        except pa.ArrowInvalid as err:  # 1.5 or NaN in a float label column, ids beyond int64
            raise DataError(path, None, name, f"expected integers ({err})") from None
        table = table.set_column(table.column_names.index(name), name, column)
    return table


# checks on parsed rows ---------------------------------------------------------------------------
def _check_rows(path: Path, frame: pd.DataFrame, layout: Layout = OFFICIAL
                ) -> tuple[list[DataError], np.ndarray]:
    """Errors of values and of field combinations, and the mask of rows that have one."""
    # numpy masks: a dozen pandas Series operations would cost more than parsing a small file
    task = frame["task"]
    qc, qi = task.eq("QC").to_numpy(dtype=bool), task.eq("QI").to_numpy(dtype=bool)
    cp, it = frame["category_path"].notna().to_numpy(), frame["item_title"].notna().to_numpy()
    label = frame["label"].to_numpy(dtype="float64", na_value=np.nan)
    checks = [
        ("task", ~(qc | qi), lambda r: f"unknown task {r.task!r}; expected 'QC' or 'QI'"),
        ("language", frame["language"].str.strip().eq("").to_numpy(dtype=bool),
         "empty language code (leave the field out, or null, to have the language detected from the query)"),
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
        field_name = layout.file_name(name)
        errors += [DataError(path, int(row.line), field_name, message(row) if callable(message) else message)
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
        "id": frame["id"].to_numpy(dtype=np.int64 if frame["id"].dtype.kind == "i" else object),
        **{name: col.astype(str).array for name, col in text.items()},
        "label": frame["label"].astype("Int8").array,
        "origin": pd.array(["original"], dtype=str).take(np.zeros(n, dtype=np.intp)),
        "source_id": pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)),  # all NA
    })


def empty_pairs() -> pd.DataFrame:
    """A pairs table with no rows and the base columns' dtypes (e.g. a split without files)."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in PAIRS_DTYPES.items()})


def _inspect(path: str | Path, languages: Sequence[str], full: bool, layout: Layout = OFFICIAL
             ) -> tuple[FileReport, pd.DataFrame | None]:
    """Read and check one file; ``full`` adds the counts and warnings of a report (``read_pairs``
    skips them, and gives up building the table once there is an error)."""
    path = Path(path)
    report = FileReport(path=str(path), layout=layout)
    try:
        raw = _read_raw(path, layout)
    except DataError as err:
        report.errors = [err]
        return report, None
    frame = raw.frame
    errors, bad = _check_rows(path, frame, layout)
    errors = sorted(raw.errors + errors, key=lambda e: e.line or 0)
    report.rows, report.errors = raw.rows, errors[:MAX_ERRORS]
    report.more_errors = max(len(errors) - MAX_ERRORS, 0)
    if not full:
        report.lines = frame["line"].to_numpy(dtype=np.int64)
        return report, None if errors else _to_pairs(frame)
    report.unknown_fields = raw.unknown_fields
    report.inferred_tasks = raw.inferred
    report.detected_languages = raw.detected
    report.tasks = _counts(frame["task"])
    report.languages = _counts(frame["language"])
    report.labels = _counts(frame["label"].astype("string").fillna("missing"))
    report.has_labels = bool(frame["label"].notna().any())
    if "source_label" in frame:
        sources = frame.assign(_label=frame["label"].astype("string").fillna("missing"),
                               _source=frame["source_label"].fillna("(empty)"))
        report.label_sources = {label: _counts(group["_source"]) for label, group in sources.groupby("_label")}
    good = frame[~bad] if bad.any() else frame
    pairs = _to_pairs(good)
    familiar = set(languages)
    unfamiliar = [c for c in pairs["language"].unique() if c not in familiar and not familiar_language(c)]
    report.unfamiliar_languages = sorted(unfamiliar)
    _add_warnings(report, pairs, good["line"].to_numpy(), good["extra"].to_numpy(dtype=bool))
    return report, pairs


def _add_warnings(report: FileReport, pairs: pd.DataFrame, lines: np.ndarray, extra: np.ndarray) -> None:
    masks = {
        "unfamiliar_language": pairs["language"].isin(report.unfamiliar_languages).to_numpy(),
        "empty_query": pairs["query"].str.strip().eq("").to_numpy(),
        "empty_target": pairs["target"].str.strip().eq("").to_numpy(),
        "duplicate_rows": find_duplicates(pairs).to_numpy(),
        "conflicting_pairs": _conflict_rows(pairs).to_numpy(),
        "unknown_fields": extra,
        "empty_category_level": _empty_level(pairs),
    }
    for kind, mask in masks.items():
        report.warnings[kind] = int(mask.sum())
        report.examples[kind] = [int(x) for x in lines[mask][:MAX_EXAMPLES]]
    report.warnings["conflicting_pairs"] = len(find_conflicts(pairs))  # pairs, not rows


def _empty_level(pairs: pd.DataFrame) -> np.ndarray:
    """QC rows whose category path has an empty level ("a,b,", ",a", "a,,b"): a path cut short or a level
    name lost. Plain string operations: a regular expression costs ten times as much."""
    out = np.zeros(len(pairs), dtype=bool)
    qc = pairs["task"].eq("QC").to_numpy(dtype=bool)
    if qc.any():
        path = pairs["target"][qc]
        out[qc] = (path.str.contains(",,", regex=False) | path.str.lstrip().str.startswith(",")
                   | path.str.rstrip().str.endswith(",")).to_numpy(dtype=bool)
    return out


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts(sort=True).items()}


def validate_file(path: str | Path, *, languages: Sequence[str] = LANGUAGES, layout: Layout = OFFICIAL
                  ) -> FileReport:
    """Check one data file and count what is in it; never raises for a bad file.

    Errors (the file cannot be used): unreadable, empty, not UTF-8, invalid JSON / CSV / Parquet, a
    line that is not an object, a missing field, a wrong type, a label other than the integers 0 or 1,
    an unknown task, a target field that does not match the task, an unknown language code (codes
    outside ``languages``: a misspelt code would silently become a new language), a repeated id, a mix
    of labelled and unlabelled rows, a CSV row with a cell too many or too few, text that is not valid
    Unicode (a lone surrogate escape). Warnings (counted, with example lines): empty queries or targets,
    exact duplicate rows, pairs seen with both labels, fields outside the official format, category paths
    with an empty level (a trailing, leading or double comma).

    Example:
        >>> report = validate_file("data/train_QC.jsonl")
        >>> report.ok, report.warnings["duplicate_rows"], report.examples["duplicate_rows"][:2]
        (True, 33, [246, 2809])
    """
    return _inspect(path, languages, full=True, layout=layout)[0]


def read_pairs(path: str | Path, *, languages: Sequence[str] = LANGUAGES, line_numbers: bool = False,
               layout: Layout = OFFICIAL) -> pd.DataFrame:
    """Load one file into the pairs table, validated; raise ``DataError`` if it has any error.

    The error is the first one found, with a count and a few more in its message when there are several.
    Warnings are not computed here (``validate_file`` and ``load_pairs`` deal with them).
    ``line_numbers`` adds a ``line`` column: each row's 1-based line (CSV: the header is line 1; Parquet:
    the row number), for messages that point back into the file.

    Example:
        >>> df = read_pairs("data/dev_QC.jsonl")
        >>> df.columns.tolist()
        ['id', 'task', 'language', 'query', 'target', 'label', 'origin', 'source_id']
    """
    report, pairs = _inspect(path, languages, full=False, layout=layout)
    if report.errors:
        first, n = report.errors[0], report.error_count
        if n == 1:
            raise first
        more = "\n".join(f"  {e}" for e in report.errors[1:4])
        raise DataError(first.file, first.line, first.field,
                        f"{first.message}\n{n - 1:,} more errors, e.g.\n{more}\n"
                        f"(run `qckit validate {first.file}` to list them)")
    if line_numbers:
        pairs["line"] = report.lines
    return pairs


def read_json_objects(path: str | Path) -> list[dict]:
    """The objects of a JSON-lines (or JSON-array) file, gzip or not, whatever its name, as parsed, in file
    order: what ``qckit predict`` copies into a submission. Validate the file with ``read_pairs`` first; a
    problem here is a ``DataError``.

    Example:
        >>> [obj["id"] for obj in read_json_objects("test_QC.jsonl")][:3]
        [1, 2, 3]
    """
    path = Path(path)
    kind, data = _sniff(path, _read_bytes(path))
    if kind != "json":
        raise DataError(path, None, None, f"is a {kind.upper()} file, not JSON lines or a JSON array")
    items = _array_items(path, data) if _ARRAY_START.match(data) else None
    out = []
    for line, obj, problems in _json_items(path, data) if items is None else items:
        if problems or obj is None:
            raise DataError(path, line, *problems[0])
        out.append(obj)
    return out


def read_records(path: str | Path, *, layout: Layout = OFFICIAL) -> list[dict]:
    """The rows of a data file as the file has them, in file order, whatever the format: what ``qckit predict``
    copies into a submission (the input's own fields, in its order). JSON: the objects as parsed; CSV/TSV:
    ``{column: cell}`` with the cells' text, except ids, which are integers where every id of the file is one
    (as in the pairs table); Parquet: the rows' values. Validate the file with ``read_pairs`` first.

    Example:
        >>> read_records("test.csv", layout=Layout.from_params({"query": "search_term"}))[0]
        {'id': 1, 'search_term': 'angle bracket', 'product_title': 'Simpson Strong-Tie'}
    """
    path = Path(path)
    kind, data = _sniff(path, _read_bytes(path))
    if kind == "json":
        return read_json_objects(path)
    if kind == "parquet":
        return _parquet_table(path, data).to_pylist()
    records = _csv_records(path, _decode_text(path, data), "\t" if kind == "tsv" else ",")
    header, rows = records[0][2], [dict(zip(records[0][2], cells)) for _, _, cells in records[1:]]
    name = layout.file_name("id")
    if name in header and all(_INTEGER.fullmatch(row[name]) for row in rows):
        for row in rows:
            row[name] = int(row[name])
    return rows


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


def _read_all(paths: Sequence[Path], drop_duplicates: bool, languages: Sequence[str], layout: Layout = OFFICIAL
              ) -> pd.DataFrame:
    """Every file concatenated with a ``_file`` column; ids checked across files."""
    frames = [read_pairs(p, languages=languages, line_numbers=True, layout=layout).assign(_file=str(p))
              for p in paths]
    if not frames:
        return empty_pairs().assign(_file=pd.Series(dtype=str))
    if any(f["id"].dtype.kind != "i" for f in frames):  # one file's string ids make every id a string
        frames = [f.assign(id=f["id"].astype(str).astype(object)) for f in frames]
    df = pd.concat(frames, ignore_index=True)
    shared = df[df["id"].duplicated(keep=False)]
    if len(shared):
        distinct = shared.drop_duplicates(["id", *_DUPLICATE_KEYS])
        clash = distinct[distinct["id"].duplicated(keep=False)]
        if len(clash) or not drop_duplicates:
            rows = (clash if len(clash) else shared).head(2)
            what = "different rows" if len(clash) else "the same row (drop_duplicates=False keeps both)"
            ident, (a, b), (line_a, line_b) = rows["id"].iloc[0], rows["_file"].tolist(), rows["line"].tolist()
            raise DataError(b, line_b, "id", f"id {ident} is used for {what} in {a}:{line_a} and {b}:{line_b}; ids "
                            f"must be unique across files ({shared['id'].nunique():,} ids are shared)")
    return df.drop(columns="line")


def load_pairs(paths: str | Path | Iterable[str | Path], *, drop_empty: bool = True,
               drop_duplicates: bool = True, conflicts: str = "keep",
               languages: Sequence[str] = LANGUAGES, layout: Layout = OFFICIAL) -> tuple[pd.DataFrame, dict]:
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
    df = _read_all(paths, drop_duplicates, languages, layout)
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


# ids of created rows -------------------------------------------------------------------------------
def first_new_id(tables: Sequence[pd.DataFrame], kind: str = "new") -> int | str:
    """Where the ids of rows a step creates start: one above every id when all ids are integers; else a
    prefix ``<kind>-`` (``<kind>2-``, ...) that no id starts with, so ``new_ids`` never repeats an input id.

    Example:
        >>> first_new_id([pd.DataFrame({"id": [3, 9]})]), first_new_id([pd.DataFrame({"id": ["a7"]})], "tr")
        (10, 'tr-')
    """
    columns = [t["id"] for t in tables if len(t)]
    if all(c.dtype.kind in "iu" for c in columns):
        return max((int(c.max()) for c in columns), default=0) + 1
    used = [str(v) for c in columns for v in c.tolist()]
    n = 1
    while True:
        prefix = f"{kind}{n if n > 1 else ''}-"
        if not any(v.startswith(prefix) for v in used):
            return prefix
        n += 1


def new_ids(first: int | str, n: int) -> np.ndarray:
    """``n`` ids from ``first_new_id``'s answer: ``first, first + 1, ...`` or ``"<prefix>1", "<prefix>2", ...``."""
    if isinstance(first, str):
        return np.asarray([f"{first}{k}" for k in range(1, n + 1)], dtype=object)
    return np.arange(first, first + n, dtype=np.int64)


def id_dtypes(ids: pd.Series) -> dict[str, Any]:
    """The dtypes of ``id`` and ``source_id`` for a table whose ids are ``ids`` (integers or strings)."""
    return {"id": "int64", "source_id": "Int64"} if ids.dtype.kind in "iu" else {"id": object, "source_id": object}


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
                row = {"id": ident if isinstance(ident, str) else int(ident), "task": task, "language": language,
                       "origin_query": query, TARGET_FIELDS[task]: target}
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
    layout = data.layout() if data.source == "files" else OFFICIAL
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
        df = _read_all(paths, drop_duplicates=cleaned and data.drop_duplicates, languages=languages, layout=layout)
        df, left = _apply_filters(df, filters, by="task")
        splits[split] = df.drop(columns="_file")[list(BASE_COLUMNS)]
        counts[split] = {"files": [str(p) for p in paths], "rows": left, "dropped": _dropped(left),
                         "kept": len(df)}
    if any(df["id"].dtype.kind != "i" for df in splits.values() if len(df)):  # string ids: strings everywhere
        splits = {name: df.assign(id=df["id"].astype(str).astype(object)) for name, df in splits.items()}
    return splits, counts
