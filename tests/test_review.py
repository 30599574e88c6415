"""The review loop of step 04: the sheet a person fills in (export), their verdicts back in the run (import),
the precision per confidence level, refused sheets, the formula guard and the command line."""
from __future__ import annotations

import csv
import hashlib
import io
import math
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qckit import noise, review
from qckit.cli import main
from qckit.config import load_params
from qckit.pipeline import lock_run
from qckit.runs import Run
from qckit.sheets import FORMULA_START, guard_cell, unguard_cell
from qckit.steps import NOISE, audit
from qckit.steps import noise as noise_step

REPO = Path(__file__).resolve().parents[1]

# A hand-made step-04 result: (id, task, query, target, label, p_yes, flagged). Confidence is p of the opposite
# of the label: 0.95, 0.92, 0.85, 0.75, 0.72, 0.65 for the flagged rows; the last row is not flagged.
ROWS = [
    (1, "QC", "=cmd|' /C calc'!A0", "home & garden,kitchen", 1, 0.05, True),
    (2, "QC", "+phone case", "-5% deals,phones", 0, 0.92, True),
    (3, "QI", "@home decor", "'quoted title", 1, 0.15, True),
    (4, "QI", "lamp", "desk lamp", 0, 0.75, True),
    (5, "QC", "sofa", "furniture,sofas", 1, 0.28, True),
    (6, "QC", "chair", "furniture,chairs", 1, 0.35, True),
    (7, "QC", "table", "furniture,tables", 1, 0.90, False),
]


def handmade_run(root: Path) -> Run:
    run = Run(root).ensure()
    scores = pd.DataFrame(ROWS, columns=["id", "task", "query", "target", "label", "p_yes", "flagged"])
    scores.insert(2, "language", "en")
    scores["origin"] = "original"
    scores["confidence"] = noise.disagreement(scores["label"], scores["p_yes"])
    run.write_table("noise_scores", scores)
    run.write_table("review_queue", noise.review_queue(scores, scores.p_yes, scores.flagged))
    run.write_metrics(NOISE, {"enabled": True, "headline": {"flagged": 6}})
    return run


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])  # an exception here is the traceback a user would see
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[dict[str, str]], **fmt) -> Path:
    with open(path, "w", encoding=fmt.pop("encoding", "utf-8"), newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), **fmt)
        writer.writeheader()
        writer.writerows(rows)
    return path


def fill(rows: list[dict[str, str]], verdicts: dict[str, str]) -> list[dict[str, str]]:
    return [{**r, "verdict": verdicts.get(r["key"], "")} for r in rows]


def digests(run: Run) -> dict[str, str]:
    return {str(p.relative_to(run.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.root.rglob("*")) if p.is_file()}


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out, to check the library's against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# --- the formula guard ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["=1+1", "+x", "-5", "@SUM(A1)", "\tx", "\rx", "'quoted", "''", "'=x", "'",
                                   "plain", "", "a=b", "5-3"])
def test_guard_makes_formulas_text_and_unguard_undoes_it(value):
    guarded = guard_cell(value)
    assert not guarded.startswith(FORMULA_START)
    assert guarded == ("'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r", "'") else value)
    assert unguard_cell(guarded) == value


# --- the sample -------------------------------------------------------------------------------------
def test_review_sample_draws_per_level_from_the_rows_at_or_above_it_and_nests():
    conf = np.r_[np.linspace(0.6, 0.99, 200)]
    sample = noise.review_sample(conf, levels=[0.9, 0.7, 0.8], per_level=20, seed=4)
    assert sample.position.is_unique
    for level in (0.7, 0.8, 0.9):
        drawn = sample.position[[level in lv for lv in sample.levels]]
        assert len(drawn) == 20 and (conf[drawn] >= level).all()
    for pos, levels in zip(sample.position, sample.levels):  # a row counts for every level from its lowest up
        assert levels == sorted(levels) and levels == [v for v in (0.7, 0.8, 0.9) if levels[0] <= v <= conf[pos]]
    again = noise.review_sample(conf, levels=[0.7, 0.8, 0.9], per_level=20, seed=4)
    pd.testing.assert_frame_equal(sample, again)
    assert set(noise.review_sample(conf, per_level=20, seed=5).position) != set(sample.position)
    small = noise.review_sample([0.95, 0.5, 0.75], levels=[0.7, 0.9], per_level=50)
    assert sorted(small.position) == [0, 2]  # fewer rows than asked: all of them; 0.5 is below every level


