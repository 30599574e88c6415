"""`qckit sweep` (issue 25): the --set parser, grid and zip, folder names, validation before anything runs, the
paired gain, the report, exit codes, and on the smoke profile a step-05 sweep that runs steps 01-04 once."""
from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, write_notebook

from qckit.calibrate import calibrate
from qckit.cli import main as cli_main
from qckit.config import ParamsError, load_params
from qckit.pipeline import check_run_id, step_input_hash
from qckit.report import REPORT_FILE_MODE
from qckit.runs import Run, write_parquet_atomic
from qckit.steps import CALIBRATION, NOISE, STEPS, TRAINING
from qckit.sweep import (
    apply_setting,
    combine,
    paired_f1_gain,
    parse_set,
    plan_sweep,
    run_sweep,
    setting_folder,
    split_values,
    sweep_table,
    write_sweep_report,
)

SMOKE = REPO / "params" / "smoke.yaml"


# --set: splitting, YAML values, keys ------------------------------------------------------------------------
def test_values_split_at_commas_outside_brackets_braces_and_quotes():
    assert split_values("[en],[es],[fr]") == ["[en]", "[es]", "[fr]"]
    assert split_values("[en, es],{QC: 0.4, QI: 0.2},'a,b',\"c,\\\"d\"") == [
        "[en, es]", "{QC: 0.4, QI: 0.2}", "'a,b'", '"c,\\"d"']
    assert split_values("men's shoes,'it''s, fine'") == ["men's shoes", "'it''s, fine'"]  # a quote mid-word is text
    for bad, why in [("[en,es", "unclosed '['"), ("en]", "unbalanced ']'"), ("[en}", "unbalanced '}'"),
                     ("'open", "unclosed \"'\"")]:
        with pytest.raises(ValueError, match=re.escape(why)):
            split_values(bad)


def test_set_values_are_yaml_scalars_and_flow_lists():
    assert parse_set("translation.sources=[en],[es, fr]") == ("translation.sources", [["en"], ["es", "fr"]])
    assert parse_set("noise.threshold=0.7,0.8,0.9") == ("noise.threshold", [0.7, 0.8, 0.9])
    assert parse_set("negatives.sampling=top,random_catalogue") == ("negatives.sampling", ["top", "random_catalogue"])
    assert parse_set("negatives.max_similarity=null,0.9") == ("negatives.max_similarity", [None, 0.9])
    assert parse_set("calibration.paper_thresholds={QC: 0.4},{QC: 0.5}")[1] == [{"QC": 0.4}, {"QC": 0.5}]
    assert parse_set(" training.per_task = 'a, b' ")[1] == ["a, b"]
    for bad, named in [("noise.threshold", "expected KEY=V1,V2"), ("noise..threshold=1", "dotted parameter path"),
                       ("noise.threshold=0.7,", "noise.threshold: empty value"),
                       ("translation.sources=[en", "translation.sources: unclosed '['"),
                       ("noise.threshold=[a: b: c]", "noise.threshold: '[a: b: c]' is not a YAML value"),
                       ("name=a,b", "name is not swept")]:
        with pytest.raises(ValueError, match=re.escape(named)):
            parse_set(bad)


def test_each_setting_is_validated_and_an_error_names_the_key():
    params = load_params(SMOKE)
    assert apply_setting(params, {"negatives.negatives_per_positive": 3}).negatives.negatives_per_positive == 3
    for setting, named in [({"noise.thresold": 0.7}, "noise.thresold: unknown key"),
                           ({"bogus.x": 1}, "bogus: unknown key"),
                           ({"noise.threshold": 2}, "noise.threshold: Input should be less than 1"),
                           ({"noise.action": "burn"}, "noise.action: Input should be"),
                           ({"negatives.negatives_per_positive": True}, "expected a number, got a boolean"),
                           ({"noise.threshold.deep": 1}, "noise.threshold is a value, not a section")]:
        with pytest.raises(ParamsError) as info:
            apply_setting(params, setting)
        message = str(info.value)
        assert named in message and "\n" not in message and message.startswith(f"--set {next(iter(setting))}")
    # values are compared as validated: 0.70 is 0.7, and a setting twice is refused
    with pytest.raises(ValueError, match=re.escape("noise.threshold=0.7 is given twice")):
        plan_sweep(params, [parse_set("noise.threshold=0.7,0.70")])


