"""Data audit (step 01): coverage, zero-shot languages, class balance, duplicates, conflicts, leakage.

Every function takes the data first (a pairs table, or a dict of them keyed by split) and options as
keyword-only arguments, and returns plain DataFrames or dicts; nothing here draws or prints. The
notebook ``01_data_audit.ipynb`` calls :func:`run_audit` and shows the tables with ``qckit.plots``.

Example:
    >>> splits, metrics = run_audit(params, Run("outputs/demo-1").ensure())
    >>> coverage(splits, layout="wide")                 # rows per language x (task, split)
    >>> zero_shot_languages(splits, by_task=True)       # {'QC': ['de', 'ar'], 'QI': [...]}
    >>> metrics["headline"]["zero_shot_languages"]
    'ar, de, it, pl'
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from qckit import BASE_COLUMNS, LANGUAGES, TASKS
from qckit.data import find_conflicts, find_duplicates, parse_category_path
from qckit.features import normalise_queries

SPLITS = ("train", "dev", "test")
# Pairs of splits checked for leakage: (seen, evaluated).
LEAKAGE_PAIRS = (("train", "dev"), ("train", "test"), ("dev", "test"))

Splits = Mapping[str, pd.DataFrame]


# helpers -----------------------------------------------------------------------------------------
def stack_splits(splits: Splits) -> pd.DataFrame:
    """One table of every split with a ``split`` column; empty splits are left out."""
    frames = [df.assign(split=name) for name, df in splits.items() if len(df)]
    if not frames:
        return pd.DataFrame(columns=[*BASE_COLUMNS, "split"])
    return pd.concat(frames, ignore_index=True)


def _as_frame(data: pd.DataFrame | Splits) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else stack_splits(data)


def language_order(languages: Iterable[str]) -> list[str]:
    """Languages in the project's canonical order (``qckit.LANGUAGES``), unknown ones after, sorted."""
    present = {str(x) for x in languages if isinstance(x, str)}
    return [x for x in LANGUAGES if x in present] + sorted(present - set(LANGUAGES))


