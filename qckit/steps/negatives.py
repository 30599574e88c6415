"""Step 03, hard-negative mining: mine close-but-wrong targets for the newest training table.

Writes ``data/negatives.parquet`` (the created rows; ids above every existing id),
``data/train_negatives.parquet`` (the training table with a ``similarity`` column, then the created
rows) and ``metrics/03_negative_mining.json`` (``sampling`` names the sampler: ``top`` or ``random`` among
the nearest targets, or ``random_catalogue``, the control that draws from every target; ``mined_share`` the
mined rows' share of each task's training table; with ``negatives.share``, ``share`` says per task how many
negatives the share asked for, how many were found and kept, and the share reached). With
``negatives.enabled: false`` it writes only the metrics, which say so; later steps then read the previous
training table. The algorithm lives in ``qckit.negatives``.

Example:
    >>> from qckit.steps import negatives
    >>> metrics = negatives.run(load_params("params/smoke.yaml"), Run("outputs/x"))
    >>> negatives.load(Run("outputs/x")).mined.head()
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from qckit.config import Params
from qckit.models import default_cache_dir
from qckit.negatives import (
    combine,
    empty_rows,
    leak_check,
    make_embedder,
    mine_hard_negatives,
    mining_metrics,
    next_id,
)
from qckit.runs import Run
from qckit.steps import NEGATIVES as STEP


@dataclass
class NegativesResults:
    """What notebook 03 shows."""

    metrics: dict[str, Any]
    before: pd.DataFrame
    after: pd.DataFrame
    mined: pd.DataFrame


def run(params: Params, run: Run) -> dict[str, Any]:
    """Mine negatives for the newest training table and write the results (see the module docstring)."""
    cfg = params.negatives
    if not cfg.enabled:
        metrics = {"enabled": False, "note": "negatives.enabled is false: nothing mined, no table written",
                   "headline": {"enabled": "no"}}
        run.write_metrics(STEP, metrics)
        run.log(f"{STEP}: disabled")
        return metrics
    start = time.perf_counter()
    source = input_table_name(run)
    train = run.read_table(source)
    splits = {name: run.read_table(name) for name in ("dev", "test") if run.has_table(name)}
    model = cfg.embedder or params.models.embedder
    cache = cfg.cache_dir or default_cache_dir(params.models.cache_dir) / "embeddings"
    embed = make_embedder(model, cache_dir=cache, backend=cfg.backend, batch_size=cfg.embed_batch_size,
                          models_dir=params.models.cache_dir)
    result = mine_hard_negatives(
        train, embed, known=[df for name, df in splits.items() if name == "dev"], tasks=cfg.tasks,
        top_k=cfg.top_k, rank_range=cfg.rank_range, sampling=cfg.sampling,
        negatives_per_positive=cfg.negatives_per_positive, share=cfg.share,
        # share sets the volume itself, so the cap (on by default) does not apply with it (see NegativesParams)
        target_positive_share=cfg.target_positive_share if cfg.share is None else None,
        max_similarity=cfg.max_similarity, relative_margin=cfg.relative_margin,
        skip_hierarchy=cfg.skip_hierarchy, batch_size=cfg.batch_size, index=cfg.index,
        index_threshold=cfg.index_threshold, seed=params.run.seed if cfg.seed is None else cfg.seed,
        start_id=next_id([train, *splits.values()]),
    )
    combined = combine(train, result)
    run.write_table("negatives", result.rows)
    run.write_table("train_negatives", combined)
    leaks = leak_check(result.rows, {"train": train, **{k: v for k, v in splits.items() if k == "dev"}})
    metrics = mining_metrics(result, train, combined, leaks, model=model, source_table=source,
                             seconds=time.perf_counter() - start)
    metrics["parameters"] = cfg.model_dump(mode="json")
    run.write_metrics(STEP, metrics)
    run.log(f"{STEP}: {len(result.rows)} negatives ({cfg.sampling} sampling) from {source}, "
            f"leaked {leaks['total']}{share_note(metrics)}")
    return metrics


def share_note(metrics: dict[str, Any]) -> str:
    """With ``negatives.share``: the share asked and reached per task for the run log, and where too few negatives
    were found; else nothing."""
    if "share" not in metrics:
        return ""
    per_task = metrics["share"]["per_task"]
    reached = ", ".join(f"{task} {t['share_reached']}" for task, t in per_task.items())
    short = [f"{task} kept {t['kept']} of {t['asked']} asked" for task, t in per_task.items() if not t["enough"]]
    return (f"; share {metrics['share']['asked']} asked, reached {reached}"
            + (f" (too few found: {', '.join(short)})" if short else ""))


def input_table_name(run: Run) -> str:
    """The newest training table written before this step (a rerun never mines its own or a later output)."""
    return run.training_table_name(before="train_negatives")


def load(run: Run) -> NegativesResults:
    """The step's metrics and tables: ``before`` (its input), ``after`` (``train_negatives``, or the input
    when the step was disabled) and ``mined`` (the created rows, maybe none)."""
    metrics = run.read_metrics(STEP)
    before = run.read_table(input_table_name(run))
    if not metrics.get("enabled") or not run.has_table("train_negatives"):
        return NegativesResults(metrics, before, before, empty_rows())
    return NegativesResults(metrics, before, run.read_table("train_negatives"), run.read_table("negatives"))
