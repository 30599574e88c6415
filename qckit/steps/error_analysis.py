"""Step 07, error analysis: per-language and per-slice metrics at the calibrated thresholds, confident errors,
and robustness to misspelled queries.

Reads step 05's dev predictions, step 06's thresholds, the audit's zero-shot languages and the training
table; writes ``metrics/07_error_analysis.json``. The analyses live in ``qckit.analysis``.

The robustness slice (``analysis.typo_rate`` above 0) scores the labelled dev rows again with typos injected
into their queries (``qckit.typos``), with the model(s) step 05 trained, and reports F1 clean against typo'd
per task and language (``robustness`` in the metrics); a run whose step 05 trained no model has no slice.

Example:
    >>> from qckit.steps import error_analysis
    >>> metrics = error_analysis.run(params, run)
    >>> error_analysis.load(run).robustness[["task", "language", "f1_clean", "f1_typo", "typo_gap"]]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from qckit import heads
from qckit.analysis import analyse, robustness
from qckit.calibrate import LanguageThresholds, Thresholds, thresholds_from_metrics
from qckit.config import Params
from qckit.runs import Run
from qckit.steps import AUDIT, CALIBRATION, TRAINING
from qckit.steps import ERROR_ANALYSIS as STEP
from qckit.steps.calibration import read_predictions
from qckit.typos import add_typos


@dataclass
class ErrorAnalysisResults:
    """What notebook 07 shows: the metrics and everything they were computed from."""

    metrics: dict[str, Any]
    dev: pd.DataFrame  # labelled dev predictions
    thresholds: Thresholds
    language_thresholds: LanguageThresholds
    train: pd.DataFrame  # the training table step 05 learned from
    zero_shot: list[str] | None  # None: not set in the audit, found from the data
    # F1 clean against typo'd per task and language (``qckit.analysis.typo_robustness``); empty without the slice
    robustness: pd.DataFrame = field(default_factory=pd.DataFrame)


def _inputs(run: Run) -> ErrorAnalysisResults:
    thresholds, language = thresholds_from_metrics(run.read_metrics(CALIBRATION))
    return ErrorAnalysisResults(
        metrics={}, dev=read_predictions(run, "dev").dropna(subset=["label"]), thresholds=thresholds,
        language_thresholds=language, train=run.read_training_table(),
        zero_shot=run.read_metrics(AUDIT).get("zero_shot_languages"),
    )


def trained_plan(run: Run) -> dict[str, list[str]]:
    """Step 05's models and the tasks each serves (``{"joint": ["QC", "QI"]}``); empty when it trained none."""
    if not run.metrics_path(TRAINING).is_file():
        return {}
    return run.read_metrics(TRAINING).get("plan") or {}


def score_with_typos(params: Params, run: Run, rows: pd.DataFrame, plan: dict[str, list[str]], *, rate: float,
                     seed: int) -> pd.DataFrame:
    """``rows`` (predictions) with typos injected into their queries and scored again by step 05's model(s).

    Rows whose query the typos left unchanged keep their scores: the gap comes from the changed rows alone.
    """
    typo = rows.assign(query=add_typos(rows["query"].tolist(), rate, seed=seed))
    changed = typo["query"].to_numpy() != rows["query"].to_numpy()
    columns = [c for c in ("score", "logit") if c in typo.columns]
    for name, tasks in plan.items():
        mask = changed & typo["task"].isin(tasks).to_numpy()
        if not mask.any():
            continue
        # a k-fold ensemble scores each typo'd dev row with the member that did not see its fold, as dev was scored
        scored = heads.score_folder(run.path("models", name), typo[mask], params, out_of_fold=True)
        typo.loc[mask, columns] = scored[columns].to_numpy()
    return typo


def run(params: Params, run: Run) -> dict[str, Any]:
    """Per-language and per-slice metrics at the calibrated thresholds, and the robustness slice; writes and
    returns the metrics."""
    inputs = _inputs(run)
    metrics = analyse(inputs.dev, thresholds=inputs.thresholds, language_thresholds=inputs.language_thresholds,
                      train=inputs.train, zero_shot=inputs.zero_shot, k=params.analysis.examples)
    rate, plan = params.analysis.typo_rate, trained_plan(run)
    if rate > 0 and plan and len(inputs.dev):
        seed = params.run.seed if params.analysis.typo_seed is None else params.analysis.typo_seed
        typo = score_with_typos(params, run, inputs.dev, plan, rate=rate, seed=seed)
        metrics["robustness"] = robustness(inputs.dev, typo, thresholds=inputs.thresholds,
                                           language_thresholds=inputs.language_thresholds, typo_rate=rate, seed=seed)
    run.write_metrics(STEP, metrics)
    return metrics


def load(run: Run) -> ErrorAnalysisResults:
    """The metrics with the predictions, thresholds, training table and zero-shot languages behind them."""
    results = _inputs(run)
    results.metrics = run.read_metrics(STEP)
    results.robustness = pd.DataFrame(results.metrics.get("robustness", {}).get("by_language", []))
    return results
