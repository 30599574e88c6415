"""Error analysis (step 07): metrics per task, language and slice, confident errors, run comparison.

Every function takes a predictions table first (``predictions/<split>.parquet``: ``task, language,
query, target, label, origin, score``) and the thresholds of step 06 as keyword-only arguments; rows
are predicted positive when ``score >= threshold`` (:func:`qckit.calibrate.apply_thresholds`). Only
labelled rows are scored. Every F1 comes beside ``all_positive_f1``, the F1 of predicting all rows of
the same group positive. Nothing here draws; the figures are in ``qckit.plots_eval``.

Example:
    >>> dev = pd.read_parquet("outputs/demo-1/predictions/dev.parquet")
    >>> thr, lang_thr = thresholds_from_metrics(run.read_metrics("06_calibration"))
    >>> metrics_by(dev, ["task", "language"], thresholds=thr, language_thresholds=lang_thr)
    >>> confident_errors(dev, thresholds=thr, k=5)
    >>> compare(["outputs/demo-1", "outputs/demo-2"]).loc["06_calibration.thresholds.QC"]
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit import TASKS
from qckit.audit import language_order
from qckit.calibrate import LanguageThresholds, Thresholds, f1_from_counts, labelled, row_thresholds
from qckit.data import category_depth, top_level
from qckit.runs import Run

# query length buckets in characters (comparable across scripts, unlike whitespace tokens)
LENGTH_EDGES = (0, 10, 20, 40, 80, np.inf)
LENGTH_LABELS = ("<10", "10-19", "20-39", "40-79", "80+")
SUPPORT_LEVELS = ("original", "translated only", "none")
COUNT_COLUMNS = ["tp", "fp", "fn", "tn"]


def add_predictions(preds: pd.DataFrame, *, thresholds: Thresholds,
                    language_thresholds: LanguageThresholds | None = None) -> pd.DataFrame:
    """The labelled rows with ``threshold`` (each row's) and ``pred`` (0/1) columns added.

    Example:
        >>> add_predictions(dev, thresholds={"QC": 0.4, "QI": 0.2})[["score", "threshold", "pred"]]
    """
    data = labelled(preds)
    threshold = row_thresholds(data, thresholds, language_thresholds=language_thresholds)
    pred = (data["score"].to_numpy(dtype=float) >= threshold).astype(np.int8)
    return data.assign(label=data["label"].astype(int), threshold=threshold, pred=pred)


def _order(table: pd.DataFrame) -> pd.DataFrame:
    """Tasks and languages in the project's order; other columns as they come."""
    keys = [c for c in ("task", "language") if c in table.columns]
    if not keys or table.empty:
        return table.reset_index(drop=True)
    ranks = {"task": {t: i for i, t in enumerate(TASKS)},
             "language": {x: i for i, x in enumerate(language_order(table.get("language", [])))}}
    return table.sort_values(keys, key=lambda c: c.map(ranks[c.name]).fillna(len(ranks[c.name])),
                             kind="stable").reset_index(drop=True)


def _score_groups(data: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Confusion counts, precision, recall, F1 and all-positive F1 per group of a predicted table."""
    y, p = data["label"].to_numpy(dtype=int), data["pred"].to_numpy(dtype=int)
    cells = pd.DataFrame({"tp": y & p, "fp": (1 - y) & p, "fn": y & (1 - p), "tn": (1 - y) & (1 - p)},
                         index=data.index)
    keys = [data[c] for c in by] if by else np.zeros(len(data), int)
    counts = cells.groupby(keys, sort=True, observed=True).sum()
    if not by:
        counts.index = pd.Index(["all"], name="group")
    tp, fp, fn, tn = (counts[c].to_numpy() for c in COUNT_COLUMNS)
    out = counts.reset_index() if by else counts.reset_index(drop=True)
    out.insert(len(by), "rows", tp + fp + fn + tn)
    out.insert(len(by) + 1, "positives", tp + fn)
    out["precision"] = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
    out["recall"] = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    out["f1"] = f1_from_counts(tp, fp, fn)
    out["all_positive_f1"] = f1_from_counts(tp + fn, fp + tn, 0)
    return _order(out)


def metrics_by(preds: pd.DataFrame, by: str | Sequence[str] = ("task", "language"), *,
               thresholds: Thresholds, language_thresholds: LanguageThresholds | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and confusion counts per group, beside the all-positive F1.

    Args:
        preds: predictions table; unlabelled rows are left out.
        by: column(s) to group by; ``[]`` pools every row.
        thresholds: task -> threshold (or one float).
        language_thresholds: (task, language) -> threshold overrides, as in ``apply_thresholds``.

    Returns:
        ``*by, rows, positives, tp, fp, fn, tn, precision, recall, f1, all_positive_f1``; precision
        and recall are 0 where undefined (scikit-learn's ``zero_division=0``).

    Example:
        >>> metrics_by(dev, "task", thresholds={"QC": 0.4, "QI": 0.2})[["task", "f1", "all_positive_f1"]]
    """
    by = [by] if isinstance(by, str) else list(by)
    data = add_predictions(preds, thresholds=thresholds, language_thresholds=language_thresholds)
    return _score_groups(data, by)


def confusion(preds: pd.DataFrame, *, thresholds: Thresholds, by: str | Sequence[str] = ("task",),
              language_thresholds: LanguageThresholds | None = None) -> pd.DataFrame:
    """The 2x2 confusion matrix per group, two rows per group (``actual`` 1 then 0).

    Returns:
        ``*by, actual, predicted_1, predicted_0``: the layout of
        ``sklearn.metrics.confusion_matrix(labels=[1, 0])``, stacked over the groups.

    Example:
        >>> confusion(dev, thresholds={"QC": 0.4, "QI": 0.2}, by=["task", "language"])
    """
    by = [by] if isinstance(by, str) else list(by)
    table = metrics_by(preds, by, thresholds=thresholds, language_thresholds=language_thresholds)
    positive = table[by].assign(actual=1, predicted_1=table["tp"], predicted_0=table["fn"])
    negative = table[by].assign(actual=0, predicted_1=table["fp"], predicted_0=table["tn"])
    both = pd.concat([positive, negative]).sort_index(kind="stable")
    return both.reset_index(drop=True)


# slices ----------------------------------------------------------------------------------------------
def training_support(train: pd.DataFrame) -> pd.DataFrame:
    """Training rows per task and language by origin, and the support level that follows.

    ``support`` is ``original`` (the language has original training rows), ``translated only`` (it
    has only rows translated into it) or ``none``; mined negatives do not count as support.

    Example:
        >>> training_support(run.read_table("train"))
    """
    counts = (train.groupby(["task", "language", "origin"], observed=True).size()
              .unstack("origin", fill_value=0))
    counts = counts.reindex(columns=["original", "translated", "mined_negative"], fill_value=0)
    counts.columns = [f"train_{c}" for c in counts.columns]
    out = counts.reset_index()
    level = np.select([out["train_original"] > 0, out["train_translated"] > 0], SUPPORT_LEVELS[:2],
                      SUPPORT_LEVELS[2])
    out["support"] = pd.Categorical(level, categories=SUPPORT_LEVELS)  # sorts by support, not by name
    return _order(out)


def _zero_shot(preds: pd.DataFrame, train: pd.DataFrame | None, zero_shot: Iterable[str] | None) -> list[str]:
    if zero_shot is not None:
        return language_order(zero_shot)
    if train is None:
        return []
    original = train[train["origin"].eq("original")] if "origin" in train else train
    seen = set(original["language"])
    return language_order(set(preds["language"]) - seen)


def _language_slice(data: pd.DataFrame, train: pd.DataFrame | None, zero_shot: list[str]) -> pd.DataFrame:
    table = _score_groups(data, ["task", "language"])
    table["zero_shot"] = table["language"].isin(zero_shot)
    if train is None:
        return table
    support = training_support(train)
    table = table.merge(support, on=["task", "language"], how="left")
    counts = [c for c in support.columns if c.startswith("train_")]
    table[counts] = table[counts].fillna(0).astype(int)
    table["support"] = table["support"].fillna("none")
    return table


def slices(preds: pd.DataFrame, *, thresholds: Thresholds,
           language_thresholds: LanguageThresholds | None = None, train: pd.DataFrame | None = None,
           zero_shot: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """Metrics per slice, each table in the layout of :func:`metrics_by`.

    Args:
        preds: predictions table.
        thresholds, language_thresholds: as in :func:`metrics_by`.
        train: the training pairs table (``data/train.parquet``, with ``origin``); adds training support.
        zero_shot: zero-shot languages (``metrics/01_data_audit.json``); None: the languages with no
            original training rows when ``train`` is given, else none.

    Returns:
        ``language`` (task x language, with ``zero_shot`` and, given ``train``, the training rows by
        origin and ``support``), ``query_length`` (characters, buckets ``LENGTH_LABELS``),
        ``category_depth`` and ``top_level`` (QC rows; top levels by rows, descending), ``zero_shot``
        (task x zero-shot or not) and, given ``train``, ``training_support`` (task x support level).

    Example:
        >>> tables = slices(dev, thresholds=thr, train=run.read_table("train"), zero_shot=["de", "it"])
        >>> tables["training_support"][["task", "support", "f1", "all_positive_f1"]]
    """
    data = add_predictions(preds, thresholds=thresholds, language_thresholds=language_thresholds)
    zs = _zero_shot(preds, train, zero_shot)
    length = pd.cut(data["query"].fillna("").str.len(), LENGTH_EDGES, right=False, labels=list(LENGTH_LABELS))
    out = {"language": _language_slice(data, train, zs),
           "query_length": _score_groups(data.assign(query_length=length), ["task", "query_length"])}
    qc = data[data["task"].eq("QC")]
    paths = qc["target"].fillna("")
    targets = pd.Series(paths.unique())  # parse each distinct path once
    qc = qc.assign(category_depth=paths.map(dict(zip(targets, targets.map(category_depth)))),
                   top_level=paths.map(dict(zip(targets, targets.map(top_level)))))
    out["category_depth"] = _score_groups(qc, ["category_depth"])
    by_rows = _score_groups(qc, ["top_level"])
    out["top_level"] = by_rows.sort_values("rows", ascending=False, kind="stable", ignore_index=True)
    out["zero_shot"] = _score_groups(data.assign(zero_shot=data["language"].isin(zs)), ["task", "zero_shot"])
    if train is not None:
        support = out["language"][["task", "language", "support"]]
        with_support = data.merge(support, on=["task", "language"], how="left")
        out["training_support"] = _score_groups(with_support, ["task", "support"])
    return out


def confident_errors(preds: pd.DataFrame, *, thresholds: Thresholds,
                     language_thresholds: LanguageThresholds | None = None, k: int = 5) -> pd.DataFrame:
    """The ``k`` most confident false positives and false negatives per task and language.

    A false positive is the more confident the higher its score, a false negative the lower its score.

    Returns:
        ``task, language, error`` (``false positive`` / ``false negative``), ``rank`` (1 = most
        confident), ``score, threshold`` and the row's ``id, query, target, origin`` where present.

    Example:
        >>> confident_errors(dev, thresholds={"QC": 0.4, "QI": 0.2}, k=3).query("language == 'de'")
    """
    data = add_predictions(preds, thresholds=thresholds, language_thresholds=language_thresholds)
    wrong = data[data["pred"].ne(data["label"])]
    errors = wrong.assign(error=np.where(wrong["pred"].eq(1), "false positive", "false negative"),
                          confidence=np.where(wrong["pred"].eq(1), wrong["score"], 1 - wrong["score"]))
    keys = ["task", "language", "error"]
    top = (errors.sort_values("confidence", ascending=False, kind="stable")
           .groupby(keys, sort=False).head(k))
    top = top.assign(rank=top.groupby(keys, sort=False).cumcount() + 1)
    columns = [*keys, "rank", "score", "threshold", "label"]
    columns += [c for c in ("id", "query", "target", "origin") if c in top.columns]
    # within a language, false positives first; _order keeps this order (stable sort)
    top = top.sort_values(["error", "rank"], ascending=[False, True], kind="stable")
    return _order(top[columns])


# robustness to typos ---------------------------------------------------------------------------------
ROBUSTNESS_COLUMNS = ["rows", "queries_changed", "f1_clean", "f1_typo", "typo_gap", "all_positive_f1"]


def typo_robustness(clean: pd.DataFrame, typo: pd.DataFrame, *, thresholds: Thresholds,
                    language_thresholds: LanguageThresholds | None = None,
                    by: str | Sequence[str] = ("task", "language")) -> pd.DataFrame:
    """F1 with clean queries against F1 with typo'd ones, per group, at the same thresholds.

    Args:
        clean: predictions table of the rows as they are.
        typo: the same rows (same ``id`` order) with typo'd queries and the model's scores of them.
        thresholds, language_thresholds: as in :func:`metrics_by`; each row keeps its threshold.
        by: column(s) to group by; ``[]`` pools every row.

    Returns:
        ``*by, rows, queries_changed`` (share of the group's rows whose query the typos changed),
        ``f1_clean, f1_typo, typo_gap`` (clean minus typo'd: what the typos cost) and ``all_positive_f1``.

    Example:
        >>> typo = dev.assign(query=add_typos(dev["query"], 0.1, seed=0))
        >>> typo_robustness(dev, heads.score(model, typo), thresholds={"QC": 0.4, "QI": 0.2})
    """
    by = [by] if isinstance(by, str) else list(by)
    if len(clean) != len(typo) or not np.array_equal(clean["id"].to_numpy(), typo["id"].to_numpy()):
        raise ValueError("typo_robustness needs the same rows in the same order (by id) in clean and typo")
    options = {"thresholds": thresholds, "language_thresholds": language_thresholds}
    base, noisy = add_predictions(clean, **options), add_predictions(typo, **options)
    changed = base["query"].to_numpy() != noisy["query"].to_numpy()
    # the same rows and labels on both sides: the groups come out the same, in the same order
    before, after = _score_groups(base, by), _score_groups(noisy, by)
    out = before.assign(f1_clean=before["f1"], f1_typo=after["f1"].to_numpy(),
                        typo_gap=before["f1"] - after["f1"].to_numpy())
    if by:
        share = base[by].assign(queries_changed=changed).groupby(by, observed=True).mean().reset_index()
        out = out.merge(share, on=by, how="left")
    else:
        out = out.assign(queries_changed=float(changed.mean()) if len(changed) else 0.0)
    return out[[*by, *ROBUSTNESS_COLUMNS]]


def robustness(clean: pd.DataFrame, typo: pd.DataFrame, *, thresholds: Thresholds,
               language_thresholds: LanguageThresholds | None = None, typo_rate: float,
               seed: int) -> dict[str, Any]:
    """Step 07's ``robustness`` metrics (JSON-serialisable): :func:`typo_robustness` per task and per task and
    language, and the gap per task as plain figures (``typo_gap``) that :func:`compare` lines up across runs.

    Example:
        >>> metrics["robustness"] = robustness(dev, typo, thresholds=thr, typo_rate=0.1, seed=13)
    """
    options = {"thresholds": thresholds, "language_thresholds": language_thresholds}
    by_task = typo_robustness(clean, typo, by=["task"], **options)
    return {
        "typo_rate": typo_rate, "seed": seed,
        "typo_gap": {row.task: round(float(row.typo_gap), 4) for row in by_task.itertuples()},
        "by_task": _records(by_task),
        "by_language": _records(typo_robustness(clean, typo, by=["task", "language"], **options)),
    }


# comparing runs --------------------------------------------------------------------------------------
def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Scalar leaves of nested metrics keyed ``a.b.c``; lists of scalars joined as text, others skipped."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}"))
        return out
    if isinstance(value, list):
        if all(isinstance(v, (str, int, float, bool)) for v in value):
            return {prefix: ", ".join(str(v) for v in value)}
        return {}  # per-row records (tables) are not comparable figures
    return {prefix: np.nan if value is None else value}


def compare(run_dirs: Iterable[str | Path], *, steps: Sequence[str] | None = None,
            numeric_only: bool = False) -> pd.DataFrame:
    """Several runs' ``metrics/*.json`` side by side: one row per figure, one column per run.

    Args:
        run_dirs: run directories (``outputs/<run-id>``).
        steps: metric files to include by name (``["06_calibration"]``); None: all.
        numeric_only: keep only figures that are numbers (or missing) in every run, as floats.

    Returns:
        Index ``<step>.<key>.<subkey>``, columns the run ids (the full path where two runs share an id);
        a figure a run lacks is NaN.

    Example:
        >>> compare(["outputs/a", "outputs/b"], steps=["06_calibration"]).filter(like="headline", axis=0)
    """
    runs = [Run(d) for d in run_dirs]
    for run in runs:
        if not run.root.is_dir():
            raise FileNotFoundError(f"{run.root}: not a run directory")
    ids = [run.id for run in runs]
    columns = {}
    for run in runs:
        flat: dict[str, Any] = {}
        for step, metrics in run.all_metrics().items():
            if steps is None or step in steps:
                flat.update(_flatten(metrics, step))
        columns[run.id if ids.count(run.id) == 1 else str(run.root)] = pd.Series(flat, dtype=object)
    table = pd.DataFrame(columns)
    if numeric_only:
        numbers = table.apply(pd.to_numeric, errors="coerce")
        is_number = table.map(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
        keep = (is_number | table.isna()).all(axis=1) & numbers.notna().any(axis=1)
        table = numbers[keep].astype(float)
    return table


# step 07 ------------------------------------------------------------------------------------------
def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    # through pandas' JSON writer: numpy scalars become plain numbers and NaN becomes null
    return json.loads(table.to_json(orient="records", force_ascii=False, double_precision=6))


def analyse(preds: pd.DataFrame, *, thresholds: Thresholds,
            language_thresholds: LanguageThresholds | None = None, train: pd.DataFrame | None = None,
            zero_shot: Iterable[str] | None = None, k: int = 5) -> dict[str, Any]:
    """Everything step 07 writes to ``metrics/07_error_analysis.json`` (JSON-serialisable).

    Args:
        preds: labelled predictions (dev).
        thresholds, language_thresholds: from step 06 (``qckit.calibrate.thresholds_from_metrics``).
        train: the training pairs table, for training support.
        zero_shot: zero-shot languages (``metrics/01_data_audit.json``); None as in :func:`slices`.
        k: confident errors kept per task, language and kind.

    Returns:
        ``zero_shot_languages``, ``by_task``, ``confusion``, ``slices`` (name -> records, as in
        :func:`slices`), ``confident_errors`` (records) and ``headline``: per task (at most two) its F1,
        all-positive F1, pooled zero-shot F1 (None without zero-shot rows) and worst language as
        ``"xx 0.61"``: eight scalars at most.

    Example:
        >>> metrics = analyse(dev, thresholds=thr, train=run.read_table("train"), zero_shot=["de"])
        >>> run.write_metrics("07_error_analysis", metrics)
    """
    options = {"thresholds": thresholds, "language_thresholds": language_thresholds}
    tables = slices(preds, train=train, zero_shot=zero_shot, **options)
    by_task = metrics_by(preds, ["task"], **options)
    zs = _zero_shot(preds, train, zero_shot)
    return {
        "zero_shot_languages": zs,
        "by_task": _records(by_task),
        "confusion": _records(confusion(preds, by=["task"], **options)),
        "slices": {name: _records(table) for name, table in tables.items()},
        "confident_errors": _records(confident_errors(preds, k=k, **options)),
        "headline": _headline(by_task, tables["language"], tables["zero_shot"]),
    }


def _headline(by_task: pd.DataFrame, by_language: pd.DataFrame, zero_shot: pd.DataFrame) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    for row in by_task.head(2).itertuples():
        task = row.task
        headline[f"f1_{task}"] = round(float(row.f1), 4)
        headline[f"all_positive_f1_{task}"] = round(float(row.all_positive_f1), 4)
        zs = zero_shot[zero_shot["task"].eq(task) & zero_shot["zero_shot"]]
        headline[f"zero_shot_f1_{task}"] = round(float(zs["f1"].iloc[0]), 4) if len(zs) else None
        langs = by_language[by_language["task"].eq(task)]
        worst = langs.loc[langs["f1"].idxmin()] if len(langs) else None
        worst_text = None if worst is None else f"{worst['language']} {worst['f1']:.2f}"
        headline[f"worst_language_{task}"] = worst_text
    return headline
