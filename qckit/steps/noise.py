"""Step 04, noise detection: score the newest training table, flag probable label errors, act on them.

Writes ``data/noise_scores.parquet`` (per-row p(yes), each rule's flags, ``flagged``),
``data/review_queue.parquet`` (flagged rows, most confident first), ``data/train_clean.parquet`` (the
training table after ``noise.action``; rows of tasks not cleaned are kept as they are) and
``metrics/04_noise_detection.json``. Where ground truth exists (the demo's ``noise_truth.jsonl``, or
``noise.measure_rate`` flips in a copy) the metrics compare every method. With ``noise.enabled`` off,
only the metrics are written. The algorithms live in ``qckit.noise``.

Example:
    >>> from qckit.steps import noise
    >>> metrics = noise.run(params, run)
    >>> results = noise.load(run)          # scores, review queue, metrics
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qckit.config import Params
from qckit.noise import (
    SCORES,
    apply_action,
    compare_on,
    detector_auc,
    detector_warnings,
    disagreement,
    flag_rates,
    flag_rows,
    inject_noise,
    noise_seed,
    read_noise_truth,
    review_queue,
    score_pairs,
    task_features,
)
from qckit.runs import Run
from qckit.steps import NOISE as STEP


@dataclass
class NoiseResults:
    """What notebook 04 shows: the per-row scores, the review queue (both empty when the step is off)."""

    metrics: dict[str, Any]
    scores: pd.DataFrame
    review_queue: pd.DataFrame


def input_table_name(run: Run) -> str:
    """The newest training table before this step's own ``train_clean`` (a rerun must not clean twice)."""
    return run.training_table_name(before="train_clean")


