"""qckit.data: validation with file/line/field, the pairs table, loaders, writer, category paths.

Every data file here is synthetic and written to tmp_path; the real samples are only read, in the
tests at the end, and skipped when ../shared/data is absent.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.common import shared_data_dir
from qckit import BASE_COLUMNS, data
from qckit.config import Params
from qckit.data import (
    COMMA_LEVELS,
    DataError,
    category_depth,
    empty_pairs,
    find_conflicts,
    find_duplicates,
    load_pairs,
    load_splits,
    parse_category_path,
    read_pairs,
    top_level,
    validate_file,
    write_official,
)

DROP = object()  # leave the field out of the row


def row(ident=1, **fields) -> dict:
    base = {"id": ident, "task": "QC", "language": "en", "origin_query": f"query {ident}",
            "category_path": "shoes,women's shoes,boots", "label": 1}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not DROP}


def qi(ident=1, **fields) -> dict:
    base = {"id": ident, "task": "QI", "language": "en", "origin_query": f"query {ident}",
            "item_title": f"title {ident}", "label": 1}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not DROP}


def jl(*rows) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False) if isinstance(r, dict) else r for r in rows]
    return "".join(line + "\n" for line in lines).encode()


CSV_HEADER = "id,task,language,origin_query,category_path,label"


def csv(*lines: str, header: str = CSV_HEADER) -> bytes:
    return "\n".join([header, *lines, ""]).encode()


def parquet(**columns):
    """A writer of a Parquet file with these columns (an arrow table, so types are exact)."""
    return lambda path: pq.write_table(pa.table(columns), path)


PQ_OK = {"id": [1, 2], "task": ["QC", "QC"], "language": ["en", "fr"], "origin_query": ["a", "b"],
         "category_path": ["x,y", "x,z"], "label": [1, 0]}

# (case, file name, content, expected substring of the message, expected line, expected field)
# content: bytes, None (no file), "dir" (a directory), or a callable writing the file
MALFORMED = [
    ("invalid_json", "f.jsonl", jl(row(1), '{"id": 2, "task": "QC",'), "invalid JSON", 2, None),
    ("two_objects_one_line", "f.jsonl", jl(row(1), json.dumps(row(2)) + json.dumps(row(3))), "Extra data", 2,
     None),
    ("array_line", "f.jsonl", jl(row(1), "[1, 2]"), "expected a JSON object", 2, None),
    # a line starting with null crashed pyarrow's reader (a segfault) where it began a block, the first line too
    ("null_first_line", "f.jsonl", jl("null", row(2)), "got null", 1, None),
    ("null_line", "f.jsonl", jl(row(1), " null ", row(3)), "got null", 2, None),
    # ~900 kB of rows, then 200 kB of null lines: arrow's second block (at 1 MiB) starts with one
    ("null_lines_at_a_block_start", "f.jsonl", jl(*[row(i) for i in range(1, 6801)], *["null"] * 40_000,
                                                   row(6802)), "got null", 6801, None),
    ("number_line", "f.jsonl", jl("42", row(2)), "got 42 (a number)", 1, None),
    ("missing_query", "f.jsonl", jl(row(1), row(2, origin_query=DROP)), "missing from the row", 2,
     "origin_query"),
    ("missing_id", "f.jsonl", jl(row(DROP)), "missing from the row", 1, "id"),
    ("id_empty_string", "f.jsonl", jl(row(1), row("")), 'a non-empty string, got "" (a string)', 2, "id"),
    ("id_float", "f.jsonl", jl(row(7.5)), "expected an integer or a non-empty string, got 7.5 (a number)", 1, "id"),
    ("id_bool", "f.jsonl", jl(row(1), row(True)), "got true (a boolean)", 2, "id"),
    ("id_too_large", "f.jsonl", jl(row(2**70)), "expected an integer", 1, "id"),
    ("query_number", "f.jsonl", jl(row(1, origin_query=5)), "expected a string, got 5 (a number)", 1,
     "origin_query"),
    ("query_null", "f.jsonl", jl(row(1), row(2, origin_query=None)), "expected a string, got null", 2,
     "origin_query"),
    ("query_object", "f.jsonl", jl(row(1, origin_query={"t": "x"})), "(an object)", 1, "origin_query"),
    ("label_two", "f.jsonl", jl(row(1), row(2, label=2)), "expected 0 or 1, got 2", 2, "label"),
    ("label_string", "f.jsonl", jl(row(1, label="1")), 'expected 0 or 1 (an integer), got "1"', 1, "label"),
    ("label_bool", "f.jsonl", jl(row(1), row(2, label=True)), "got true (a boolean)", 2, "label"),
    ("label_float", "f.jsonl", jl(row(1, label=1.0)), "got 1.0 (a number)", 1, "label"),
    ("unknown_task", "f.jsonl", jl(row(1), row(2, task="qc")), "unknown task 'qc'", 2, "task"),
    ("qc_with_item_title", "f.jsonl", jl(row(1, category_path=DROP, item_title="t")),
     "task 'QC' takes 'category_path', found 'item_title'", 1, "item_title"),
    ("qi_with_category_path", "f.jsonl", jl(qi(1), row(2, task="QI")),
     "task 'QI' takes 'item_title', found 'category_path'", 2, "category_path"),
    ("both_targets", "f.jsonl", jl(row(1, item_title="t")), "not 'item_title'", 1, "item_title"),
    ("no_target", "f.jsonl", jl(row(1), row(2, category_path=DROP)), "a QC row needs category_path", 2,
     "category_path"),
    ("empty_language", "f.jsonl", jl(row(1), row(2, language=" ")), "empty language code", 2, "language"),
    ("empty_file", "f.jsonl", b"", "file is empty", None, None),
    ("blank_lines_only", "f.jsonl", b"\n  \n\n", "file is empty", None, None),
    ("missing_file", "f.jsonl", None, "cannot read file (No such file or directory)", None, None),
    ("directory", "f.jsonl", "dir", "is a directory", None, None),
    ("utf16_with_bom", "f.jsonl", jl(row(1)).decode().encode("utf-16"), "UTF-16", 1, None),
    ("utf16_without_bom", "f.jsonl", jl(row(1)).decode().encode("utf-16-le"), "NUL bytes", 1, None),
    ("latin1_bytes", "f.jsonl", jl(row(1), row(2), row(3, origin_query="café")).decode().encode("latin-1"),
     "not valid UTF-8 (byte 0xe9", 3, None),
    ("mixed_labels", "f.jsonl", jl(row(1), row(2), row(3, label=DROP)), "mixes labelled and unlabelled", 3,
     "label"),
    ("repeated_id", "f.jsonl", jl(row(1), row(2), row(1, origin_query="other")),
     "id 1 already used on line 1", 3, "id"),
    ("blank_line_keeps_numbering", "f.jsonl", jl(row(1), "", row(2, label=5)), "got 5", 3, "label"),
    # a lone surrogate escape (a cut emoji): json.dumps with ensure_ascii writes it as \\ud800
    ("surrogate_query", "f.jsonl", jl(row(1), json.dumps(row(2, origin_query="abc\ud800"))), "lone surrogate", 2,
     "origin_query"),
    ("surrogate_low_half", "f.jsonl", jl(json.dumps(row(1, origin_query="\udc00x"))), "(character 1)", 1,
     "origin_query"),
    ("surrogate_pair_reversed", "f.jsonl", jl(json.dumps(row(1, origin_query="\ude00\ud83d"))),
     "lone surrogate", 1, "origin_query"),
    ("surrogate_category_path", "f.jsonl", jl(json.dumps(row(1, category_path="a,b\ud83d"))), "lone surrogate",
     1, "category_path"),
    ("surrogate_item_title", "f.jsonl", jl(json.dumps(qi(1, item_title="\ud83d"))), "lone surrogate", 1,
     "item_title"),
    ("surrogate_unknown_field", "f.jsonl", jl(row(1), json.dumps(row(2, note=["ok", {"x": "\ud800"}]))),
     "lone surrogate", 2, "note"),
    ("surrogate_field_name", "f.jsonl", jl(json.dumps(row(1, **{"n\ud800": 1}))), "the field name", 1,
     "n\ud800"),
    ("surrogate_in_json_array", "f.json", json.dumps([row(1), row(2, origin_query="\ud800")], indent=1).encode(),
     "lone surrogate", 10, "origin_query"),
    ("surrogate_utf8_bytes", "f.jsonl", jl(row(1), row(2, origin_query="a@")).replace(b"@", b"\xed\xa0\x80"),
     "an encoded UTF-16 surrogate", 2, None),
    ("field_name_not_utf8", "f.jsonl", jl(row(1), row(2, **{"n@": 1})).replace(b"@", b"\xe9"), "not valid UTF-8",
     2, None),
    ("csv_surrogate_bytes", "f.csv", csv("1,QC,en,q,x,1", "2,QC,en,q@,x,1").replace(b"@", b"\xed\xb0\x80"),
     "an encoded UTF-16 surrogate", 3, None),
    ("parquet_invalid_utf8", "f.parquet", lambda p: pq.write_table(pa.table({
        **PQ_OK, "origin_query": raw_strings([b"a", b"b\xed\xa0\x80"])}), p),
     "an encoded UTF-16 surrogate", 2, "origin_query"),
    ("parquet_latin1_text", "f.parquet", lambda p: pq.write_table(pa.table({
        **PQ_OK, "category_path": raw_strings([b"caf\xe9", b"x"])}), p), "not valid UTF-8", 1, "category_path"),
    # JSON arrays are read as rows; a broken one is one error where the parser stopped
    ("json_array_missing_comma", "f.json", json.dumps([row(1), row(2)], indent=2).replace("},", "}", 1).encode(),
     "Expecting ',' or ']'", 10, None),
    ("json_array_trailing_comma", "f.json", (json.dumps([row(1)], indent=2)[:-1] + ",]").encode(),
     "a comma after the last element?", 10, None),
    ("json_array_not_closed", "f.json", json.dumps([row(1)], indent=2)[:-1].encode(), "read as one JSON array",
     10, None),
    ("json_array_of_numbers", "f.json", b"[\n  1,\n  2\n]\n", "as each element of the array, got 1", 2, None),
    ("json_array_empty", "f.json", b"[]\n", "empty JSON array", None, None),
    ("json_array_extra_data", "f.json", json.dumps([row(1)]).encode() + b" x", "Extra data after the array", 1,
     None),
    ("json_array_line_then_objects", "f.jsonl", jl("[1, 2]", row(2)), "expected a JSON object", 1, None),
    ("json_indented_objects", "f.jsonl", "\n".join(json.dumps(row(i), indent=2) for i in (1, 2)).encode(),
     "spans several lines", 1, None),
    ("json_nested_too_deep", "f.jsonl", jl(row(1), '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     "nested too deeply", 2, None),
    ("json_integer_too_long", "f.jsonl", jl('{"id": ' + "9" * 5000 + "}"), "invalid JSON", 1, None),
    ("csv_missing_column", "f.csv", csv("1,QC,en,x,1", header="id,task,language,category_path,label"),
     "lacks column(s) 'origin_query'", 1, "origin_query"),
    ("csv_no_target_column", "f.csv", csv("1,QC,en,q,1", header="id,task,language,origin_query,label"),
     "lacks column(s) 'category_path'", 1, "category_path"),
    ("csv_bad_label", "f.csv", csv("1,QC,en,q,\"a,b\",1", "2,QC,en,q,\"a,b\",yes"),
     "expected 0 or 1, got 'yes'", 3, "label"),
    ("csv_empty_id", "f.csv", csv('1,QC,en,q,"a,b",1', ' ,QC,en,q,"a,c",1'), "empty id", 3, "id"),
    ("csv_ragged_row", "f.csv", csv("1,QC,en,q,\"a,b\",1", "2,QC,en,q,a,b,1"), "7 cells, but the header has 6",
     3, None),
    ("csv_ragged_first_row", "f.csv", csv("1,QC,en,q,a,b,1", "2,QC,en,q,x,1"), "a comma in a cell that is not quoted",
     2, None),
    ("csv_short_row", "f.csv", csv("1,QC,en,q,x,1", "2,QC,en,q,1", "3,QC,en,q,y,0"), "a field is missing", 3, None),
    ("csv_unclosed_quote", "f.csv", csv("1,QC,en,q,x,1", '2,QC,en,"q,x,1', "3,QC,en,q,y,0"),
     "a quote that is never closed?", 3, None),
    ("csv_repeated_column", "f.csv", csv("1,QC,en,q,x,1", header="id,task,language,origin_query,category_path,id"),
     "more than once", 1, "id"),
    ("csv_huge_unclosed_cell", "f.csv", csv('1,QC,en,"' + "q" * 200_000, "2,QC,en,q,x,1"),
     "the row runs over lines 2-3: a quote that is never closed?", 2, None),
    ("csv_huge_cell_then_short_row", "f.csv", csv('1,QC,en,"' + "q" * 200_000 + '",x,1', "2,QC,en,q,1"),
     "a field is missing", 3, None),
    ("csv_empty_after_bom", "f.csv", b"\xef\xbb\xbf\n\n", "file is empty", None, None),
    ("csv_latin1", "f.csv", csv("1,QC,en,q,x,1", "2,QC,fr,café,x,1").decode().encode("latin-1"),
     "not valid UTF-8", 3, None),
    ("csv_header_only", "f.csv", csv(), "header but no rows", None, None),
    ("csv_blank_language", "f.csv", csv("1,QC,en,q,x,1", "2,QC, ,q,x,0"), "empty language code", 3,
     "language"),
    ("parquet_garbage", "f.parquet", b"PAR1 this is not parquet", "cannot read Parquet", None, None),
    ("parquet_empty", "f.parquet", b"", "file is empty", None, None),
    ("parquet_repeated_column", "f.parquet", lambda p: pq.write_table(pa.Table.from_arrays(
        [pa.array(v) for v in [*PQ_OK.values(), [3, 4]]], names=[*PQ_OK, "id"]), p), "more than once", None, "id"),
    ("parquet_list_query", "f.parquet", parquet(**{**PQ_OK, "origin_query": [["a"], ["b"]]}), "expected strings",
     None, "origin_query"),
    ("parquet_missing_column", "f.parquet", parquet(**{k: v for k, v in PQ_OK.items() if k != "origin_query"}),
     "lacks column(s) 'origin_query'", None, "origin_query"),
    ("parquet_bool_label", "f.parquet", parquet(**{**PQ_OK, "label": [True, False]}),
     "expected integers 0 or 1", None, "label"),
    ("parquet_float_id", "f.parquet", parquet(**{**PQ_OK, "id": [1.5, 2.5]}), "expected integers or strings",
     None, "id"),
    ("parquet_null_query", "f.parquet", parquet(**{**PQ_OK, "origin_query": ["a", None]}), "missing value", 2,
     "origin_query"),
]


def raw_strings(values: list[bytes]) -> pa.Array:
    """A string array holding these bytes unchecked (writers other than arrow may store any bytes)."""
    offsets = np.cumsum([0, *map(len, values)], dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets.tobytes()),
                                                           pa.py_buffer(b"".join(values))])


def materialise(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif callable(content):
        content(path)
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(("name", "content", "substring", "line", "field"),
                         [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_file_is_located(tmp_path, name, content, substring, line, field):
    path = materialise(tmp_path, name, content)
    report = validate_file(path)
    assert not report.ok
    err = report.errors[0]
    assert substring in err.message, str(err)
    assert (err.line, err.field) == (line, field), str(err)
    assert str(err).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert str(err) in report.format()
    with pytest.raises(DataError) as raised:
        read_pairs(path)
    assert (raised.value.file, raised.value.line, raised.value.field) == (str(path), line, field)


def test_error_message_format():
    err = DataError("data/train.jsonl", 17, "label", "expected 0 or 1, got 2")
    assert str(err) == "data/train.jsonl:17: field 'label': expected 0 or 1, got 2"
    assert isinstance(err, ValueError)
    whole_file = DataError("f.jsonl", None, None, "file is empty (no rows)")
    assert str(whole_file) == "f.jsonl: file is empty (no rows)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.jsonl"
    path.write_bytes(jl(row(1)))
    path.chmod(0)
    assert "Permission denied" in validate_file(path).errors[0].message


def test_many_errors_are_capped_and_aggregated(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jl(*[row(i, label=3) for i in range(60)]))
    report = validate_file(path)
    assert (len(report.errors), report.more_errors, report.error_count) == (50, 10, 60)
    assert "... and 10 more errors" in report.format()
    with pytest.raises(DataError, match="59 more errors") as raised:
        read_pairs(path)
    assert raised.value.line == 1


def test_pairs_table_columns_and_dtypes(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(jl(row(1), qi(2, label=0), row(3, language="vn")))
    df = read_pairs(path)
    assert list(df.columns) == list(BASE_COLUMNS)
    assert df["id"].dtype == "int64" and df["label"].dtype == "Int8" and df["source_id"].dtype == "Int64"
    for col in ("task", "language", "query", "target", "origin"):
        assert pd.api.types.is_string_dtype(df[col]) and df[col].dtype == df["task"].dtype
    assert df["target"].tolist() == ["shoes,women's shoes,boots", "title 2", "shoes,women's shoes,boots"]
    assert df["label"].tolist() == [1, 0, 1]
    assert (df["origin"] == "original").all() and df["source_id"].isna().all()
    assert "split" not in df
    assert empty_pairs().dtypes.equals(df.dtypes)


def test_test_file_has_missing_labels(tmp_path):
    path = tmp_path / "test_QC.jsonl"
    path.write_bytes(jl(row(1, label=DROP), row(2, label=DROP), qi(3, label=None)))
    report = validate_file(path)
    assert report.ok and not report.has_labels and report.labels == {"missing": 3}
    df = read_pairs(path)
    assert df["label"].dtype == "Int8" and df["label"].isna().all()


def test_warnings_are_counted_with_lines(tmp_path):
    path = tmp_path / "warn.jsonl"
    path.write_bytes(jl(
        row(1), row(2, origin_query="  "), row(3, category_path=""),
        row(4, origin_query="q"), row(5, origin_query="q"), row(6, origin_query="q"),  # 2 duplicates
        row(7, origin_query="c", label=1), row(8, origin_query="c", label=0),  # a conflicting pair
        row(9, note="extra"),
    ))
    report = validate_file(path)
    assert report.ok, report.format()
    assert report.warnings == {"empty_query": 1, "empty_target": 1, "duplicate_rows": 2,
                               "conflicting_pairs": 1, "unknown_fields": 1, "empty_category_level": 0,
                               "unfamiliar_language": 0}
    assert report.examples["empty_query"] == [2]
    assert report.examples["duplicate_rows"] == [5, 6]
    assert report.examples["conflicting_pairs"] == [7, 8]
    assert report.unknown_fields == ["note"]
    assert report.labels == {"1": 8, "0": 1} and report.tasks == {"QC": 9}
    text = report.format()
    assert "OK, 9 rows" in text and "duplicate rows: 2 (lines 5, 6)" in text and "note" in text


def test_line_numbers_survive_blank_and_crlf_lines(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(jl(row(1), "", row(2)).replace(b"\n", b"\r\n") + b"  \r\n" + jl(row(3, origin_query="")))
    report = validate_file(path)
    assert report.ok and report.rows == 3 and report.examples["empty_query"] == [5]


def test_date_like_queries_stay_text(tmp_path):
    path = tmp_path / "dates.jsonl"
    path.write_bytes(jl(row(1, origin_query="2021-01-01"),
                        row(2, origin_query="2022-02-02", note="2020-01-01")))
    df = read_pairs(path)
    assert df["query"].tolist() == ["2021-01-01", "2022-02-02"]


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jl(row(1), row(2, origin_query="café")))
    assert read_pairs(path)["query"].tolist() == ["query 1", "café"]


def test_csv_and_parquet_read_like_jsonl(tmp_path):
    rows = [row(1, origin_query='say "hi", then'), qi(2, label=0), row(3, language="ja", origin_query="靴")]
    (tmp_path / "a.jsonl").write_bytes(jl(*rows))
    expected = read_pairs(tmp_path / "a.jsonl")
    official = pd.DataFrame(rows)
    official.to_csv(tmp_path / "a.csv", index=False)
    official.to_parquet(tmp_path / "a.parquet", index=False)
    for name in ("a.csv", "a.parquet"):
        pd.testing.assert_frame_equal(read_pairs(tmp_path / name), expected)


def test_parquet_float_labels_with_gaps_are_integers(tmp_path):
    path = tmp_path / "t.parquet"
    parquet(**{**PQ_OK, "label": [1.0, 0.0]})(path)
    assert read_pairs(path)["label"].tolist() == [1, 0]


def test_round_trip_official_writer(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_bytes(jl(row(1), qi(2, label=0), row(3, language="ko", origin_query="운동화")))
    df = read_pairs(src)
    out = write_official(df, tmp_path / "out.jsonl")
    pd.testing.assert_frame_equal(read_pairs(out), df)
    assert out.read_bytes() == src.read_bytes()  # same fields, same order, same text
    test = write_official(df.assign(label=pd.array([pd.NA] * 3, dtype="Int8")), tmp_path / "test.jsonl")
    first = json.loads(test.read_text(encoding="utf-8").splitlines()[1])
    assert list(first) == ["id", "task", "language", "origin_query", "item_title"]
    assert read_pairs(test)["label"].isna().all()
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left nothing behind


def test_find_duplicates_and_conflicts(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(jl(row(1, origin_query="a"), row(2, origin_query="a"),
                        row(3, origin_query="a", language="fr"), row(4, origin_query="b"),
                        row(5, origin_query="b", label=0), row(6, origin_query="b")))
    df = read_pairs(path)
    assert find_duplicates(df).tolist() == [False, True, False, False, False, True]
    conflicts = find_conflicts(df)
    assert conflicts[["query", "rows", "positives", "negatives"]].values.tolist() == [["b", 3, 2, 1]]


@pytest.fixture
def two_files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(jl(row(1, origin_query="x"), row(2, origin_query="x"), row(3, origin_query=""),
                     row(4, origin_query="c", label=1)))
    b.write_bytes(jl(row(11, origin_query="x"), row(12, origin_query="c", label=0),
                     row(13, origin_query="y")))
    return a, b


def test_load_pairs_drops_and_counts(two_files):
    a, b = two_files
    df, info = load_pairs([a, b], conflicts="drop")
    assert sorted(df["id"]) == [1, 13]
    assert info["files"][str(a)] == {"rows": 4, "empty": 1, "duplicates": 1, "conflicts": 1, "kept": 1}
    assert info["files"][str(b)] == {"rows": 3, "empty": 0, "duplicates": 1, "conflicts": 1, "kept": 1}
    assert info["total"] == {"rows": 7, "empty": 1, "duplicates": 2, "conflicts": 2, "kept": 2}


def test_load_pairs_keeps_when_asked(two_files):
    df, info = load_pairs(two_files, drop_empty=False, drop_duplicates=False)
    assert len(df) == 7 and df["id"].is_unique
    assert info["total"] == {"rows": 7, "empty": 0, "duplicates": 0, "conflicts": 0, "kept": 7}
    with pytest.raises(ValueError, match="conflicts"):
        load_pairs(two_files, conflicts="maybe")


def test_ids_must_stay_unique_across_files(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    a.write_bytes(jl(row(1), row(2)))
    b.write_bytes(jl(row(2, origin_query="something else")))
    c.write_bytes(jl(row(2)))  # the very same row as a's
    with pytest.raises(DataError, match="different rows") as raised:
        load_pairs([a, b])
    assert str(a) in str(raised.value) and str(b) in str(raised.value) and raised.value.field == "id"
    df, info = load_pairs([a, c])
    assert df["id"].tolist() == [1, 2] and info["total"]["duplicates"] == 1
    with pytest.raises(DataError, match="the same row"):
        load_pairs([a, c], drop_duplicates=False)


def test_shared_id_message_names_both_files_and_lines(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(jl(row(1), row(2)))
    b.write_bytes(jl(row(5), row(2, origin_query="something else")))
    with pytest.raises(DataError) as raised:
        load_pairs([a, b])
    assert f"{a}:2 and {b}:2" in str(raised.value) and raised.value.line == 2


# odd text and odd files (issue 24) -------------------------------------------------------------
def test_lone_surrogate_stops_every_reader(tmp_path):
    path = tmp_path / "test_QC.jsonl"
    path.write_bytes(jl(row(1, label=DROP), json.dumps(row(2, label=DROP, origin_query="\U0001f600"[:1] + "\ud83d"))))
    with pytest.raises(DataError, match="lone surrogate") as raised:
        read_pairs(path)
    assert (raised.value.line, raised.value.field) == (2, "origin_query")
    str(raised.value).encode("utf-8")  # the message itself is printable UTF-8
    params = Params.model_validate({"name": "t", "data": {"source": "files", "test": [str(path)]}})
    with pytest.raises(DataError, match="lone surrogate"):  # step 01's loader
        load_splits(params, tmp_path / "raw")


def test_surrogate_pairs_are_fine(tmp_path):
    path = tmp_path / "emoji.jsonl"
    path.write_bytes(jl(json.dumps(row(1, origin_query="shoes \U0001f600")), row(2, origin_query="靴 \U0001f45f")))
    assert read_pairs(path)["query"].tolist() == ["shoes \U0001f600", "靴 \U0001f45f"]


@pytest.mark.parametrize("indent", [None, 2, "\t"])
def test_json_array_file_is_read_as_rows(tmp_path, indent):
    rows = [row(1), qi(2, label=0), row(3, language="ja", origin_query="靴", note="x")]
    (tmp_path / "a.jsonl").write_bytes(jl(*rows))
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=indent, ensure_ascii=False), encoding="utf-8")
    pd.testing.assert_frame_equal(read_pairs(tmp_path / "a.json"), read_pairs(tmp_path / "a.jsonl"))
    report = validate_file(tmp_path / "a.json")
    assert report.ok and report.rows == 3 and report.unknown_fields == ["note"]
    assert data.read_json_objects(tmp_path / "a.json") == rows == data.read_json_objects(tmp_path / "a.jsonl")


def test_json_array_errors_point_at_the_element(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([row(1), row(2, label=5), row(3, language="")], indent=2))
    report = validate_file(path)
    # each element spans 9 lines: "  {", 6 fields, "  }," after the "[" of line 1
    assert [(e.line, e.field) for e in report.errors] == [(10, "label"), (18, "language")]
    assert len(report.errors) == 2  # one error each, not one per line of the file


def test_csv_cell_too_many_or_too_few_is_one_error_on_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(csv("1,QC,en,q,a,b,1", "2,QC,en,q,x,1", "3,QC,en,q,y", "4,QC,en,q,z,0"))
    report = validate_file(path)
    assert [(e.line, e.field) for e in report.errors] == [(2, None), (4, None)]
    assert "a comma in a cell that is not quoted" in report.errors[0].message
    assert "a field is missing (no cell for label)" in report.errors[1].message
    assert "mixes labelled" not in report.format()
    assert report.rows == 4 and report.labels == {"1": 1, "0": 1}  # the valid rows were read


def test_csv_lines_count_quoted_line_breaks_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    text = csv('1,QC,en,"two\nlines","a,b",1', "", '2,QC,en,q,"x",1', "3,QC,en,q,x,7").decode()
    path.write_bytes(text.replace("\n", "\r\n").encode())
    report = validate_file(path)
    assert report.rows == 3 and [(e.line, e.field) for e in report.errors] == [(6, "label")]
    path.write_bytes(csv('1,QC,en,"two\nlines","a,b",1', '2,QC,en,q,"x",1').replace(b"\n", b"\r\n"))
    df = read_pairs(path, line_numbers=True)
    assert df["query"].tolist() == ["two\r\nlines", "q"] and df["line"].tolist() == [2, 4]


def test_read_pairs_line_numbers(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(jl(row(1), "", row(2)))
    assert read_pairs(path, line_numbers=True)["line"].tolist() == [1, 3]
    assert "line" not in read_pairs(path)


def test_empty_category_level_is_a_warning_with_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(jl(row(1), row(2, category_path="a,b,"), row(3, category_path=",a"),
                        row(4, category_path="a,,b"), row(5, category_path="flags, banners & accessories"),
                        qi(6, item_title="a title,")))
    report = validate_file(path)
    assert report.ok and report.warnings["empty_category_level"] == 3
    assert report.examples["empty_category_level"] == [2, 3, 4]
    assert "empty level (a trailing, leading or double comma): 3 (lines 2, 3, 4)" in report.format()


def test_messages_escape_control_characters_and_undecodable_names(tmp_path):
    name = os.fsdecode(b"bad\xffname.jsonl")  # a file name that is not UTF-8 (surrogateescape)
    path = tmp_path / name
    path.write_bytes(jl(row(1, task="\x1b[2JQC"), row(2, **{"n\x07": 1})))
    report = validate_file(path)
    text = report.format()
    text.encode("utf-8")  # printable: no lone surrogate, no control character
    assert "\x1b" not in text and "\\x1b[2JQC" in text and "\\udcff" in text and "n\\x07" in text


def test_dictionary_encoded_parquet_text_is_read(tmp_path):
    df = pd.DataFrame(PQ_OK).astype({"task": "category", "language": "category"})
    df.to_parquet(tmp_path / "t.parquet", index=False)
    assert read_pairs(tmp_path / "t.parquet")["task"].tolist() == ["QC", "QC"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    result = {}
    reader = threading.Thread(target=lambda: result.update(report=validate_file(fifo)), daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():  # blocked opening the pipe (as before issue 24): release it, then fail
        with open(fifo, "wb"):
            pass
        reader.join(20)
        pytest.fail("validate_file blocked on a named pipe")
    assert "not a regular file" in result["report"].errors[0].message


# category paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "levels"), [
    ("home & garden,arts,crafts & sewing,soap making,soap molds",
     ["home & garden", "arts,crafts & sewing", "soap making", "soap molds"]),
    ("home & garden,festive & party supplies,flags, banners & accessories",
     ["home & garden", "festive & party supplies", "flags, banners & accessories"]),
    ("automobiles, parts & accessories,car electronics,car mp4,mp5",
     ["automobiles, parts & accessories", "car electronics", "car mp4,mp5"]),
    ("home & garden,kitchen,dining & bar,coffeeware",
     ["home & garden", "kitchen,dining & bar", "coffeeware"]),
    ("watches,watches accessories,watchbands", ["watches", "watches accessories", "watchbands"]),
    ("arts", ["arts"]),  # a fragment alone is a level of its own
    ("Home & Garden,Arts,Crafts & Sewing", ["Home & Garden", "Arts,Crafts & Sewing"]),
    ("", []),
])
def test_parse_category_path(path, levels):
    assert parse_category_path(path) == levels
    assert category_depth(path) == len(levels)
    assert top_level(path) == (levels[0] if levels else "")


def test_category_levels_can_be_extended():
    path = "tools,hand,power tools,drills"
    assert parse_category_path(path) == ["tools", "hand", "power tools", "drills"]
    extended = (*COMMA_LEVELS, "hand,power tools")
    assert parse_category_path(path, extended) == ["tools", "hand,power tools", "drills"]


# load_splits ------------------------------------------------------------------------------------
def split_rows(split: str, task: str, n: int, start: int) -> pd.DataFrame:
    make = row if task == "QC" else qi
    rows = [make(start + i, language=("en", "fr", "de")[i % 3], label=i % 2) for i in range(n)]
    df = pd.DataFrame(rows).rename(columns={"origin_query": "query", "category_path": "target",
                                            "item_title": "target"})
    if split == "test":
        df["label"] = pd.NA
    return df


@pytest.fixture
def fake_demo(monkeypatch):
    calls = {}

    def write_demo(raw_dir, *, seed, noise_rate, queries_per_language):
        calls.update(seed=seed, noise_rate=noise_rate, queries_per_language=queries_per_language)
        out = {}
        for k, (split, task) in enumerate((s, t) for s in ("train", "dev", "test") for t in ("QC", "QI")):
            name = f"{split}_{task}"
            out[name] = write_official(split_rows(split, task, 30, 1000 * k), Path(raw_dir) / f"{name}.jsonl")
        # a copy of train_QC's first row under a new id: an exact duplicate for the loader to drop
        copy = jl(row(999, origin_query="query 0", label=0))
        out["train_QC"].write_bytes(out["train_QC"].read_bytes() + copy)
        return {**out, "noise_truth": Path(raw_dir) / "noise.parquet",
                "test_labels": Path(raw_dir) / "labels.jsonl"}

    monkeypatch.setattr(data, "write_demo", write_demo)  # what load_splits calls
    return calls


def test_load_splits_demo(tmp_path, fake_demo):
    params = Params.model_validate({"name": "t", "demo": {"seed": 3},
                                    "data": {"tasks": ["QC"], "max_rows": 12}})
    splits, counts = load_splits(params, tmp_path / "raw")
    assert fake_demo["seed"] == 3
    assert set(splits) == {"train", "dev", "test"}
    for df in splits.values():
        assert list(df.columns) == list(BASE_COLUMNS) and set(df["task"]) == {"QC"} and len(df) == 12
        assert df["language"].value_counts().tolist() == [4, 4, 4]  # stratified
    assert splits["test"]["label"].isna().all()
    assert counts["train"]["rows"]["read"] == {"QC": 31}
    assert counts["train"]["dropped"]["duplicates"] == 1 and counts["train"]["dropped"]["max_rows"] == 18
    again, _ = load_splits(params, tmp_path / "raw2")
    pd.testing.assert_frame_equal(again["train"], splits["train"])  # seeded


def test_load_splits_files(tmp_path):
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_bytes(jl(row(1), row(2, language="de"), row(3, origin_query="x"), row(4, origin_query="x"),
                         row(5, origin_query="c"), row(6, origin_query="c", label=0), qi(7)))
    dev.write_bytes(jl(row(11, language="de"), row(12, origin_query="")))
    params = Params.model_validate({"name": "t", "data": {
        "source": "files", "train": [str(train)], "dev": [str(dev)], "tasks": ["QC"],
        "train_languages": ["en"], "conflicts": "drop"}})
    splits, counts = load_splits(params, tmp_path / "raw")
    assert splits["train"]["id"].tolist() == [1, 3]
    assert splits["dev"]["id"].tolist() == [11]
    assert splits["test"].empty and splits["test"].dtypes.equals(empty_pairs().dtypes)
    assert counts["train"]["dropped"] == {"tasks": 1, "languages": 1, "empty": 0, "duplicates": 1,
                                          "conflicts": 2, "max_rows": 0}
    assert counts["train"]["rows"]["conflicts"] == {"QC": 2} and counts["dev"]["dropped"]["empty"] == 1
    assert counts["test"] == {"files": [], "rows": {k: {} for k in counts["test"]["rows"]},
                              "dropped": dict.fromkeys(counts["train"]["dropped"], 0), "kept": 0}


def test_test_split_keeps_every_row(tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_bytes(jl(row(1, label=DROP), row(2, label=DROP), row(3, label=DROP, origin_query="")))
    params = Params.model_validate({"name": "t", "data": {"source": "files", "test": [str(test)]}})
    splits, _ = load_splits(params, tmp_path / "raw")
    assert splits["test"]["id"].tolist() == [1, 2, 3]


# the real samples -------------------------------------------------------------------------------
def real_file(*parts: str) -> Path:
    base = shared_data_dir()
    path = base.joinpath(*parts) if base else None
    if path is None or not path.exists():
        pytest.skip(f"real sample {'/'.join(parts)} not found (set QCKIT_SHARED_DATA or add ../shared/data)")
    return path


def test_real_qc_sample_validation():
    report = validate_file(real_file("cikm-qc-sample", "train_QC.jsonl"))
    assert report.ok, report.format()
    assert report.rows == 17988 and report.tasks == {"QC": 17988} and len(report.languages) == 10
    assert report.warnings["duplicate_rows"] > 0  # "a few exact duplicates", per the README
    assert report.warnings["empty_query"] == 1  # "one empty query"
    assert report.warnings["empty_target"] == 0 and report.warnings["unknown_fields"] == 0


def test_real_qi_sample_loads():
    df = read_pairs(real_file("qi-en-sample", "dev_QI.jsonl"))
    assert len(df) == 7041 and set(df["task"]) == {"QI"} and df["id"].is_unique


def test_real_category_paths_parse_cleanly():
    files = [real_file("cikm-qc-sample", f"{split}_QC.jsonl") for split in ("train", "dev")]
    paths = pd.concat([read_pairs(f)["target"] for f in files])
    levels = {p: parse_category_path(p) for p in paths.unique()}
    assert all(lv and all(x.strip() == x and x for x in lv) for lv in levels.values())
    assert all(",".join(lv) == p for p, lv in levels.items())  # nothing lost or changed
    found = {x for lv in levels.values() for x in lv}
    assert {"arts,crafts & sewing", "kitchen,dining & bar", "flags, banners & accessories"} <= found
    assert not {"arts", "crafts & sewing", "kitchen", "dining & bar"} & found
