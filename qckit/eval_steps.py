"""Steps 06 and 07 in one call each: calibration on dev predictions, then error analysis.

Example:
    >>> from qckit.eval_steps import run_calibration, run_error_analysis
    >>> cal = run_calibration(params, run)          # metrics/06_calibration.json
    >>> ana = run_error_analysis(params, run)       # metrics/07_error_analysis.json
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from qckit.config import Params
from qckit.runs import Run


def read_predictions(run: Run, split: str = "dev") -> pd.DataFrame:
    path = run.path("predictions", f"{split}.parquet")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions for '{split}'; run step 05 (fine-tuning) first")
    return pd.read_parquet(path)


def run_calibration(params: Params, run: Run) -> dict[str, Any]:
    """Fit thresholds and temperature on dev predictions; scoring and submission read them from the metrics.

    Step 05's prediction files are left untouched (a resumed run checks them against its marker).
    """
    from qckit.calibrate import STEP, calibrate

    cp = params.calibration
    metrics = calibrate(
        read_predictions(run, "dev"), paper_thresholds=cp.paper_thresholds, per_language=cp.per_language,
        min_support=cp.min_support, seed=params.run.seed, n_bins=cp.n_bins, n_bootstrap=cp.n_bootstrap,
        ci=cp.ci, folds=cp.folds,
    )
    run.write_metrics(STEP, metrics)
    return metrics


def run_error_analysis(params: Params, run: Run) -> dict[str, Any]:
    """Per-language and per-slice metrics at the calibrated thresholds; writes metrics/07_error_analysis.json."""
    from qckit.analysis import STEP, analyse
    from qckit.calibrate import STEP as CAL_STEP
    from qckit.calibrate import thresholds_from_metrics

    thresholds, language = thresholds_from_metrics(run.read_metrics(CAL_STEP))
    zero_shot = run.read_metrics("01_data_audit").get("zero_shot_languages")
    metrics = analyse(
        read_predictions(run, "dev").dropna(subset=["label"]), thresholds=thresholds,
        language_thresholds=language, train=run.read_training_table(), zero_shot=zero_shot,
        k=params.analysis.examples,
    )
    run.write_metrics(STEP, metrics)
    return metrics
