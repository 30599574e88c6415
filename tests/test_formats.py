"""Data files are read by content, never refused by name (issue 23): the official CIKM files are `train_QC.txt`
etc.; gzip, Parquet, JSON lines / array and CSV / TSV are told from the bytes. A row without `task` gets it
from its target field. Every file is synthetic, written to tmp_path."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from qckit import submission
from qckit.config import Params
from qckit.data import file_kind, load_splits, read_json_objects, read_pairs, validate_file
from qckit.steps import CALIBRATION, TRAINING

ROWS = [
    {"id": 1, "task": "QC", "language": "en", "origin_query": "red boots", "category_path": "shoes,women's shoes,boots",
     "label": 1},
    {"id": 2, "task": "QC", "language": "fr", "origin_query": "sac", "category_path": "bags,handbags", "label": 0},
    {"id": 3, "task": "QC", "language": "de", "origin_query": "tisch", "category_path": "home & garden,tables",
     "label": 1},
]
FIELDS = ["id", "task", "language", "origin_query", "category_path", "label"]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def delimited(rows: list[dict], sep: str) -> bytes:
    return pd.DataFrame(rows, columns=FIELDS).to_csv(sep=sep, index=False).encode()


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


FORMATS = {
    "train_QC.txt": lambda p: write(p, jsonl(ROWS)),
    "train_QC.json": lambda p: write(p, jsonl(ROWS)),
    "train_QC.jsonl": lambda p: write(p, jsonl(ROWS)),
    "train_QC": lambda p: write(p, jsonl(ROWS)),
    "array.txt": lambda p: write(p, json.dumps(ROWS, indent=2).encode()),
    "train_QC.jsonl.gz": lambda p: write(p, gzip.compress(jsonl(ROWS))),
    "train_QC.txt.gz": lambda p: write(p, gzip.compress(jsonl(ROWS))),
    "gzip_without_suffix.txt": lambda p: write(p, gzip.compress(jsonl(ROWS))),
    "csv.txt": lambda p: write(p, delimited(ROWS, ",")),
    "tsv.txt": lambda p: write(p, delimited(ROWS, "\t")),
    "rows.tsv": lambda p: write(p, delimited(ROWS, "\t")),
    "csv.txt.gz": lambda p: write(p, gzip.compress(delimited(ROWS, ","))),
    "parquet.dat": lambda p: pd.DataFrame(ROWS, columns=FIELDS).to_parquet(p, index=False) or p,
}


@pytest.mark.parametrize("name", FORMATS)
def test_the_same_rows_read_identically_whatever_the_name(tmp_path, name):
    expected = read_pairs(FORMATS["train_QC.jsonl"](tmp_path / "ref.jsonl"))
    path = FORMATS[name](tmp_path / name)
    pd.testing.assert_frame_equal(read_pairs(path), expected)
    report = validate_file(path)
    assert report.ok and report.rows == 3 and report.tasks == {"QC": 3}, report.format()
    assert file_kind(path) == {"csv": "csv", "tsv": "csv", "rows": "csv", "parquet": "parquet"}.get(
        name.split(".")[0], "json")


def test_read_json_objects_reads_gzip_and_txt(tmp_path):
    for name in ("test_QC.txt", "test_QC.txt.gz"):
        path = FORMATS["train_QC.txt.gz" if name.endswith(".gz") else "train_QC.txt"](tmp_path / name)
        assert read_json_objects(path) == ROWS


def test_task_is_inferred_from_the_fields(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "task"} for r in ROWS]
    rows.append({"id": 4, "language": "en", "origin_query": "lamp", "item_title": "desk lamp", "label": 0})
    rows.append({"id": 5, "language": "en", "origin_query": "pen", "item_title": "a pen", "label": 1})
    path = write(tmp_path / "train.txt", jsonl(rows))
    df = read_pairs(path)
    assert df["task"].tolist() == ["QC", "QC", "QC", "QI", "QI"]
    assert df["target"].tolist()[3:] == ["desk lamp", "a pen"]
    report = validate_file(path)
    assert report.ok and report.inferred_tasks == 5 and report.tasks == {"QC": 3, "QI": 2}
    assert "  task inferred from the fields for 5 rows" in report.format().splitlines()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_task_is_inferred_without_a_task_column(tmp_path, fmt):
    frame = pd.DataFrame(ROWS, columns=FIELDS).drop(columns="task")
    path = tmp_path / f"{fmt}.txt"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_text(frame.to_csv(sep="\t" if fmt == "tsv" else ",", index=False))
    report = validate_file(path)
    assert report.ok and report.inferred_tasks == 3 and report.tasks == {"QC": 3}, report.format()


def test_a_row_with_neither_or_both_targets_and_no_task_is_an_error(tmp_path):
    rows = [{"id": 1, "language": "en", "origin_query": "a", "category_path": "x"},
            {"id": 2, "language": "en", "origin_query": "b"},
            {"id": 3, "language": "en", "origin_query": "c", "category_path": "x", "item_title": "t"}]
    path = write(tmp_path / "test.txt", jsonl(rows))
    report = validate_file(path)
    assert [(e.file, e.line, e.field) for e in report.errors] == [(str(path), 2, "task"), (str(path), 3, "task")]
    assert "neither category_path (QC) nor item_title (QI)" in report.errors[0].message
    assert "both category_path and item_title" in report.errors[1].message
    rows = [{**ROWS[0], "task": None}]  # null is not absent: a wrong type, as before
    report = validate_file(write(tmp_path / "null.txt", jsonl(rows)))
    assert [(e.line, e.field) for e in report.errors] == [(1, "task")] and "got null" in report.errors[0].message


def test_a_test_file_without_task_or_label_validates(tmp_path):
    rows = [{"id": 1, "language": "en", "origin_query": "a", "category_path": "x,y"},
            {"id": 2, "language": "fr", "origin_query": "b", "category_path": "z"}]
    path = write(tmp_path / "test_QC.txt", jsonl(rows))
    report = validate_file(path)
    assert report.ok and not report.has_labels and report.inferred_tasks == 2, report.format()
    params = Params.model_validate({"name": "t", "data": {"source": "files", "test": [str(path)]}})
    splits, _ = load_splits(params, tmp_path / "raw")  # what `qckit run` reads as data.test
    assert splits["test"]["task"].tolist() == ["QC", "QC"] and splits["test"]["label"].isna().all()


def test_load_splits_reads_txt_files(tmp_path):
    train = FORMATS["train_QC.txt"](tmp_path / "train_QC.txt")
    dev = write(tmp_path / "dev_QC.txt.gz", gzip.compress(jsonl([{**r, "id": r["id"] + 10} for r in ROWS])))
    params = Params.model_validate({"name": "t", "data": {"source": "files", "train": [str(train)],
                                                          "dev": [str(dev)], "tasks": ["QC"]}})
    splits, _ = load_splits(params, tmp_path / "raw")
    assert splits["train"]["id"].tolist() == [1, 2, 3] and splits["dev"]["id"].tolist() == [11, 12, 13]


def test_validate_command_line_takes_a_txt_file(tmp_path):
    (tmp_path / "some").mkdir()
    path = FORMATS["train_QC.txt"](tmp_path / "some" / "train_QC.txt")
    proc = subprocess.run([sys.executable, "-m", "qckit", "validate", str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unknown file type" not in proc.stdout + proc.stderr


def test_predict_takes_a_txt_test_file_without_task_or_label(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / f"{TRAINING}.json").write_text(json.dumps({"plan": {"joint": ["QC", "QI"]}}))
    (run / "metrics" / f"{CALIBRATION}.json").write_text(json.dumps({"thresholds": {"QC": 0.5, "QI": 0.5}}))
    monkeypatch.setattr(submission.heads, "score_folder", lambda folder, rows, params: rows.assign(score=0.9))
    rows = [{"id": 1, "language": "en", "origin_query": "a", "category_path": "x,y"},
            {"id": 2, "language": "fr", "origin_query": "b", "category_path": "z"}]
    test = write(tmp_path / "test_QC.txt", jsonl(rows))
    written = submission.predict_files(run, [test], tmp_path / "sub")
    assert sorted(written) == ["QC", "zip"]
    out = [json.loads(x) for x in (tmp_path / "sub" / "submit_QC.txt").read_text().splitlines()]
    assert out == [{**r, "prediction": 1} for r in rows]
