"""A team's own files: column mapping, graded and worded labels, string ids, free language codes, detection."""
from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from qckit.config import ParamsError, load_params
from qckit.data import (
    DataError,
    first_new_id,
    load_splits,
    new_ids,
    read_pairs,
    read_records,
    validate_file,
    write_official,
)
from qckit.demo import write_demo
from qckit.languages import detect_languages, familiar_language
from qckit.layout import Layout, PositiveRule

HOME_DEPOT = [  # the Home Depot search-relevance layout: relevance graded 1-3 by raters
    {"id": "2", "product_uid": "100001", "product_title": "Simpson Strong-Tie 12-Gauge Angle",
     "search_term": "angle bracket", "relevance": "3"},
    {"id": "3", "product_uid": "100001", "product_title": "Simpson Strong-Tie 12-Gauge Angle",
     "search_term": "l bracket", "relevance": "2.5"},
    {"id": "9", "product_uid": "100002", "product_title": "BEHR Premium Textured DeckOver 1-gal.",
     "search_term": "deck over", "relevance": "3"},
    {"id": "16", "product_uid": "100005", "product_title": "Delta Vero 1-Handle Shower Faucet Trim Kit",
     "search_term": "rain shower head", "relevance": "2.33"},
]
MAPPING = {"query": "search_term", "target": "product_title", "label": "relevance"}


def params_from(folder: Path, text: str):
    path = folder / "profile.yaml"
    path.write_text("name: mine\n" + text, encoding="utf-8")
    return load_params(path)


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_graded_labels_and_renamed_columns_become_pairs(tmp_path):
    path = write_csv(tmp_path / "train.csv", HOME_DEPOT)
    layout = Layout.from_params(MAPPING, positive_if=">= 2.5", task="QI", detect_languages=["en", "es"])
    pairs = read_pairs(path, layout=layout)
    assert pairs["id"].tolist() == [2, 3, 9, 16]  # every id cell an integer: integers
    assert pairs["task"].eq("QI").all() and pairs["label"].tolist() == [1, 1, 1, 0]
    assert pairs["query"].tolist() == [r["search_term"] for r in HOME_DEPOT]
    assert pairs["target"].tolist() == [r["product_title"] for r in HOME_DEPOT]
    assert pairs["language"].eq("en").all()
    text = validate_file(path, layout=layout).format()
    assert "OK, 4 rows" in text and "labels: 1 3, 0 1" in text
    assert "label 0 from relevance (>= 2.5): 2.33 (1)" in text
    assert "language detected from the query for 4 rows" in text and "among en, es" in text
    assert "unknown fields product_uid" in text  # kept out of the table, said


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_a_bad_graded_label_is_located_by_the_files_own_field(tmp_path, delimiter):
    rows = [*HOME_DEPOT[:2], {**HOME_DEPOT[2], "relevance": "high"}]
    path = write_csv(tmp_path / "train.tsv", rows, delimiter)
    layout = Layout.from_params(MAPPING, positive_if=">= 2.5", task="QI", detect_languages=["en"])
    with pytest.raises(DataError) as err:
        read_pairs(path, layout=layout)
    assert (err.value.line, err.value.field) == (4, "relevance")
    assert "expected a number for data.positive_if '>= 2.5', got 'high'" in str(err.value)


def test_worded_labels_follow_a_yaml_list(tmp_path):
    # YAML reads yes and true as booleans: a boolean in the list stands for its words
    params = params_from(tmp_path, "data:\n  positive_if: [yes, relevant, 1]\n")
    rule = PositiveRule.parse(params.data.positive_if)
    assert [rule(v)[0] for v in ["Yes", "RELEVANT", "true", "on", 1, 1.0, "1", "no", "irrelevant", 0]] == \
        [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert rule(None) == (None, None) and rule("") == (None, None)  # a test row: no label
    rows = [{"qid": "a-1", "q": "red shoes", "cat": "shoes,red", "judgement": "relevant", "lang": "en"},
            {"qid": "a-2", "q": "red shoes", "cat": "toys", "judgement": "not relevant", "lang": "en"}]
    path = tmp_path / "judged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    layout = Layout.from_params({"id": "qid", "query": "q", "target": "cat", "label": "judgement", "language": "lang"},
                                positive_if=params.data.positive_if, task="QC")
    pairs = read_pairs(path, layout=layout)
    assert pairs["label"].tolist() == [1, 0] and pairs["id"].tolist() == ["a-1", "a-2"]


