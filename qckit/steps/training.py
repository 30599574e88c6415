"""Step 05, fine-tuning: train the model(s) (one, or one per task, optionally two-stage) and score dev/test.

Writes `models/<name>/` (weights or adapter + `qckit-model.json`), `predictions/dev.parquet` and
`predictions/test.parquet` (when the run has test rows), and `metrics/05_fine_tuning.json`. The heads
live in ``qckit.heads``.

The same training runs on several GPUs under torchrun (DDP through the HF Trainer):
    torchrun --nproc_per_node=N -m qckit.steps.training --params P --run-dir R

Example:
    >>> from qckit.steps import training
    >>> metrics = training.run(params, run)
    >>> training.load(run).dev.head()
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qckit import heads
from qckit.config import Params, load_params
from qckit.data import first_new_id
from qckit.heads.transformer import weights_digest
from qckit.runs import Run, write_parquet_atomic
from qckit.steps import TRAINING as STEP
from qckit.typos import typo_copies

PREDICTION_COLUMNS = ["id", "task", "language", "query", "target", "label", "origin", "score", "logit"]


def model_plan(params: Params, tasks: list[str]) -> dict[str, list[str]]:
    """Which model serves which tasks: {'joint': [QC, QI]} or {'QC': [QC], 'QI': [QI]}."""
    if params.training.tasks_mode == "joint":
        return {"joint": list(tasks)}
    return {task: [task] for task in tasks}


def training_rows(params: Params, run: Run) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows step 05 learns from: the newest training table, plus typo'd copies (``augmentation.typos``).

    The copies live only in memory: the tables on disk stay as the data steps wrote them. Returns the rows
    and the augmentation's figures (``rows_added``: copies appended).
    """
    train, typos = run.read_training_table(), params.augmentation.typos
    if typos.rate == 0 or typos.share == 0:
        return train, {"rows_added": 0}
    seed = params.run.seed if typos.seed is None else typos.seed
    others = [run.read_table(s) for s in ("dev", "test") if run.has_table(s)]
    copies = typo_copies(train, rate=typos.rate, share=typos.share, seed=seed,
                         first_id=first_new_id([train, *others], "typo"))
    figures = {"rate": typos.rate, "share": typos.share, "seed": seed, "rows_added": len(copies),
               "rows_added_per_task": copies["task"].value_counts().sort_index().to_dict()}
    return pd.concat([train, copies], ignore_index=True), figures


def _with_base(params: Params, base: str) -> Params:
    models = params.models.model_copy(update={"classifier": base})
    return params.model_copy(update={"models": models})


def _train_one(name: str, tasks: list[str], train: pd.DataFrame, dev: pd.DataFrame, params: Params,
               run: Run) -> dict[str, Any]:
    out = run.path("models", name)
    if len(tasks) == 1:  # a model of its own: the task's per_task settings apply
        params = params.model_copy(update={"training": params.training.for_task(tasks[0])})
    rows = train[train.task.isin(tasks)]
    dev_rows = dev[dev.task.isin(tasks)]
    figures: dict[str, Any] = {}
    if params.training.two_stage and len(tasks) == 1:
        # the challenge winner's recipe: learn the other task first, then this one from those weights
        other = train[~train.task.isin(tasks)]
        if len(other):
            tp = params.training.model_copy(update={"merge_adapter": True})
            stage1 = heads.train(other, None, params.model_copy(update={"training": tp}),
                                 output_dir=run.path("models", f"{name}-stage1"))
            stage1_dir = run.path("models", f"{name}-stage1")
            base = stage1_dir / "merged" if params.training.method != "full" else stage1_dir
            params = _with_base(params, str(base))
            figures["stage1"] = _summary(stage1)
    figures.update(heads.train(rows, dev_rows, params, output_dir=out))
    return figures


def _summary(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k != "log_history"}


