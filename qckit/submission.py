"""Official submission files from a run: score test files with the run's model(s) and thresholds.

`submit_QC.txt` / `submit_QI.txt` hold one JSON object per input line: the input's own fields, in
their order, plus `prediction` (0/1); same order and count as the input. `submit.zip` bundles them.

Example:
    >>> from qckit.submission import predict_files
    >>> predict_files("outputs/cikm-1", ["test_QC.jsonl"], "submission/")
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd

from qckit import heads
from qckit.calibrate import apply_thresholds, thresholds_from_metrics
from qckit.data import read_pairs
from qckit.runs import Run, atomic_path, write_text_atomic
from qckit.steps import CALIBRATION, TRAINING

OFFICIAL_FIELDS = {"QC": ["id", "task", "language", "origin_query", "category_path"],
                   "QI": ["id", "task", "language", "origin_query", "item_title"]}


class SubmissionError(ValueError):
    """The run or the input cannot produce a submission; the message says why."""


def _model_for(run: Run, task: str) -> Path:
    plan = run.read_metrics(TRAINING).get("plan", {})
    for name, tasks in plan.items():
        if task in tasks:
            return run.path("models", name)
    have = sorted({t for ts in plan.values() for t in ts})
    raise SubmissionError(f"run {run.root} has no model for task {task} "
                          f"(it was trained for {', '.join(have) or 'nothing'})")


def _input_records(path: Path, df: pd.DataFrame) -> list[dict]:
    """The input rows as they were: raw JSON objects for JSONL, official fields otherwise."""
    if path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8-sig") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    records = []
    for r in df.itertuples(index=False):
        target = "category_path" if r.task == "QC" else "item_title"
        rec = {"id": int(r.id), "task": r.task, "language": r.language, "origin_query": r.query, target: r.target}
        if not pd.isna(r.label):
            rec["label"] = int(r.label)
        records.append(rec)
    return records


def predict_files(run_dir: str | Path, inputs: list[str | Path], output_dir: str | Path) -> dict[str, Path]:
    """Write `submit_<task>.txt` per task found in the inputs and `submit.zip`; returns their paths."""
    run = Run(run_dir)
    for step in (TRAINING, CALIBRATION):
        if not run.metrics_path(step).exists():
            raise SubmissionError(f"{run.root}: step {step} has not run; a submission needs a trained, calibrated run")
    thresholds, language = thresholds_from_metrics(run.read_metrics(CALIBRATION))
    per_task: dict[str, list[dict]] = {}
    for path in map(Path, inputs):
        df = read_pairs(path)
        tasks = sorted(df.task.unique())
        records = _input_records(path, df)
        if len(records) != len(df):
            raise SubmissionError(f"{path}: read {len(df)} rows but {len(records)} lines")
        for task in tasks:
            if task not in thresholds:
                raise SubmissionError(f"{path}: task {task} rows, but run {run.root} was calibrated for "
                                      f"{', '.join(sorted(thresholds))} only")
            _model_for(run, task)
        preds = pd.Series(0, index=df.index)
        for task in tasks:
            rows = df[df.task == task]
            scored = heads.score(heads.load(_model_for(run, task)), rows)
            preds.loc[rows.index] = apply_thresholds(scored, thresholds, language_thresholds=language)
        for rec, task, pred in zip(records, df.task, preds):
            per_task.setdefault(task, []).append({**rec, "prediction": int(pred)})
    out = Path(output_dir)
    written = {}
    for task, recs in per_task.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
        written[task] = write_text_atomic(out / f"submit_{task}.txt", text)
    with atomic_path(out / "submit.zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in written.values():
                zf.write(path, arcname=path.name)
    written["zip"] = out / "submit.zip"
    return written