@pytest.mark.parametrize(("text", "message"), [
    ("data:\n  columns: {query: q, search: s}\n", "unknown field(s) search"),
    ("data:\n  columns: {query: q, target: q}\n", "column 'q' is given for both query and target"),
    ("data:\n  positive_if: 'at least 2'\n", "expected a comparison such as '>= 2.5'"),
    ("data:\n  positive_if: []\n", "an empty list"),
    ("data:\n  task: QX\n", "data.task"),
])
def test_bad_layout_settings_are_refused_by_name(tmp_path, text, message):
    with pytest.raises(ParamsError) as err:
        params_from(tmp_path, text)
    assert message in str(err.value)


def test_a_header_that_cannot_give_the_fields_is_one_error(tmp_path):
    path = write_csv(tmp_path / "train.csv", HOME_DEPOT)
    no_task = Layout.from_params(MAPPING, positive_if=">= 2.5")
    report = validate_file(path, layout=no_task)
    assert len(report.errors) == 1 and report.errors[0].field == "task" and "set data.task" in str(report.errors[0])
    misnamed = Layout.from_params({**MAPPING, "query": "search"}, positive_if=">= 2.5", task="QI")
    report = validate_file(path, layout=misnamed)
    assert [(e.line, e.field) for e in report.errors] == [(1, "search")]
    assert "no column 'search' (data.columns.query names it)" in str(report.errors[0])
    both = write_csv(tmp_path / "both.csv", [{**r, "origin_query": "x"} for r in HOME_DEPOT])
    report = validate_file(both, layout=Layout.from_params(MAPPING, positive_if=">= 2.5", task="QI"))
    assert "both give the query" in str(report.errors[0])


def test_string_ids_are_kept_verbatim_and_created_ids_never_collide(tmp_path):
    rows = [{"id": "B00X-1", "task": "QC", "language": "pt-BR", "origin_query": "tênis", "category_path": "a,b",
             "label": 1},
            {"id": 17, "task": "QC", "language": "zh-Hant", "origin_query": "鞋", "category_path": "a,c", "label": 0}]
    path = tmp_path / "train_QC.txt"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = validate_file(path)
    assert report.ok and report.warnings["unfamiliar_language"] == 0  # BCP-47 tags are languages
    pairs = read_pairs(path)
    assert pairs["id"].tolist() == ["B00X-1", "17"]  # one string id makes every id a string
    first = first_new_id([pairs], "translated")
    assert first == "translated-" and list(new_ids(first, 2)) == ["translated-1", "translated-2"]
    clash = pd.DataFrame({"id": ["translated-1"]})
    assert first_new_id([clash], "translated") == "translated2-"
    assert first_new_id([pd.DataFrame({"id": [3, 9]})]) == 10
    write_official(pairs, tmp_path / "copy.jsonl")
    assert [json.loads(line)["id"] for line in (tmp_path / "copy.jsonl").read_text().splitlines()] == \
        ["B00X-1", "17"]


def test_unfamiliar_language_codes_are_a_warning_not_an_error(tmp_path):
    rows = [{"id": i, "task": "QC", "language": lang, "origin_query": f"q{i}", "category_path": "a,b", "label": 1}
            for i, lang in enumerate(["vn", "vi", "fil", "jp", "english"], 1)]
    path = tmp_path / "f.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = validate_file(path)
    assert report.ok and report.unfamiliar_languages == ["english", "jp"]
    assert report.warnings["unfamiliar_language"] == 2 and report.examples["unfamiliar_language"] == [4, 5]
    assert "english, jp: 2 (lines 4, 5)" in report.format()
    assert familiar_language("pt-BR") and familiar_language("vn") and not familiar_language("jp")