def test_review_sample_gives_every_row_of_a_level_the_same_chance():
    """Unbiased per level: over many seeds each row at or above a level is drawn for it equally often
    (per_level / rows at or above), whatever other levels took."""
    conf = np.r_[np.full(30, 0.75), np.full(10, 0.95)]
    hits = {0.7: np.zeros(40), 0.9: np.zeros(40)}
    for seed in range(3000):
        s = noise.review_sample(conf, levels=[0.7, 0.9], per_level=5, seed=seed)
        for level in hits:
            hits[level][s.position[[level in lv for lv in s.levels]].to_numpy()] += 1
    np.testing.assert_allclose(hits[0.7] / 3000, 5 / 40, atol=0.025)
    np.testing.assert_allclose(hits[0.9][30:] / 3000, 5 / 10, atol=0.04)
    assert not hits[0.9][:30].any()


def test_precision_by_level_counts_reviewed_rows_and_gives_wilson_intervals():
    sample = pd.DataFrame({"levels": [[0.7, 0.8, 0.9], [0.7, 0.8, 0.9], [0.7, 0.8], [0.7], [0.7], [0.7]],
                           "wrong": [True, False, True, None, True, False]})
    table = noise.precision_by_level(sample, confidence=[0.95, 0.92, 0.85, 0.75, 0.72, 0.71, 0.65])
    assert table.level.tolist() == [0.7, 0.8, 0.9]
    assert table.sampled.tolist() == [6, 3, 2] and table.reviewed.tolist() == [5, 3, 2]
    assert table.wrong.tolist() == [3, 2, 1] and table.flagged.tolist() == [6, 3, 2]
    np.testing.assert_allclose(table.precision, [3 / 5, 2 / 3, 1 / 2])
    np.testing.assert_allclose(table.estimated_wrong, [6 * 3 / 5, 3 * 2 / 3, 2 * 1 / 2])
    for row, (k, n) in zip(table.itertuples(), [(3, 5), (2, 3), (1, 2)]):
        np.testing.assert_allclose([row.low, row.high], wilson(k, n), atol=1e-9)
    nothing = noise.precision_by_level(sample.assign(wrong=None), levels=[0.7])
    assert nothing.reviewed.tolist() == [0] and nothing[["precision", "low", "high"]].isna().all(axis=None)