def test_grid_takes_the_product_and_zip_pairs_values_up():
    sets = [("a", [1, 2]), ("b", ["x", "y"])]
    assert combine(sets) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert combine(sets, mode="zip") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(ValueError, match="needs as many for every key: a has 2, c has 3"):
        combine([("a", [1, 2]), ("c", [1, 2, 3])], mode="zip")
    with pytest.raises(ValueError, match="--set a given twice"):
        combine([("a", [1]), ("a", [2])])
    plan = plan_sweep(load_params(SMOKE), [parse_set("noise.action=remove,relabel"),
                                           parse_set("noise.threshold=0.7,0.9")])
    assert len(plan) == 4 and plan[1].values == {"noise.action": "remove", "noise.threshold": 0.9}
    assert plan[1].params.noise.threshold == 0.9 and plan[1].params.name == f"smoke-{plan[1].folder}"


def test_folder_names_are_readable_run_ids():
    assert setting_folder({"negatives.negatives_per_positive": 3}) == "negatives.negatives_per_positive-3"
    assert setting_folder({"translation.sources": ["en", "es"], "noise.threshold": 0.7}) == \
        "translation.sources-en_es__noise.threshold-0.7"
    assert setting_folder({"negatives.max_similarity": None}) == "negatives.max_similarity-null"
    assert setting_folder({"run.seed": -1}) == "run.seed--1" and setting_folder({"noise.lr_c": 1e-20}) == \
        "noise.lr_c-1e-20"
    assert setting_folder({"calibration.paper_thresholds": {"QC": 0.4}}) == "calibration.paper_thresholds-QC-0.4"
    long = setting_folder({"translation.prompt": "x" * 300})
    assert len(long) <= 200 and check_run_id(long) == long
    assert long != setting_folder({"translation.prompt": "x" * 299})
    # values a folder name cannot tell apart get a number
    plan = plan_sweep(load_params(SMOKE), [parse_set("translation.prompt='a b {text}','a/b {text}'")])
    assert [s.folder for s in plan] == ["translation.prompt-a-b-text", "translation.prompt-a-b-text-2"]
    assert all(check_run_id(s.folder) for s in plan)


def test_step_04_shares_across_a_step_05_sweep_unless_its_detector_trains(tmp_path):
    params = load_params(SMOKE)
    notebook = write_notebook(tmp_path / "nb.ipynb", ["pass"])
    faster = apply_setting(params, {"training.learning_rate": 1e-3})
    assert step_input_hash(params, NOISE, notebook, "") == step_input_hash(faster, NOISE, notebook, "")
    assert step_input_hash(params, TRAINING, notebook, "") != step_input_hash(faster, TRAINING, notebook, "")
    finetuned = apply_setting(params, {"noise.detector": "finetuned"})
    finetuned_faster = apply_setting(finetuned, {"training.learning_rate": 1e-3})
    assert step_input_hash(finetuned, NOISE, notebook, "") != step_input_hash(finetuned_faster, NOISE, notebook, "")


# the paired gain ---------------------------------------------------------------------------------------------
def test_paired_gain_is_zero_for_identical_predictions_and_positive_where_b_is_right():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.7).astype(int)
    a = np.where(rng.random(300) < 0.75, y, 1 - y)
    assert paired_f1_gain(y, a, a) == (0.0, 0.0, 0.0)
    gain, lo, hi = paired_f1_gain(y, a, y)  # b is right on every row a gets wrong, and agrees elsewhere
    assert 0 < lo <= gain <= hi
    back, back_lo, back_hi = paired_f1_gain(y, y, a)
    assert back == pytest.approx(-gain) and back_hi < 0
    assert np.isnan(paired_f1_gain([], [], [])[0])
    with pytest.raises(ValueError, match="0/1"):
        paired_f1_gain(y, a, a * 0.5)
    with pytest.raises(ValueError, match="one length"):
        paired_f1_gain(y, a, a[:-1])


def fake_sweep(root: Path, sets: list[tuple[str, list]], scores: list[np.ndarray], labels: np.ndarray):
    """Runs of a sweep with only what the table reads: dev predictions, step 06's real metrics, step 05's rows."""
    settings = plan_sweep(load_params(SMOKE), sets)
    queries = [f"query {i // 4}" for i in range(len(labels))]
    for setting, score in zip(settings, scores):
        run = Run(root / setting.folder).ensure()
        preds = pd.DataFrame({"id": range(len(labels)), "task": "QC", "language": "en", "query": queries,
                              "target": "t", "label": labels, "score": score})
        write_parquet_atomic(preds, run.path("predictions", "dev.parquet"))
        run.write_metrics(CALIBRATION, calibrate(preds, n_bootstrap=200))
        run.write_metrics(TRAINING, {"models": {"joint": {"train_rows": 500}}, "curves": {}})
    return settings


