"""`qckit ablate` on the smoke profile (shared steps run once, variants by any spelling, the paper's figures on
their rows) and `qckit predict` submission files."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from qckit import submission
from qckit.ablation import (
    DEFAULT_VARIANTS,
    ablation_table,
    canonical_variant,
    parse_variants,
    variant_folder,
    write_ablation_report,
)
from qckit.cli import main as cli_main
from qckit.runs import Run
from qckit.steps import CALIBRATION, TRAINING
from qckit.submission import SubmissionError


@pytest.fixture(scope="module")
def ablation(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("abl")
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "ablate", "-p", "params/smoke.yaml",
         "--variants", "baseline,noise+negatives+translation",  # another spelling of all
         "--ablation-id", "a", "--outputs-dir", str(out), "-q"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    return proc, out / "a"


def test_ablation_runs_every_variant_and_shares_the_audit(ablation):
    proc, root = ablation
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = json.loads((root / "baseline" / "run_status.json").read_text())
    full = json.loads((root / "all" / "run_status.json").read_text())
    assert all(s["status"] == "done" for s in base["steps"])
    status = {s["step"]: s["status"] for s in full["steps"]}
    assert status["01_data_audit"] == "shared"  # executed once, in the first variant
    assert status["05_fine_tuning"] == "done"  # different training data: executed again
    log = (root / "all" / "run.log").read_text()
    assert "01_data_audit: shared from" in log


def test_ablation_report_has_the_table_per_task_and_variant(ablation):
    proc, root = ablation
    html = (root / "index.html").read_text()
    for text in ("baseline", "all", "QC", "QI", "paper_dev_f1", "all_positive_f1", "data:image/png;base64,"):
        assert text in html
    assert "0.8919" in html  # the paper's figure for the full method, for reference
    assert "<script" not in html
    assert sorted(p.name for p in root.iterdir() if (p / "run_status.json").exists()) == ["all", "baseline"]


def test_predict_writes_official_submission_files(ablation, tmp_path):
    _, root = ablation
    run = root / "all"
    inputs = [run / "data" / "raw" / "test_QC.jsonl", run / "data" / "raw" / "test_QI.jsonl"]
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "predict", "--run", str(run), "--input", *map(str, inputs),
         "--output", str(tmp_path / "sub")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task, src in zip(("QC", "QI"), inputs):
        original = [json.loads(line) for line in src.read_text().splitlines()]
        submitted = [json.loads(line) for line in (tmp_path / "sub" / f"submit_{task}.txt").read_text().splitlines()]
        assert len(submitted) == len(original)
        assert [s["id"] for s in submitted] == [o["id"] for o in original]
        for s, o in zip(submitted, original):
            assert {k: v for k, v in s.items() if k != "prediction"} == o
            assert list(s)[:-1] == list(o) and s["prediction"] in (0, 1)
    names = zipfile.ZipFile(tmp_path / "sub" / "submit.zip").namelist()
    assert sorted(names) == ["submit_QC.txt", "submit_QI.txt"]


def test_predict_refuses_a_task_the_run_has_no_model_for(ablation, tmp_path):
    _, root = ablation
    run = tmp_path / "qc-only"
    shutil.copytree(root / "all", run)
    for step, key in (("05_fine_tuning", "plan"), ("06_calibration", "thresholds")):
        path = run / "metrics" / f"{step}.json"
        metrics = json.loads(path.read_text())
        if key == "plan":
            metrics["plan"] = {name: [t for t in tasks if t != "QI"] for name, tasks in metrics["plan"].items()}
        else:
            metrics["thresholds"].pop("QI")
        path.write_text(json.dumps(metrics))
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "predict", "--run", str(run), "--input",
         str(run / "data" / "raw" / "test_QI.jsonl"), "--output", str(tmp_path / "sub")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 2
    assert "task QI" in proc.stderr and "QC only" in proc.stderr
    assert not (tmp_path / "sub" / "submit_QI.txt").exists()


# variants by name, the paper's figures on their rows, gains (issue 25) -----------------------------------------
def test_variant_names_are_normalised():
    assert canonical_variant("negatives+translation") == canonical_variant(" Translation + negatives ") \
        == "translation+negatives"
    assert canonical_variant("noise+negatives+translation") == "all"
    assert parse_variants("baseline,noise+translation,translation+noise,negatives,all,translation+negatives+noise") \
        == ["baseline", "translation+noise", "negatives", "all"]
    assert parse_variants(DEFAULT_VARIANTS) == list(DEFAULT_VARIANTS) == [
        "baseline", "translation", "translation+negatives", "translation+noise", "all"]
    assert variant_folder("noise+translation") == "translation-noise" and variant_folder("all") == "all"
    for bad, why in [("translation+bogus", "unknown step 'bogus'"), ("noise+noise", "a step named twice"),
                     ("baseline+noise", "unknown step 'baseline'"), ("translation+", "unknown step ''"),
                     ("translation-negatives", "unknown step")]:
        with pytest.raises(ValueError, match=re.escape(why)):
            canonical_variant(bad)
    with pytest.raises(ValueError, match="no variants"):
        parse_variants(" , ")


def test_ablate_refuses_a_bad_variant_before_anything_runs(tmp_path, capsys):
    code = cli_main(["ablate", "-p", str(REPO / "params" / "smoke.yaml"), "--variants", "baseline,translation+nosie",
                     "--outputs-dir", str(tmp_path / "out"), "--ablation-id", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "'translation+nosie'" in err and "unknown step 'nosie'" in err and "translation+negatives" in err
    assert not (tmp_path / "out").exists()


def fake_ablation(root: Path, f1: dict[str, float]) -> None:
    """Calibration and training metrics of finished variants: F1 ``f1[variant]`` on QC, 0.01 more on QI."""
    for variant, value in f1.items():
        run = Run(root / variant_folder(variant)).ensure()
        run.write_metrics(TRAINING, {"models": {"joint": {"train_rows": 100}}})
        run.write_metrics(CALIBRATION, {"tasks": {task: {
            "f1": value + extra, "f1_ci": [value + extra - 0.02, value + extra + 0.02], "threshold": 0.5,
            "f1_held_out_threshold": value + extra - 0.005, "all_positive_f1": 0.8}
            for task, extra in (("QC", 0.0), ("QI", 0.01))}})


PAPER_ROWS = {"baseline": 0.80, "translation": 0.81, "negatives": 0.79, "noise": 0.83, "translation+negatives": 0.82,
              "translation+noise": 0.84, "all": 0.86}


def test_paper_figures_stand_only_beside_the_paper_combination(tmp_path):
    fake_ablation(tmp_path, PAPER_ROWS)
    table = ablation_table(tmp_path, list(PAPER_ROWS)).set_index(["variant", "task"])
    paper = table["paper_dev_f1"]
    assert paper[("translation+negatives", "QC")] == 0.8885 and paper[("translation+noise", "QI")] == 0.8799
    assert paper[("all", "QC")] == 0.8919 and paper[("all", "QI")] == 0.8839
    assert paper[("translation", "QC")] == 0.8834 and paper[("baseline", "QI")] == 0.8662
    for variant, task in [("negatives", "QC"), ("negatives", "QI"), ("noise", "QC"), ("noise", "QI"),
                          ("translation+negatives", "QI"), ("translation+noise", "QC")]:
        assert pd.isna(paper[(variant, task)]), (variant, task)


def test_gains_against_the_baseline_and_the_previous_cumulative_row(tmp_path):
    fake_ablation(tmp_path, PAPER_ROWS)
    table = ablation_table(tmp_path, list(PAPER_ROWS)).set_index(["variant", "task"])
    previous = table["previous"]
    assert pd.isna(previous[("baseline", "QC")]) and previous[("negatives", "QC")] == "baseline"
    assert previous[("translation+negatives", "QC")] == "translation"  # not the single-step negatives
    assert previous[("all", "QC")] == "translation+negatives" and previous[("all", "QI")] == "translation+noise"
    assert table.loc[("all", "QC"), "gain_vs_previous"] == pytest.approx(0.86 - 0.82)
    assert table.loc[("all", "QI"), "gain_vs_previous"] == pytest.approx(0.86 - 0.84)
    assert table.loc[("all", "QI"), "gain_vs_baseline"] == pytest.approx(0.86 - 0.80)
    assert table.loc[("noise", "QC"), "gain_vs_baseline"] == pytest.approx(0.03)
    assert table.loc[("baseline", "QC"), "gain_vs_baseline"] == 0.0
    # without the baseline there is nothing to gain against; the previous row is the nearest one run
    partial = ablation_table(tmp_path, ["all", "translation"]).set_index(["variant", "task"])
    assert partial["gain_vs_baseline"].isna().all() and partial.loc[("all", "QC"), "previous"] == "translation"
    assert partial.loc[("all", "QC"), "gain_vs_previous"] == pytest.approx(0.86 - 0.81)
    # a variant that did not finish (no metrics) has no row and is nobody's previous row
    fake_ablation(tmp_path / "b", {"baseline": 0.80, "all": 0.86})
    stopped = ablation_table(tmp_path / "b", ["baseline", "translation+negatives", "all"])
    assert set(stopped["variant"]) == {"baseline", "all"} and set(stopped["previous"].dropna()) == {"baseline"}


def report_rows(html: str) -> dict[tuple[str, str], dict[str, str]]:
    """The first table of the ablation page as {(variant, task): {column: text}}."""
    table = html.split("</table>")[0]
    header = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    return {(r[0], r[1]): dict(zip(header, r)) for r in rows if r}


def test_report_puts_each_paper_figure_on_its_row(tmp_path):
    fake_ablation(tmp_path, PAPER_ROWS)
    table = ablation_table(tmp_path, list(PAPER_ROWS))
    statuses = {v: {"01_data_audit": "done"} for v in PAPER_ROWS}
    html = write_ablation_report(tmp_path, table, statuses).read_text()
    rows = report_rows(html)
    assert rows[("translation+negatives", "QC")]["paper_dev_f1"] == "0.8885"
    assert rows[("negatives", "QC")]["paper_dev_f1"] == "–" and rows[("noise", "QI")]["paper_dev_f1"] == "–"
    assert rows[("translation+noise", "QI")]["paper_dev_f1"] == "0.8799"
    assert rows[("all", "QI")]["previous"] == "translation+noise"
    assert rows[("all", "QI")]["gain_vs_previous"] == "+0.0200"
    assert "href='translation-negatives/report/index.html'" in html


# bad input to `qckit predict` (issue 24): everything is checked before anything is written --------------------
def official(ident: int, task: str = "QC", **fields) -> dict:
    target = {"category_path": "shoes,boots"} if task == "QC" else {"item_title": f"title {ident}"}
    return {"id": ident, "task": task, "language": "en", "origin_query": f"query {ident}", **target, **fields}


def write_jsonl(path: Path, *rows: dict | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """A run with the metrics predict reads and no model: the checks under test come before any scoring."""
    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / f"{TRAINING}.json").write_text(json.dumps({"plan": {"joint": ["QC", "QI"]}}))
    (run / "metrics" / f"{CALIBRATION}.json").write_text(json.dumps({"thresholds": {"QC": 0.5, "QI": 0.5}}))
    return run


@pytest.fixture
def fake_scoring(monkeypatch):
    monkeypatch.setattr(submission.heads, "score_folder", lambda folder, rows, params: rows.assign(score=0.9))


def predict_cli(run: Path, inputs: list[Path], output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qckit", "predict", "--run", str(run), "--input", *map(str, inputs),
                           "--output", str(output)], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_predict_refuses_an_id_used_twice_across_inputs(fake_run, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", official(1), official(2))
    b = write_jsonl(tmp_path / "b.jsonl", official(3), official(2))
    proc = predict_cli(fake_run, [a, b], tmp_path / "sub")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{b}:2: field 'id': id 2 is already used by {a}:2" in proc.stderr
    assert not (tmp_path / "sub").exists()  # nothing written, not even the folder
    proc = predict_cli(fake_run, [a, a], tmp_path / "sub")  # the same file twice
    assert proc.returncode == 2 and f"{a}:1: field 'id': id 1 is already used by {a}:1" in proc.stderr


def test_predict_refuses_an_id_used_twice_within_one_input(fake_run, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", official(1), official(2), official(1, origin_query="other"))
    proc = predict_cli(fake_run, [a], tmp_path / "sub")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{a}:3: field 'id': id 1 already used on line 1" in proc.stderr


def test_predict_takes_the_same_id_in_two_tasks(fake_run, fake_scoring, tmp_path):
    # official test files number their rows from 1 each: QC and QI ids meet in different submission files
    qc = write_jsonl(tmp_path / "test_QC.jsonl", official(1), official(2))
    qi = write_jsonl(tmp_path / "test_QI.jsonl", official(1, "QI"), official(2, "QI"))
    written = submission.predict_files(fake_run, [qc, qi], tmp_path / "sub")
    assert sorted(written) == ["QC", "QI", "zip"]
    lines = (tmp_path / "sub" / "submit_QI.txt").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [1, 2]


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_predict_refuses_a_file_as_output_folder(fake_run, tmp_path, where):
    a = write_jsonl(tmp_path / "a.jsonl", official(1))
    existing = tmp_path / "submission.txt"
    existing.write_text("keep me\n")
    output = existing if where == "file" else existing / "sub"
    proc = predict_cli(fake_run, [a], output)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and str(existing) in proc.stderr  # one line naming it
    assert "is a file" in proc.stderr
    assert existing.read_text() == "keep me\n"


def test_predict_refuses_a_lone_surrogate_with_file_and_line(fake_run, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", official(1), json.dumps(official(2, origin_query="cut \ud83d")))
    proc = predict_cli(fake_run, [a], tmp_path / "sub")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{a}:2: field 'origin_query': holds a lone surrogate" in proc.stderr


def test_predict_copies_a_json_array_input(fake_run, fake_scoring, tmp_path):
    rows = [official(1, note="kept"), official(2)]
    a = tmp_path / "test_QC.json"
    a.write_text(json.dumps(rows, indent=2))
    submission.predict_files(fake_run, [a], tmp_path / "sub")
    out = [json.loads(x) for x in (tmp_path / "sub" / "submit_QC.txt").read_text().splitlines()]
    assert out == [{**r, "prediction": 1} for r in rows]


def test_predict_leaves_nothing_half_written(fake_run, fake_scoring, tmp_path, monkeypatch):
    qc = write_jsonl(tmp_path / "test_QC.jsonl", official(1))
    qi = write_jsonl(tmp_path / "test_QI.jsonl", official(1, "QI"))
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "submit_QC.txt").write_text("an earlier submission\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(submission.zipfile, "ZipFile", full_disk)
    with pytest.raises(submission.SubmissionError, match="No space left on device"):
        submission.predict_files(fake_run, [qc, qi], sub)
    assert sorted(p.name for p in sub.iterdir()) == ["submit_QC.txt"]  # no submit_QI.txt, no temporary file
    assert (sub / "submit_QC.txt").read_text() == "an earlier submission\n"


# thresholds of a submission (issue 23) --------------------------------------------------------------------------
@pytest.fixture
def scored_at(monkeypatch):
    """Fake scoring: each row's score is the number after 'query ' divided by 10 (query 3 -> 0.3)."""
    monkeypatch.setattr(submission.heads, "score_folder", lambda folder, rows, params: rows.assign(
        score=rows["query"].str.split().str[-1].astype(float) / 10))