# --- export and import on a hand-made run ------------------------------------------------------------
def test_round_trip_export_fill_import_gives_the_precision_per_level(tmp_path):
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    summary = review.export_review(run.root, sheet, per_level=10, levels=(0.7, 0.8, 0.9), seed=1)
    raw = sheet.read_bytes()
    # a byte-order mark first: Excel reads the sheet as UTF-8 only with one (queries in every script)
    assert raw.startswith(b"\xef\xbb\xbf") and raw[3:].splitlines()[0].decode() == ",".join(review.COLUMNS)
    rows = read_csv(sheet)
    assert summary.rows == 5 and summary.levels.flagged.tolist() == [5, 3, 2]
    assert sorted(r["key"] for r in rows) == ["QC:1", "QC:2", "QC:5", "QI:3", "QI:4"]  # not 6 (0.65) nor 7
    by_key = {r["key"]: r for r in rows}
    assert by_key["QC:1"]["levels"] == "0.7 0.8 0.9" and by_key["QI:3"]["levels"] == "0.7 0.8"
    assert by_key["QI:4"]["levels"] == "0.7" and all(r["verdict"] == "" for r in rows)
    assert by_key["QC:1"]["confidence"] == "0.9500" and by_key["QC:2"]["p_yes"] == "0.9200"
    assert by_key["QC:1"]["label"] == "1" and by_key["QI:3"]["task"] == "QI"
    # the formula guard: nothing a spreadsheet would run
    assert by_key["QC:1"]["query"] == "'=cmd|' /C calc'!A0"
    assert (by_key["QC:2"]["query"], by_key["QC:2"]["target"]) == ("'+phone case", "'-5% deals,phones")
    assert (by_key["QI:3"]["query"], by_key["QI:3"]["target"]) == ("'@home decor", "''quoted title")
    assert not any(cell.startswith(FORMULA_START) for r in rows for cell in r.values())
    cells = {c["key"]: c for _, c in review.read_sheet(sheet)}  # read back: the guard stripped
    assert cells["QC:1"]["query"] == ROWS[0][2] and cells["QI:3"]["target"] == "'quoted title"
    assert cells["QC:2"]["target"] == "-5% deals,phones"

    before = digests(run)
    write_csv(sheet, fill(rows, {"QC:1": "wrong", "QC:2": " OK ", "QI:3": "Noise", "QI:4": "?", "QC:5": "flip"}))
    code, out, err = cli("review", "import", run.root, sheet)
    assert (code, err) == (0, ""), err
    assert "5 rows read: 3 wrong, 1 right, 1 unsure, 0 not reviewed" in out
    assert "confidence >= 0.7: precision 0.75 [" in out

    after = digests(run)
    assert {k: v for k, v in after.items() if k in before} == before  # no file of the run changed ...
    assert set(after) - set(before) == {"data/review_verdicts.parquet", "metrics/04_noise_review.json"}  # ... two new
    verdicts = run.read_table("review_verdicts")
    assert verdicts.set_index("key").verdict.to_dict() == {
        "QC:1": "wrong", "QC:2": "correct", "QI:3": "wrong", "QI:4": "unsure", "QC:5": "wrong"}
    assert verdicts.id.dtype == np.int64 and set(verdicts.id) == {1, 2, 3, 4, 5}

    results = noise_step.load(run)
    table = results.review_precision.set_index("level")
    assert table.reviewed.tolist() == [4, 3, 2] and table.wrong.tolist() == [3, 2, 1]
    np.testing.assert_allclose(table.precision, [3 / 4, 2 / 3, 1 / 2])
    np.testing.assert_allclose(table.loc[0.7, ["low", "high"]].astype(float), wilson(3, 4), atol=1e-9)
    assert table.flagged.tolist() == [5, 3, 2]
    assert results.review_note.startswith("4 rows reviewed (3 wrong labels, 1 right, 1 unsure)")
    headline = run.read_metrics("04_noise_review")["headline"]
    assert headline == {"reviewed": 4, "precision_at_0.7": 0.75, "precision_at_0.8": 0.6667, "precision_at_0.9": 0.5}

    # a second import replaces the first; a file of an earlier step-04 result is then noticed by load
    write_csv(sheet, fill(rows, {"QC:1": "correct"}))
    assert cli("review", "import", run.root, sheet)[0] == 0
    assert noise_step.load(run).review_precision.reviewed.tolist() == [1, 1, 1]
    scores = run.read_table("noise_scores")
    run.write_table("noise_scores", scores.assign(p_yes=scores.p_yes * 0.99))
    assert "Step 04 has run again since" in noise_step.load(run).review_note


def test_nothing_reviewed_yet_is_said(tmp_path):
    run = handmade_run(tmp_path / "run")
    results = noise_step.load(run)
    assert results.review_precision.empty and results.review_note.startswith("Nothing reviewed yet: `qckit review")
    sheet = tmp_path / "sheet.csv"
    review.export_review(run.root, sheet)
    assert cli("review", "import", run.root, sheet)[0] == 0  # every verdict empty
    results = noise_step.load(run)
    assert results.review_precision.empty and "holds no verdict" in results.review_note