def test_table_gains_against_the_first_setting_on_hand_made_predictions(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.65).astype(int)
    weak = np.clip(0.5 * y + rng.normal(0.25, 0.3, 400), 0, 1)  # right on most rows, wrong on many
    settings = fake_sweep(tmp_path, [parse_set("noise.threshold=0.7,0.8,0.9")], [weak, weak.copy(), y * 0.8 + 0.1], y)
    table = sweep_table(tmp_path, settings).set_index("setting")
    first, same, better = (s.folder for s in settings)
    assert list(table.columns[:2]) == ["noise.threshold", "task"]
    assert table["noise.threshold"].tolist() == [0.7, 0.8, 0.9]
    for folder in (first, same):  # identical predictions: no gain, a zero-width interval
        assert table.loc[folder, ["gain_vs_first", "gain_low", "gain_high"]].tolist() == [0.0, 0.0, 0.0]
    row = table.loc[better]
    assert row["f1_held_out"] == 1.0 and 0 < row["gain_low"] <= row["gain_vs_first"] <= row["gain_high"]
    assert row["gain_vs_first"] == pytest.approx(row["f1_held_out"] - table.loc[first, "f1_held_out"])
    assert row["paired_rows"] == 400 and row["train_rows"] == 500
    metrics = Run(tmp_path / first).read_metrics(CALIBRATION)["tasks"]["QC"]
    assert table.loc[first, "f1_held_out"] == metrics["f1_held_out_threshold"]
    assert table.loc[first, "all_positive_f1"] == metrics["all_positive_f1"]


def test_report_renders_inert_with_csv_and_json_beside_it(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random(120) < 0.6).astype(int)
    sets = [parse_set("translation.prompt='<script>alert(1)</script> {text}',seed-x")]
    settings = fake_sweep(tmp_path, sets, [rng.random(120), y * 0.9], y)
    table = sweep_table(tmp_path, settings)
    index = write_sweep_report(tmp_path, table, settings)
    assert index == tmp_path / "report" / "index.html"
    page = index.read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'' in page
    assert page.count("<img ") == 1 and "src='data:image/png;base64," in page  # one figure per swept key
    assert "logged no training curve" in page
    for s in settings:
        assert f"href='../{s.folder}/report/index.html'" in page
    csv = pd.read_csv(tmp_path / "report" / "sweep.csv")
    assert csv["setting"].tolist() == [s.folder for s in settings] and "gain_vs_first" in csv
    records = json.loads((tmp_path / "report" / "sweep.json").read_text())
    assert records[1]["translation.prompt"] == "seed-x" and records[1]["f1_held_out"] == 1.0
    for name in ("index.html", "sweep.csv", "sweep.json"):
        assert stat.S_IMODE((tmp_path / "report" / name).stat().st_mode) == REPORT_FILE_MODE


# the command line ------------------------------------------------------------------------------------------
def sweep_cli(*args: str, out: Path) -> list[str]:
    return ["sweep", "-p", str(SMOKE), "--outputs-dir", str(out), "-q", *args]


