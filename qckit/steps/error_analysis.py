"""Step 07, error analysis: per-language and per-slice metrics at the calibrated thresholds, confident errors.

Reads step 05's dev predictions, step 06's thresholds, the audit's zero-shot languages and the training
table; writes ``metrics/07_error_analysis.json``. The analyses live in ``qckit.analysis``.

Example:
    >>> from qckit.steps import error_analysis
    >>> metrics = error_analysis.run(params, run)
    >>> error_analysis.load(run).dev.head()
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from qckit.analysis import analyse
from qckit.calibrate import LanguageThresholds, Thresholds, thresholds_from_metrics
from qckit.config import Params
from qckit.runs import Run
from qckit.steps import AUDIT, CALIBRATION
from qckit.steps import ERROR_ANALYSIS as STEP
from qckit.steps.calibration import read_predictions


@dataclass
class ErrorAnalysisResults:
    """What notebook 07 shows: the metrics and everything they were computed from."""

    metrics: dict[str, Any]
    dev: pd.DataFrame  # labelled dev predictions
    thresholds: Thresholds
    language_thresholds: LanguageThresholds
    train: pd.DataFrame  # the training table step 05 learned from
    zero_shot: list[str] | None  # None: not set in the audit, found from the data


def _inputs(run: Run) -> ErrorAnalysisResults:
    thresholds, language = thresholds_from_metrics(run.read_metrics(CALIBRATION))
    return ErrorAnalysisResults(
        metrics={}, dev=read_predictions(run, "dev").dropna(subset=["label"]), thresholds=thresholds,
        language_thresholds=language, train=run.read_training_table(),
        zero_shot=run.read_metrics(AUDIT).get("zero_shot_languages"),
    )


def run(params: Params, run: Run) -> dict[str, Any]:
    """Per-language and per-slice metrics at the calibrated thresholds; writes and returns the metrics."""
    inputs = _inputs(run)
    metrics = analyse(inputs.dev, thresholds=inputs.thresholds, language_thresholds=inputs.language_thresholds,
                      train=inputs.train, zero_shot=inputs.zero_shot, k=params.analysis.examples)
    run.write_metrics(STEP, metrics)
    return metrics


def load(run: Run) -> ErrorAnalysisResults:
    """The metrics with the predictions, thresholds, training table and zero-shot languages behind them."""
    results = _inputs(run)
    results.metrics = run.read_metrics(STEP)
    return results