def _sort(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Sort by split, task and language in their natural orders, not alphabetically."""
    ranks = {
        "split": {s: i for i, s in enumerate(SPLITS)},
        "task": {t: i for i, t in enumerate(TASKS)},
        "language": {x: i for i, x in enumerate(language_order(df.get("language", [])))},
    }
    keys = [c for c in columns if c in df.columns]
    if not keys or df.empty:
        return df.reset_index(drop=True)

    def key(col: pd.Series) -> pd.Series:
        rank = ranks.get(col.name)
        return col.map(rank).fillna(len(rank)) if rank else col

    return df.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def _labels(df: pd.DataFrame) -> pd.Series:
    """Labels as floats with NaN for missing ones, whatever the stored dtype (Int8 with NA, object)."""
    if "label" not in df:
        return pd.Series(float("nan"), index=df.index)
    numeric = pd.to_numeric(df["label"].astype(object), errors="coerce")
    return pd.Series(numeric.to_numpy(dtype=float, na_value=float("nan")), index=df.index)


def _is_empty(text: pd.Series) -> pd.Series:
    return text.isna() | text.astype("string").str.strip().eq("").fillna(True)


def _group_keys(df: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return [c for c in by if c in df.columns]


def _wide(tidy: pd.DataFrame, values: str, fill_value: Any = None) -> pd.DataFrame:
    """One row per language, one column per (task, split), in the natural orders."""
    if tidy.empty:
        return pd.DataFrame(index=pd.Index([], name="language"))
    wide = tidy.pivot_table(index="language", columns=["task", "split"], values=values, aggfunc="sum",
                            fill_value=fill_value)
    cols = [(t, s) for t in TASKS for s in SPLITS if (t, s) in wide.columns]
    cols += [c for c in wide.columns if c not in cols]
    return wide.reindex(index=language_order(wide.index),
                        columns=pd.MultiIndex.from_tuples(cols, names=["task", "split"]))


# coverage and zero-shot --------------------------------------------------------------------------
def coverage(splits: Splits, *, layout: Literal["tidy", "wide"] = "tidy") -> pd.DataFrame:
    """Rows per language, task and split.

    Args:
        splits: pairs tables keyed by split (``train``, ``dev``, ``test``); empty ones are allowed.
        layout: ``"tidy"``: columns ``language, task, split, rows``; ``"wide"``: one row per language,
            one column per (task, split) with zeros where a combination has no rows, plus ``total``.

    Example:
        >>> coverage({"train": train, "dev": dev}, layout="wide").loc["de", ("QC", "train")]
        0
    """
    rows = stack_splits(splits)
    tidy = _sort(rows.groupby(["language", "task", "split"]).size().rename("rows").reset_index(),
                 ["language", "task", "split"])
    if layout == "tidy":
        return tidy
    if layout != "wide":
        raise ValueError(f"layout must be 'tidy' or 'wide', got {layout!r}")
    wide = _wide(tidy, "rows", fill_value=0).astype(int)
    wide[("total", "")] = wide.sum(axis=1)
    return wide


def _zero_shot(train: pd.DataFrame, evaluated: pd.DataFrame, override: Sequence[str] | None) -> list[str]:
    if override is not None:
        return list(dict.fromkeys(override))
    return language_order(set(evaluated["language"]) - set(train["language"]))


def zero_shot_languages(
    splits: Splits, *, override: Sequence[str] | None = None, by_task: bool = False
) -> list[str] | dict[str, list[str]]:
    """Languages present in dev or test that have no training rows.

    Args:
        splits: pairs tables keyed by split.
        override: the languages to treat as zero-shot (``params.audit.zero_shot_languages``); when
            given it wins over detection. Per task it is narrowed to the languages that task has rows for.
        by_task: return ``{task: [languages]}`` (a language with QC training rows but no QI training
            rows is zero-shot for QI only) instead of one list over all tasks.

    Example:
        >>> zero_shot_languages({"train": en_fr, "dev": en_fr_de})
        ['de']
    """
    rows = stack_splits(splits)
    is_train = rows["split"].eq("train")
    if not by_task:
        return _zero_shot(rows[is_train], rows[~is_train], override)
    out = {}
    for task in [t for t in TASKS if t in set(rows["task"])] + sorted(set(rows["task"]) - set(TASKS)):
        in_task = rows["task"].eq(task)
        langs = _zero_shot(rows[is_train & in_task], rows[~is_train & in_task], override)
        if override is not None:
            langs = [x for x in langs if x in set(rows.loc[in_task, "language"])]
        out[task] = langs
    return out


# balance, lengths, categories, empties -----------------------------------------------------------
def class_balance(
    data: pd.DataFrame | Splits,
    *,
    by: Sequence[str] = ("split", "task", "language"),
    layout: Literal["tidy", "wide"] = "tidy",
) -> pd.DataFrame:
    """Positives, negatives, unlabelled rows and positive share per group.

    Args:
        data: a pairs table, or a dict of them keyed by split (a ``split`` column is then added).
        by: grouping columns; those absent from the table are skipped (no ``split`` on a single table).
        layout: ``"tidy"``: one row per group; ``"wide"``: the positive share only, one row per
            language and one column per (task, split) with labels.

    Returns:
        Columns ``*by, rows, positives, negatives, unlabelled, positive_share``; the share is over
        labelled rows and missing (NaN) where a group has no labels (an unlabelled test split).
    """
    if layout == "wide":
        tidy = class_balance(data, by=("split", "task", "language")).dropna(subset=["positive_share"])
        return _wide(tidy, "positive_share").round(3)
    if layout != "tidy":
        raise ValueError(f"layout must be 'tidy' or 'wide', got {layout!r}")
    df = _as_frame(data)
    keys = _group_keys(df, by)
    label = _labels(df)
    flags = pd.DataFrame({
        "rows": 1,
        "positives": label.eq(1).astype(int),
        "negatives": label.eq(0).astype(int),
        "unlabelled": label.isna().astype(int),
    }, index=df.index)
    out = flags.groupby([df[k] for k in keys]).sum().reset_index() if keys else flags.sum().to_frame().T
    out["positive_share"] = out["positives"] / (out["positives"] + out["negatives"]).replace(0, float("nan"))
    return _sort(out, keys)


def text_lengths(data: pd.DataFrame | Splits) -> pd.DataFrame:
    """The table with ``query_chars, query_tokens, target_chars, target_tokens`` added.

    Tokens are whitespace-separated words: ja, ko and th queries often hold no spaces, so compare
    those languages in characters.
    """
    df = _as_frame(data)
    out = df.copy()
    for col in ("query", "target"):
        text = df[col].astype("string").fillna("")
        out[f"{col}_chars"] = text.str.len().astype(int)
        out[f"{col}_tokens"] = text.str.count(r"\S+").astype(int)
    return out


def length_stats(data: pd.DataFrame | Splits, *, by: Sequence[str] = ("task", "language")) -> pd.DataFrame:
    """Query and target lengths in characters and whitespace tokens per group.

    Returns:
        Columns ``*by, rows``, then for queries the mean and 95th percentile in characters, the mean in
        tokens and ``one_token_share`` (queries without inner whitespace: typical of ja/ko/th, where
        token counts mislead), and the same three length figures for targets. Medians and spread are
        in ``qckit.plots.length_distributions``.
    """
    lengths = text_lengths(data)
    keys = _group_keys(lengths, by)
    if lengths.empty:
        return pd.DataFrame(columns=[*keys, "rows"])
    lengths["one_token"] = lengths["query_tokens"].le(1).astype(float)
    lengths["rows"] = 1
    grouped = lengths.groupby(keys) if keys else lengths.groupby(lambda _: "all")

    def p95(values: pd.Series) -> float:
        return values.quantile(0.95)

    out = grouped.agg(
        rows=("rows", "sum"),
        query_chars_mean=("query_chars", "mean"),
        query_chars_p95=("query_chars", p95),
        query_tokens_mean=("query_tokens", "mean"),
        one_token_share=("one_token", "mean"),
        target_chars_mean=("target_chars", "mean"),
        target_chars_p95=("target_chars", p95),
        target_tokens_mean=("target_tokens", "mean"),
    )
    out = out.reset_index() if keys else out.reset_index(drop=True)
    return _sort(out.round(2), keys)


def category_stats(data: pd.DataFrame | Splits) -> dict[str, pd.DataFrame]:
    """Depth and top-level distribution of the QC category paths (QI rows are ignored).

    Paths are parsed with ``qckit.data.parse_category_path``, which keeps level names that contain a
    comma ("arts,crafts & sewing") whole.

    Returns:
        ``{"depth": DataFrame[depth, rows, paths, share], "top_level": DataFrame[top_level, rows, paths,
        share, positive_share]}``: ``rows`` counts pairs, ``paths`` distinct category paths, ``share``
        the share of QC rows; top levels sorted by rows, most frequent first.
    """
    df = _as_frame(data)
    qc = df[df["task"].eq("QC")] if len(df) else df
    paths = qc["target"].astype("string").fillna("")
    # parse each distinct path once: CIKM-size data repeats a few thousand paths over 100k+ rows
    parsed = {p: parse_category_path(p) for p in paths.unique()}
    table = pd.DataFrame({
        "path": paths.to_numpy(),
        "depth": paths.map(lambda p: len(parsed[p])).astype(int).to_numpy(),
        "top_level": paths.map(lambda p: parsed[p][0] if parsed[p] else "").to_numpy(),
        "positive": _labels(qc).eq(1).astype(float).where(_labels(qc).notna()).to_numpy(),
    })
    total = max(len(table), 1)
    out = {}
    for key in ("depth", "top_level"):
        agg = table.groupby(key).agg(rows=("path", "size"), paths=("path", "nunique"))
        agg["share"] = (agg["rows"] / total).round(4)
        if key == "top_level":
            agg["positive_share"] = table.groupby(key)["positive"].mean().round(4)
            agg = agg.sort_values(["rows", "paths"], ascending=False, kind="stable")
        else:
            agg = agg.sort_index()
        out[key] = agg.reset_index()
    return out


def empty_text(data: pd.DataFrame | Splits, *, by: Sequence[str] = ("split", "task")) -> pd.DataFrame:
    """Rows whose query or target (category path / item title) is missing or only whitespace.

    Returns:
        Columns ``*by, rows, empty_queries, empty_targets``. A loader run with ``data.drop_empty``
        has already removed such rows; its ``load_info`` says how many.
    """
    df = _as_frame(data)
    keys = _group_keys(df, by)
    flags = pd.DataFrame({
        "rows": 1,
        "empty_queries": _is_empty(df["query"]).astype(int),
        "empty_targets": _is_empty(df["target"]).astype(int),
    }, index=df.index)
    out = flags.groupby([df[k] for k in keys]).sum().reset_index() if keys else flags.sum().to_frame().T
    return _sort(out, keys)


# duplicates, conflicts, leakage -----------------------------------------------------------------
def _conflict_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Every row of the pairs seen with both labels, and the columns that identify a pair."""
    conflicts = find_conflicts(df)
    keys = [c for c in ("task", "language", "query", "target") if c in conflicts.columns]
    rows = df.merge(conflicts[keys].drop_duplicates(), on=keys, how="inner")
    return _sort(rows, [*keys, "label"]), keys


def _leakage(splits: Splits) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, examples = [], []
    for seen, evaluated in LEAKAGE_PAIRS:
        a, b = splits.get(seen), splits.get(evaluated)
        if a is None or b is None or a.empty or b.empty:
            continue
        a = a.assign(nq=normalise_queries(a["query"]))
        b = b.assign(nq=normalise_queries(b["query"]))
        for task in [t for t in TASKS if t in set(b["task"])] + sorted(set(b["task"]) - set(TASKS)):
            ta, tb = a[a["task"].eq(task)], b[b["task"].eq(task)]
            seen_queries = set(ta["nq"])
            hit = tb["nq"].isin(seen_queries)
            seen_pairs = set(zip(ta["nq"], ta["target"]))
            shared_pairs = {p for p in zip(tb["nq"], tb["target"]) if p in seen_pairs}
            records.append({
                "task": task, "seen_in": seen, "evaluated_in": evaluated,
                "shared_queries": int(tb.loc[hit, "nq"].nunique()),
                "shared_pairs": len(shared_pairs),
                "evaluated_rows_with_seen_query": int(hit.sum()),
            })
            if hit.any():
                examples.append(tb[hit].drop(columns="nq").assign(split=evaluated, seen_in=seen))
    columns = ["task", "seen_in", "evaluated_in", "shared_queries", "shared_pairs",
               "evaluated_rows_with_seen_query"]
    table = pd.DataFrame(records, columns=columns)
    if not examples:
        return table, pd.DataFrame(columns=[*BASE_COLUMNS, "split", "seen_in"])
    return table, pd.concat(examples, ignore_index=True)


def duplicates_and_conflicts(splits: Splits) -> dict[str, pd.DataFrame]:
    """Exact duplicates and conflicting labels inside each split, and leakage across splits.

    A duplicate repeats an earlier row with the same task, language, query, target and label
    (``qckit.data.find_duplicates``); a conflicting pair is a (query, target) seen with both labels
    (``qckit.data.find_conflicts``). Leakage compares queries after casefolding and collapsing
    whitespace: ``shared_queries`` are query texts of the evaluated split also in the seen split,
    ``shared_pairs`` (query, target) pairs present in both, whatever their labels.

    Returns:
        ``counts``: per split and task ``rows, duplicate_rows, conflicting_pairs, conflicting_rows``;
        ``duplicates``: the repeated rows; ``conflicts``: every row of each conflicting pair, the
        pair's rows together; ``leakage``: per task and split pair the figures above; ``leaked``: the
        evaluated rows whose query was seen. Example tables carry a ``split`` column; show a few with
        ``.head(n)``.
    """
    counts, dups, conflicts = [], [], []
    for name, df in splits.items():
        if df.empty:
            continue
        dup_mask = pd.Series(find_duplicates(df).to_numpy(dtype=bool), index=df.index)
        conf_rows, keys = _conflict_rows(df)
        dups.append(df[dup_mask].assign(split=name))
        conflicts.append(conf_rows.assign(split=name))
        for task in df["task"].unique():
            task_conf = conf_rows[conf_rows["task"].eq(task)]
            counts.append({
                "split": name, "task": task, "rows": int(df["task"].eq(task).sum()),
                "duplicate_rows": int(dup_mask[df["task"].eq(task)].sum()),
                "conflicting_pairs": len(task_conf[keys].drop_duplicates()),
                "conflicting_rows": len(task_conf),
            })
    empty = pd.DataFrame(columns=[*BASE_COLUMNS, "split"])
    leakage, leaked = _leakage(splits)
    columns = ["split", "task", "rows", "duplicate_rows", "conflicting_pairs", "conflicting_rows"]
    return {
        "counts": _sort(pd.DataFrame(counts, columns=columns), ["split", "task"]),
        "duplicates": pd.concat(dups, ignore_index=True) if dups else empty,
        "conflicts": pd.concat(conflicts, ignore_index=True) if conflicts else empty,
        "leakage": leakage,
        "leaked": leaked,
    }


# metrics and the step -----------------------------------------------------------------------------
def _dropped_by_loader(load_info: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``{split: {filter: rows dropped}}`` from ``qckit.data.load_splits``' counts; {} for other shapes."""
    return {split: {k: int(v) for k, v in info["dropped"].items()}
            for split, info in load_info.items()
            if isinstance(info, Mapping) and isinstance(info.get("dropped"), Mapping)}


def loading_table(load_info: Mapping[str, Any]) -> pd.DataFrame:
    """What the loader read, dropped and kept per split, one row per split.

    Args:
        load_info: the counts ``qckit.data.load_splits`` returns (stored as ``load_info`` in the metrics).

    Returns:
        Index ``split``; columns ``read``, one per filter (rows it dropped: ``tasks``, ``languages``,
        ``empty``, ``duplicates``, ...), and ``kept``.
    """
    records = []
    for split, dropped in _dropped_by_loader(load_info).items():
        info = load_info[split]
        read = info.get("rows", {}).get("read", {})
        read = sum(read.values()) if isinstance(read, Mapping) else read
        records.append({"split": split, "read": int(read or 0), **dropped, "kept": int(info.get("kept", 0))})
    return pd.DataFrame(records).set_index("split") if records else pd.DataFrame()


def _jsonable(value: Any) -> Any:
    """Plain Python values: numpy scalars to int/float, NaN to None, containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if value is pd.NA or value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def audit_metrics(
    splits: Splits, load_info: Mapping[str, Any], *, zero_shot: Sequence[str] | None = None
) -> dict[str, Any]:
    """The figures of ``metrics/01_data_audit.json``: what later steps and the report index read.

    Args:
        splits: pairs tables keyed by split, as the loader returned them.
        load_info: the loader's counts of what was read and dropped; stored as ``load_info``.
        zero_shot: languages to treat as zero-shot (``params.audit.zero_shot_languages``); None detects them.

    Returns:
        A JSON-serialisable dict with ``rows`` (split -> task -> n, plus ``total``), ``languages``
        (split -> list), ``train_languages``, ``zero_shot_languages`` (list) and
        ``zero_shot_languages_by_task``, ``positive_share`` (split -> task -> share or None),
        ``duplicates``, ``conflicts`` (conflicting pairs), ``empty_queries``, ``empty_targets``
        (split -> n, in the tables as loaded), ``leakage`` ("train->dev" -> figures), ``dropped``
        (split -> filter -> rows the loader removed), ``load_info`` and ``headline``: at most eight
        scalars for the report's index page (``rows``, ``languages``, ``zero_shot_languages`` as text,
        ``train_positive_share_QC`` / ``_QI``, ``duplicate_rows`` counting those the loader dropped too,
        ``conflicting_pairs``, ``leaked_queries``).
    """
    rows = stack_splits(splits)
    names = [s for s in SPLITS if s in splits] + [s for s in splits if s not in SPLITS]
    balance = class_balance(rows, by=("split", "task"))
    integrity = duplicates_and_conflicts(splits)
    counts, leakage = integrity["counts"], integrity["leakage"]
    figures = ["shared_queries", "shared_pairs", "evaluated_rows_with_seen_query"]
    empties = empty_text(rows, by=("split",)).set_index("split") if len(rows) else pd.DataFrame()
    zs = zero_shot_languages(splits, override=zero_shot)

    def per_split(frame: pd.DataFrame, column: str) -> dict[str, int]:
        return {s: int(frame.loc[frame["split"].eq(s), column].sum()) if len(frame) else 0 for s in names}

    metrics = {
        "rows": {s: {**splits[s]["task"].value_counts().to_dict(), "total": len(splits[s])} for s in names},
        "languages": {s: language_order(splits[s]["language"].unique()) for s in names},
        "train_languages": language_order(splits["train"]["language"].unique()) if "train" in splits else [],
        "zero_shot_languages": zs,
        "zero_shot_languages_by_task": zero_shot_languages(splits, override=zero_shot, by_task=True),
        "positive_share": {s: {r.task: _jsonable(round(r.positive_share, 4))
                               for r in balance[balance["split"].eq(s)].itertuples()} for s in names},
        "duplicates": per_split(counts, "duplicate_rows"),
        "conflicts": per_split(counts, "conflicting_pairs"),
        "empty_queries": {s: int(empties["empty_queries"].get(s, 0)) if len(empties) else 0 for s in names},
        "empty_targets": {s: int(empties["empty_targets"].get(s, 0)) if len(empties) else 0 for s in names},
        "leakage": {f"{seen}->{evaluated}": part[figures].sum().to_dict()
                    for (seen, evaluated), part in leakage.groupby(["seen_in", "evaluated_in"], sort=False)},
        "dropped": _dropped_by_loader(load_info),
        "load_info": _jsonable(dict(load_info)),
    }
    metrics["headline"] = _headline(metrics, rows)
    return _jsonable(metrics)


def _headline(metrics: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
    train_share = metrics["positive_share"].get("train", {})
    headline = {
        "rows": len(rows),
        "languages": len(language_order(rows["language"].unique())),
        "zero_shot_languages": ", ".join(metrics["zero_shot_languages"]) or "none",
    }
    for task in TASKS:
        if train_share.get(task) is not None:
            headline[f"train_positive_share_{task}"] = train_share[task]
    # duplicates the loader dropped were in the data all the same: the headline counts both
    dropped = sum(d.get("duplicates", 0) for d in metrics["dropped"].values())
    headline["duplicate_rows"] = sum(metrics["duplicates"].values()) + dropped
    headline["conflicting_pairs"] = sum(metrics["conflicts"].values())
    headline["leaked_queries"] = sum(v["shared_queries"] for v in metrics["leakage"].values())
    return headline