@pytest.mark.parametrize("args, named", [
    (["--set", "noise.thresold=0.7,0.8"], "noise.thresold: unknown key"),
    (["--set", "noise.threshold=0.7,1.5"], "noise.threshold=1.5: noise.threshold: Input should be less than 1"),
    (["--set", "translation.sources=[en,[es]"], "translation.sources: unclosed '['"),
    (["--set", "noise.threshold=0.7,0.8", "--set", "noise.action=remove", "--zip"], "noise.threshold has 2"),
    (["--set", "noise.threshold=0.7", "--sweep-id", "../x"], "invalid sweep id '../x'"),
])
def test_bad_sweeps_exit_2_with_one_line_before_anything_runs(tmp_path, capsys, args, named):
    code = cli_main(sweep_cli(*args, out=tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2 and named in err and err.startswith("qckit sweep: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_sweep_usage_errors_and_an_existing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(sweep_cli("--set", "noise.threshold=0.7", "--grid", "--zip", out=tmp_path))
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli_main(sweep_cli(out=tmp_path))  # no --set
    assert info.value.code == 2
    (tmp_path / "taken" / "something").mkdir(parents=True)
    capsys.readouterr()
    assert cli_main(sweep_cli("--set", "noise.threshold=0.7", "--sweep-id", "taken", out=tmp_path)) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err


CHECK_THRESHOLD = """
from qckit.config import load_params
from qckit.runs import Run
params = load_params(params_file)
assert params.noise.threshold < 0.85, "threshold too high for this step"
Run(run_dir).write_metrics("01_check", {"threshold": params.noise.threshold})
"""


def test_a_failed_step_exits_1_and_stops_the_sweep(tmp_path):
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / "01_check.ipynb", [CHECK_THRESHOLD])
    proc = subprocess.run([sys.executable, "-m", "qckit", *sweep_cli(
        "--set", "noise.threshold=0.7,0.9,0.8", "--notebooks-dir", str(notebooks), "--sweep-id", "f",
        out=tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "threshold too high for this step" in proc.stderr and "Traceback" not in proc.stdout
    root = tmp_path / "out" / "f"
    assert (root / "noise.threshold-0.7" / "metrics" / "01_check.json").exists()
    assert not (root / "noise.threshold-0.8").exists()  # stopped at the failure
    assert f"report: {root / 'report' / 'index.html'}" in proc.stdout and (root / "report" / "index.html").exists()
    assert "no setting reached step 06" in proc.stdout  # these notebooks calibrate nothing


# on the smoke profile: a step-05 sweep runs steps 01-04 once -------------------------------------------------
SMOKE_SETS = ["--set", "training.learning_rate=1e-4,3e-4,1e-3"]


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run([sys.executable, "-m", "qckit", "sweep", "-p", "params/smoke.yaml", *SMOKE_SETS,
                           "--sweep-id", "s", "--outputs-dir", str(out), "-q"],
                          capture_output=True, text=True, cwd=REPO, timeout=1200)
    return proc, out / "s"


@pytest.mark.slow
def test_a_step_05_sweep_reruns_steps_05_to_07_only(smoke_sweep):
    proc, root = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = ["training.learning_rate-0.0001", "training.learning_rate-0.0003", "training.learning_rate-0.001"]
    assert sorted(p.name for p in root.iterdir() if (p / "run_status.json").exists()) == folders
    first = json.loads((root / folders[0] / "run_status.json").read_text())["steps"]
    assert [s["status"] for s in first] == ["done"] * len(STEPS)
    for folder in folders[1:]:
        status = {s["step"]: s["status"] for s in json.loads((root / folder / "run_status.json").read_text())["steps"]}
        assert status == {step: "shared" if step < "05" else "done" for step in STEPS}, folder
        log = (root / folder / "run.log").read_text()
        assert f"04_noise_detection: shared from {root / folders[0]}" in log
        assert (root / folder / "data" / "train_clean.parquet").exists()  # the shared steps' tables are there


@pytest.mark.slow
def test_smoke_sweep_table_and_report(smoke_sweep):
    proc, root = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report: {root / 'report' / 'index.html'}" in proc.stdout and "gain_vs_first" in proc.stdout
    table = pd.read_csv(root / "report" / "sweep.csv")
    assert len(table) == 3 * 2 and set(table["task"]) == {"QC", "QI"}
    assert table["training.learning_rate"].tolist() == [0.0001, 0.0001, 0.0003, 0.0003, 0.001, 0.001]
    base = table[table["setting"] == "training.learning_rate-0.0001"]
    assert (base[["gain_vs_first", "gain_low", "gain_high"]] == 0).all().all()
    for row in table.itertuples():
        run = Run(root / row.setting)
        cal = run.read_metrics(CALIBRATION)["tasks"][row.task]
        assert row.f1_held_out == pytest.approx(cal["f1_held_out_threshold"])
        assert row.gain_vs_first == pytest.approx(row.f1_held_out - base.set_index("task").loc[row.task, "f1_held_out"])
        # seconds: the run's own steps only (05-07 for the later settings)
        own = [json.loads(p.read_text()) for p in (run.root / ".done").glob("*.json")]
        assert row.seconds == pytest.approx(sum(m["seconds"] for m in own if "shared_from" not in m), abs=0.06)
    page = (root / "report" / "index.html").read_text()
    assert "<script" not in page and "Content-Security-Policy" in page
    assert page.count("<img ") == 2  # F1 against the learning rate, and the transformer head's training curves


@pytest.mark.slow
def test_resumed_sweep_skips_every_step_and_gives_the_same_table(smoke_sweep):
    proc, root = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = pd.read_csv(root / "report" / "sweep.csv")
    result = run_sweep(SMOKE, [parse_set(SMOKE_SETS[1])], sweep_id="s", outputs_dir=root.parent, resume=True,
                       progress=False, report=False)
    assert result.ok
    for folder in before["setting"].unique():
        status = json.loads((root / folder / "run_status.json").read_text())["steps"]
        assert {s["status"] for s in status} == {"skipped"}
    pd.testing.assert_frame_equal(pd.read_csv(root / "report" / "sweep.csv"), before)