@pytest.mark.parametrize("spec, expected", [
    ("calibrated", {"QC": [0, 0, 0, 0, 1], "QI": [0, 0, 0, 0, 1]}),  # the run's 0.5
    ("paper", {"QC": [0, 0, 0, 1, 1], "QI": [0, 1, 1, 1, 1]}),      # QC 0.4, QI 0.2
    ("QC=0.3,QI=0.45", {"QC": [0, 0, 1, 1, 1], "QI": [0, 0, 0, 0, 1]}),
])
def test_predict_applies_the_thresholds_asked_for(fake_run, scored_at, tmp_path, spec, expected):
    qc = write_jsonl(tmp_path / "test_QC.txt", *(official(i) for i in range(1, 6)))
    qi = write_jsonl(tmp_path / "test_QI.txt", *(official(i, "QI") for i in range(1, 6)))
    report: dict = {}
    submission.predict_files(fake_run, [qc, qi], tmp_path / "sub", thresholds=spec, report=report)
    for task in ("QC", "QI"):
        lines = (tmp_path / "sub" / f"submit_{task}.txt").read_text().splitlines()
        assert [json.loads(x)["prediction"] for x in lines] == expected[task]
        assert report[task]["rows"] == 5 and report[task]["share_relevant"] == sum(expected[task]) / 5
    assert report["QC"]["threshold"] == {"calibrated": 0.5, "paper": 0.4}.get(spec, 0.3)


def test_predict_cli_prints_rows_threshold_and_share_per_task(fake_run, tmp_path):
    qc = write_jsonl(tmp_path / "test_QC.txt", official(1))
    for bad in ("QC=1.5", "QX=0.4", "QC", "strict"):
        proc = subprocess.run([sys.executable, "-m", "qckit", "predict", "--run", str(fake_run), "--input", str(qc),
                               "--output", str(tmp_path / "sub"), "--thresholds", bad],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 2 and "--thresholds" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "sub").exists()
    with pytest.raises(SubmissionError, match="task QC rows, but the thresholds cover QI only"):
        submission.predict_files(fake_run, [qc], tmp_path / "sub", thresholds="QI=0.3")


def test_predict_summary_line(fake_run, scored_at, tmp_path, capsys):
    qc = write_jsonl(tmp_path / "test_QC.txt", *(official(i) for i in range(1, 5)))
    assert cli_main(["predict", "--run", str(fake_run), "--input", str(qc), "--output", str(tmp_path / "sub"),
                     "--thresholds", "paper"]) == 0
    assert "QC: 4 rows read, threshold 0.400, 25.0% predicted relevant" in capsys.readouterr().out
