"""Official submission files from a run: score test files with the run's model(s) and thresholds.

`submit_QC.txt` / `submit_QI.txt` hold one JSON object per input line: the input's own fields, in
their order, plus `prediction` (0/1); same order and count as the input. `submit.zip` bundles them.

Everything is checked before anything is written: the output must be a folder (or not exist yet), every
input valid, and no id may appear twice in one task's rows, within a file or across files (a submission
file with the same id twice cannot be scored). The files are then written together: a failure leaves
none of them changed.

Example:
    >>> from qckit.submission import predict_files
    >>> predict_files("outputs/cikm-1", ["test_QC.txt"], "submission/")
    >>> predict_files("outputs/cikm-1", ["test_QC.txt"], "paper-thresholds/", thresholds="paper")
"""
from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from qckit import TASKS, heads
from qckit.calibrate import PAPER_THRESHOLDS, apply_thresholds, thresholds_from_metrics
from qckit.config import Params, load_params
from qckit.data import read_pairs, read_records
from qckit.layout import OFFICIAL, Layout
from qckit.runs import Run, atomic_path
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


def _check_output(out: Path) -> None:
    """The output must be a folder, or a new one that can be made; nothing is created yet."""
    if out.exists() and not out.is_dir():
        raise SubmissionError(f"--output {out} is a file; give a folder (submit_<task>.txt and submit.zip go "
                              "into it)")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SubmissionError(f"--output {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SubmissionError(f"--output {out}: cannot write into {parent} (permission denied)")


def _check_ids(seen: dict[tuple[str, int], str], path: Path, df: pd.DataFrame) -> None:
    """No id twice in one task's rows across the inputs, the same file given twice included (read_pairs
    already refuses an id twice within a file); ``seen`` maps the earlier inputs' (task, id) to file:line."""
    here = {}
    for task, ident, line in zip(df["task"], df["id"].tolist(), df["line"].tolist()):
        if (task, ident) in seen:
            raise SubmissionError(f"{path}:{line}: field 'id': id {ident} is already used by {seen[task, ident]} "
                                  f"({task}); ids must be unique in submit_{task}.txt")
        here[task, ident] = f"{path}:{line}"
    seen.update(here)


def parse_thresholds(spec: str) -> str | dict[str, float]:
    """``calibrated``, ``paper`` or explicit per-task thresholds such as ``QC=0.4,QI=0.2``."""
    if spec in ("calibrated", "paper"):
        return spec
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        task, _, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if task.strip() not in TASKS or not 0.0 <= number <= 1.0:
            raise SubmissionError(f"--thresholds {spec!r}: expected calibrated, paper or TASK=VALUE pairs "
                                  f"such as QC=0.4,QI=0.2 (tasks {', '.join(TASKS)}, values between 0 and 1)")
        out[task.strip()] = number
    if not out:
        raise SubmissionError("--thresholds is empty: use calibrated, paper or QC=0.4,QI=0.2")
    return out


def _run_params(run: Run) -> Params:
    """The run's own parameters (its params.yaml); field defaults for a run directory without one."""
    path = run.path("params.yaml")
    return load_params(path) if path.exists() else Params(name=run.root.name)


def _with_backend(params: Params, backend: str | None) -> Params:
    """The run's parameters scoring with ``backend`` (validated: vllm scores the yes_no head only)."""
    if backend is None:
        return params
    raw = params.model_dump(mode="json")
    raw["scoring"]["backend"] = backend
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        problem = err.errors()[0]
        raise SubmissionError(f"--backend {backend}: {problem['msg'].removeprefix('Value error, ')}") from None


def _layout(params: Params) -> Layout:
    """How the run's files name the kit's fields: test files come in the same form as its training files."""
    return params.data.layout() if params.data.source == "files" else OFFICIAL


def _thresholds(run: Run, spec: str | dict[str, float]) -> tuple[dict[str, float], dict | None]:
    """(task thresholds, per-language thresholds or None) for ``spec`` (see ``parse_thresholds``)."""
    metrics = run.read_metrics(CALIBRATION)
    if spec == "calibrated":
        return thresholds_from_metrics(metrics)
    if spec == "paper":
        return dict(metrics.get("paper_thresholds") or PAPER_THRESHOLDS), None
    return dict(spec), None


def predict_files(run_dir: str | Path, inputs: list[str | Path], output_dir: str | Path, *,
                  thresholds: str | dict[str, float] = "calibrated",
                  report: dict[str, dict] | None = None, backend: str | None = None) -> dict[str, Path]:
    """Write `submit_<task>.txt` per task found in the inputs and `submit.zip`; returns their paths.

    Args:
        thresholds: ``calibrated`` (step 06's, per language where it fitted them), ``paper`` (QC 0.4,
            QI 0.2) or a mapping / ``"QC=0.4,QI=0.2"`` string of one threshold per task.
        report: filled per task with the rows read, the threshold used and the share predicted relevant.
        backend: ``hf`` or ``vllm`` in place of the run's ``scoring.backend``; None: the run's.

    Raises SubmissionError (or DataError for an invalid input) before writing anything.
    """
    out = Path(output_dir)
    _check_output(out)
    run = Run(run_dir)
    for step in (TRAINING, CALIBRATION):
        if not run.metrics_path(step).exists():
            raise SubmissionError(f"{run.root}: step {step} has not run; a submission needs a trained, calibrated run")
    spec = parse_thresholds(thresholds) if isinstance(thresholds, str) else thresholds
    thresholds, language = _thresholds(run, spec)
    tables, seen = [], {}
    params = _with_backend(_run_params(run), backend)
    layout = _layout(params)
    for path in map(Path, inputs):
        df = read_pairs(path, line_numbers=True, layout=layout)
        _check_ids(seen, path, df)
        records = read_records(path, layout=layout)  # the input's own fields, in its order
        if len(records) != len(df):
            raise SubmissionError(f"{path}: read {len(df)} rows but {len(records)} lines")
        for task in sorted(df.task.unique()):
            if task not in thresholds:
                given = f"run {run.root} was calibrated for" if spec == "calibrated" else "the thresholds cover"
                raise SubmissionError(f"{path}: task {task} rows, but {given} {', '.join(sorted(thresholds))} only")
            _model_for(run, task)
        tables.append((df.drop(columns="line"), records))
    per_task: dict[str, list[dict]] = {}
    for df, records in tables:
        preds = pd.Series(0, index=df.index)
        for task in sorted(df.task.unique()):
            rows = df[df.task == task]
            scored = heads.score_folder(_model_for(run, task), rows, params)
            preds.loc[rows.index] = apply_thresholds(scored, thresholds, language_thresholds=language)
        for rec, task, pred in zip(records, df.task, preds):
            per_task.setdefault(task, []).append({**rec, "prediction": int(pred)})
    if report is not None:
        for task, recs in per_task.items():
            report[task] = {"rows": len(recs), "threshold": thresholds[task],
                            "per_language_thresholds": bool(language and language.get(task)),
                            "share_relevant": sum(r["prediction"] for r in recs) / max(len(recs), 1)}
    try:
        return _write(out, per_task)
    except OSError as err:
        raise SubmissionError(f"--output {out}: cannot write the submission ({err.strerror or err})") from None


def _write(out: Path, per_task: dict[str, list[dict]]) -> dict[str, Path]:
    """Every file to a temporary name first, all renamed into place at the end (nothing half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    written = {task: out / f"submit_{task}.txt" for task in per_task}
    with contextlib.ExitStack() as stack:
        temps = {task: stack.enter_context(atomic_path(path)) for task, path in written.items()}
        for task, recs in per_task.items():
            text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in recs)
            temps[task].write_text(text, encoding="utf-8")
        with zipfile.ZipFile(stack.enter_context(atomic_path(out / "submit.zip")), "w",
                             compression=zipfile.ZIP_DEFLATED) as zf:
            for task, path in written.items():
                zf.write(temps[task], arcname=path.name)
    written["zip"] = out / "submit.zip"
    return written