def test_language_is_detected_in_the_kits_spelling():
    assert detect_languages(["zapatillas de mujer para correr", "giày thể thao nam", "running shoes for men"]) == \
        ["es", "vn", "en"]
    assert detect_languages(["giày thể thao nam"], ["vi", "en"]) == ["vi"]  # asked for as vi: stays vi


def test_records_keep_the_inputs_fields_and_order(tmp_path):
    path = write_csv(tmp_path / "test.csv", [{k: v for k, v in r.items() if k != "relevance"} for r in HOME_DEPOT])
    records = read_records(path)
    assert list(records[0]) == ["id", "product_uid", "product_title", "search_term"]
    assert records[0]["id"] == 2 and records[0]["product_uid"] == "100001"  # ids as the pairs table has them


# the whole path a team takes: own CSV files -> qckit validate -> qckit run -> qckit predict ----------------------
def own_files(folder: Path) -> dict[str, Path]:
    """The demo's QI files rewritten as a team's CSVs: other column names, string ids, relevance graded 1-3,
    no language column."""
    demo = write_demo(folder / "demo", seed=3, noise_rate=0.1, queries_per_language=6)
    rng = random.Random(0)
    out = {}
    for split in ("train", "dev", "test"):
        rows = [json.loads(line) for line in demo[f"{split}_QI"].read_text(encoding="utf-8").splitlines()]
        table = []
        for r in rows:
            row = {"uid": f"P{r['id']:05d}", "search_term": r["origin_query"], "product_title": r["item_title"]}
            if "label" in r:
                row["relevance"] = rng.choice(["2.67", "3"] if r["label"] else ["1", "1.67", "2.33"])
            table.append(row)
        out[split] = write_csv(folder / f"{split}.csv", table)
    return out


def test_own_csv_validates_runs_and_predicts_with_its_ids(tmp_path):
    files = own_files(tmp_path)
    smoke = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text(encoding="utf-8"))
    profile = {**smoke, "name": "own", "data": {
        "source": "files", "train": [str(files["train"])], "dev": [str(files["dev"])], "test": [str(files["test"])],
        "tasks": ["QI"], "task": "QI", "columns": {"id": "uid", "query": "search_term", "target": "product_title",
                                                  "label": "relevance"},
        "positive_if": ">= 2.5", "detect_languages": ["en", "fr", "es", "de", "it", "pt"]}}
    params = tmp_path / "own.yaml"
    params.write_text(yaml.safe_dump(profile), encoding="utf-8")
    load_params(params)

    def qckit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "qckit", *args], capture_output=True, text=True, cwd=REPO,
                              timeout=900)

    checked = qckit("validate", "-p", str(params))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 of 3 files valid" in checked.stdout and "language detected from the query" in checked.stdout
    splits, _ = load_splits(load_params(params), tmp_path / "raw")
    assert splits["train"]["id"].str.startswith("P").all() and set(splits["train"]["label"]) == {0, 1}

    ran = qckit("run", "-p", str(params), "--run-id", "own", "-q", "--outputs-dir", str(tmp_path / "out"))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    predicted = qckit("predict", "--run", str(tmp_path / "out" / "own"), "--input", str(files["test"]),
                      "--output", str(tmp_path / "sub"))
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert "QI:" in predicted.stdout and "rows read" in predicted.stdout
    lines = [json.loads(line) for line in (tmp_path / "sub" / "submit_QI.txt").read_text().splitlines()]
    with open(files["test"], newline="", encoding="utf-8") as fh:
        given = list(csv.DictReader(fh))
    assert [r["uid"] for r in lines] == [r["uid"] for r in given]  # verbatim, in the input's order
    assert list(lines[0]) == ["uid", "search_term", "product_title", "prediction"]
    assert {r["prediction"] for r in lines} <= {0, 1}
