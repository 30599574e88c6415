"""Step 04: find training labels that are probably wrong, and remove, relabel or queue them for review.

A detector gives every labelled row p(yes), the probability that the pair is relevant; a flag rule
compares it with the label; an action decides what the cleaned table does with flagged rows.

- **scores**: ``self_validation`` (the paper: fit on all rows, score the same rows; the model can
  memorise the noise it should find) or ``cross_validation`` (k folds grouped by query, every row scored
  by a model that never saw it, nor any other row of its query);
- **detectors**: ``embedding_lr`` (a logistic regression on frozen embeddings of query and target:
  ``[q, t, q*t, |q-t|, cos]``, plus the leaf category for QC; seconds on CPU) or ``finetuned`` (the
  step-05 trainer, ``qckit.heads.fit_and_score``, on a row budget);
- **flag rules**: ``threshold`` (the label's opposite is predicted with p >= threshold: the paper's
  confident disagreement), ``confident_learning`` (cleanlab's ``find_label_issues``), ``both`` (rows
  both rules flag: the default, the best F1 on the ``noise_detection`` benchmark);
- **actions**: ``remove`` (the paper), ``relabel`` (flip the label), ``review`` (flag only), or
  ``relabel_vote``: flip only the rows that at least ``k`` of several detectors flag, removing none. The
  detectors are the configured one re-seeded (``seed``, ``seed + 1``, ...): cross-validation draws other
  folds for each, so each row is scored by models fitted on other neighbours (``vote_scores``).

A person checks the flags with a review sheet: ``review_sample`` draws, per confidence level, a seeded
random sample of the flagged rows at or above it, and ``precision_by_level`` turns the verdicts (or the
known flips of injected noise) into the precision of the flags per level with a Wilson interval; the
sheet itself is written and read by ``qckit.review``.

Rows created by steps 02/03 (``origin`` translated / mined_negative) are scored but keep their labels
unless ``noise.flag_created`` is on: a mined negative was chosen *because* the embedder finds it close to
the query, so an embedding detector flags it by construction, and a translation repeats the judgement of
its source row. A translation therefore follows its source row's flag instead. Detectors learn from the
annotators' labels only (original and translated rows, ``annotated``), and a translation shares its
source's fold, so neither leaks an answer across folds.

Example:
    >>> qc = read_pairs("train_QC.jsonl")
    >>> noisy, flipped = inject_noise(qc, 0.1, seed=0)
    >>> fit_score = embedding_lr(detector_features(noisy), noisy.label, c=1.0)
    >>> p_yes = cross_validation_scores(noisy, fit_score, folds=5)
    >>> flags = find_noisy_labels(noisy.label, p_yes, rule="both", threshold=0.6)
    >>> evaluate_flags(flags, flipped)
    {'flagged': ..., 'noisy': ..., 'true_positives': ..., 'precision': ..., 'recall': ..., 'f1': ...}

The pipeline step is ``qckit.steps.noise``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from qckit import heads
from qckit.features import category_leaves, embed_column, embed_pairs, grouped_folds, pair_features, query_groups

if TYPE_CHECKING:
    from qckit.config import NoiseParams, Params

SCORES = ("cross_validation", "self_validation")
RULES = ("threshold", "confident_learning", "both")
ACTIONS = ("remove", "relabel", "review")
CLEANLAB_DEFAULT = "prune_by_noise_rate"
REVIEW_COLUMNS = ["rank", "id", "task", "language", "query", "target", "label", "p_yes", "confidence", "origin"]

# (positions of the rows to fit on, positions of the rows to score, a name for this fit) -> p(yes)
FitScore = Callable[[np.ndarray, np.ndarray, str], np.ndarray]


# ------------------------------------------------------------------------------------------ validation
def check_labels(labels: Iterable) -> np.ndarray:
    """Labels as an int array of 0/1; missing or other values are a ValueError."""
    arr = pd.Series(labels).to_numpy()
    if pd.isna(arr).any():
        raise ValueError("labels: missing values; score only labelled rows")
    arr = arr.astype(np.int64)
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"labels: expected 0 or 1, got {sorted(set(arr.tolist()) - {0, 1})[:5]}")
    return arr


def check_probs(p_yes: Iterable, n: int) -> np.ndarray:
    """p(yes) as a float array of length ``n`` within [0, 1]."""
    p = np.asarray(p_yes, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"p_yes: expected {n} probabilities, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_yes: expected probabilities within [0, 1] without missing values")
    return p


# ------------------------------------------------------------------------------------------ injection
def inject_noise(pairs: pd.DataFrame, rate: float, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Flip the labels of ``round(rate * n)`` rows per task and say which were flipped.

    Only labelled rows of origin ``original`` (all labelled rows when there is no ``origin`` column) are
    eligible; ``n`` counts them per task. Symmetric noise: positives and negatives flip at the same rate.

    Args:
        pairs: the pairs table (``task``, ``label``; ``origin`` optional).
        rate: share of eligible labels to flip, within [0, 1].
        seed: seed of the choice; the same seed flips the same rows.

    Returns:
        A copy of ``pairs`` with the labels flipped, and a boolean array marking the flipped rows.

    Example:
        >>> noisy, flipped = inject_noise(pairs, 0.1, seed=0)
        >>> (noisy.label != pairs.label).sum() == flipped.sum()
        True
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be within [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    eligible = pairs["label"].notna().to_numpy()
    if "origin" in pairs:
        eligible = eligible & (pairs["origin"].fillna("original") == "original").to_numpy()
    flipped = np.zeros(len(pairs), dtype=bool)
    tasks = pairs["task"].to_numpy() if "task" in pairs else np.zeros(len(pairs))
    for task in pd.unique(tasks):
        rows = np.flatnonzero(eligible & (tasks == task))
        flipped[rng.choice(rows, size=round(rate * len(rows)), replace=False)] = True
    noisy = pairs.copy()
    labels = noisy["label"].to_numpy().copy()
    labels[flipped] = 1 - labels[flipped]
    noisy["label"] = pd.array(labels, dtype=pairs["label"].dtype)
    return noisy, flipped


# ------------------------------------------------------------------------------------------ scores
def cross_validation_scores(pairs: pd.DataFrame, fit_score: FitScore, *, folds: int = 5, seed: int = 0,
                            fit_on: Iterable | None = None) -> np.ndarray:
    """Out-of-sample p(yes): each fold scored by a model fitted on the other folds (grouped by query).

    ``fit_on`` (a boolean mask) limits the rows a model learns from; every row is scored.
    """
    fit_mask = np.ones(len(pairs), dtype=bool) if fit_on is None else np.asarray(fit_on, dtype=bool)
    fold_of = grouped_folds(pairs, folds, seed=seed)
    p_yes = np.full(len(pairs), np.nan)
    for fold in np.unique(fold_of):
        test = np.flatnonzero(fold_of == fold)
        p_yes[test] = fit_score(np.flatnonzero((fold_of != fold) & fit_mask), test, f"fold-{fold}")
    return p_yes


def self_validation_scores(pairs: pd.DataFrame, fit_score: FitScore, *, fit_on: Iterable | None = None
                           ) -> np.ndarray:
    """In-sample p(yes), as in the paper: one model fitted on every row (of ``fit_on``) scores every row."""
    fit_mask = np.ones(len(pairs), dtype=bool) if fit_on is None else np.asarray(fit_on, dtype=bool)
    return np.asarray(fit_score(np.flatnonzero(fit_mask), np.arange(len(pairs)), "all"), dtype=np.float64)


def annotated(pairs: pd.DataFrame) -> np.ndarray:
    """Rows whose label an annotator gave: original rows and their translations, not mined negatives.

    Detectors learn from these only: a mined negative's label is a rule's guess (some are unlabelled
    positives), and the question is whether the annotators' labels hold.
    """
    if "origin" not in pairs:
        return np.ones(len(pairs), dtype=bool)
    return (pairs["origin"].fillna("original") != "mined_negative").to_numpy()


# ------------------------------------------------------------------------------------------ detectors
def detector_features(pairs: pd.DataFrame, *, model: str = "multilingual-e5-small",
                      cache_dir: str | Path | None = None, models_dir: str | Path | None = None) -> np.ndarray:
    """``pair_features`` of every row; QC rows (all rows must be of one task) add their leaf category."""
    q, t = embed_pairs(pairs, model=model, cache_dir=cache_dir, models_dir=models_dir)
    leaf = None
    if len(pairs) and (pairs["task"] == "QC").all():
        leaf = embed_column(category_leaves(pairs["target"]), "passage", model, cache_dir, models_dir)
    return pair_features(q, t, leaf)


LR_C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)
SELECTION_ROWS = 6000


def choose_lr_c(features: np.ndarray, labels: Iterable, groups: Iterable, *, grid: Iterable[float] = LR_C_GRID,
                seed: int = 0) -> float:
    """The regression strength with the lowest 3-fold grouped log-loss on the (noisy) labels.

    Strength is per mean loss (``C = c / rows``), so one value suits 1,000 rows and 100,000. At most
    ``SELECTION_ROWS`` rows (whole query groups) take part, to keep the choice to seconds.
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GroupKFold

    y, groups = check_labels(labels), np.asarray(groups, dtype=object)
    rows = np.arange(len(y))
    if len(y) > SELECTION_ROWS:
        rng = np.random.default_rng(seed)
        unique = np.array(sorted(set(groups.tolist())), dtype=object)
        keep = set(rng.permutation(unique)[: max(2, round(len(unique) * SELECTION_ROWS / len(y)))].tolist())
        rows = np.flatnonzero([g in keep for g in groups])
    if len(set(groups[rows].tolist())) < 3 or len(np.unique(y[rows])) < 2:
        return 3.0
    fit_score = embedding_lr(features[rows], y[rows], c=1.0, seed=seed)
    splits = list(GroupKFold(n_splits=3, shuffle=True, random_state=seed).split(rows, y[rows], groups[rows]))
    losses = {}
    for c in grid:
        fit_score.c = c
        p = np.empty(len(rows))
        for train, test in splits:
            p[test] = fit_score(train, test, "select")
        losses[c] = log_loss(y[rows], np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])
    return min(losses, key=losses.get)


