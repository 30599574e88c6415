"""`qckit compare`: runs side by side on one page, differences marked, nothing from a run executed."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qckit.cli import main
from qckit.compare import compare_runs, headline_table, language_f1, parameter_differences
from qckit.report import CSP
from qckit.runs import Run


def fake_run(root: Path, name: str, *, f1: float, seed: int, flip: float) -> Path:
    """A finished run's files as the chain writes them: params, step 05 and 06 metrics, dev predictions."""
    run = Run(root / name).ensure()
    params = {"name": name, "run": {"seed": seed}, "training": {"head": "embedding", "trees": 200},
              "data": {"source": "demo"}}
    run.path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run.write_metrics("05_fine_tuning", {"models": {"joint": {"train_rows": 1000}}})
    run.write_metrics("06_calibration", {
        "thresholds": {"QC": 0.5}, "language_thresholds": {},
        "tasks": {"QC": {"f1": f1 + 0.005, "f1_held_out_threshold": f1, "all_positive_f1": 0.8, "threshold": 0.5}}})
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    wrong = rng.random(400) < flip  # the share of rows the model gets wrong
    preds = pd.DataFrame({"id": range(400), "task": "QC", "language": np.where(np.arange(400) < 200, "en", "fr"),
                          "query": "q", "target": "t", "label": labels,
                          "score": np.where(labels.astype(bool) ^ wrong, 0.9, 0.1)})
    run.path("predictions").mkdir(exist_ok=True)
    preds.to_parquet(run.path("predictions", "dev.parquet"))
    run.path("run_status.json").write_text(json.dumps({"ok": True, "steps": [{"step": "05", "seconds": 12.5}]}))
    return run.root


class _Cells(HTMLParser):
    """(table id, row key, cell classes, cell text) of every cell."""

    def __init__(self):
        super().__init__()
        self.cells, self.table, self.row, self.cls, self.text, self.scripts = [], None, [], None, None, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self.table = attrs.get("id")
        if tag == "tr":
            self.row = []
        if tag in ("td", "th"):
            self.cls, self.text = attrs.get("class") or "", ""

    def handle_data(self, data):
        if self.text is not None:
            self.text += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.text is not None:
            self.row.append((self.cls, self.text))
            if tag == "td" and len(self.row) > 1:
                self.cells.append((self.table, self.row[0][1], self.cls, self.text))
            self.text = None


def test_compare_page_marks_the_better_run_and_the_parameters_that_differ(tmp_path):
    a = fake_run(tmp_path, "base", f1=0.82, seed=1, flip=0.3)
    b = fake_run(tmp_path, "tuned", f1=0.86, seed=2, flip=0.1)
    path = compare_runs([a, b])
    assert path == tmp_path / "compare-base-tuned.html"
    page = path.read_text(encoding="utf-8")
    assert f'content="{CSP}"' in page
    parser = _Cells()
    parser.feed(page)
    assert parser.scripts == 0
    cells = {(t, key, text.strip()): cls for t, key, cls, text in parser.cells}
    assert "better" in cells[("headline", "QC dev F1, held-out thresholds", "0.8600")]
    assert "best" in cells[("headline", "QC dev F1, held-out thresholds", "0.8600")]
    assert cells[("headline", "QC all-positive F1", "0.8000")] == ""  # the floor is not judged
    fr = {text: cls for t, key, cls, text in parser.cells if (t, key) == ("languages", "QC fr")}
    assert len(fr) == 2 and any("better" in cls for cls in fr.values())
    assert ("params", "run.seed", "2") in cells and cells[("params", "run.seed", "2")] == "changed"
    assert not any(key.startswith("training.") for t, key, _, _ in parser.cells if t == "params")
    assert re.search(r"(\d+) parameters are the same in every run", page)


def test_compare_tables_are_there_for_notebooks(tmp_path):
    runs = [Run(fake_run(tmp_path, n, f1=f, seed=s, flip=0.2)) for n, f, s in [("a", 0.8, 1), ("b", 0.9, 1)]]
    table = headline_table(runs)
    assert table.loc["QC dev F1, held-out thresholds"].tolist() == [0.8, 0.9]
    assert table.loc["training rows"].tolist() == [1000, 1000] and table.loc["run time (s)"].tolist() == [12.5, 12.5]
    by_language, zero_shot = language_f1(runs)
    assert list(by_language.index) == [("QC", "en"), ("QC", "fr")] and zero_shot == set()
    params, same = parameter_differences(runs)
    assert list(params.index) == ["name"] and same >= 4


def test_text_from_a_run_is_escaped(tmp_path):
    a = fake_run(tmp_path, "a", f1=0.8, seed=1, flip=0.2)
    b = fake_run(tmp_path, "b", f1=0.8, seed=1, flip=0.2)
    hostile = yaml.safe_load((b / "params.yaml").read_text())
    hostile["name"] = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    (b / "params.yaml").write_text(yaml.safe_dump(hostile))
    page = compare_runs([a, b]).read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;alert(1)" in page


def test_compare_command_line(tmp_path, capsys):
    a = fake_run(tmp_path, "a", f1=0.8, seed=1, flip=0.2)
    b = fake_run(tmp_path, "b", f1=0.81, seed=1, flip=0.2)
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "page.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "page.html") and (tmp_path / "page.html").is_file()
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "page.html" / "x.html")]) == 2
    assert "qckit compare:" in capsys.readouterr().err and not (tmp_path / "page.html" / "x.html").exists()
    (tmp_path / "out").mkdir()
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "compare-a-b.html")
    assert main(["compare", str(a)]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err


@pytest.mark.parametrize("missing", ["06_calibration", "predictions"])
def test_a_run_without_results_compares_with_gaps(tmp_path, missing):
    a = fake_run(tmp_path, "a", f1=0.8, seed=1, flip=0.2)
    b = fake_run(tmp_path, "b", f1=0.8, seed=1, flip=0.2)
    target = b / "metrics" / f"{missing}.json" if missing.startswith("06") else b / "predictions" / "dev.parquet"
    target.unlink()
    page = compare_runs([a, b]).read_text(encoding="utf-8")
    assert "qckit compare" in page and "–" in page
