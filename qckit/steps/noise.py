"""Step 04, noise detection: score the newest training table, flag probable label errors, act on them.

Writes ``data/noise_scores.parquet`` (per-row p(yes), each rule's flags, ``flagged``),
``data/review_queue.parquet`` (flagged rows, most confident first), ``data/train_clean.parquet`` (the
training table after ``noise.action``; rows of tasks not cleaned are kept as they are) and
``metrics/04_noise_detection.json``. Where ground truth exists (the demo's ``noise_truth.jsonl``, or
``noise.measure_rate`` flips in a copy) the metrics compare every method. With ``noise.enabled`` off,
only the metrics are written. The algorithms live in ``qckit.noise``.

``qckit review import`` (``qckit.review``) adds ``data/review_verdicts.parquet`` and
``metrics/04_noise_review.json`` (a person's verdicts on a sample of the flags and the precision per
confidence level); the step never writes them, and ``load`` shows them beside the step's results.

Example:
    >>> from qckit.steps import noise
    >>> metrics = noise.run(params, run)
    >>> results = noise.load(run)          # scores, review queue, metrics
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
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
    evaluate_flags,
    flag_rates,
    flag_rows,
    inject_noise,
    noise_seed,
    read_noise_truth,
    review_queue,
    score_pairs,
    task_features,
    vote_k,
    vote_scores,
)
from qckit.runs import Run
from qckit.steps import NOISE as STEP

VERDICTS_TABLE = "review_verdicts"
REVIEW_METRICS = "04_noise_review"


@dataclass
class NoiseResults:
    """What notebook 04 shows: the per-row scores, the review queue (both empty when the step is off), and
    the precision per confidence level a person's review measured (empty, with ``review_note`` saying why,
    until ``qckit review import`` brings verdicts)."""

    metrics: dict[str, Any]
    scores: pd.DataFrame
    review_queue: pd.DataFrame
    review_precision: pd.DataFrame = field(default_factory=pd.DataFrame)
    review_note: str = ""


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

    votes, acted = None, flagged
    if noise.action == "relabel_vote":
        t0 = time.perf_counter()
        p_votes = vote_scores(pairs, params, first=p_yes, features=features, output_dir=models_dir / "votes")
        votes = np.sum([flag_rows(pairs, p, noise)["flagged"] for p in p_votes], axis=0)
        acted = votes >= vote_k(noise)
        timings["votes_s"] = time.perf_counter() - t0

    scores = _scores_table(pairs, p_by, noise.scores, flags, truth)
    if votes is not None:
        scores["votes"] = votes
    queue = review_queue(pairs, p_yes, flagged)
    clean = _cleaned(train, in_scope, p_yes, acted, votes, noise.action)
    run.write_table("noise_scores", scores)
    run.write_table("review_queue", queue)
    run.write_table("train_clean", clean)
    timings["total_s"] = time.perf_counter() - start
    metrics = _metrics(params, source, pairs, train, clean, flags, comparison, curves, truth_source, timings)
    metrics.update(_touched(noise.action, acted))
    if votes is not None:
        metrics["vote"] = _vote_metrics(params, votes, acted, truth)
    metrics["detector_auc"] = {kind: detector_auc(pairs, p) for kind, p in p_by.items()}
    metrics["warnings"] = detector_warnings(metrics["detector_auc"].get(noise.scores, {}), noise.scores)
    if votes is not None and noise.votes > 1 and noise.scores == "self_validation" and noise.detector == "embedding_lr":
        metrics["warnings"].append("relabel_vote with self_validation scores of embedding_lr: every detector is the "
                                   "same fit (nothing in it is random), so the vote is one detector's flags")
    run.write_metrics(STEP, metrics)
    h = metrics["headline"]
    run.log(f"{STEP}: {h['flagged']} of {h['rows_scored']} rows flagged ({noise.action}: "
            f"{metrics['rows_removed']} removed, {metrics['rows_relabelled']} relabelled), F1 {h.get('f1', 'n/a')}")
    return metrics


def _cleaned(train: pd.DataFrame, in_scope: np.ndarray, p_yes: np.ndarray, acted: np.ndarray,
             votes: np.ndarray | None, action: str) -> pd.DataFrame:
    """The training table after the action on the ``acted`` rows (``relabel_vote`` flips them); scores and
    votes of the rows in scope carried along."""
    full_acted = np.zeros(len(train), dtype=bool)
    full_acted[in_scope] = acted
    full_p = np.full(len(train), np.nan)
    full_p[in_scope] = p_yes
    table = train.assign(noise_p_yes=full_p)
    if votes is not None:
        full_votes = np.zeros(len(train), dtype=np.int64)
        full_votes[in_scope] = votes
        table["noise_votes"] = full_votes
    return apply_action(table, full_acted, "relabel" if action == "relabel_vote" else action)


def _touched(action: str, acted: np.ndarray) -> dict[str, int]:
    """How many training rows the action removed and how many labels it flipped."""
    n = int(np.sum(acted))
    return {"rows_removed": n if action == "remove" else 0,
            "rows_relabelled": n if action in ("relabel", "relabel_vote") else 0}


def _vote_metrics(params: Params, votes: np.ndarray, acted: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
    noise = params.noise
    counts = np.bincount(votes.astype(np.int64), minlength=noise.votes + 1)
    out: dict[str, Any] = {
        "detectors": noise.votes, "k": vote_k(noise),
        "seeds": [noise_seed(params) + i for i in range(noise.votes)],
        "rows_by_votes": {str(v): int(c) for v, c in enumerate(counts)}, "relabelled": int(acted.sum()),
    }
    if truth is not None:  # the relabelled rows against the known flips
        out.update({k: v for k, v in evaluate_flags(acted, truth).items() if k != "flagged"})
    return out


def load(run: Run) -> NoiseResults:
    """The step's metrics, per-row scores, review queue and review precision, read from the run."""
    metrics = run.read_metrics(STEP)
    on = metrics.get("enabled", False)
    precision, note = review_results(run) if on else (pd.DataFrame(), "noise.enabled is false: nothing to review")
    return NoiseResults(
        metrics=metrics,
        scores=run.read_table("noise_scores") if on else pd.DataFrame(),
        review_queue=run.read_table("review_queue") if on else pd.DataFrame(),
        review_precision=precision,
        review_note=note,
    )


