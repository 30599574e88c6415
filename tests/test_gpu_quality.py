"""benchmarks/gpu_quality.py's CPU smoke path: the code a GPU call runs, on tiny:gemma3 and a few dozen rows.

The real samples are read when ../shared/data holds them, the demo set otherwise; the tiny model is random,
so only the result file's structure and the figures' sanity are checked, never their size.
"""
from __future__ import annotations

import json
import math

import pytest

from benchmarks import gpu_quality
from benchmarks.common import RESULTS_DIR

FIELDS = {"benchmark", "baseline", "figures", "goal", "met", "data", "machine", "date"}


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    """main() sets QCKIT_HEADLESS for its own process; here the setting must end with each test."""
    monkeypatch.setenv("QCKIT_HEADLESS", "1")


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def check_run(run: dict) -> None:
    lo, hi = run["f1_held_out_ci"]
    assert 0 <= lo <= run["f1_held_out"] <= hi <= 1
    assert 0 < run["all_positive_f1"] <= 1 and 0 <= run["dev_auc"] <= 1
    assert run["above_all_positive"] == (run["f1_held_out"] > run["all_positive_f1"])
    assert run["dev_rows"] == gpu_quality.SMOKE["max_dev_rows"]
    assert 0 < run["train_rows"] <= gpu_quality.SMOKE["max_train_rows"]
    for key in ("training_seconds", "rows_per_second", "scoring_pairs_per_s", "peak_memory_training_mib",
                "peak_memory_scoring_mib", "trainable_parameters", "loss_first_logs", "loss_last_logs"):
        assert finite(run[key]) and run[key] > 0, key
    assert (run["head"], run["method"]) == gpu_quality.VARIANTS[run["variant"]]
    assert run["model"] == gpu_quality.SMOKE_MODEL and run["scored_on"] == "cpu float32"
    assert run["environment"]["gpu"] is None
    # the named baseline: cpu-best's figure for the task, when quality_cpu.json holds one
    assert run["cpu_best_f1"] is None or finite(run["cpu_best_f1"])


def test_smoke_runs_every_variant_and_keeps_earlier_ones(tmp_path):
    """Two calls into one folder (as the two GPU calls): the second adds its variants and keeps the first's."""
    real = RESULTS_DIR / "gpu_quality.json"
    before = real.read_bytes() if real.exists() else None
    out = tmp_path / "out"
    assert gpu_quality.main(["--smoke", "--variants", "yes_no-lora,classifier-full", "--out", str(out)]) == 0
    first = json.loads((out / "gpu_quality.json").read_text())
    assert {(r["task"], r["variant"]) for r in first["figures"]["runs"]} == {
        (t, v) for t in ("QC", "QI") for v in ("yes_no-lora", "classifier-full")}
    assert len(first["figures"]["not_measured"]) == 4

    assert gpu_quality.main(["--smoke", "--variants", "classifier-lora,yes_no-full", "--out", str(out)]) == 0
    result = json.loads((out / "gpu_quality.json").read_text())
    assert FIELDS <= set(result) and result["benchmark"] == "gpu_quality" and result["figures"]["smoke"] is True
    runs = result["figures"]["runs"]
    assert [(r["task"], r["variant"]) for r in runs] == [(t, v) for t in ("QC", "QI") for v in gpu_quality.VARIANTS]
    assert result["figures"]["not_measured"] == [] and result["figures"]["errors"] == {}
    for run in runs:
        check_run(run)
    kept = {(r["task"], r["variant"]): r for r in first["figures"]["runs"]}
    for run in runs:  # the first call's figures are carried over unchanged
        if (run["task"], run["variant"]) in kept:
            assert run["f1_held_out"] == kept[run["task"], run["variant"]]["f1_held_out"]
    assert result["met"] == all(r["above_all_positive"] for r in runs)
    assert set(result["figures"]["f1"]) == {f"{r['task']} {r['variant']}" for r in runs}
    # a smoke run never touches the committed result file
    assert (real.read_bytes() if real.exists() else None) == before


def test_a_failing_model_is_recorded_and_the_next_one_still_runs(tmp_path, monkeypatch, capsys):
    """On a GPU call one broken model must not cost the others: it is named in the file, the rest measured."""
    measure = gpu_quality.measure

    def broken_for_qc(task, *args, **kwargs):
        if task == "QC":
            raise RuntimeError("CUDA out of memory (planted)")
        return measure(task, *args, **kwargs)

    monkeypatch.setattr(gpu_quality, "measure", broken_for_qc)
    out = tmp_path / "out"
    assert gpu_quality.main(["--smoke", "--variants", "classifier-lora", "--out", str(out)]) == 1
    result = json.loads((out / "gpu_quality.json").read_text())
    assert result["figures"]["errors"] == {"QC classifier-lora": "RuntimeError: CUDA out of memory (planted)"}
    assert [(r["task"], r["variant"]) for r in result["figures"]["runs"]] == [("QI", "classifier-lora")]
    assert result["met"] is False
    assert "planted" in capsys.readouterr().err


def test_variant_params_follow_the_paper_where_they_apply():
    params = gpu_quality.variant_params("yes_no-lora", model="tiny:gemma3", epochs=2, max_train_rows=100,
                                        batch_size=32, cache_dir=None)
    tp = params.training
    assert (tp.head, tp.method, tp.lora.r, tp.lora.alpha, tp.lora.dropout) == ("yes_no", "lora", 32, 64, 0.1)
    assert (tp.learning_rate, tp.max_length, tp.batch_size * tp.grad_accum, tp.epochs) == (1e-4, 160, 32, 2)
    assert params.scoring.backend == "hf" and tp.launcher.kind == "none"
    clf = gpu_quality.variant_params("classifier-full", model="tiny:gemma3", epochs=2, max_train_rows=100,
                                     batch_size=32, cache_dir=None).training
    assert (clf.head, clf.method, clf.num_labels, clf.learning_rate) == ("classifier", "full", 1, 5e-5)


@pytest.mark.parametrize("argv, message", [
    (["--smoke", "--variants", "yes_no-qlora"], "yes_no-qlora"),
    (["--smoke", "--tasks", "QX"], "QX"),
    (["--variants", "yes_no-lora"], "no CUDA GPU"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys):
    pytest.importorskip("torch")
    import torch

    if "--smoke" not in argv and torch.cuda.is_available():
        pytest.skip("the no-GPU refusal needs a machine without one")
    assert gpu_quality.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_data_folder_without_the_files_is_named(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--smoke", "--tasks", "QC", "--qc-data", str(empty), "--out", str(tmp_path / "out")]
    assert gpu_quality.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert str(empty) in err and "train_QC.jsonl" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "gpu_quality.json").exists()