def embedding_lr(features: np.ndarray, labels: Iterable, *, c: float | None = None, groups: Iterable | None = None,
                 seed: int = 0) -> FitScore:
    """Detector: a standardised, L2-regularised logistic regression on the pair features.

    Args:
        features: one row of features per pair (``pair_features``).
        labels: the (noisy) labels, 0/1.
        c: strength per mean loss (``C = c / training rows``; smaller: smoother probabilities); None:
            ``choose_lr_c`` on ``groups``.
        groups: query group of every row (``query_groups``), for choosing ``c``.
        seed: seed of the solver.

    Example:
        >>> fit_score = embedding_lr(pair_features(q, t), pairs.label, c=3.0)
        >>> p_yes = cross_validation_scores(pairs, fit_score)
    """
    y = check_labels(labels)
    X = np.asarray(features, dtype=np.float32)

    def fit_score(train: np.ndarray, score: np.ndarray, name: str) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if len(np.unique(y[train])) < 2:  # one class only: no model, its prior
            return np.full(len(score), float(y[train].mean()) if len(train) else 0.5)
        strength = fit_score.c / len(train)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=3000, random_state=seed))
        model.fit(X[train], y[train])
        return model.predict_proba(X[score])[:, 1]

    if c is None:
        c = choose_lr_c(X, y, np.arange(len(y)) if groups is None else groups, seed=seed)
    fit_score.c = c
    return fit_score


