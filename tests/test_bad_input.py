"""`qckit validate` on a battery of bad files (issue 24): never a traceback, always the file named.

Every case is a file written to tmp_path (or a path that is not a file); ``valid`` says what validate must
answer. One subprocess validates them all at once (the command line as a user runs it); each case is also
run through ``qckit.cli.main`` in process (its own exit code and output), and a few through a subprocess of
their own. tests/test_data.py checks the exact line, field and message of most of these one by one.
"""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from qckit.cli import main

ROW = {"id": 1, "task": "QC", "language": "en", "origin_query": "red shoes", "category_path": "shoes,boots", "label": 1}
HEADER = "id,task,language,origin_query,category_path,label"


def row(**fields) -> dict:
    return {k: v for k, v in {**ROW, **fields}.items() if v is not ...}


def lines(*rows: dict | str, ascii_only: bool = False) -> bytes:
    text = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=ascii_only)) + "\n" for r in rows)
    return text.encode("utf-8")


def good(n: int = 3) -> list[dict]:
    return [row(id=i, origin_query=f"query {i}", label=i % 2) for i in range(1, n + 1)]


def parquet(columns: dict | None = None, table: pa.Table | None = None):
    return lambda path: pq.write_table(table if table is not None else pa.table(columns), path)


def raw_strings(values: list[bytes]) -> pa.Array:
    offsets = [0]
    for v in values:
        offsets.append(offsets[-1] + len(v))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(pa.array(offsets, pa.int32())
                                                                               .buffers()[1]),
                                                           pa.py_buffer(b"".join(values))])


PQ = {"id": [1, 2], "task": ["QC", "QC"], "language": ["en", "fr"], "origin_query": ["a", "b"],
      "category_path": ["x,y", "x,z"], "label": [1, 0]}
GARBAGE = random.Random(24).randbytes(4096)


def _symlink_loop(path: Path) -> None:
    path.symlink_to(path.name)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