def curves(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """Training loss and dev F1 per logged step, tidy (step, epoch, metric, value) for the figure."""
    rows = []
    for entry in log_history:
        for key, metric in (("loss", "train loss"), ("eval_loss", "dev loss"),
                            ("eval_f1_best", "dev F1 (best threshold)"), ("eval_f1", "dev F1 at 0.5"),
                            ("eval_f1_all_positive", "dev F1 all-positive")):
            if key in entry:
                rows.append({"step": entry.get("step"), "epoch": entry.get("epoch"), "metric": metric,
                             "value": float(entry[key])})
    return pd.DataFrame(rows, columns=["step", "epoch", "metric", "value"])


def score_run(params: Params, run: Run, plan: dict[str, list[str]]) -> dict[str, int]:
    """Score dev and test with the model(s) of the plan into predictions/<split>.parquet."""
    written = {}
    for split in ("dev", "test"):
        if not run.has_table(split):
            continue
        df = run.read_table(split)
        if df.empty:
            continue
        parts = []
        for name, tasks in plan.items():
            rows = df[df.task.isin(tasks)]
            if len(rows):
                parts.append(heads.score_folder(run.path("models", name), rows, params))
        preds = pd.concat(parts).loc[:, PREDICTION_COLUMNS]
        preds = preds.set_index("id").loc[df.id].reset_index()  # the split's order
        write_parquet_atomic(preds, run.path("predictions", f"{split}.parquet"))
        written[split] = len(preds)
    return written


def run(params: Params, run: Run) -> dict[str, Any]:
    """Train the model(s) of step 05, score dev/test, write metrics; returns the metrics dict."""
    from sklearn.metrics import f1_score

    if not params.training.enabled:
        metrics = {"enabled": False, "headline": {"fine-tuning": "disabled"}}
        run.write_metrics(STEP, metrics)
        return metrics
    (train, augmentation), dev = training_rows(params, run), run.read_table("dev")
    tasks = [t for t in params.data.tasks if (train.task == t).any()]
    plan = model_plan(params, tasks)
    per_model = {name: _train_one(name, ts, train, dev, params, run) for name, ts in plan.items()}
    written = score_run(params, run, plan)
    headline: dict[str, Any] = {}
    per_task = {}
    if "dev" in written:
        preds = pd.read_parquet(run.path("predictions", "dev.parquet"))
        for task, g in preds.dropna(subset=["label"]).groupby("task"):
            y = g.label.astype(int).to_numpy()
            per_task[task] = {
                "rows": len(g), "f1_at_0.5": float(f1_score(y, g.score >= 0.5, zero_division=0)),
                "f1_all_positive": float(f1_score(y, np.ones_like(y), zero_division=0)),
            }
            headline[f"dev F1@0.5 {task}"] = per_task[task]["f1_at_0.5"]
            headline[f"all-positive F1 {task}"] = per_task[task]["f1_all_positive"]
    seconds = sum(m["seconds"] for m in per_model.values())
    headline.update({"training time (s)": round(seconds, 1), "model": params.models.classifier,
                     "head": params.training.head, "method": params.training.method})
    metrics = {
        "training_table": run.training_table_name(), "augmentation": {"typos": augmentation}, "plan": plan,
        "predictions": written, "dev": per_task,
        "models": {n: _summary(m) for n, m in per_model.items()},
        "curves": {n: m["log_history"] for n, m in per_model.items()},
        "headline": headline,
    }
    run.write_metrics(STEP, metrics)
    return metrics


def curve_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """All models' curves in one tidy frame with a `model` column."""
    frames = [curves(h).assign(model=name) for name, h in metrics.get("curves", {}).items()]
    return pd.concat(frames, ignore_index=True) if frames else curves([])


@dataclass
class TrainingResults:
    """What notebook 05 shows: the metrics, the training curves (tidy) and the dev predictions."""

    metrics: dict[str, Any]
    curves: pd.DataFrame
    dev: pd.DataFrame


def load(run: Run) -> TrainingResults:
    """The step's metrics, curves and dev predictions (empty when the step was disabled)."""
    metrics = run.read_metrics(STEP)
    path = run.path("predictions", "dev.parquet")
    dev = pd.read_parquet(path) if metrics.get("enabled", True) and path.is_file() else pd.DataFrame()
    return TrainingResults(metrics, curve_frame(metrics), dev)


def main(argv: list[str] | None = None) -> int:
    """`python -m qckit.steps.training --params P --run-dir R` (also under torchrun): train step 05's model."""
    parser = argparse.ArgumentParser(prog="qckit.steps.training", description=main.__doc__)
    parser.add_argument("--params", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--output-dir", help="model folder (default: <run>/models/joint)")
    parser.add_argument("--weights-digest", action="store_true",
                        help="print each rank's digest of the trained weights (checks DDP kept ranks in sync)")
    args = parser.parse_args(argv)
    params, run = load_params(args.params), Run(args.run_dir)
    (train, _), dev = training_rows(params, run), run.read_table("dev")
    figures = heads.train(train, dev, params, output_dir=args.output_dir or run.path("models", "joint"),
                          keep_model=args.weights_digest)
    rank = int(os.environ.get("RANK", "0"))
    if args.weights_digest:
        print(json.dumps({"rank": rank, "digest": weights_digest(figures.pop("model"))}), flush=True)
    if rank == 0:
        print(json.dumps({k: v for k, v in figures.items() if k != "log_history"}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