def finetuned(pairs: pd.DataFrame, params: Params, *, output_dir: str | Path,
              max_rows: int | None = None) -> FitScore:
    """Detector: the step-05 trainer (``qckit.heads.fit_and_score``) fine-tuned on at most ``max_rows``.

    Each fit writes its model under ``output_dir/<fold name>``.
    """
    def fit_score(train: np.ndarray, score: np.ndarray, name: str) -> np.ndarray:
        return np.asarray(heads.fit_and_score(pairs.iloc[train], pairs.iloc[score], params,
                                        output_dir=Path(output_dir) / name, max_rows=max_rows), dtype=np.float64)

    return fit_score


def score_pairs(pairs: pd.DataFrame, params: Params, *, scores: str | None = None,
                features: dict[str, np.ndarray] | None = None, output_dir: str | Path | None = None) -> np.ndarray:
    """p(yes) of every labelled row from the detector and score kind in ``params.noise``; one model per task.

    Args:
        pairs: the (noisy) training table; rows without a label get NaN.
        params: run parameters (``noise``, ``models``; ``training`` for the finetuned detector).
        scores: ``cross_validation`` or ``self_validation``; None: ``params.noise.scores``.
        features: embedding_lr: ``detector_features`` of each task's labelled rows, by task (from
            ``task_features``); None: embedded here.
        output_dir: where the finetuned detector writes its models.
    """
    noise = params.noise
    scores = scores or noise.scores
    if scores not in SCORES:
        raise ValueError(f"scores must be one of {SCORES}, got {scores!r}")
    seed = noise_seed(params)
    if noise.detector == "embedding_lr" and features is None:
        features = task_features(pairs, params)
    p_yes = np.full(len(pairs), np.nan)
    labelled = pairs["label"].notna().to_numpy()
    for task in pd.unique(pairs["task"]):
        rows = np.flatnonzero(labelled & (pairs["task"] == task).to_numpy())
        sub = pairs.iloc[rows].reset_index(drop=True)
        if noise.detector == "embedding_lr":
            fit_score = embedding_lr(features[task], sub["label"], c=noise.lr_c, groups=query_groups(sub), seed=seed)
        else:
            out = Path(output_dir or "noise-models") / f"{task}-{scores}"
            fit_score = finetuned(sub, params, output_dir=out, max_rows=noise.finetuned_rows)
        if scores == "cross_validation":
            p_yes[rows] = cross_validation_scores(sub, fit_score, folds=noise.folds, seed=seed, fit_on=annotated(sub))
        else:
            p_yes[rows] = self_validation_scores(sub, fit_score, fit_on=annotated(sub))
    return p_yes