# (case, file name, content, valid): content is bytes, None (nothing there), "dir", or a writer of the path
CASES = [
    # not a readable data file
    ("empty_file", "f.jsonl", b"", False),
    ("blank_lines_only", "f.jsonl", b"\n \r\n\t\n", False),
    ("missing_file", "f.jsonl", None, False),
    ("directory", "f.jsonl", "dir", False),
    ("symlink_loop", "f.jsonl", _symlink_loop, False),
    ("named_pipe", "f.jsonl", _fifo, False),
    ("unknown_extension", "f.txt", lines(*good()), True),
    ("no_extension", "data", lines(*good()), True),
    ("binary_garbage_jsonl", "f.jsonl", GARBAGE, False),
    ("binary_garbage_csv", "f.csv", GARBAGE, False),
    ("binary_garbage_parquet", "f.parquet", GARBAGE, False),
    ("zip_named_jsonl", "f.jsonl", b"PK\x03\x04" + GARBAGE[:200], False),
    # encodings and odd bytes
    ("nul_bytes_jsonl", "f.jsonl", lines(*good()).replace(b"query 2", b"qu\x00ery 2"), False),
    ("nul_bytes_csv", "f.csv", f"{HEADER}\n1,QC,en,a\x00b,x,1\n".encode(), False),
    ("utf16_bom", "f.jsonl", lines(*good()).decode().encode("utf-16"), False),
    ("utf16_no_bom", "f.jsonl", lines(*good()).decode().encode("utf-16-le"), False),
    ("latin1_jsonl", "f.jsonl", lines(row(origin_query="café")).decode().encode("latin-1"), False),
    ("latin1_csv", "f.csv", f"{HEADER}\n1,QC,fr,café,x,1\n".encode("latin-1"), False),
    ("utf8_bom_jsonl_ok", "f.jsonl", b"\xef\xbb\xbf" + lines(*good()), True),
    ("utf8_bom_csv_ok", "f.csv", f"\ufeff{HEADER}\n1,QC,en,q,x,1\n".encode(), True),
    ("crlf_jsonl_ok", "f.jsonl", lines(*good()).replace(b"\n", b"\r\n"), True),
    ("crlf_jsonl_bad_line", "f.jsonl", lines(*good(), row(id=7, label=2)).replace(b"\n", b"\r\n"), False),
    ("crlf_csv_ok", "f.csv", f"{HEADER}\r\n1,QC,en,q,\"a,b\",1\r\n2,QC,en,q,x,0\r\n".encode(), True),
    ("cr_only_line_ends", "f.jsonl", lines(*good()).replace(b"\n", b"\r"), False),
    ("control_characters", "f.jsonl", lines(row(task="\x1b[2J\x1b[31mQC")), False),
    ("file_name_not_utf8", os.fsdecode(b"f\xff.jsonl"), lines(row(label=3)), False),
    # lone surrogates (a cut emoji in a query log)
    ("surrogate_query", "f.jsonl", lines(*good(), row(id=9, origin_query="shoes \ud83d"), ascii_only=True), False),
    ("surrogate_category_path", "f.jsonl", lines(row(category_path="a,\udc00"), ascii_only=True), False),
    ("surrogate_unknown_field", "f.jsonl", lines(row(note="\ud800"), ascii_only=True), False),
    ("surrogate_field_name", "f.jsonl", lines(row(**{"\ud800": 1}), ascii_only=True), False),
    ("surrogate_json_array", "f.json", json.dumps([row(origin_query="\ud800")], indent=2).encode(), False),
    ("surrogate_bytes_jsonl", "f.jsonl", lines(row(origin_query="a@")).replace(b"@", b"\xed\xa0\xbd"), False),
    ("surrogate_bytes_csv", "f.csv", f"{HEADER}\n1,QC,en,a@,x,1\n".encode().replace(b"@", b"\xed\xa0\xbd"), False),
    ("surrogate_bytes_parquet", "f.parquet",
     parquet({**PQ, "origin_query": raw_strings([b"a", b"b\xed\xa0\xbd"])}), False),
    # wrong types, one field at a time
    *[(f"wrong_type_{name}_{kind}", "f.jsonl", lines(*good(), row(**{"id": 9, name: value})), False)
      for name, kind, value in [
          ("id", "empty", ""), ("id", "float", 9.5), ("id", "bool", True), ("id", "null", None),
          ("id", "huge", 2**80), ("task", "number", 1), ("task", "null", None), ("language", "list", ["en"]),
          ("origin_query", "object", {"q": 1}), ("origin_query", "null", None), ("category_path", "number", 3),
          ("category_path", "bool", False), ("label", "string", "1"), ("label", "float", 1.0),
          ("label", "bool", True), ("label", "two", 2), ("label", "negative", -1)]],
    ("wrong_type_item_title", "f.jsonl", lines(row(task="QI", category_path=..., item_title=["t"])), False),
    ("missing_every_field", "f.jsonl", lines("{}"), False),
    ("csv_empty_id", "f.csv", f"{HEADER}\n,QC,en,q,x,1\n".encode(), False),
    ("csv_string_id_ok", "f.csv", f"{HEADER}\n1.5,QC,en,q,x,1\n".encode(), True),
    ("csv_wrong_label", "f.csv", f"{HEADER}\n1,QC,en,q,x,yes\n".encode(), False),
    ("parquet_string_ids_ok", "f.parquet", parquet({**PQ, "id": ["a-1", "a-2"]}), True),
    ("parquet_bool_labels", "f.parquet", parquet({**PQ, "label": [True, False]}), False),
    ("parquet_float_label_half", "f.parquet", parquet({**PQ, "label": [0.5, 1.0]}), False),
    ("parquet_list_queries", "f.parquet", parquet({**PQ, "origin_query": [["a"], ["b"]]}), False),
    ("parquet_null_language_detected", "f.parquet", parquet({**PQ, "language": ["en", None]}), True),
    # the wrong shape
    ("json_scalar", "f.jsonl", b"42\n", False),
    ("json_string", "f.jsonl", b'"just text"\n', False),
    ("json_null", "f.jsonl", b"null\n", False),
    ("json_array_ok", "f.json", json.dumps(good(), indent=2).encode(), True),
    ("json_array_compact_ok", "f.jsonl", json.dumps(good()).encode(), True),
    ("json_array_broken", "f.json", json.dumps(good(), indent=2).replace("},", "}", 1).encode(), False),
    ("json_array_trailing_comma", "f.json", (json.dumps(good(), indent=2)[:-1] + ",\n]").encode(), False),
    ("json_array_of_arrays", "f.json", json.dumps([list(ROW.values())]).encode(), False),
    ("json_array_empty", "f.json", b"[]", False),
    ("json_indented_objects", "f.jsonl", "\n".join(json.dumps(r, indent=2) for r in good()).encode(), False),
    ("json_truncated_last_line", "f.jsonl", lines(*good())[:-20], False),
    ("json_two_objects_one_line", "f.jsonl", (json.dumps(ROW) + json.dumps(row(id=2)) + "\n").encode(), False),
    ("json_nested_too_deep", "f.jsonl", lines(row(note=...), '{"id": ' + "[" * 50_000 + "]" * 50_000 + "}"),
     False),
    ("json_integer_too_long", "f.jsonl", lines('{"id": ' + "7" * 6000 + "}"), False),
    ("huge_valid_line", "f.jsonl", lines(*good(), row(id=9, origin_query="x" * 3_000_000)), True),
    ("huge_broken_line", "f.jsonl", lines(*good()) + b'{"id": 9, "origin_query": "' + b"x" * 3_000_000, False),
    ("csv_missing_header", "f.csv", b"1,QC,en,q,x,1\n2,QC,en,q,y,0\n", False),
    ("csv_header_only", "f.csv", f"{HEADER}\n".encode(), False),
    ("csv_repeated_column", "f.csv", f"{HEADER},id\n1,QC,en,q,x,1,1\n".encode(), False),
    ("csv_unquoted_comma", "f.csv", f"{HEADER}\n1,QC,en,q,a,b,1\n2,QC,en,q,x,0\n".encode(), False),
    ("csv_short_row", "f.csv", f"{HEADER}\n1,QC,en,q,x,1\n2,QC,en,q,0\n".encode(), False),
    ("csv_unclosed_quote", "f.csv", f'{HEADER}\n1,QC,en,"q,x,1\n2,QC,en,q,y,0\n'.encode(), False),
    ("csv_huge_cell", "f.csv", f'{HEADER}\n1,QC,en,"{"q" * 300_000}",x,1\n'.encode(), True),
    ("csv_huge_cell_and_short_row", "f.csv", f'{HEADER}\n1,QC,en,"{"q" * 300_000}",x,1\n2,QC,en,q,1\n'.encode(),
     False),
    ("csv_huge_unclosed_cell", "f.csv", f'{HEADER}\n1,QC,en,"{"q" * 300_000}\n'.encode(), False),
    ("parquet_empty_file", "f.parquet", b"", False),
    ("parquet_no_rows", "f.parquet", parquet({k: pa.array([], type=pa.array(v).type) for k, v in PQ.items()}),
     False),
    ("parquet_missing_column", "f.parquet", parquet({k: v for k, v in PQ.items() if k != "origin_query"}), False),
    ("parquet_repeated_column", "f.parquet",
     parquet(table=pa.Table.from_arrays([pa.array(v) for v in [*PQ.values(), [5, 6]]], names=[*PQ, "id"])), False),
    ("parquet_truncated", "f.parquet", lambda p: (pq.write_table(pa.table(PQ), p),
                                                  p.write_bytes(p.read_bytes()[:-30])), False),
    # valid types, invalid content
    ("unknown_task", "f.jsonl", lines(row(task="qc")), False),
    ("empty_language", "f.jsonl", lines(row(language="")), False),
    ("mixed_labels", "f.jsonl", lines(*good(), row(id=9, label=...)), False),
    ("repeated_id", "f.jsonl", lines(*good(), row(id=2, origin_query="again")), False),
    ("target_of_the_other_task", "f.jsonl", lines(row(task="QI")), False),
    ("warnings_only_ok", "f.jsonl", lines(*good(), row(id=8, origin_query=" "), row(id=9, category_path="a,b,")),
     True),
]