def test_a_sheet_saved_back_by_a_spreadsheet_is_read(tmp_path):
    """Excel's "CSV UTF-8" adds a byte-order mark; some locales separate with ';'; CRLF line ends."""
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    review.export_review(run.root, sheet)
    rows = fill(read_csv(sheet), {"QC:1": "WRONG", "QC:2": "keep", "QC:5": "1", "QI:4": "0"})
    write_csv(sheet, rows, delimiter=";", encoding="utf-8-sig", lineterminator="\r\n")
    code, _, err = cli("review", "import", run.root, sheet)
    assert (code, err) == (0, "")
    first = run.read_metrics("04_noise_review")["precision_by_level"][0]
    assert (first["level"], first["reviewed"], first["wrong"]) == (0.7, 4, 2)


def test_an_id_repeated_within_a_task_gets_one_key_per_row(tmp_path):
    scores = pd.DataFrame({"task": ["QC", "QC", "QI", "QC"], "id": ["a", "b", "a", "a"]})
    assert review.row_keys(scores) == ["QC:a", "QC:b", "QI:a", "QC:a#2"]
    run = handmade_run(tmp_path / "run")
    table = run.read_table("noise_scores")
    run.write_table("noise_scores", table.assign(id=[1, 1, 3, 4, 5, 6, 7]))  # rows 1 and 2: both QC:1
    sheet = tmp_path / "sheet.csv"
    review.export_review(run.root, sheet, levels=[0.9])
    rows = read_csv(sheet)
    assert sorted(r["key"] for r in rows) == ["QC:1", "QC:1#2"]
    write_csv(sheet, fill(rows, {"QC:1": "wrong", "QC:1#2": "ok"}))
    assert cli("review", "import", run.root, sheet)[0] == 0
    verdicts = run.read_table("review_verdicts").set_index("key")
    assert verdicts.loc["QC:1", "confidence"] == pytest.approx(0.95) and verdicts.loc["QC:1#2", "verdict"] == "correct"


# --- refused sheets ----------------------------------------------------------------------------------
def _edit(rows, line, **cells):
    rows = [dict(r) for r in rows]
    rows[line - 2].update(cells)  # line 1 is the header
    return rows


BAD_SHEETS = {  # name: (how to spoil the filled sheet, the message's end after "<path>:<line>: ")
    "unknown_word": (lambda rows: _edit(rows, 3, verdict="maybe"), 3, "verdict: 'maybe' is not a verdict; write "
                     "wrong|noise|noisy|flip|1 (the label is wrong), ok|correct|right|keep|0 (it is right), "
                     "unsure|? (cannot tell) or leave it empty"),
    "formula_verdict": (lambda rows: _edit(rows, 2, verdict="=1+1"), 2, "verdict: '=1+1' is not a verdict"),
    "foreign_key": (lambda rows: _edit(rows, 4, key="QC:99"), 4,
                    "key: 'QC:99' is not a flagged row of this run's step 04_noise_detection"),
    "unflagged_key": (lambda rows: _edit(rows, 2, key="QC:7"), 2, "key: 'QC:7' is not a flagged row"),
    "empty_key": (lambda rows: _edit(rows, 5, key=" "), 5, "key: empty"),
    "duplicate_key": (lambda rows: rows + [dict(rows[0])], 7, "is already on line 2"),
    "level_above_confidence": (lambda rows: _edit(rows, 6, levels="0.7 0.99"), 6,
                               "levels: 0.99 is above the row's confidence"),
    "level_not_a_number": (lambda rows: _edit(rows, 3, levels="high"), 3, "levels: 'high': could not convert"),
    "no_level": (lambda rows: _edit(rows, 3, levels=""), 3, "levels: '': give at least one confidence level"),
    "missing_column": (lambda rows: [{k: v for k, v in r.items() if k != "verdict"} for r in rows], 1,
                       "missing column 'verdict'"),
    "no_rows": (lambda rows: [{k: "" for k in rows[0]}], None, "no rows below the header"),
}