def task_features(pairs: pd.DataFrame, params: Params) -> dict[str, np.ndarray]:
    """``detector_features`` of each task's labelled rows, with the run's embedder."""
    labelled = pairs["label"].notna().to_numpy()
    return {task: detector_features(pairs.loc[labelled & (pairs["task"] == task).to_numpy()],
                                    model=params.models.embedder, models_dir=params.models.cache_dir)
            for task in pd.unique(pairs["task"])}


def noise_seed(params: Params) -> int:
    return params.run.seed if params.noise.seed is None else params.noise.seed


def vote_k(noise: NoiseParams) -> int:
    """Detectors that must flag a row for ``relabel_vote`` to flip it: ``noise.vote_k``, else a majority."""
    return noise.vote_k if noise.vote_k is not None else noise.votes // 2 + 1


def vote_scores(pairs: pd.DataFrame, params: Params, *, first: np.ndarray | None = None,
                features: dict[str, np.ndarray] | None = None, output_dir: str | Path | None = None
                ) -> list[np.ndarray]:
    """p(yes) of every labelled row from each of ``noise.votes`` detectors: ``score_pairs`` with the seed
    ``noise_seed``, ``noise_seed + 1``, ... (new folds for cross_validation, new fits for ``finetuned``).

    Args:
        pairs, params, features: as for ``score_pairs`` (the embedding features are shared by every detector).
        first: detector 0's p(yes) when already computed (the step's own scores); None: computed here.
        output_dir: the finetuned detector writes detector ``i``'s models under ``output_dir/vote-<i>``.

    Example:
        >>> p_by_detector = vote_scores(pairs, params)
        >>> votes = sum(flag_rows(pairs, p, params.noise)["flagged"] for p in p_by_detector)
    """
    base = noise_seed(params)
    out = []
    for i in range(params.noise.votes):
        if i == 0 and first is not None:
            out.append(np.asarray(first, dtype=np.float64))
            continue
        seeded = params.model_copy(update={"noise": params.noise.model_copy(update={"seed": base + i})})
        out.append(score_pairs(pairs, seeded, features=features,
                               output_dir=None if output_dir is None else Path(output_dir) / f"vote-{i}"))
    return out


# ------------------------------------------------------------------------------------------ flag rules
def disagreement(labels: Iterable, p_yes: Iterable) -> np.ndarray:
    """The predicted probability of the class opposite to the label: how confidently the model disagrees."""
    y = check_labels(labels)
    p = check_probs(p_yes, len(y))
    return np.where(y == 1, 1.0 - p, p)


