"""Step 05, fine-tuning: train the model(s) (one, or one per task, optionally two-stage) and score dev/test.

Writes `models/<name>/` (weights or adapter + `qckit-model.json`), `predictions/dev.parquet` and
`predictions/test.parquet` (when the run has test rows), and `metrics/05_fine_tuning.json`. The heads
live in ``qckit.heads``.

With ``training.launcher.kind: torchrun`` each model of the plan is trained by one torchrun job (several GPUs
or nodes; DDP, or DeepSpeed through the HF Trainer; ``qckit.launch``) running ``main`` with ``--model NAME``;
the step then scores and writes its metrics in its own process, as without a launcher.

Example:
    >>> from qckit.steps import training
    >>> metrics = training.run(params, run)
    >>> training.load(run).dev.head()
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qckit import heads, launch
from qckit.config import Params, ParamsError, load_params
from qckit.data import first_new_id
from qckit.features import grouped_folds
from qckit.heads import ensemble
from qckit.heads.transformer import weights_digest
from qckit.runs import Run, write_parquet_atomic
from qckit.steps import TRAINING as STEP
from qckit.typos import typo_copies

PREDICTION_COLUMNS = ["id", "task", "language", "query", "target", "label", "origin", "score", "logit"]


def plan_for(params: Params, train: pd.DataFrame) -> dict[str, list[str]]:
    """Step 05's plan for these training rows: the tasks of ``data.tasks`` they hold, by ``model_plan``."""
    return model_plan(params, [t for t in params.data.tasks if (train.task == t).any()])


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
    if params.training.folds:
        figures.update(_train_folds(out, tasks, rows, dev_rows, params))
        return figures
    if _is_main_process():
        ensemble.clear(out)  # an earlier run's fold members must not lie inside this model's folder
    figures.update(heads.train(rows, dev_rows, params, output_dir=out))
    return figures


def _is_main_process() -> bool:
    # under torchrun every process runs the training; files beside the model are written once
    return int(os.environ.get("RANK", "0")) == 0


def _fold_rows(rows: pd.DataFrame, dev_rows: pd.DataFrame, k: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The labelled train and dev rows together (a ``split`` column says which) and their query-grouped folds."""
    labelled = pd.concat([rows.assign(split="train"), dev_rows.assign(split="dev")], ignore_index=True)
    labelled = labelled.dropna(subset=["label"]).reset_index(drop=True)
    return labelled, grouped_folds(labelled, k, seed=seed)


def _train_folds(out, tasks: list[str], rows: pd.DataFrame, dev_rows: pd.DataFrame, params: Params
                 ) -> dict[str, Any]:
    """``training.folds``: k members on query-grouped folds of train and dev, each evaluated on its own fold's dev
    rows, which it then scores (out of fold); the manifest is written last."""
    from sklearn.metrics import f1_score

    labelled, folds = _fold_rows(rows, dev_rows, params.training.folds, params.run.seed)
    k = int(folds.max()) + 1  # grouped_folds makes fewer folds when there are fewer distinct queries
    # dev rows are scored here in one process with the HF scorer; under torchrun (several processes) or with a
    # vLLM engine (which wants the GPU memory training holds), score_run scores them after training instead
    main = _is_main_process()
    scoring = int(os.environ.get("WORLD_SIZE", "1")) == 1 and params.scoring.backend == "hf"
    if main:
        ensemble.start_training(out)
        ensemble.write_fold_assignment(out, labelled, folds)
    per_fold, history, oof = [], [], []
    for fold in range(k):
        member = out / ensemble.member_name(fold)
        fit = labelled[folds != fold].drop(columns="split")
        held = labelled[(folds == fold) & (labelled.split == "dev").to_numpy()].drop(columns="split")
        m = heads.train(fit, held, params, output_dir=member)
        entry = {"fold": fold, "train_rows": m["train_rows"], "dev_rows": len(held), "seconds": m["seconds"]}
        if scoring and len(held):
            scored = heads.score_folder(member, held, params).assign(fold=fold)
            oof.append(scored)
            entry["dev_f1_at_0.5"] = float(f1_score(held.label.astype(int), scored.score >= 0.5, zero_division=0))
        else:  # the fold's last evaluation in training (on at most dev_eval_rows of its dev rows)
            logged = [h["eval_f1"] for h in m["log_history"] if "eval_f1" in h]
            entry["dev_f1_at_0.5"] = float(logged[-1]) if logged else None
        per_fold.append(entry)
        history += [{**h, "fold": fold} for h in m["log_history"]]
    if main:
        if oof:
            ensemble.write_out_of_fold(out, pd.concat(oof, ignore_index=True))
        ensemble.write_manifest(out, k=k, seed=params.run.seed, head=params.training.head, tasks=tasks)
    seconds = sum(e["seconds"] for e in per_fold)
    return {"folds": k, "train_rows": len(labelled), "dev_rows_in_training": int((labelled.split == "dev").sum()),
            "seconds": seconds, "per_fold": per_fold, "log_history": history}


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


def _score_split(folder, rows: pd.DataFrame, params: Params, split: str) -> pd.DataFrame:
    """rows scored by one model of the plan; a k-fold ensemble's dev rows take their out-of-fold scores (recorded
    in training, else scored now by the member that did not see them), its other rows the members' mean."""
    if split != "dev" or not ensemble.is_ensemble(folder):
        return heads.score_folder(folder, rows, params)
    result = rows.copy()
    result["logit"] = ensemble.recorded_out_of_fold(folder, rows)
    missing = result["logit"].isna().to_numpy()
    if missing.any():
        scored = heads.score_folder(folder, rows[missing], params, out_of_fold=True)
        result.loc[missing, "logit"] = scored["logit"].to_numpy()
        ensemble.add_out_of_fold(folder, scored)  # recorded beside the members, as training records them
    result["score"] = 1.0 / (1.0 + np.exp(-result["logit"].to_numpy(float)))
    return result


