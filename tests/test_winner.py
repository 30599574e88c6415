"""The winner-style profile (issue 26 item 4): an LLM with a classification head and LoRA, per-task models trained
two-stage, k query-grouped folds averaged; winner.yaml on GPUs, cpu-winner.yaml with gemma-3-270m standing in."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from qckit.config import dump_params, load_params
from qckit.heads import ensemble
from qckit.runs import Run
from qckit.steps import audit, training

SHARED_TRAINING = ("head", "num_labels", "method", "tasks_mode", "two_stage")


def test_cpu_winner_is_the_gpu_profile_s_training_on_gemma_270m():
    gpu, cpu = load_params(REPO / "params" / "winner.yaml"), load_params(REPO / "params" / "cpu-winner.yaml")
    assert {k: getattr(gpu.training, k) for k in SHARED_TRAINING} == {k: getattr(cpu.training, k) for k in
                                                                       SHARED_TRAINING}
    assert (gpu.training.head, gpu.training.method, gpu.training.tasks_mode) == ("classifier", "lora", "separate")
    assert gpu.training.two_stage and gpu.training.folds == 5 and cpu.training.folds == 3
    assert gpu.models.classifier.startswith("google/gemma-3") and cpu.models.classifier == "gemma-3-270m"
    # the GPU profile trains under torchrun with DeepSpeed ZeRO-2; the paper's yes/no profile stays beside it
    assert gpu.training.launcher.kind == "torchrun"
    zero = json.loads((REPO / gpu.training.deepspeed).read_text())["zero_optimization"]
    assert zero["stage"] == 2
    assert load_params(REPO / "params" / "paper.yaml").training.head == "yes_no"


@pytest.fixture(scope="module")
def winner_run(tmp_path_factory):
    """cpu-winner.yaml's training section on the smoke demo, cut to a few rows per model and two folds."""
    smoke, cpu = load_params(REPO / "params" / "smoke.yaml"), load_params(REPO / "params" / "cpu-winner.yaml")
    tp = cpu.training.model_copy(update={"folds": 2, "max_train_rows": 16, "dev_eval_rows": 8, "batch_size": 8,
                                         "eval_batch_size": 32, "max_length": 32, "num_threads": 2})
    params = cpu.model_copy(update={"demo": smoke.demo, "training": tp})
    run = Run(tmp_path_factory.mktemp("winner") / "run").ensure()
    (run.root / "params.yaml").write_text(dump_params(params), encoding="utf-8")
    audit.run(params, run)
    run.write_table("test", run.read_table("test").head(0))  # test's mean of the folds: tests/test_folds.py
    return params, run, training.run(params, run)


def test_winner_setting_trains_gemma_with_a_classification_head_and_lora(winner_run):
    params, run, metrics = winner_run
    assert metrics["plan"] == {"QC": ["QC"], "QI": ["QI"]}
    for name in ("QC", "QI"):
        folder = run.path("models", name)
        assert ensemble.read_manifest(folder)["k"] == 2
        assert run.path("models", f"{name}-stage1", "merged").is_dir()  # stage 1: the other task, merged
        for member in ensemble.member_dirs(folder):
            adapter = json.loads((member / "adapter_config.json").read_text())
            assert adapter["task_type"] == "SEQ_CLS" and adapter["r"] == params.training.lora.r
            assert "score" in (adapter["modules_to_save"] or [])  # the new head trains fully beside the adapter
            meta = json.loads((member / "qckit-model.json").read_text())
            assert meta["head"] == "classifier" and meta["base_model"].endswith(f"{name}-stage1/merged")
        assert [f["fold"] for f in metrics["models"][name]["per_fold"]] == [0, 1]


def test_winner_setting_scores_dev_out_of_fold(winner_run):
    _, run, _ = winner_run
    dev = run.read_table("dev")
    preds = pd.read_parquet(run.path("predictions", "dev.parquet"))
    assert list(preds.id) == list(dev.id) and np.isfinite(preds.logit).all()
    assert preds.groupby("task").logit.std().min() > 0  # scores that depend on the pair
    for task, rows in dev.groupby("task"):
        oof = ensemble.recorded_out_of_fold(run.path("models", task), rows)
        np.testing.assert_allclose(preds.set_index("id").loc[rows.id, "logit"].to_numpy(), oof, atol=1e-6)
