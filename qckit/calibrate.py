"""Calibration (step 06): F1-optimal thresholds, per-language thresholds, temperature scaling, ECE.

A predictions table (``predictions/<split>.parquet``) holds one row per pair with ``task, language,
query, label`` (Int8, missing on unlabelled rows), ``score`` (p(yes) in [0, 1]) and ``logit`` (the
log-odds of yes). A row is predicted positive when ``score >= threshold``. Thresholds are fitted on the
labelled dev rows, and every F1 is reported beside the F1 of predicting all-positive on the same rows
(:func:`all_positive_f1`): about 68% of real QC rows are positive, so that floor is near 0.81.

Array functions take the labels first and the scores second (as scikit-learn's metrics do); table
functions take the predictions table first. Options are keyword-only. scipy and scikit-learn are
imported inside the functions that use them, so importing this module stays light.

Example:
    >>> dev = pd.read_parquet("outputs/demo-1/predictions/dev.parquet")
    >>> metrics = calibrate(dev, per_language=True)
    >>> metrics["thresholds"], metrics["temperature"]
    ({'QC': 0.412, 'QI': 0.236}, {'QC': 1.31, 'QI': 0.94})
    >>> test_pred = apply_thresholds(test, metrics["thresholds"],
    ...                              language_thresholds=metrics["language_thresholds"])
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from qckit import TASKS
from qckit.audit import language_order
from qckit.features import normalise_queries

PAPER_THRESHOLDS = {"QC": 0.4, "QI": 0.2}
# logit(score) is infinite for a saturated score; |z| = 50 already means p = 1 - 2e-22
LOGIT_CLIP = 50.0

Thresholds = Mapping[str, float] | float
LanguageThresholds = Mapping[tuple[str, str], float] | Mapping[str, Mapping[str, float]]


# input checks ------------------------------------------------------------------------------------
def _check(labels: ArrayLike, values: ArrayLike | None = None, *, name: str = "scores"
           ) -> tuple[np.ndarray, np.ndarray]:
    """Labels as an int8 0/1 array (none missing) and ``values`` as a float array of the same length."""
    y = pd.Series(labels, copy=False).to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1 with none missing; drop unlabelled rows first")
    if values is None:
        return y.astype(np.int8), np.empty(0)
    v = pd.Series(values, copy=False).to_numpy(dtype=float, na_value=np.nan)
    if v.shape != y.shape:
        raise ValueError(f"{name} has {len(v)} values but labels has {len(y)}")
    if np.isnan(v).any():
        raise ValueError(f"{name} contain missing values")
    return y.astype(np.int8), v


def _probabilities(labels: ArrayLike, probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, p = _check(labels, probs, name="probs")
    if len(p) and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"probs must lie in [0, 1], got values in [{p.min():.3g}, {p.max():.3g}]")
    return y, p


def _require(preds: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in preds.columns]
    if missing:
        raise ValueError(f"predictions table lacks column(s) {missing}; it has {list(preds.columns)}")


def labelled(preds: pd.DataFrame) -> pd.DataFrame:
    """The rows of a predictions table that carry a label (the test split has none)."""
    _require(preds, ("task", "label", "score"))
    return preds[preds["label"].notna()]


def _tasks(preds: pd.DataFrame) -> list[str]:
    present = set(preds["task"])
    return [t for t in TASKS if t in present] + sorted(present - set(TASKS))


# F1 and the threshold sweep ----------------------------------------------------------------------
def f1_from_counts(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike) -> np.ndarray:
    """F1 of the positive class from confusion counts (vectorised); 0 where it is undefined.

    Example:
        >>> float(f1_from_counts(3, 1, 2))
        0.6666666666666666
    """
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    # 0 where there is nothing to score, as scikit-learn's f1_score(zero_division=0)
    return np.divide(2 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)


def f1_at(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """F1 of the positive class when rows with ``score >= threshold`` are predicted positive.

    Example:
        >>> f1_at([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], 0.5)
        0.8
    """
    y, s = _check(labels, scores)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    return float(f1_from_counts(tp, int(pred.sum()) - tp, int(y.sum()) - tp))


def all_positive_f1(labels: ArrayLike) -> float:
    """F1 of predicting every row positive: the floor every F1 is reported beside.

    Example:
        >>> all_positive_f1([1, 1, 0, 0])  # 2 * 2 / (2 * 2 + 2)
        0.6666666666666666
    """
    y, _ = _check(labels)
    positives = int(y.sum())
    return float(f1_from_counts(positives, len(y) - positives, 0))


def sweep_thresholds(labels: ArrayLike, scores: ArrayLike, *, grid: int | ArrayLike | None = None
                     ) -> pd.DataFrame:
    """Precision, recall and F1 at many thresholds, from one sort of the scores.

    Args:
        labels: 0/1 labels.
        scores: p(yes) per row; a row is positive when ``score >= threshold``.
        grid: None: every distinct score (the exact curve: F1 only changes there); an int n: n evenly
            spaced thresholds on [0, 1] (for figures); an array: those thresholds.

    Returns:
        ``threshold, precision, recall, f1, tp, fp, fn``, thresholds ascending. Precision is 0 where
        nothing is predicted positive (scikit-learn's ``zero_division=0``).

    Example:
        >>> sweep_thresholds([0, 1, 1], [0.2, 0.4, 0.9])["f1"].round(3).tolist()
        [0.8, 1.0, 0.667]
    """
    y, s = _check(labels, scores)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    if grid is None:
        thresholds = np.unique(s)
    elif np.ndim(grid) == 0:
        thresholds = np.linspace(0.0, 1.0, int(grid))
    else:
        thresholds = np.sort(np.asarray(grid, dtype=float))
    below = np.searchsorted(s_sorted, thresholds, side="left")  # rows scored under each threshold
    positives = int(y.sum())
    tp = positives - np.concatenate([[0], np.cumsum(y[order], dtype=np.int64)])[below]
    predicted = len(s) - below
    precision = np.divide(tp, predicted, out=np.zeros(len(thresholds)), where=predicted > 0)
    recall = tp / positives if positives else np.zeros(len(thresholds))
    return pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall,
                         "f1": f1_from_counts(tp, predicted - tp, positives - tp),
                         "tp": tp, "fp": predicted - tp, "fn": positives - tp})


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of True values."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def best_threshold(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """The F1-optimal threshold and its F1.

    F1 is a step function of the threshold: it is constant between two neighbouring distinct scores,
    so the optimum is an interval of thresholds (a plateau), not a point. This returns the midpoint of
    the best plateau, which keeps the largest margin to the scores on either side of it: with
    negatives at 0.1, 0.2 and positives at 0.7, 0.8 every threshold in (0.2, 0.7] scores F1 1 and the
    answer is 0.45. Neighbouring candidates with the same F1 join into one plateau; when several
    separate plateaus tie, the widest wins (the lowest of equally wide ones). The lowest plateau
    starts at 0 (every row positive). With no positive label every threshold scores 0.

    Example:
        >>> best_threshold([0, 0, 1, 1], [0.1, 0.25, 0.75, 0.9])
        (0.5, 1.0)
    """
    sweep = sweep_thresholds(labels, scores)
    if sweep.empty:
        raise ValueError("no labelled rows to fit a threshold on")
    t, f1 = sweep["threshold"].to_numpy(), sweep["f1"].to_numpy()
    best = f1.max()
    starts, ends = _runs(np.isclose(f1, best, rtol=0.0, atol=1e-12))
    # candidate k predicts exactly as every threshold in (t[k-1], t[k]]
    lower = np.concatenate([[min(0.0, t[0])], t[:-1]])
    i = int(np.argmax(t[ends] - lower[starts]))
    lo, hi = lower[starts[i]], t[ends[i]]
    mid = (lo + hi) / 2
    return float(mid if mid > lo else hi), float(best)


# thresholds on a predictions table ----------------------------------------------------------------
def fit_task_thresholds(preds: pd.DataFrame) -> dict[str, float]:
    """The F1-optimal threshold of each task (:func:`best_threshold`) on the labelled rows.

    Example:
        >>> fit_task_thresholds(dev)
        {'QC': 0.412, 'QI': 0.236}
    """
    data = labelled(preds)
    return {task: best_threshold(part["label"], part["score"])[0]
            for task, part in ((t, data[data["task"].eq(t)]) for t in _tasks(data))}


def language_threshold_table(preds: pd.DataFrame, *, min_support: int = 50,
                             task_thresholds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per (task, language): labelled rows, positives, and the threshold that language would use.

    A language gets its own F1-optimal threshold when it has at least ``min_support`` labelled rows
    of both classes (with one class only, every threshold ties or predicts it all); otherwise it falls
    back to its task's threshold (``source`` says which).

    Args:
        preds: predictions table.
        min_support: labelled rows a language needs for its own threshold.
        task_thresholds: the fallback per task; None fits them on ``preds``.

    Example:
        >>> language_threshold_table(dev, min_support=50)[["task", "language", "threshold", "source"]]
    """
    _require(preds, ("task", "language", "label", "score"))
    data = labelled(preds)
    fallback = dict(task_thresholds) if task_thresholds is not None else fit_task_thresholds(data)
    records = []
    for (task, lang), part in data.groupby(["task", "language"], sort=False):
        rows, positives = len(part), int(part["label"].sum())
        own = rows >= min_support and 0 < positives < rows
        if not own and task not in fallback:
            raise ValueError(f"no task threshold for {task!r} to fall back to (language {lang!r})")
        threshold = best_threshold(part["label"], part["score"])[0] if own else fallback[task]
        records.append({"task": task, "language": lang, "rows": rows, "positives": positives,
                        "threshold": threshold, "source": "language" if own else "task"})
    table = pd.DataFrame(records, columns=["task", "language", "rows", "positives", "threshold", "source"])
    return _sort(table)


def fit_language_thresholds(preds: pd.DataFrame, *, min_support: int = 50,
                            task_thresholds: Mapping[str, float] | None = None
                            ) -> dict[tuple[str, str], float]:
    """Thresholds keyed by (task, language), the task's own where support is short.

    See :func:`language_threshold_table` for the rule.

    Example:
        >>> fit_language_thresholds(dev, min_support=50, task_thresholds={"QC": 0.4, "QI": 0.2})
        {('QC', 'en'): 0.43, ('QC', 'de'): 0.4, ...}
    """
    table = language_threshold_table(preds, min_support=min_support, task_thresholds=task_thresholds)
    return {(r.task, r.language): float(r.threshold) for r in table.itertuples()}


def _flat(language_thresholds: LanguageThresholds) -> dict[tuple[str, str], float]:
    """(task, language) -> threshold, from either that form or the nested {task: {language: t}}."""
    out: dict[tuple[str, str], float] = {}
    for key, value in language_thresholds.items():
        if isinstance(value, Mapping):
            out.update({(key, lang): float(t) for lang, t in value.items()})
        else:
            out[tuple(key)] = float(value)
    return out


def row_thresholds(preds: pd.DataFrame, thresholds: Thresholds, *,
                   language_thresholds: LanguageThresholds | None = None) -> np.ndarray:
    """The threshold each row is judged at: its (task, language) one if given, else its task's."""
    if isinstance(thresholds, Mapping):
        missing = sorted(set(preds["task"]) - set(thresholds))
        if missing:
            raise ValueError(f"no threshold for task(s) {missing}; thresholds given for {sorted(thresholds)}")
        out = preds["task"].map(thresholds).to_numpy(dtype=float)
    else:
        out = np.full(len(preds), float(thresholds))
    if language_thresholds:
        flat = _flat(language_thresholds)
        table = pd.Series(list(flat.values()), index=pd.MultiIndex.from_tuples(list(flat)))
        own = table.reindex(pd.MultiIndex.from_arrays([preds["task"], preds["language"]])).to_numpy(float)
        out = np.where(np.isnan(own), out, own)
    return out


def apply_thresholds(preds: pd.DataFrame, thresholds: Thresholds, *,
                     language_thresholds: LanguageThresholds | None = None) -> np.ndarray:
    """0/1 predictions: ``score >= threshold`` with each row's threshold (see :func:`row_thresholds`).

    Args:
        preds: predictions table (``task``, ``score``; ``language`` when language thresholds are given).
        thresholds: one per task, or a single float for every row.
        language_thresholds: (task, language) -> threshold, or ``{task: {language: t}}`` as stored in
            ``metrics/06_calibration.json``; languages not listed use their task's threshold.

    Example:
        >>> apply_thresholds(test, {"QC": 0.4, "QI": 0.2})
        array([1, 0, 1, ...], dtype=int8)
    """
    _require(preds, ("task", "score", "language") if language_thresholds else ("task", "score"))
    threshold = row_thresholds(preds, thresholds, language_thresholds=language_thresholds)
    return (preds["score"].to_numpy(dtype=float) >= threshold).astype(np.int8)


def _sort(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in task order, then the pooled "all" row, then languages in the project's order."""
    if table.empty:
        return table.reset_index(drop=True)
    langs = ["all", *language_order(set(table["language"]) - {"all"})]
    key = {"task": {t: i for i, t in enumerate(TASKS)}, "language": {x: i for i, x in enumerate(langs)}}
    return table.sort_values(["task", "language"], key=lambda c: c.map(key[c.name]).fillna(len(key[c.name])),
                             kind="stable").reset_index(drop=True)


def query_folds(queries: pd.Series, *, folds: int = 5, seed: int = 13) -> np.ndarray:
    """Fold number per row such that all rows of one query share a fold.

    A query's rows are near-duplicates of each other; with them on both sides of a split a threshold
    is scored partly on the rows it was fitted on. Queries are compared normalised (``qckit.features``),
    as every other fold split of the kit does, and dealt round-robin in a seeded random order, so folds
    hold about equally many queries.
    """
    codes, uniques = pd.factorize(normalise_queries(queries))
    rank = np.random.default_rng(seed).permutation(len(uniques))
    return rank[codes] % folds


def cross_validate_language_thresholds(preds: pd.DataFrame, *, folds: int = 5, seed: int = 13,
                                       min_support: int = 50) -> pd.DataFrame:
    """Held-out F1 of task thresholds against per-language thresholds, folds grouped by query.

    In each fold both kinds of threshold are fitted on the other folds and applied to this one; the
    held-out predictions of all folds are pooled and scored per task and language. A per-language
    threshold is only worth using when ``gain`` is positive on the task's ``all`` row.

    Returns:
        ``task, language`` (``all`` = the whole task), ``rows, positives, f1_task_threshold,
        f1_language_threshold, gain`` (their difference), ``own_threshold_share`` (share of the rows
        judged by their own language's threshold rather than the fallback) and ``all_positive_f1``.

    Example:
        >>> cross_validate_language_thresholds(dev, folds=5, min_support=50).query("language == 'all'")
    """
    _require(preds, ("task", "language", "query", "label", "score"))
    data = labelled(preds).reset_index(drop=True)
    fold = query_folds(data["query"], folds=folds, seed=seed)
    task_pred = np.zeros(len(data), np.int8)
    lang_pred = np.zeros(len(data), np.int8)
    own = np.zeros(len(data), bool)
    for k in range(folds):
        held = fold == k
        if not held.any() or held.all():
            continue
        fitted = data[~held]
        task_thr = fit_task_thresholds(fitted)
        table = language_threshold_table(fitted, min_support=min_support, task_thresholds=task_thr)
        table = table[table["source"].eq("language")]
        lang_thr = {(r.task, r.language): r.threshold for r in table.itertuples()}
        part = data[held]
        task_pred[held] = apply_thresholds(part, task_thr)
        lang_pred[held] = apply_thresholds(part, task_thr, language_thresholds=lang_thr)
        own[held] = pd.MultiIndex.from_arrays([part["task"], part["language"]]).isin(list(lang_thr))
    scored = data[["task", "language", "label"]].assign(task_pred=task_pred, lang_pred=lang_pred, own=own)
    groups = [("all", scored)] + list(scored.groupby("language", sort=False))
    records = [_cv_record(task, lang, part[part["task"].eq(task)])
               for task in _tasks(scored) for lang, part in groups if part["task"].eq(task).any()]
    return _sort(pd.DataFrame(records))


def held_out_threshold_predictions(part: pd.DataFrame, *, folds: int = 5, seed: int = 13) -> np.ndarray:
    """0/1 predictions of one task's rows, each fold judged at the threshold fitted on the other folds.

    The F1 of these predictions is an honest estimate of dev F1 at a tuned threshold: no row's label
    helps choose the threshold it is judged by (the F1 at the threshold fitted on all of dev is not).
    Folds are grouped by query; a single fold (one query) falls back to 0.5.
    """
    y, s = part["label"].to_numpy(dtype=int), part["score"].to_numpy(dtype=float)
    fold = query_folds(part["query"], folds=folds, seed=seed) if "query" in part else np.zeros(len(part), int)
    pred = (s >= 0.5).astype(np.int8)
    for k in np.unique(fold):
        held = fold == k
        if held.all():
            break
        threshold, _ = best_threshold(y[~held], s[~held])
        pred[held] = s[held] >= threshold
    return pred


def _cv_record(task: str, language: str, part: pd.DataFrame) -> dict[str, Any]:
    y = part["label"].to_numpy(dtype=int)
    f1_task = _f1_of(y, part["task_pred"].to_numpy())
    f1_lang = _f1_of(y, part["lang_pred"].to_numpy())
    return {"task": task, "language": language, "rows": len(y), "positives": int(y.sum()),
            "f1_task_threshold": f1_task, "f1_language_threshold": f1_lang, "gain": f1_lang - f1_task,
            "own_threshold_share": float(part["own"].mean()), "all_positive_f1": all_positive_f1(y)}


def _f1_of(y: np.ndarray, pred: np.ndarray) -> float:
    tp = int(np.sum((pred == 1) & (y == 1)))
    return float(f1_from_counts(tp, int(np.sum(pred == 1)) - tp, int(np.sum(y == 1)) - tp))


# temperature scaling and calibration error --------------------------------------------------------
def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # -log sigmoid(z) for positives, -log(1 - sigmoid(z)) for negatives, without overflow
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def log_loss_at(logits: ArrayLike, labels: ArrayLike, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under ``sigmoid(logit / temperature)``."""
    y, z = _check(labels, logits, name="logits")
    return _nll(np.clip(z, -LOGIT_CLIP, LOGIT_CLIP), y, temperature)


def fit_temperature(logits: ArrayLike, labels: ArrayLike, *, bounds: tuple[float, float] = (0.01, 100.0)
                    ) -> float:
    """Temperature T minimising the log loss of ``sigmoid(logit / T)`` (Guo et al., 2017).

    One parameter rescales every logit: T > 1 softens an over-confident model, T < 1 sharpens an
    under-confident one; the ranking, and so any F1 at a matching threshold, is unchanged. The mean
    NLL is convex in 1/T, hence unimodal in log T, which is searched with scipy's bounded Brent method
    (log T keeps T positive and treats halving and doubling alike). This is the same fit as scikit-
    learn's unpenalised ``LogisticRegression(fit_intercept=False)`` on the logit feature (coefficient
    1/T). If the logits carry no signal, or point the wrong way, T runs to the upper bound (every
    probability near 0.5). Infinite logits (saturated scores) are clipped to +-50.

    Args:
        logits: log-odds of yes per row (the ``logit`` column); note: logits first, then labels.
        labels: 0/1 labels.
        bounds: the range searched for T.

    Example:
        >>> t = fit_temperature(dev["logit"], dev["label"])
        >>> calibrated = apply_temperature(dev["logit"], t)
    """
    from scipy.optimize import minimize_scalar

    y, z = _check(labels, logits, name="logits")
    if not len(y):
        raise ValueError("no labelled rows to fit a temperature on")
    z = np.clip(z, -LOGIT_CLIP, LOGIT_CLIP)
    result = minimize_scalar(lambda log_t: _nll(z, y, np.exp(log_t)), bounds=np.log(bounds),
                             method="bounded", options={"xatol": 1e-7})
    return float(np.exp(result.x))


def apply_temperature(logits: ArrayLike, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logit / temperature)``.

    Example:
        >>> apply_temperature([0.0, 2.0], 2.0).round(3)
        array([0.5  , 0.731])
    """
    from scipy.special import expit

    z = np.clip(np.asarray(logits, dtype=float), -LOGIT_CLIP, LOGIT_CLIP)
    return expit(z / temperature)


def reliability_table(labels: ArrayLike, probs: ArrayLike, *, n_bins: int = 15,
                      strategy: Literal["uniform", "quantile"] = "uniform") -> pd.DataFrame:
    """Observed positive rate against mean predicted probability per probability bin.

    The bins are those of ``sklearn.calibration.calibration_curve`` (same edges, a probability on an
    edge goes to the lower bin, empty bins left out), so ``fraction_positive`` and ``mean_predicted``
    equal its ``prob_true`` and ``prob_pred``; this adds the row count each bin needs for the ECE.

    Args:
        labels: 0/1 labels.
        probs: predicted probabilities in [0, 1].
        n_bins: number of bins.
        strategy: ``"uniform"``: equal-width bins on [0, 1]; ``"quantile"``: equally filled bins.

    Returns:
        ``bin, lower, upper, rows, mean_predicted, fraction_positive, gap`` (fraction - mean).

    Example:
        >>> reliability_table(dev["label"], dev["score"], n_bins=10)
    """
    y, p = _probabilities(labels, probs)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 100, n_bins + 1)) if len(p) else np.linspace(0, 1, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    ids = np.searchsorted(edges[1:-1], p)
    rows = np.bincount(ids, minlength=n_bins)
    kept = np.flatnonzero(rows)
    predicted = np.bincount(ids, weights=p, minlength=n_bins)[kept] / rows[kept]
    observed = np.bincount(ids, weights=y, minlength=n_bins)[kept] / rows[kept]
    return pd.DataFrame({"bin": kept, "lower": edges[kept], "upper": edges[kept + 1], "rows": rows[kept],
                         "mean_predicted": predicted, "fraction_positive": observed,
                         "gap": observed - predicted})


def expected_calibration_error(labels: ArrayLike, probs: ArrayLike, *, n_bins: int = 15,
                               strategy: Literal["uniform", "quantile"] = "uniform") -> float:
    """Expected calibration error: the row-weighted mean |observed rate - mean probability| over bins.

    ``ECE = sum_b (n_b / n) * |fraction_positive_b - mean_predicted_b|`` over the bins of
    :func:`reliability_table`. 0 for a perfectly calibrated model; NaN without rows.

    Example:
        >>> round(expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.8, 0.8], n_bins=5), 6)
        0.25
    """
    table = reliability_table(labels, probs, n_bins=n_bins, strategy=strategy)
    if table.empty:
        return float("nan")
    return float(np.sum(table["rows"] * table["gap"].abs()) / table["rows"].sum())


# uncertainty ---------------------------------------------------------------------------------------
def bootstrap_f1(labels: ArrayLike, preds: ArrayLike, *, n: int = 1000, seed: int = 13, ci: float = 0.95
                 ) -> tuple[float, float, float]:
    """F1 with a percentile bootstrap confidence interval.

    Resampling rows with replacement only changes how many rows land in each confusion cell, and
    those four counts of a resample follow a multinomial with the observed cell shares. Drawing the
    counts directly is the same bootstrap at O(n) instead of O(n * rows): 1000 resamples of any
    number of rows take well under a millisecond.

    Args:
        labels: 0/1 labels.
        preds: 0/1 predictions.
        n: bootstrap resamples.
        seed: seed of the resampling.
        ci: coverage of the interval.

    Returns:
        (F1 on all rows, lower bound, upper bound); NaNs without rows.

    Example:
        >>> f1, lo, hi = bootstrap_f1(dev["label"], apply_thresholds(dev, {"QC": 0.4, "QI": 0.2}))
    """
    y, p = _check(labels, preds, name="preds")
    if not np.isin(p, (0.0, 1.0)).all():
        raise ValueError("preds must be 0/1 predictions (apply a threshold to the scores first)")
    if not len(y):
        return float("nan"), float("nan"), float("nan")
    tp = int(np.sum((p == 1) & (y == 1)))
    fp, fn = int(p.sum()) - tp, int(y.sum()) - tp
    cells = np.array([tp, fp, fn, len(y) - tp - fp - fn], dtype=float)
    draws = np.random.default_rng(seed).multinomial(len(y), cells / len(y), size=n)
    f1 = f1_from_counts(draws[:, 0], draws[:, 1], draws[:, 2])
    lo, hi = np.quantile(f1, [(1 - ci) / 2, (1 + ci) / 2])
    return float(f1_from_counts(tp, fp, fn)), float(lo), float(hi)


# step 06 -------------------------------------------------------------------------------------------
def sweep_by_task(preds: pd.DataFrame, *, grid: int | ArrayLike | None = 501) -> dict[str, pd.DataFrame]:
    """:func:`sweep_thresholds` per task on the labelled rows (the input of the F1-vs-threshold figure).

    Example:
        >>> plots_eval.f1_threshold_curve(sweep_by_task(dev), metrics["thresholds"], PAPER_THRESHOLDS)
    """
    data = labelled(preds)
    return {task: sweep_thresholds(part["label"], part["score"], grid=grid)
            for task, part in ((t, data[data["task"].eq(t)]) for t in _tasks(data))}


def reliability_by_task(preds: pd.DataFrame, temperatures: Mapping[str, float], *, n_bins: int = 15,
                        strategy: Literal["uniform", "quantile"] = "uniform") -> pd.DataFrame:
    """Reliability tables before (``score``) and after temperature scaling (``logit / T``), per task.

    Returns:
        The columns of :func:`reliability_table` plus ``task`` and ``stage`` (``before`` / ``after``).

    Example:
        >>> plots_eval.reliability_diagram(reliability_by_task(dev, metrics["temperature"]))
    """
    _require(preds, ("task", "label", "score", "logit"))
    data = labelled(preds)
    frames = []
    for task in _tasks(data):
        part = data[data["task"].eq(task)]
        stages = {"before": part["score"], "after": apply_temperature(part["logit"], temperatures[task])}
        for stage, probs in stages.items():
            table = reliability_table(part["label"], probs, n_bins=n_bins, strategy=strategy)
            frames.append(table.assign(task=task, stage=stage))
    columns = ["task", "stage", "bin", "lower", "upper", "rows", "mean_predicted", "fraction_positive", "gap"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _held_out_calibrated(part: pd.DataFrame, *, folds: int, seed: int) -> np.ndarray:
    """Each row's probability under a temperature fitted on the other query-grouped folds."""
    fold = query_folds(part["query"], folds=folds, seed=seed) if "query" in part else np.zeros(len(part), int)
    y, z = part["label"].to_numpy(dtype=int), part["logit"].to_numpy(dtype=float)
    out = np.full(len(part), np.nan)
    for k in np.unique(fold):
        held = fold == k
        if held.all():  # a single fold: nothing to fit on, so no held-out figure
            return out
        out[held] = apply_temperature(z[held], fit_temperature(z[~held], y[~held]))
    return out


def _task_summary(part: pd.DataFrame, threshold: float, paper: float | None, *, n_bins: int,
                  n_bootstrap: int, ci: float, seed: int, folds: int) -> dict[str, Any]:
    from scipy.special import expit, logit

    y, s = part["label"].to_numpy(dtype=int), part["score"].to_numpy(dtype=float)
    pred = (s >= threshold).astype(int)
    f1, lo, hi = bootstrap_f1(y, pred, n=n_bootstrap, seed=seed, ci=ci)
    tp = int(np.sum(pred & y))
    summary: dict[str, Any] = {
        "rows": len(y), "positives": int(y.sum()), "threshold": threshold,
        "f1": f1, "f1_ci": [lo, hi],
        "precision": tp / max(int(pred.sum()), 1), "recall": tp / max(int(y.sum()), 1),
        "f1_at_0.5": f1_at(y, s, 0.5), "paper_threshold": paper, "f1_at_paper": None, "f1_at_paper_ci": None,
        "all_positive_f1": all_positive_f1(y),
    }
    cv_f1, cv_lo, cv_hi = bootstrap_f1(y, held_out_threshold_predictions(part, folds=folds, seed=seed),
                                       n=n_bootstrap, seed=seed, ci=ci)
    summary.update({"f1_held_out_threshold": cv_f1, "f1_held_out_threshold_ci": [cv_lo, cv_hi]})
    if paper is not None:
        f1_p, lo_p, hi_p = bootstrap_f1(y, (s >= paper).astype(int), n=n_bootstrap, seed=seed, ci=ci)
        summary.update({"f1_at_paper": f1_p, "f1_at_paper_ci": [lo_p, hi_p]})
    if "logit" in part:
        z = part["logit"].to_numpy(dtype=float)
        t = fit_temperature(z, y)
        held_out = _held_out_calibrated(part, folds=folds, seed=seed)
        summary.update({
            "temperature": t,
            # the same decision boundary on the calibrated scale (exact when score = sigmoid(logit))
            "threshold_calibrated": float(expit(logit(threshold) / t)),
            "ece_before": expected_calibration_error(y, s, n_bins=n_bins),
            "ece_after": expected_calibration_error(y, apply_temperature(z, t), n_bins=n_bins),
            "ece_after_held_out": (None if np.isnan(held_out).any()
                                   else expected_calibration_error(y, held_out, n_bins=n_bins)),
            "log_loss_before": log_loss_at(z, y), "log_loss_after": log_loss_at(z, y, t),
        })
    return summary


def calibrate(preds: pd.DataFrame, *, paper_thresholds: Mapping[str, float] | None = None,
              per_language: bool = False, min_support: int = 50, seed: int = 13, n_bins: int = 15,
              n_bootstrap: int = 1000, ci: float = 0.95, folds: int = 5) -> dict[str, Any]:
    """Everything step 06 writes to ``metrics/06_calibration.json``, from the labelled dev predictions.

    Args:
        preds: dev predictions table (unlabelled rows are ignored).
        paper_thresholds: fixed thresholds reported beside the fitted ones; None: QC 0.4, QI 0.2.
        per_language: also fit per-language thresholds and cross-validate them against the task's.
        min_support: labelled rows (of both classes) a language needs for its own threshold.
        seed: seed of the bootstrap and of the query-grouped folds.
        n_bins: bins of the expected calibration error (uniform on [0, 1]).
        n_bootstrap: bootstrap resamples for the F1 intervals.
        ci: coverage of the intervals.
        folds: query-grouped folds for the held-out comparisons.

    Returns:
        ``thresholds`` (task -> threshold on ``score``), ``language_thresholds`` (task -> language ->
        threshold, only languages with their own; None unless ``per_language``), ``temperature``
        (task -> T), ``paper_thresholds``, ``tasks`` (task -> rows, positives, threshold, f1, f1_ci,
        f1_held_out_threshold(_ci) (each query-grouped fold at the threshold of the others), precision,
        recall, f1_at_0.5, paper_threshold, f1_at_paper(_ci), all_positive_f1,
        temperature, threshold_calibrated, ece_before, ece_after, ece_after_held_out, log_loss_before /
        _after, and with ``per_language`` the language table and its cross-validation),
        ``settings`` and ``headline`` (at most eight scalars).

    Example:
        >>> metrics = calibrate(dev, per_language=True, min_support=50)
        >>> metrics["tasks"]["QC"]["f1"], metrics["tasks"]["QC"]["all_positive_f1"]
    """
    paper = dict(PAPER_THRESHOLDS if paper_thresholds is None else paper_thresholds)
    data = labelled(preds)
    if data.empty:
        raise ValueError("no labelled rows: calibration needs the labelled dev predictions")
    thresholds = fit_task_thresholds(data)
    options = {"n_bins": n_bins, "n_bootstrap": n_bootstrap, "ci": ci, "seed": seed, "folds": folds}
    tasks = {task: _task_summary(data[data["task"].eq(task)], thresholds[task], paper.get(task), **options)
             for task in thresholds}
    language = None
    if per_language:
        table = language_threshold_table(data, min_support=min_support, task_thresholds=thresholds)
        cv = cross_validate_language_thresholds(data, folds=folds, seed=seed, min_support=min_support)
        own = table[table["source"].eq("language")]
        language = {task: {r.language: float(r.threshold) for r in own[own["task"].eq(task)].itertuples()}
                    for task in thresholds}
        for task in thresholds:
            tasks[task]["language_thresholds"] = _records(table[table["task"].eq(task)])
            tasks[task]["language_threshold_cv"] = _records(cv[cv["task"].eq(task)])
    metrics = {
        "thresholds": thresholds, "language_thresholds": language,
        "temperature": {task: s["temperature"] for task, s in tasks.items() if "temperature" in s},
        "paper_thresholds": paper, "tasks": tasks,
        "settings": {"per_language": per_language, "min_support": min_support, "seed": seed, **options},
    }
    metrics["headline"] = _headline(tasks)
    return metrics


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    # through pandas' JSON writer: numpy scalars become plain numbers and NaN becomes null

    return json.loads(table.to_json(orient="records", force_ascii=False, double_precision=15))


def _headline(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    for task, s in list(tasks.items())[:2]:  # four figures per task keeps it at eight
        headline[f"threshold_{task}"] = round(s["threshold"], 4)
        headline[f"f1_{task}"] = round(s["f1"], 4)
        headline[f"all_positive_f1_{task}"] = round(s["all_positive_f1"], 4)
        if s.get("ece_after") is not None:
            headline[f"ece_after_{task}"] = round(s["ece_after"], 4)
    return headline


def thresholds_from_metrics(metrics: Mapping[str, Any], *, per_language: bool | None = None
                            ) -> tuple[dict[str, float], dict[str, dict[str, float]] | None]:
    """The (task thresholds, language thresholds) that scoring and submission apply.

    Args:
        metrics: the contents of ``metrics/06_calibration.json``.
        per_language: None: use the language thresholds when they were fitted and held-out F1 gained
            from them on the task's rows (per task); True / False: always / never.

    Example:
        >>> task_thr, lang_thr = thresholds_from_metrics(run.read_metrics("06_calibration"))
        >>> apply_thresholds(test, task_thr, language_thresholds=lang_thr)
    """
    thresholds = {task: float(t) for task, t in metrics["thresholds"].items()}
    language = metrics.get("language_thresholds")
    if not language or per_language is False:
        return thresholds, None
    if per_language is None:
        language = {task: langs for task, langs in language.items() if _language_gain(metrics, task) > 0}
    return thresholds, language or None


def _language_gain(metrics: Mapping[str, Any], task: str) -> float:
    cv = metrics.get("tasks", {}).get(task, {}).get("language_threshold_cv") or []
    pooled = [r for r in cv if r.get("language") == "all"]
    return float(pooled[0]["gain"]) if pooled else 0.0