def scores_digest(run: Run) -> str:
    """sha256 of ``data/noise_scores.parquet``: verdicts record it, to tell when step 04 ran again since."""
    h = hashlib.sha256()
    with open(run.table_path("noise_scores"), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def review_results(run: Run) -> tuple[pd.DataFrame, str]:
    """The precision per level of the last ``qckit review import`` (empty when nothing is reviewed yet) and
    a sentence saying what it rests on."""
    if not run.metrics_path(REVIEW_METRICS).is_file():
        return pd.DataFrame(), (f"Nothing reviewed yet: `qckit review export {run.root}` writes a sheet of "
                                f"flagged rows to fill in; `qckit review import {run.root} SHEET` brings it back.")
    review = run.read_metrics(REVIEW_METRICS)
    if not review.get("reviewed"):
        return pd.DataFrame(), f"Nothing reviewed yet: the sheet imported from {review.get('file')} holds no verdict."
    unsure = f", {review['unsure']} unsure" if review.get("unsure") else ""
    note = (f"{review['reviewed']} rows reviewed ({review['wrong']} wrong labels, {review['correct']} right{unsure}) "
            f"in {review.get('file')}, imported {review.get('imported')}.")
    if review.get("noise_scores_sha256") != scores_digest(run):
        note += (" Step 04 has run again since: these verdicts and levels refer to its earlier flags; export a new "
                 "sheet to measure the current ones.")
    return pd.DataFrame(review["precision_by_level"]), note


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
