"""Step 01, data audit: load and validate the data (or write the demo), save the splits, measure them.

Writes ``data/train.parquet``, ``data/dev.parquet``, ``data/test.parquet`` (the pairs tables every
later step reads; ``test`` may have no rows) and ``metrics/01_data_audit.json``. The measurements
live in ``qckit.audit``.

Example:
    >>> from qckit.steps import audit
    >>> metrics = audit.run(load_params("params/smoke.yaml"), Run("outputs/x").ensure())
    >>> audit.load(Run("outputs/x")).splits["train"].head()
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from qckit import BASE_COLUMNS
from qckit.audit import SPLITS, audit_metrics
from qckit.config import Params
from qckit.data import load_splits
from qckit.runs import Run
from qckit.steps import AUDIT as STEP


@dataclass
class AuditResults:
    """What notebook 01 shows: the three splits as written, and the metrics."""

    metrics: dict[str, Any]
    splits: dict[str, pd.DataFrame]


def run(params: Params, run: Run) -> dict[str, Any]:
    """Load the splits, write them to the run, compute and write the metrics; returns the metrics."""
    splits, load_info = load_splits(params, run.path("data", "raw"))
    splits = dict(splits)
    for name in SPLITS:
        if name not in splits:
            splits[name] = pd.DataFrame(columns=list(BASE_COLUMNS))
        run.write_table(name, splits[name])
    metrics = audit_metrics(splits, load_info, zero_shot=params.audit.zero_shot_languages)
    run.write_metrics(STEP, metrics)
    h = metrics["headline"]
    run.log(f"{STEP}: {h['rows']} rows, {h['languages']} languages, zero-shot: {h['zero_shot_languages']}")
    return metrics


def load(run: Run) -> AuditResults:
    """The splits and metrics of a run whose audit is done."""
    return AuditResults(run.read_metrics(STEP), {name: run.read_table(name) for name in SPLITS})