def _truth(params: Params, run: Run, pairs: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    path = run.path("data", "raw", "noise_truth.jsonl")
    if params.data.source == "demo" and path.is_file():
        ids = read_noise_truth(path)
        return pairs["id"].isin(ids).to_numpy(), f"demo noise_truth.jsonl ({len(ids)} flipped labels)"
    return None, None


def _scores(pairs: pd.DataFrame, params: Params, kinds: list[str], features, output_dir) -> tuple[dict, dict]:
    p_by, seconds = {}, {}
    for kind in kinds:
        start = time.perf_counter()
        p_by[kind] = score_pairs(pairs, params, scores=kind, features=features, output_dir=output_dir)
        seconds[kind] = time.perf_counter() - start
    return p_by, seconds


def run(params: Params, run: Run) -> dict[str, Any]:
    """Score, flag, act, measure and write (see the module docstring); returns the metrics."""
    noise, start = params.noise, time.perf_counter()
    source = input_table_name(run)
    train = run.read_table(source)
    if not noise.enabled:
        metrics = {"enabled": False, "input_table": source, "rows": len(train),
                   "headline": {"enabled": False, "rows": len(train)}}
        run.write_metrics(STEP, metrics)
        return metrics
    tasks = noise.tasks or sorted(pd.unique(train["task"]).tolist())
    in_scope = (train["task"].isin(tasks) & train["label"].notna()).to_numpy()
    pairs = train.loc[in_scope].reset_index(drop=True)
    timings: dict[str, float] = {}
    features = None
    if noise.detector == "embedding_lr":
        t0 = time.perf_counter()
        features = task_features(pairs, params)
        timings["embed_s"] = time.perf_counter() - t0
    models_dir = run.path("models", "noise")
    p_by, seconds = _scores(pairs, params, [noise.scores], features, models_dir)
    p_yes = p_by[noise.scores]
    flags = flag_rows(pairs, p_yes, noise)
    flagged = flags["flagged"]

    truth, truth_source = _truth(params, run, pairs)
    kinds = list(SCORES) if noise.compare and noise.detector == "embedding_lr" else [noise.scores]
    comparison, curves = None, {}
    if truth is not None:
        more, more_s = _scores(pairs, params, [k for k in kinds if k not in p_by], features, models_dir)
        p_by, seconds = {**p_by, **more}, {**seconds, **more_s}
        comparison, curves = compare_on(pairs, p_by, truth, noise, seconds)
    elif noise.measure_rate > 0:
        noisy, truth_injected = inject_noise(pairs, noise.measure_rate, seed=noise_seed(params))
        p_inj, s_inj = _scores(noisy, params, kinds, features, models_dir / "measure")
        comparison, curves = compare_on(noisy, p_inj, truth_injected, noise, s_inj)
        truth_source = f"{noise.measure_rate:.0%} of labels flipped in a copy (seed {noise_seed(params)})"
    timings.update({f"{k}_s": v for k, v in seconds.items()})

    scores = _scores_table(pairs, p_by, noise.scores, flags, truth)
    queue = review_queue(pairs, p_yes, flagged)
    full_flags = np.zeros(len(train), dtype=bool)
    full_flags[in_scope] = flagged
    full_p = np.full(len(train), np.nan)
    full_p[in_scope] = p_yes
    clean = apply_action(train.assign(noise_p_yes=full_p), full_flags, noise.action)
    run.write_table("noise_scores", scores)
    run.write_table("review_queue", queue)
    run.write_table("train_clean", clean)
    timings["total_s"] = time.perf_counter() - start
    metrics = _metrics(params, source, pairs, train, clean, flags, comparison, curves, truth_source, timings)
    metrics["detector_auc"] = {kind: detector_auc(pairs, p) for kind, p in p_by.items()}
    metrics["warnings"] = detector_warnings(metrics["detector_auc"].get(noise.scores, {}), noise.scores)
    run.write_metrics(STEP, metrics)
    h = metrics["headline"]
    run.log(f"{STEP}: {h['flagged']} of {h['rows_scored']} rows flagged ({noise.action}), "
            f"F1 {h.get('f1', 'n/a')}")
    return metrics


def load(run: Run) -> NoiseResults:
    """The step's metrics, per-row scores and review queue, read from the run."""
    metrics = run.read_metrics(STEP)
    on = metrics.get("enabled", False)
    return NoiseResults(
        metrics=metrics,
        scores=run.read_table("noise_scores") if on else pd.DataFrame(),
        review_queue=run.read_table("review_queue") if on else pd.DataFrame(),
    )


def _scores_table(pairs: pd.DataFrame, p_by: dict[str, np.ndarray], kind: str, flags: dict[str, np.ndarray],
                  truth: np.ndarray | None) -> pd.DataFrame:
    cols = [c for c in ("id", "task", "language", "origin", "source_id", "query", "target", "label") if c in pairs]
    out = pairs[cols].copy()
    out["p_yes"] = p_by[kind]
    out["confidence"] = disagreement(out["label"], out["p_yes"])
    for other, p in p_by.items():
        if other != kind:
            out[f"p_yes_{other}"] = p
    out["flag_threshold"] = flags["threshold"]
    out["flag_confident_learning"] = flags["confident_learning"]
    out["flagged"] = flags["flagged"]
    if truth is not None:
        out["noisy"] = truth
    return out


def _metrics(params: Params, source: str, pairs: pd.DataFrame, train: pd.DataFrame, clean: pd.DataFrame,
             flags: dict[str, np.ndarray], comparison: pd.DataFrame | None, curves: dict,
             truth_source: str | None, timings: dict[str, float]) -> dict[str, Any]:
    noise = params.noise
    flagged = flags["flagged"]
    rates = flag_rates(pairs, flagged)
    origin = pairs["origin"].fillna("original") if "origin" in pairs else pd.Series("original", index=pairs.index)
    by_origin = pd.DataFrame({"origin": origin, "flagged": flagged}).groupby("origin")["flagged"].agg(["size", "sum"])
    metrics: dict[str, Any] = {
        "enabled": True, "input_table": source, "detector": noise.detector, "scores": noise.scores,
        "rule": noise.rule, "threshold": noise.threshold, "filter_by": noise.filter_by, "action": noise.action,
        "embedder": params.models.embedder if noise.detector == "embedding_lr" else None,
        "rows": len(train), "rows_scored": len(pairs), "rows_after": len(clean), "flagged": int(flagged.sum()),
        "flag_rate": float(flagged.mean()) if len(pairs) else 0.0,
        "flagged_by_rule": {r: int(flags[r].sum()) for r in ("threshold", "confident_learning")},
        "flagged_by_origin": {o: {"rows": int(r["size"]), "flagged": int(r["sum"])} for o, r in by_origin.iterrows()},
        "flag_rates": rates.to_dict(orient="records"),
        "flag_rates_by_task": flag_rates(pairs.assign(language="all"), flagged).to_dict(orient="records"),
        "truth": truth_source, "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    headline = {"rows_scored": len(pairs), "flagged": int(flagged.sum()), "flag_rate": round(metrics["flag_rate"], 4)}
    if comparison is not None:
        metrics["methods"] = comparison.to_dict(orient="records")
        metrics["pr_curves"] = curves
        chosen = comparison[(comparison.scores == noise.scores) & (comparison.rule == noise.rule)].iloc[0]
        baseline = comparison[(comparison.scores == noise.scores) & (comparison.rule == "cleanlab_default")].iloc[0]
        headline.update({k: round(float(chosen[k]), 4) for k in ("precision", "recall", "f1")})
        headline["cleanlab_default_f1"] = round(float(baseline["f1"]), 4)
    else:
        lang = rates[rates["rows"] > 0]["rate"]
        headline.update({"max_language_flag_rate": round(float(lang.max()), 4) if len(lang) else 0.0,
                         "min_language_flag_rate": round(float(lang.min()), 4) if len(lang) else 0.0})
    headline["seconds"] = round(timings["total_s"], 1)
    metrics["headline"] = headline
    return metrics