def materialise(root: Path, case: str, name: str, content) -> Path:
    folder = root / case
    folder.mkdir()
    path = folder / name
    if content == "dir":
        path.mkdir()
    elif callable(content):
        content(path)
    elif content is not None:
        path.write_bytes(content)
    return path


def shown(path: Path) -> str:
    """The path as messages print it: what is not printable (a name that is not UTF-8) escaped."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.fixture(scope="module")
def battery(tmp_path_factory) -> dict[str, tuple[Path, bool]]:
    root = tmp_path_factory.mktemp("bad")
    cases = {}
    for case, name, content, valid in CASES:
        if content is _fifo and not hasattr(os, "mkfifo"):
            continue
        cases[case] = (materialise(root, case, name, content), valid)
    return cases


def test_cases_are_distinct():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


def test_validate_command_line_on_every_bad_file_at_once(battery):
    paths = [p for p, _ in battery.values()]
    proc = subprocess.run([sys.executable, "-m", "qckit", "validate", *map(str, paths)], capture_output=True,
                          cwd=REPO, timeout=180)  # a file that blocks (a pipe) fails here instead of hanging
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # both valid UTF-8
    assert "Traceback" not in out + err and err == "", err[-3000:]
    assert proc.returncode == 1
    heads = {line.split(": ")[0]: line for line in out.splitlines() if not line.startswith(" ") and ": " in line}
    for case, (path, valid) in battery.items():
        head = heads.get(shown(path))
        assert head is not None, f"{case}: no report for {path}"
        assert (": OK," in head) is valid, f"{case}: {head}"
    n_valid = sum(valid for _, valid in battery.values())
    assert out.rstrip().endswith(f"{n_valid} of {len(battery)} files valid")


@pytest.mark.parametrize("case", [c[0] for c in CASES if c[2] is not _fifo])  # the pipe: subprocesses only
def test_validate_one_bad_file(battery, case):
    if case not in battery:
        pytest.skip("not possible on this system")
    path, valid = battery[case]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", str(path)])  # an exception here is the traceback a user would see
    text = out.getvalue()
    assert code == (0 if valid else 1), text
    assert text.startswith(f"{shown(path)}: ") and err.getvalue() == ""
    text.encode("utf-8")  # printable: no lone surrogate reaches the terminal
    assert "\x1b" not in text and "\x00" not in text
    if not valid:
        assert f"  {shown(path)}" in text  # each error line names the file too


@pytest.mark.parametrize("case", ["surrogate_query", "binary_garbage_jsonl", "directory", "missing_file",
                                  "json_array_broken", "csv_missing_header", "file_name_not_utf8",
                                  "json_array_ok", "named_pipe"])
def test_validate_one_file_per_process(battery, case):
    if case not in battery:
        pytest.skip("not possible on this system")
    path, valid = battery[case]
    proc = subprocess.run([sys.executable, "-m", "qckit", "validate", str(path)], capture_output=True, cwd=REPO,
                          timeout=120)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert "Traceback" not in out + err, err[-3000:]
    assert proc.returncode == (0 if valid else 1)
    assert out.startswith(f"{shown(path)}: ")


def test_messages_quoting_the_data_print_on_an_ascii_terminal(tmp_path):
    path = tmp_path / "lang.jsonl"
    path.write_text(json.dumps({"id": 1, "task": "日本", "language": "ja", "origin_query": "x",
                                "category_path": "a,b", "label": 1}, ensure_ascii=False) + "\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "qckit", "validate", str(path)], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"}, cwd=Path(__file__).resolve().parents[1])
    out = proc.stdout.decode("ascii") + proc.stderr.decode("ascii")
    assert proc.returncode == 1 and "Traceback" not in out
    assert "lang.jsonl:1: field 'task'" in out and "\\u65e5\\u672c" in out