@pytest.mark.parametrize("case", BAD_SHEETS)
def test_a_bad_sheet_is_one_line_naming_file_line_and_column(tmp_path, case):
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    review.export_review(run.root, sheet, seed=2)
    spoil, line, message = BAD_SHEETS[case]
    write_csv(sheet, spoil(fill(read_csv(sheet), {r["key"]: "ok" for r in read_csv(sheet)})))
    before = digests(run)
    code, out, err = cli("review", "import", run.root, sheet)
    where = f"{sheet}:{line}: " if line else f"{sheet}: "
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"qckit review: {where}") and message in err, err
    assert digests(run) == before and not run.has_table("review_verdicts")


def test_the_command_as_a_user_runs_it(tmp_path):
    """``python -m qckit review``: a bad verdict is one line on stderr and exit 1, no traceback; then a good sheet."""
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    command = [sys.executable, "-m", "qckit", "review"]
    proc = subprocess.run([*command, "export", str(run.root), "--output", str(sheet)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "" and "5 rows to review" in proc.stdout
    rows = read_csv(sheet)
    write_csv(sheet, _edit(fill(rows, {}), 2, verdict="yes please"))
    proc = subprocess.run([*command, "import", str(run.root), str(sheet)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"qckit review: {sheet}:2: verdict: 'yes please' is not a verdict; write "
                                        "wrong|noise|noisy|flip|1 (the label is wrong), ok|correct|right|keep|0 (it "
                                        "is right), unsure|? (cannot tell) or leave it empty"]
    write_csv(sheet, fill(rows, {rows[0]["key"]: "wrong"}))
    proc = subprocess.run([*command, "import", str(run.root), str(sheet)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "1 wrong, 0 right, 0 unsure, 4 not reviewed" in proc.stdout


@pytest.mark.parametrize("content,line,message", [
    (b"key,levels,verdict\nQC:1,0.7,ok\nQC:2,0.7,\xff\xfe\n", 3, "not UTF-8 text; save the sheet as CSV UTF-8"),
    (b"key,levels,verdict\nQC:1,0.7,ok,extra\n", 2, "4 cells, the header has 3"),
    (b'key,levels,verdict\nQC:1,0.7,ok\nQC:2,0.7,"ok\n', 3, "not a readable CSV row"),
])
def test_unreadable_sheets_are_one_line(tmp_path, content, line, message):
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes(content)
    code, _, err = cli("review", "import", run.root, sheet)
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"qckit review: {sheet}:{line}: ") and message in err


def test_a_short_row_reads_its_missing_cells_as_empty(tmp_path):
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("key,levels,verdict,note\nQC:1,0.7 0.9,wrong\nQC:2,0.8\n\n", encoding="utf-8")
    assert cli("review", "import", run.root, sheet)[0] == 0
    verdicts = run.read_table("review_verdicts")
    assert verdicts.verdict.iloc[0] == "wrong" and verdicts.verdict.isna().tolist() == [False, True]
    assert verdicts.wrong.isna().tolist() == [False, True]


# --- the command line --------------------------------------------------------------------------------
def test_cli_export_prints_the_levels_and_refuses_to_overwrite(tmp_path, monkeypatch):
    run = handmade_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("review", "export", run.root, "--per-level", "1", "--levels", "0.9,0.7")
    assert (code, err) == (0, "")
    assert "confidence >= 0.7: 1 of 5 flagged rows drawn" in out and "confidence >= 0.9: 1 of 2" in out
    assert (tmp_path / "run-review.csv").is_file() and "qckit review import" in out
    stamp = (tmp_path / "run-review.csv").read_bytes()
    code, out, err = cli("review", "export", run.root)
    assert code == 2 and err.count("\n") == 1 and "run-review.csv already exists" in err
    assert (tmp_path / "run-review.csv").read_bytes() == stamp


@pytest.mark.parametrize("argv,message", [
    (["export", "{run}", "--levels", "0.7,1.2"], "--levels '0.7,1.2': each level must be within (0, 1), got 1.2"),
    (["export", "{run}", "--levels", "0.7,x"], "--levels '0.7,x': could not convert"),
    (["export", "{run}", "--levels", "0.7,0.7"], "a level is given twice"),
    (["export", "{run}", "--per-level", "0"], "--per-level must be at least 1, got 0"),
    (["export", "{tmp}/nowhere"], "no such run directory"),
    (["export", "{tmp}/empty"], "step 04_noise_detection has not run"),
    (["import", "{tmp}/nowhere", "{tmp}/sheet.csv"], "no such run directory"),
    (["import", "{run}", "{tmp}/missing.csv"], "missing.csv: no such file"),
])
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # where a default sheet would go
    run = handmade_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    (tmp_path / "sheet.csv").write_text("key,levels,verdict\n", encoding="utf-8")
    code, out, err = cli("review", *[a.format(run=run.root, tmp=tmp_path) for a in argv])
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("qckit review: "), err
    assert message in err


def test_export_of_a_run_whose_step_04_is_off_or_flagged_nothing(tmp_path):
    off = Run(tmp_path / "off").ensure()
    off.write_metrics(NOISE, {"enabled": False})
    code, _, err = cli("review", "export", off.root, "--output", tmp_path / "a.csv")
    assert code == 2 and "noise.enabled is false" in err
    run = handmade_run(tmp_path / "run")
    scores = run.read_table("noise_scores")
    run.write_table("noise_scores", scores.assign(flagged=False))
    code, _, err = cli("review", "export", run.root, "--output", tmp_path / "b.csv")
    assert code == 2 and "flagged no rows" in err and not (tmp_path / "b.csv").exists()


def test_import_waits_for_no_chain_it_refuses_a_locked_run(tmp_path):
    run = handmade_run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    review.export_review(run.root, sheet)
    with lock_run(run):  # a chain running this run holds the same lock
        code, _, err = cli("review", "import", run.root, sheet)
    assert code == 2 and err.count("\n") == 1 and "is being run by process" in err
    assert not run.has_table("review_verdicts")
    assert cli("review", "import", run.root, sheet)[0] == 0  # once released


# --- on a run of the smoke profile ------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """Steps 01 and 04 of the smoke profile (the demo data and its known flipped labels)."""
    root = tmp_path_factory.mktemp("review-run") / "run"
    params = load_params(REPO / "params" / "smoke.yaml")
    params = params.model_copy(update={"noise": params.noise.model_copy(update={"compare": False})})
    run = Run(root).ensure()
    audit.run(params, run)
    noise_step.run(params, run)
    return root


def test_verdicts_of_the_known_flips_give_the_precision_the_truth_gives(smoke_run, tmp_path):
    """A 'person' who marks exactly the demo's flipped labels as wrong: the imported precision per level is
    what ``precision_by_level`` computes from the truth on the same sample (how the benchmark measures)."""
    shutil.copytree(smoke_run, tmp_path / "run")
    run = Run(tmp_path / "run")
    sheet = tmp_path / "sheet.csv"
    review.export_review(run.root, sheet, levels=(0.6, 0.7), per_level=15, seed=3)
    scores = run.read_table("noise_scores")
    noisy = {review.row_key(t, i) for t, i, n in zip(scores.task, scores.id, scores.noisy) if n}
    rows = read_csv(sheet)
    write_csv(sheet, fill(rows, {r["key"]: "wrong" if r["key"] in noisy else "ok" for r in rows}))
    assert cli("review", "import", run.root, sheet)[0] == 0
    imported = noise_step.load(run).review_precision

    flagged = scores[scores.flagged].reset_index(drop=True)
    sample = noise.review_sample(flagged.confidence, levels=(0.6, 0.7), per_level=15, seed=3)
    sample["wrong"] = flagged.noisy.to_numpy()[sample.position]
    expected = noise.precision_by_level(sample, confidence=flagged.confidence)
    pd.testing.assert_frame_equal(imported, expected, check_dtype=False)
    assert imported.reviewed.tolist() == [15, min(15, int((flagged.confidence >= 0.7).sum()))]