def flag_threshold(labels: Iterable, p_yes: Iterable, *, threshold: float = 0.5) -> np.ndarray:
    """The paper's rule: flag a row when the opposite of its label has p >= ``threshold``.

    Example:
        >>> flag_threshold([1, 0, 1], [0.05, 0.97, 0.6], threshold=0.9)
        array([ True,  True, False])
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be within (0, 1), got {threshold}")
    return disagreement(labels, p_yes) >= threshold


def flag_confident_learning(labels: Iterable, p_yes: Iterable, *,
                            filter_by: str = CLEANLAB_DEFAULT) -> np.ndarray:
    """Confident learning: cleanlab's ``find_label_issues`` on ``[1 - p_yes, p_yes]``.

    cleanlab estimates how many labels of each class are wrong (the confident joint, from per-class
    thresholds: the mean p of a class among the rows labelled with it) and flags that many rows,
    least confident first. Use out-of-sample probabilities.
    """
    from cleanlab.filter import find_label_issues

    y = check_labels(labels)
    p = check_probs(p_yes, len(y))
    if len(np.unique(y)) < 2:
        return np.zeros(len(y), dtype=bool)
    return np.asarray(find_label_issues(y, np.column_stack([1.0 - p, p]), filter_by=filter_by), dtype=bool)


def find_noisy_labels(labels: Iterable, p_yes: Iterable, *, rule: str = "both", threshold: float = 0.5,
                      filter_by: str = CLEANLAB_DEFAULT) -> np.ndarray:
    """Flag rows whose label is probably wrong, by ``rule``: ``threshold``, ``confident_learning`` or
    ``both`` (rows both rules flag: cleanlab's count, without its low-confidence calls).

    Example:
        >>> find_noisy_labels([1, 1, 0, 0], [0.02, 0.9, 0.1, 0.95], rule="threshold", threshold=0.9)
        array([ True, False, False,  True])
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "threshold":
        return flag_threshold(labels, p_yes, threshold=threshold)
    cl = flag_confident_learning(labels, p_yes, filter_by=filter_by)
    return cl if rule == "confident_learning" else cl & flag_threshold(labels, p_yes, threshold=threshold)


# ------------------------------------------------------------------------------------------ actions
def apply_action(pairs: pd.DataFrame, flagged: Iterable, action: str = "remove") -> pd.DataFrame:
    """The cleaned table: flagged rows removed, relabelled (0 <-> 1) or kept for review.

    Every kept row gets ``noise_flagged``; ``remove`` drops the flagged rows.

    Example:
        >>> apply_action(pairs, [True, False], "relabel").label.tolist()   # labels [1, 0] before
        [0, 0]
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != (len(pairs),):
        raise ValueError(f"flagged: expected {len(pairs)} values, got shape {flagged.shape}")
    out = pairs.copy()
    out["noise_flagged"] = flagged
    if action == "remove":
        return out.loc[~flagged].reset_index(drop=True)
    if action == "relabel":
        labels = out["label"].to_numpy().copy()
        labels[flagged] = 1 - labels[flagged]
        out["label"] = pd.array(labels, dtype=pairs["label"].dtype)
    return out


def follow_sources(pairs: pd.DataFrame, flagged: np.ndarray) -> np.ndarray:
    """Flags with every translation flagged when its source row is (it repeats the source's label)."""
    flagged = np.asarray(flagged, dtype=bool).copy()
    if "source_id" not in pairs or "origin" not in pairs:
        return flagged
    flagged_ids = set(pairs.loc[flagged, "id"].tolist())
    translated = (pairs["origin"] == "translated").to_numpy()
    flagged |= translated & pairs["source_id"].isin(flagged_ids).to_numpy()
    return flagged


# ------------------------------------------------------------------------------------------ measuring
def evaluate_flags(flagged: Iterable, truth: Iterable) -> dict[str, float]:
    """Precision, recall and F1 of flags against the rows known to be noisy.

    Example:
        >>> evaluate_flags([True, True, False], [True, False, False])["precision"]
        0.5
    """
    f, t = np.asarray(flagged, dtype=bool), np.asarray(truth, dtype=bool)
    tp = int((f & t).sum())
    precision = tp / f.sum() if f.sum() else 0.0
    recall = tp / t.sum() if t.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"flagged": int(f.sum()), "noisy": int(t.sum()), "true_positives": tp,
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def random_flags_expected(n_flagged: int, truth: Iterable) -> dict[str, float]:
    """What flagging ``n_flagged`` rows at random scores on average: precision = the noise rate."""
    t = np.asarray(truth, dtype=bool)
    precision = t.mean() if len(t) else 0.0
    recall = n_flagged / len(t) if len(t) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": int(n_flagged), "noisy": int(t.sum()), "true_positives": round(n_flagged * precision),
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def precision_recall_points(truth: Iterable, confidence: Iterable, *, points: int = 101) -> pd.DataFrame:
    """The precision-recall curve of flagging rows by falling ``confidence`` (``disagreement``),
    thinned to about ``points`` rows: ``flagged, threshold, precision, recall``."""
    t = np.asarray(truth, dtype=bool)
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    hits = np.cumsum(t[order])
    n = np.arange(1, len(t) + 1)
    keep = np.unique(np.linspace(0, len(t) - 1, min(points, len(t))).round().astype(int))
    conf = np.asarray(confidence, dtype=np.float64)[order]
    return pd.DataFrame({"flagged": n[keep], "threshold": conf[keep], "precision": hits[keep] / n[keep],
                         "recall": hits[keep] / max(1, t.sum())})


def compare_methods(labels: Iterable, p_by_scores: dict[str, np.ndarray], truth: Iterable, *,
                    threshold: float, filter_by: str = CLEANLAB_DEFAULT, groups: Iterable | None = None,
                    seconds: dict[str, float] | None = None) -> pd.DataFrame:
    """Every flag rule on every score kind, side by side, against the truth; plus random flagging.

    ``cleanlab_default`` is ``find_label_issues`` with its default ``filter_by``: the baseline. Rules run
    within each of ``groups`` (the task of each row), as the step applies them. ``seconds`` (scoring time
    per score kind) is added to each rule's own time.

    Example:
        >>> compare_methods(noisy.label, {"cross_validation": p_yes}, flipped, threshold=0.6)[["method", "f1"]]
    """
    y = check_labels(labels)
    groups = np.zeros(len(y)) if groups is None else np.asarray(groups)
    rows = []
    for kind, p in p_by_scores.items():
        p = check_probs(p, len(y))
        start = time.perf_counter()
        cl = _per_task(groups, y, p, lambda a, b: flag_confident_learning(a, b, filter_by=filter_by))
        cl_seconds = time.perf_counter() - start
        default = cl if filter_by == CLEANLAB_DEFAULT else _per_task(groups, y, p, flag_confident_learning)
        th = flag_threshold(y, p, threshold=threshold)
        base = (seconds or {}).get(kind, float("nan"))
        for rule, flags, extra in (("threshold", th, 0.0), ("confident_learning", cl, cl_seconds),
                                   ("both", th & cl, cl_seconds), ("cleanlab_default", default, cl_seconds)):
            rows.append({"method": f"{kind} · {rule}", "scores": kind, "rule": rule,
                         **evaluate_flags(flags, truth), "seconds": base + extra})
    if rows:
        n = max(r["flagged"] for r in rows)
        rows.append({"method": "random flags (as many as the most)", "scores": "-", "rule": "random",
                     **random_flags_expected(n, truth), "seconds": 0.0})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ review
REVIEW_LEVELS = (0.7, 0.8, 0.9)


def check_levels(levels: Iterable[float]) -> tuple[float, ...]:
    """Confidence levels, ascending, each within (0, 1), at least one and no repeats; else a ValueError."""
    out = tuple(float(v) for v in levels)
    if not out:
        raise ValueError("give at least one confidence level")
    bad = [v for v in out if not 0.0 < v < 1.0]
    if bad:
        raise ValueError(f"each level must be within (0, 1), got {bad[0]:g}")
    if len(set(out)) != len(out):
        raise ValueError("a level is given twice")
    return tuple(sorted(out))


def review_sample(confidence: Iterable[float], *, levels: Iterable[float] = REVIEW_LEVELS, per_level: int = 50,
                  seed: int = 0) -> pd.DataFrame:
    """Which flagged rows a person reviews: per confidence level, a seeded random sample of the rows at or
    above it.

    The rows are put in one seeded random order; level ``L`` takes the first ``per_level`` rows in that order
    whose confidence is at least ``L`` (all of them when fewer). So each level's rows are a simple random
    sample of the flagged rows at or above it, and the share of wrong labels among them estimates that
    level's precision without bias. The levels nest: a row drawn for 0.7 whose confidence is 0.93 is also
    among the rows drawn for 0.8 and 0.9, and is reviewed once for all three. Any first part of the order is
    again such a sample: a person who reviews from the top and stops anywhere leaves every level unbiased.

    Args:
        confidence: p(opposite of the label) of each flagged row (``disagreement``).
        levels: the confidence levels (the paper inspects 0.7, 0.8 and 0.9).
        per_level: rows drawn per level (the paper: 50).
        seed: seed of the order.

    Returns:
        One row per drawn row, in the random order: ``position`` (its index in ``confidence``) and
        ``levels`` (the levels it was drawn for, ascending).

    Example:
        >>> review_sample([0.95, 0.72, 0.85, 0.99], levels=[0.7, 0.9], per_level=2, seed=0)
           position      levels
        0         2       [0.7]
        1         0  [0.7, 0.9]
        2         3       [0.9]
    """
    conf = np.asarray(confidence, dtype=np.float64)
    levels = check_levels(levels)
    if per_level < 1:
        raise ValueError(f"per_level must be at least 1, got {per_level}")
    order = np.random.default_rng(seed).permutation(len(conf))
    drawn: dict[int, list[float]] = {}
    for level in levels:
        for pos in order[conf[order] >= level][:per_level]:
            drawn.setdefault(int(pos), []).append(level)
    positions = [int(p) for p in order if int(p) in drawn]
    return pd.DataFrame({"position": pd.array(positions, dtype="int64"), "levels": [drawn[p] for p in positions]})


def wilson_interval(successes: int, n: int, *, ci: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (scipy's ``binomtest``); NaNs when ``n`` is 0."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=ci, method="wilson")
    return float(interval.low), float(interval.high)


def precision_by_level(sample: pd.DataFrame, *, levels: Iterable[float] | None = None,
                       confidence: Iterable[float] | None = None, ci: float = 0.95) -> pd.DataFrame:
    """Precision of the flags per confidence level: the share of reviewed rows drawn for a level whose label
    is wrong, with a Wilson interval (which treats the level's rows as unlimited: when the sample is most of
    them, the true uncertainty is smaller than shown).

    Args:
        sample: ``review_sample``'s rows with ``wrong`` added: True (the given label is wrong), False (it is
            right) or missing (not reviewed, or the person could not tell). ``wrong`` may equally be the
            known flips of injected noise, to measure a detector the same way.
        levels: the levels to report; None: every level in ``sample.levels``.
        confidence: the confidence of every flagged row; adds ``flagged`` (rows at or above each level) and
            ``estimated_wrong`` (flagged times precision).
        ci: level of the interval.

    Returns:
        One row per level: ``level, sampled, reviewed, wrong, precision, low, high`` (NaN where nothing was
        reviewed) and, with ``confidence``, ``flagged, estimated_wrong``.

    Example:
        >>> sample = review_sample(conf, per_level=50, seed=0)
        >>> sample["wrong"] = flipped[flagged_rows][sample.position]
        >>> precision_by_level(sample, confidence=conf)
    """
    wrong = pd.Series(sample["wrong"] if len(sample) else [], dtype="boolean").to_numpy(dtype=np.float64,
                                                                                     na_value=np.nan)
    row_levels = [tuple(float(v) for v in lv) for lv in sample["levels"]] if len(sample) else []
    levels = check_levels(levels) if levels is not None else tuple(sorted({v for lv in row_levels for v in lv}))
    conf = None if confidence is None else np.asarray(confidence, dtype=np.float64)
    rows = []
    for level in levels:
        drawn = np.array([level in lv for lv in row_levels], dtype=bool)
        verdicts = wrong[drawn]
        reviewed, n_wrong = int((~np.isnan(verdicts)).sum()), int(np.nansum(verdicts))
        low, high = wilson_interval(n_wrong, reviewed, ci=ci)
        row = {"level": level, "sampled": int(drawn.sum()), "reviewed": reviewed, "wrong": n_wrong,
               "precision": n_wrong / reviewed if reviewed else float("nan"), "low": low, "high": high}
        if conf is not None:
            row["flagged"] = int((conf >= level).sum())
            row["estimated_wrong"] = row["flagged"] * row["precision"]
        rows.append(row)
    columns = ["level", "sampled", "reviewed", "wrong", "precision", "low", "high"]
    return pd.DataFrame(rows, columns=columns + (["flagged", "estimated_wrong"] if conf is not None else []))


# ------------------------------------------------------------------------------------------ tables
def flag_rates(pairs: pd.DataFrame, flagged: Iterable) -> pd.DataFrame:
    """Rows, flagged rows and flag rate per task and language (a detector that strips a language shows)."""
    df = pairs[["task", "language"]].copy()
    df["flagged"] = np.asarray(flagged, dtype=bool)
    out = df.groupby(["task", "language"], sort=True).agg(rows=("flagged", "size"), flagged=("flagged", "sum"))
    out["rate"] = out["flagged"] / out["rows"]
    return out.reset_index()


def review_queue(pairs: pd.DataFrame, p_yes: Iterable, flagged: Iterable) -> pd.DataFrame:
    """Flagged rows, most confident disagreement first: rank, id, task, language, query, target, label,
    p_yes, confidence (p of the opposite of the label), origin."""
    flagged = np.asarray(flagged, dtype=bool)
    df = pairs.loc[flagged].copy()
    df["p_yes"] = np.asarray(p_yes, dtype=np.float64)[flagged]
    df["confidence"] = disagreement(df["label"], df["p_yes"]) if len(df) else []
    if "origin" not in df:
        df["origin"] = "original"
    df = df.sort_values(["confidence", "id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    df["label"] = df["label"].astype("int64")
    return df[REVIEW_COLUMNS]


def read_noise_truth(path: str | Path) -> set[int]:
    """Ids of the flipped rows listed in a demo ``noise_truth.jsonl``."""
    ids = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            ids.add(int(json.loads(line)["id"]))
    return ids


# ------------------------------------------------------------------------------------------ the step
def _per_task(tasks: np.ndarray, labels: np.ndarray, p_yes: np.ndarray,
              rule: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """A flag rule applied within each task: cleanlab's noise estimates differ between QC and QI."""
    out = np.zeros(len(labels), dtype=bool)
    for task in pd.unique(tasks):
        rows = tasks == task
        out[rows] = rule(labels[rows], p_yes[rows])
    return out


def flag_rows(pairs: pd.DataFrame, p_yes: np.ndarray, noise: NoiseParams) -> dict[str, np.ndarray]:
    """The flags of ``noise.rule`` per task, with each rule's own flags beside it (``threshold``,
    ``confident_learning``), on the rows that may be flagged (``candidate``); translations follow."""
    candidate = np.ones(len(pairs), dtype=bool) if noise.flag_created else _original(pairs)
    tasks, labels = pairs["task"].to_numpy()[candidate], check_labels(pairs["label"])[candidate]
    p = p_yes[candidate]
    out = {"candidate": candidate}
    for rule in ("threshold", "confident_learning"):
        flags = np.zeros(len(pairs), dtype=bool)
        if rule == noise.rule or noise.rule == "both":
            flags[candidate] = _per_task(tasks, labels, p, lambda y, q, r=rule: find_noisy_labels(
                y, q, rule=r, threshold=noise.threshold, filter_by=noise.filter_by))
        out[rule] = flags
    own = out["threshold"] & out["confident_learning"] if noise.rule == "both" else out[noise.rule]
    out["flagged"] = own if noise.flag_created else follow_sources(pairs, own)
    return out


def compare_on(pairs: pd.DataFrame, p_by_scores: dict[str, np.ndarray], truth: np.ndarray, noise: NoiseParams,
               seconds: dict[str, float]) -> tuple[pd.DataFrame, dict[str, dict[str, list]]]:
    """Every rule on every score kind against ``truth``, over the original rows (created rows carry no
    truth); and the precision-recall curve of each score kind."""
    original = _original(pairs)
    labels = check_labels(pairs["label"])[original]
    t = np.asarray(truth, dtype=bool)[original]
    table = compare_methods(labels, {k: p[original] for k, p in p_by_scores.items()}, t,
                            threshold=noise.threshold, filter_by=noise.filter_by,
                            groups=pairs["task"].to_numpy()[original], seconds=seconds)
    curves = {k: precision_recall_points(t, disagreement(labels, p[original])).to_dict(orient="list")
              for k, p in p_by_scores.items()}
    return table, curves


def _original(pairs: pd.DataFrame) -> np.ndarray:
    if "origin" not in pairs:
        return np.ones(len(pairs), dtype=bool)
    return (pairs["origin"].fillna("original") == "original").to_numpy()


WEAK_AUC = 0.55


def detector_auc(pairs: pd.DataFrame, p_yes: np.ndarray) -> dict[str, float | None]:
    """ROC AUC of p(yes) against the (noisy) labels of the original rows, per task: near 0.5, the detector
    learned nothing and its flags are close to random (out-of-sample scores only say so honestly)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    original = _original(pairs)
    for task in pd.unique(pairs["task"]):
        rows = original & (pairs["task"] == task).to_numpy()
        y = check_labels(pairs["label"][rows])
        out[task] = round(float(roc_auc_score(y, p_yes[rows])), 4) if len(np.unique(y)) == 2 else None
    return out


def detector_warnings(auc: dict[str, float | None], kind: str) -> list[str]:
    weak = [f"{task} (AUC {a:.2f})" for task, a in auc.items() if a is not None and a < WEAK_AUC]
    if not weak:
        return []
    return [(f"the detector barely separates the labels for {', '.join(weak)} ({kind} scores): its flags are "
            "close to random; use a stronger detector or the action 'review'")]
