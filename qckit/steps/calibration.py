"""Step 06, calibration: F1-optimal thresholds per task (and language), temperature scaling, ECE, intervals.

Reads step 05's dev predictions and writes ``metrics/06_calibration.json``; scoring and submission read
the thresholds from there. Step 05's prediction files are left untouched (a resumed run checks them
against its marker). The methods live in ``qckit.calibrate``.

Example:
    >>> from qckit.steps import calibration
    >>> metrics = calibration.run(params, run)
    >>> metrics["thresholds"]
    {'QC': 0.41, 'QI': 0.23}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from qckit.calibrate import calibrate
from qckit.config import Params
from qckit.runs import Run
from qckit.steps import CALIBRATION as STEP


@dataclass
class CalibrationResults:
    """What notebook 06 shows: the metrics and the dev predictions they were fitted on."""

    metrics: dict[str, Any]
    dev: pd.DataFrame


def read_predictions(run: Run, split: str = "dev") -> pd.DataFrame:
    """Step 05's predictions of one split."""
    path = run.path("predictions", f"{split}.parquet")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions for '{split}'; run step 05 (fine-tuning) first")
    return pd.read_parquet(path)


def run(params: Params, run: Run) -> dict[str, Any]:
    """Fit thresholds and temperature on dev predictions, write and return the metrics."""
    cp = params.calibration
    metrics = calibrate(
        read_predictions(run, "dev"), paper_thresholds=cp.paper_thresholds, per_language=cp.per_language,
        min_support=cp.min_support, seed=params.run.seed, n_bins=cp.n_bins, n_bootstrap=cp.n_bootstrap,
        ci=cp.ci, folds=cp.folds,
    )
    run.write_metrics(STEP, metrics)
    return metrics


def load(run: Run) -> CalibrationResults:
    """The calibration metrics and the dev predictions."""
    return CalibrationResults(run.read_metrics(STEP), read_predictions(run, "dev"))