def score_run(params: Params, run: Run, plan: dict[str, list[str]]) -> dict[str, int]:
    """Score dev and test with the model(s) of the plan into predictions/<split>.parquet (with ``training.folds``:
    dev out of fold, test by the mean of the k models' log-odds)."""
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
                parts.append(_score_split(run.path("models", name), rows, params, split))
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
    plan = plan_for(params, train)
    launched = None
    if params.training.launcher.kind == "torchrun":  # one job per model; its rank 0 hands back the figures
        per_model, launched = launch.train_plan(params, run, plan)
    else:
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
    if launched:
        metrics["launch"] = launched
    run.write_metrics(STEP, metrics)
    return metrics


def curve_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """All models' curves in one tidy frame with a `model` column."""
    frames = [curves(h).assign(model=name) for name, h in metrics.get("curves", {}).items()]
    return pd.concat(frames, ignore_index=True) if frames else curves([])


def fold_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per fold of every k-fold model (``training.folds``): training and dev rows, seconds, dev F1 at 0.5
    of the fold's own dev rows; empty when no model of the step has folds."""
    rows = [{"model": name, **entry} for name, m in metrics.get("models", {}).items()
            for entry in m.get("per_fold", [])]
    return pd.DataFrame(rows, columns=["model", "fold", "train_rows", "dev_rows", "seconds", "dev_f1_at_0.5"])


def model_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Each model's scalar figures (time, rows, throughput, memory), a column per model."""
    return pd.DataFrame({name: {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
                         for name, m in metrics.get("models", {}).items()})


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
    """Step 05's training entry point, run by each process of a torchrun job.

    ``--model NAME``: train that model of step 05's plan (what ``training.launcher`` launches); rank 0 writes its
    figures to ``models/NAME/train-figures.json``. ``--join`` (another node; ``--params`` not needed): take part
    in the jobs node 0 launches for the run. Without either: one model on every training row into
    ``--output-dir`` (default ``<run>/models/joint``), a check of DDP.
    """
    parser = argparse.ArgumentParser(prog="qckit.steps.training", description=main.__doc__)
    parser.add_argument("--params", help="parameter file (the run's params.yaml); not needed with --join")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--model", help="train this model of step 05's plan: joint, or a task (QC, QI)")
    parser.add_argument("--join", action="store_true",
                        help="on a node other than node 0: join the torchrun jobs node 0 launches for this run "
                        "(the run directory on shared storage)")
    parser.add_argument("--nproc-per-node", help="with --join: this node's processes (default: the profile's)")
    parser.add_argument("--wait", type=float, default=86400.0,
                        help="with --join: seconds to wait for node 0 to reach step 05 (default: a day)")
    parser.add_argument("--output-dir", help="without --model: model folder (default: <run>/models/joint)")
    parser.add_argument("--weights-digest", action="store_true",
                        help="without --model: print each rank's digest of the trained weights (ranks in sync)")
    args = parser.parse_args(argv)
    if args.join and (args.params or args.model):
        parser.error("--join takes the parameters and models node 0 launched with: drop --params and --model")
    if not args.join and not args.params:
        parser.error("--params is required (except with --join)")
    try:
        if args.join:
            return launch.join(args.run_dir, nproc_per_node=args.nproc_per_node, wait_s=args.wait)
        params, run = load_params(args.params), Run(args.run_dir)
        if args.model:
            return _train_model(params, run, args.model)
        return _train_all_rows(params, run, args.output_dir, digest=args.weights_digest)
    except (ParamsError, launch.TrainingJobError, FileNotFoundError) as err:
        print(f"qckit.steps.training: {err}", file=sys.stderr)
        return 2


def _train_model(params: Params, run: Run, name: str) -> int:
    """One model of the plan in this process of a torchrun job; rank 0 writes the figures step 05 reads."""
    (train, _), dev = training_rows(params, run), run.read_table("dev")
    plan = plan_for(params, train)
    if name not in plan:
        raise ParamsError(f"--model {name}: not a model of step 05's plan for this run ({', '.join(plan)})")
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        os.environ.pop("QCKIT_RUN_LOG", None)  # one process reports the job's progress to the run log
    figures = _train_one(name, plan[name], train, dev, params, run)
    if rank == 0:
        launch.write_figures(run, name, figures)
    launch.wait_for_ranks()  # the job ends once rank 0's files are written
    return 0


def _train_all_rows(params: Params, run: Run, output_dir: str | None, *, digest: bool) -> int:
    (train, _), dev = training_rows(params, run), run.read_table("dev")
    figures = heads.train(train, dev, params, output_dir=output_dir or run.path("models", "joint"), keep_model=digest)
    rank = int(os.environ.get("RANK", "0"))
    if digest:
        print(json.dumps({"rank": rank, "digest": weights_digest(figures.pop("model"))}), flush=True)
    if rank == 0:
        print(json.dumps({k: v for k, v in figures.items() if k != "log_history"}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
