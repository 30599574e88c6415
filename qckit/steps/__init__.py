"""The seven notebook steps, one module each, all with the same face.

- ``run(params, run) -> metrics``: do the step on the run directory (reads the tables of earlier steps,
  writes its own tables, models and ``metrics/<step>.json``) and return the metrics;
- ``load(run) -> results``: everything the step's notebook shows, read back from the run directory
  without changing a file of it.

Step names (the notebooks' file stems) are defined here and nowhere else.

Example:
    >>> from qckit.steps import audit, open_run, run_or_load
    >>> params, run = open_run("params/smoke.yaml", "outputs/x")
    >>> results = run_or_load(audit, params, run)     # runs the step, or loads it when it is done
    >>> results.metrics["headline"]
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from qckit.config import Params, load_params
from qckit.runs import Run

AUDIT = "01_data_audit"
TRANSLATION = "02_translation"
NEGATIVES = "03_negative_mining"
NOISE = "04_noise_detection"
TRAINING = "05_fine_tuning"
CALIBRATION = "06_calibration"
ERROR_ANALYSIS = "07_error_analysis"
STEPS = (AUDIT, TRANSLATION, NEGATIVES, NOISE, TRAINING, CALIBRATION, ERROR_ANALYSIS)


def open_run(params_file: str | Path | None, run_dir: str | Path) -> tuple[Params, Run]:
    """The parameters and run directory a notebook works on.

    A run that already holds a ``params.yaml`` (a finished or started run) is explored with its own
    parameters, whatever ``params_file`` says; a new run directory takes ``params_file``.
    """
    run = Run(run_dir)
    own = run.path("params.yaml")
    if own.is_file():
        return load_params(own), run
    if params_file is None:
        raise FileNotFoundError(f"{own} not found and no params_file given: name a profile to start a run")
    return load_params(params_file), run


def run_or_load(step: ModuleType, params: Params, run: Run, *, recompute: bool = False) -> Any:
    """``step.load(run)``; the step runs first when ``recompute`` is set or the run has not done it yet.

    A step counts as done when its metrics file exists: every step writes it last, atomically.
    """
    if recompute or not run.metrics_path(step.STEP).is_file():
        run.ensure()
        step.run(params, run)
    return step.load(run)
