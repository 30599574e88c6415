"""Hard-negative mining (step 03): close-but-wrong categories or items added as labelled negatives.

For each query with a labelled positive, the nearest candidates (the distinct category paths or item
titles of its task) are found by embedding similarity, and some of them become new rows with label 0.
A mined "negative" is often an unlabelled positive, so every candidate passes guards first; the first
that applies is the reason it is skipped:

- ``labelled_positive``: labelled positive for the same query (case and spacing ignored) anywhere in the
  data given (the training table and ``known``, e.g. dev);
- ``hierarchy`` (QC, ``skip_hierarchy``): an ancestor or descendant of one of the query's positive paths;
- ``labelled_negative``: already labelled negative for the query (mining it would only repeat a row);
- ``above_cap``: similarity above ``max_similarity``;
- ``within_margin``: similarity above ``p - relative_margin * |p|``, ``p`` the query's least similar
  labelled positive.

Embeddings come from ``qckit.embed`` (each distinct text once, cached on disk); the search is faiss inner
product over L2-normalised vectors (cosine), exact (``IndexFlatIP``) below ``index_threshold`` candidates
and IVF above it (or as asked), on a GPU when faiss has one, in query batches so memory stays bounded.
Sampling is deterministic: ``top`` takes the best-ranked allowed candidates, ``random`` draws from the
allowed ones in the rank range with a seeded hash of (query, candidate), so results do not depend on the
batch size or on the order of the rows. ``random_catalogue`` is the semantic samplers' control: it searches
nothing and draws each query's negatives uniformly from the whole catalogue (the same candidates), seeded per
(language, query), at the same volume (per-query counts and balance cap) and through the same guards; its
rows have a ``similarity`` but no ``rank``.

The volume is set one of two ways. By default each query asks ``negatives_per_positive`` negatives per positive
row and ``target_positive_share`` caps what is added per task and language. With ``share`` (the hard-negative
ratio), the mined rows make up that share of each task's training table after mining, ``mined / (labelled rows
+ mined)``: each language asks, per positive row, one more than its share needs (at least
``negatives_per_positive``; the extra one makes up for queries the guards leave short), then a seeded subset of
exactly ``round(share / (1 - share) * labelled rows)`` is kept per task, spread over languages in proportion to
their rows (each within one row of its own share; a language that found too few keeps all it found and the
others make up the difference) and over queries (each query's first negative before any query's second). When
fewer are found in all, every one is kept and ``share_report`` says so. ``share`` replaces the cap: both at once
is an error.

Example:
    >>> from qckit.negatives import mine_hard_negatives, leak_check
    >>> result = mine_hard_negatives(train, "multilingual-e5-small", known=[dev], top_k=20,
    ...                              negatives_per_positive=1, relative_margin=0.05)
    >>> result.rows[["query", "target", "similarity", "rank"]].head()
    >>> result.skipped                      # candidates skipped per task and reason
    >>> leak_check(result.rows, {"train": train, "dev": dev})
    {'train': 0, 'dev': 0, 'total': 0}
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from qckit import BASE_COLUMNS, TASKS
from qckit.data import first_new_id, id_dtypes, new_ids, parse_category_path
from qckit.embed import embed_texts, text_digests
from qckit.features import normalise_queries, normalise_query
from qckit.progress import progress

ORIGIN = "mined_negative"
SKIP_REASONS = ("labelled_positive", "hierarchy", "labelled_negative", "above_cap", "within_margin")
SAMPLINGS = ("top", "random", "random_catalogue")
INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
GPU_MAX_K = 2048  # faiss on a GPU returns at most this many neighbours per query
_GPU_RESOURCES: list[Any] = []

Embedder = Callable[[Sequence[str], str], np.ndarray]


@dataclass
class MiningResult:
    """What ``mine_hard_negatives`` found.

    Attributes:
        rows: the created rows: base columns (``label`` 0, ``origin`` ``mined_negative``, ``source_id`` the
            query's first positive row) plus ``similarity`` (cosine) and ``rank`` (1 = nearest candidate;
            missing for ``random_catalogue`` draws, which are not ranked).
        similarity: cosine of query and target of every input row of a mined task (NaN elsewhere),
            indexed like the input.
        skipped: candidates in the rank range skipped per task and reason (``SKIP_REASONS``); for
            ``random_catalogue``, the drawn candidates skipped before the query had its negatives.
        report: per task and language: ``queries`` mined for, ``short`` (queries that got fewer negatives
            than asked), ``mined``, ``dropped_for_balance`` (mined but left out to keep
            ``target_positive_share``, or to give ``share``), ``added``.
        index: the faiss index kind used per task (``none`` for ``random_catalogue``); ``timings``: seconds
            per stage; ``sampling``: the sampler that ran.
        share: the mined share asked (None: volume set by ``negatives_per_positive`` and the cap).
        share_report: with ``share``, per task and language: labelled training ``rows``, negatives ``asked``
            (what gives the share), the ``per_positive`` ask mining used, candidates ``found`` (mined before
            the subset) and ``kept``; empty otherwise.
    """

    rows: pd.DataFrame
    similarity: pd.Series
    skipped: pd.DataFrame
    report: pd.DataFrame
    index: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sampling: str = "top"
    share: float | None = None
    share_report: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_SHARE_COLUMNS))


# ------------------------------------------------------------------ public API


def make_embedder(model: str, *, cache_dir: str | Path | None = None, backend: str = "auto",
                  batch_size: int = 64, models_dir: str | Path | None = None) -> Embedder:
    """An ``embedder(texts, kind)`` over ``qckit.embed.embed_texts`` with these settings.

    Example:
        >>> embed = make_embedder("tiny:bert", cache_dir="/tmp/emb")
        >>> embed(["red shoes"], "query").shape
        (1, 32)
    """
    def embed(texts: Sequence[str], kind: str) -> np.ndarray:
        return embed_texts(list(texts), model=model, kind=kind, cache_dir=cache_dir, batch_size=batch_size,
                           backend=backend, models_dir=models_dir)

    embed.model = model  # type: ignore[attr-defined]  # shown in the step's metrics
    return embed


def mine_hard_negatives(
    pairs: pd.DataFrame,
    embedder: str | Embedder = "multilingual-e5-small",
    *,
    known: Sequence[pd.DataFrame] = (),
    tasks: Sequence[str] | None = None,
    top_k: int = 20,
    rank_range: tuple[int, int] | None = None,
    sampling: Literal["top", "random", "random_catalogue"] = "top",
    negatives_per_positive: int = 1,
    target_positive_share: float | None = None,
    share: float | None = None,
    max_similarity: float | None = None,
    relative_margin: float | None = None,
    skip_hierarchy: bool = True,
    candidates: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 4096,
    index: str = "auto",
    index_threshold: int = 200_000,
    score_rows: bool = True,
    seed: int = 0,
    start_id: int | str | None = None,
) -> MiningResult:
    """Mine close-but-wrong candidates as negatives for every query with a labelled positive.

    Args:
        pairs: the pairs table (``id, task, language, query, target, label, ...``); rows without a label
            are ignored. Its distinct targets per task are the candidates.
        embedder: a model spec for ``qckit.embed.embed_texts``, or a callable ``(texts, kind) -> array``
            returning L2-normalised rows (``kind`` is ``"query"`` or ``"passage"``).
        known: other labelled tables (dev): their labels feed the guards, their rows are not mined.
        tasks: tasks to mine; None: every task in ``pairs``.
        top_k: neighbours retrieved per query (positives included); unused by ``random_catalogue``.
        rank_range: ``(first, last)`` 1-based ranks a negative may come from; None: ``(1, top_k)``; unused by
            ``random_catalogue``.
        sampling: ``"top"``: the best-ranked allowed candidates; ``"random"``: a seeded draw among them;
            ``"random_catalogue"``: a seeded uniform draw from every candidate of the task, no search (the
            control for the semantic samplers: same volume, same guards).
        negatives_per_positive: negatives asked per positive row of a (language, query).
        target_positive_share: cap the negatives added per task and language so that the positive share
            does not fall below this (None: no cap).
        share: the mined negatives' share of each task's labelled rows after mining, in (0, 1): asks enough
            per positive (at least ``negatives_per_positive``) and keeps a seeded, language-stratified subset of
            exactly that many, or all found when fewer (see the module docstring). Not with
            ``target_positive_share``. None: the volume is ``negatives_per_positive`` under the cap.
        max_similarity: skip candidates more similar than this (None: no cap).
        relative_margin: skip candidates within this relative margin of the query's least similar
            positive (None: no margin).
        skip_hierarchy: QC: skip ancestors and descendants of the query's positive paths.
        candidates: extra candidates per task (e.g. the whole taxonomy), added to the targets of ``pairs``.
        batch_size: queries per search batch (bounds memory: ``batch_size x top_k`` results at a time).
        index: ``"auto"``, ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"``.
        index_threshold: ``"auto"`` uses IVF from this many candidates on.
        score_rows: also compute ``similarity`` for every input row (embeds queries without positives too).
        seed: seed of ``random`` and ``random_catalogue`` sampling and of the balance cap's or the share's choice.
        start_id: first id of the created rows; None: one above the largest id in ``pairs`` and ``known``.

    Returns:
        A ``MiningResult``; its ``rows`` are sorted by task, language, query and rank (draw order for
        ``random_catalogue``), ids consecutive.
    """
    _check_arguments(top_k, rank_range, sampling, negatives_per_positive, target_positive_share, index,
                     batch_size)
    _check_share(share, target_positive_share)
    if not pairs.index.is_unique:
        raise ValueError("pairs must have a unique index (reset_index(drop=True) after a concat)")
    rank_range = rank_range or (1, top_k)
    embed = make_embedder(embedder) if isinstance(embedder, str) else embedder
    labelled = pairs[pairs["label"].notna()]
    known_labelled = [k[k["label"].notna()] for k in known if len(k)]
    tasks = [t for t in (tasks or TASKS) if t in set(labelled["task"])]
    settings = _Settings(top_k, rank_range, sampling, negatives_per_positive, max_similarity, relative_margin,
                         skip_hierarchy, batch_size, index, index_threshold, seed, share)
    similarity = pd.Series(np.nan, index=pairs.index, dtype="float64")
    found, skipped, reports, share_reports, kinds = [], [], [], [], {}
    timings = {"embed_s": 0.0, "index_s": 0.0, "search_s": 0.0}
    for task in tasks:
        rows = labelled[labelled["task"] == task]
        others = pd.concat([k[k["task"] == task] for k in known_labelled] or [rows.iloc[:0]])
        extra = list((candidates or {}).get(task, ()))
        mined, units, sims, counts, kinds[task], times = _mine_task(task, rows, others, extra, embed,
                                                                    settings, score_rows)
        similarity.loc[sims.index] = sims
        for key, seconds in times.items():
            timings[key] += seconds
        if share is None:
            mined, report = _balance(task, mined, units, rows, target_positive_share, seed)
        else:
            mined, report, task_share = _keep_share(task, mined, units, rows, share, seed)
            share_reports.append(task_share)
        found.append(mined)
        reports.append(report)
        skipped += [{"task": task, "reason": r, "candidates": int(n)} for r, n in zip(SKIP_REASONS, counts)]
    first_id = start_id if start_id is not None else next_id([pairs, *known])
    rows = _finish_rows(found, first_id)
    report = pd.concat(reports, ignore_index=True) if reports else pd.DataFrame(columns=_REPORT_COLUMNS)
    skipped_frame = pd.DataFrame(skipped, columns=["task", "reason", "candidates"])
    timings = {k: round(v, 3) for k, v in timings.items()}
    share_report = (pd.concat(share_reports, ignore_index=True) if share_reports
                    else pd.DataFrame(columns=_SHARE_COLUMNS))
    return MiningResult(rows, similarity, skipped_frame, report, kinds, timings, sampling, share, share_report)


def leak_check(mined: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """How many mined negatives are labelled positive for the same query in each table (must be 0).

    Matching ignores case and spacing of query and target, as the guards do, but is computed apart from
    them (a join on the normalised pair), so it checks the guards rather than repeating them.

    Example:
        >>> leak_check(result.rows, {"train": train, "dev": dev})
        {'train': 0, 'dev': 0, 'total': 0}
    """
    out: dict[str, int] = {}
    keys = mined.assign(q=normalise_queries(mined["query"]), t=normalise_queries(mined["target"]))[["task", "q", "t"]]
    leaked = pd.Series(False, index=keys.index)
    for name, table in tables.items():
        positives = table[table["label"].astype("Int8").eq(1).fillna(False)]
        pos = positives.assign(q=normalise_queries(positives["query"]), t=normalise_queries(positives["target"]))
        pos = pos[["task", "q", "t"]].drop_duplicates().assign(hit=True)
        hit = keys.merge(pos, on=["task", "q", "t"], how="left")["hit"].fillna(False).to_numpy(dtype=bool)
        out[name] = int(hit.sum())
        leaked |= hit
    out["total"] = int(leaked.sum())
    return out


def build_index(vectors: np.ndarray, *, kind: str = "auto", threshold: int = 200_000, k: int = 20,
                seed: int = 0, gpu: bool | None = None) -> tuple[Any, str]:
    """A faiss inner-product index holding ``vectors`` (float32, L2-normalised rows).

    Args:
        vectors: candidate embeddings.
        kind: ``"flat"`` (exact), ``"ivf"`` (inverted lists; ``4 * sqrt(n)`` lists, 32 probed),
            ``"hnsw"`` (graph, 32 links), or ``"auto"``: flat below ``threshold`` rows, else ivf.
        threshold: size from which ``"auto"`` picks ivf.
        k: neighbours that will be asked for (sets the HNSW search breadth and the GPU limit).
        seed: seed of the IVF training sample.
        gpu: move a flat index to the first GPU; None: when faiss sees one and ``k`` fits its limit.

    Returns:
        ``(index, kind used)``; the kind reads ``"flat-gpu"`` when it runs on a GPU.
    """
    faiss = _faiss()
    n, dim = vectors.shape
    if kind == "auto":
        kind = "ivf" if n >= threshold else "flat"
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "ivf" and n >= 64:
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants ~39 training points per list
        built = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).permutation(n)[: 256 * nlist]
        built.train(vectors[np.sort(sample)])
        built.add(vectors)
        faiss.extract_index_ivf(built).nprobe = min(nlist, 32)
        return built, "ivf"
    if kind == "hnsw":
        built = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        built.hnsw.efConstruction = 80
        built.add(vectors)
        built.hnsw.efSearch = max(64, 2 * k)
        return built, "hnsw"
    built = faiss.IndexFlatIP(dim)
    built.add(vectors)
    use_gpu = gpu if gpu is not None else (_gpu_count(faiss) > 0 and k <= GPU_MAX_K)
    if use_gpu:
        if not _GPU_RESOURCES:  # one per process, kept alive as long as any index that uses it
            _GPU_RESOURCES.append(faiss.StandardGpuResources())
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, built), "flat-gpu"
    return built, "flat"


def search(index: Any, queries: np.ndarray, k: int, *,
           batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (similarities, candidate ids) for every query row, searched ``batch_size`` rows at a time.

    Ids are -1 (similarity -inf) where an approximate index found fewer than ``k`` neighbours.
    """
    sims = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch_size):
        chunk = np.ascontiguousarray(queries[start:start + batch_size], dtype=np.float32)
        sims[start:start + len(chunk)], ids[start:start + len(chunk)] = index.search(chunk, k)
    sims[ids < 0] = -np.inf
    return sims, ids


def skipped_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """The step's guard skips as a table: ``task, reason, candidates``, one row per task and reason."""
    rows = [{"task": task, "reason": reason, "candidates": n}
            for task, reasons in metrics.get("skipped", {}).items() for reason, n in reasons.items()]
    return pd.DataFrame(rows, columns=["task", "reason", "candidates"])


def combine(train: pd.DataFrame, result: MiningResult) -> pd.DataFrame:
    """The training table with its ``similarity`` (and an empty ``rank``), then the created rows."""
    base = train.assign(similarity=result.similarity.reindex(train.index), rank=pd.array([pd.NA] * len(train),
                                                                                             dtype="Int64"))
    if not len(result.rows):
        return base.reset_index(drop=True)
    out = pd.concat([base, result.rows], ignore_index=True)
    return out.astype({**id_dtypes(train["id"]), "label": "Int8", "rank": "Int64"})


def mining_metrics(result: MiningResult, before: pd.DataFrame, after: pd.DataFrame, leaks: dict[str, int], *,
                   model: str, source_table: str, seconds: float) -> dict[str, Any]:
    """The figures of ``metrics/03_negative_mining.json`` (``headline``: at most eight scalars).

    ``mined_share`` is the share of mined rows among each task's labelled rows after mining (the headline's:
    over all tasks); with ``share`` asked, ``share`` holds per task the negatives asked, found and kept, the
    share reached and whether enough were found (``enough``), and the same per language.
    """
    skipped = result.skipped
    by_reason = skipped.groupby("reason", sort=False)["candidates"].sum() if len(skipped) else pd.Series()
    mined = result.rows.groupby(["task", "language"]).size() if len(result.rows) else pd.Series(dtype=int)
    balance = class_balance_change(before, after)
    after_share = _positive_share(after[after["label"].notna()])
    n_labelled = int(after["label"].notna().sum())
    metrics = {
        "enabled": True,
        "sampling": result.sampling,
        "embedder": model,
        "source_table": source_table,
        "rows": {"before": len(before), "mined": len(result.rows), "after": len(after)},
        "mined": {t: {lang: int(n) for (tt, lang), n in mined.items() if tt == t}
                  for t in dict.fromkeys(mined.index.get_level_values(0))},
        "skipped": {t: dict(zip(part["reason"], part["candidates"].astype(int))) for t, part in
                    skipped.groupby("task", sort=False)},
        "skipped_total": {r: int(by_reason.get(r, 0)) for r in SKIP_REASONS},
        "per_language": _records(result.report),
        "class_balance": _records(balance),
        "leak_check": {**leaks, "caught_by_guard": int(by_reason.get("labelled_positive", 0))},
        "index": result.index,
        "timings": {**result.timings, "total_s": round(seconds, 3)},
        "similarity": similarity_summary(after),
        "mined_share": mined_share(result.rows, after),
    }
    if result.share is not None:
        metrics["share"] = share_summary(result)
    metrics["headline"] = {  # the step's time is on the index page (run status), so it is left out here
        "sampling": result.sampling,
        "mined_negatives": len(result.rows),
        "mined_share": round(len(result.rows) / n_labelled, 4) if n_labelled else None,
        "skipped_labelled_positive": metrics["skipped_total"]["labelled_positive"],
        "skipped_hierarchy": metrics["skipped_total"]["hierarchy"],
        "skipped_margin_or_cap": sum(metrics["skipped_total"][r] for r in ("within_margin", "above_cap")),
        "leaked_negatives": leaks["total"],
        "positive_share_after": None if after_share is None else round(after_share, 4),
    }
    return metrics


def mined_share(mined: pd.DataFrame, after: pd.DataFrame) -> dict[str, float]:
    """Per task, the mined rows over the labelled rows after mining (``after``: the training table plus them)."""
    labelled = after[after["label"].notna()]
    counts = mined.groupby("task").size()
    return {str(task): round(int(counts.get(task, 0)) / n, 4)
            for task, n in labelled.groupby("task", sort=False).size().items()}


def share_summary(result: MiningResult) -> dict[str, Any]:
    """The ``share`` section of the metrics: asked, found and kept per task, the share reached, and per language."""
    per_task = {}
    for task, part in result.share_report.groupby("task", sort=False):
        rows, asked, found, kept = (int(part[c].sum()) for c in ("rows", "asked", "found", "kept"))
        per_task[str(task)] = {"rows": rows, "asked": asked, "found": found, "kept": kept,
                               "share_reached": round(kept / (rows + kept), 4), "enough": found >= asked}
    return {"asked": result.share, "per_task": per_task, "per_language": _records(result.share_report)}


def class_balance_change(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Labelled rows and positive share per task and language, before and after mining."""
    def balance(df: pd.DataFrame, suffix: str) -> pd.DataFrame:
        labelled = df[df["label"].notna()]
        label = labelled["label"].astype("float64")
        out = label.groupby([labelled["task"], labelled["language"]]).agg(["size", "mean"])
        return out.set_axis([f"rows_{suffix}", f"positive_share_{suffix}"], axis=1)

    table = balance(before, "before").join(balance(after, "after"), how="outer").reset_index()
    table["mined"] = table["rows_after"].fillna(0) - table["rows_before"].fillna(0)
    for col in ("positive_share_before", "positive_share_after"):
        table[col] = table[col].round(4)
    return table.astype({"mined": "int64"})


def similarity_summary(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Mean cosine per task for positives, labelled negatives and mined negatives."""
    out: dict[str, dict[str, float | None]] = {}
    for task, part in table[table["similarity"].notna()].groupby("task", sort=False):
        groups = similarity_groups(part)
        out[str(task)] = {g: round(float(s.mean()), 4) if len(s) else None
                          for g, s in part["similarity"].groupby(groups)}
    return out


def similarity_groups(table: pd.DataFrame) -> pd.Series:
    """``positive``, ``labelled negative`` or ``mined negative`` per row (None for unlabelled rows)."""
    mined = table["origin"].eq(ORIGIN).to_numpy()
    label = table["label"].astype("float64").to_numpy()
    kind = np.where(mined, "mined negative", np.where(label == 1, "positive", "labelled negative"))
    return pd.Series(np.where(np.isnan(label) & ~mined, None, kind), index=table.index, name="kind")


def mined_examples(mined: pd.DataFrame, train: pd.DataFrame, *, per_language: int = 3,
                   seed: int = 0) -> pd.DataFrame:
    """A few mined negatives per task and language beside a positive of the same query."""
    if not len(mined):
        return pd.DataFrame(columns=["task", "language", "query", "positive", "mined negative", "similarity",
                                     "rank"])
    positives = train[train["label"].astype("Int8").eq(1).fillna(False)].drop_duplicates("id")
    positive = positives.set_index("id")["target"]
    shuffled = mined.sample(frac=1.0, random_state=seed)
    picked = shuffled.groupby(["task", "language"], sort=False).head(per_language)
    out = picked.assign(positive=picked["source_id"].map(positive))
    out = out.rename(columns={"target": "mined negative"})
    out = out[["task", "language", "query", "positive", "mined negative", "similarity", "rank"]]
    return out.sort_values(["task", "language"], kind="stable").reset_index(drop=True)


def empty_rows() -> pd.DataFrame:
    """A created-rows table with no rows (base columns, similarity, rank)."""
    return _finish_rows([], 0)


# ------------------------------------------------------------------ internals


@dataclass(frozen=True)
class _Settings:
    top_k: int
    rank_range: tuple[int, int]
    sampling: str
    per_positive: int
    max_similarity: float | None
    relative_margin: float | None
    skip_hierarchy: bool
    batch_size: int
    index: str
    index_threshold: int
    seed: int
    share: float | None = None


_REPORT_COLUMNS = ["task", "language", "queries", "short", "mined", "dropped_for_balance", "added"]
_SHARE_COLUMNS = ["task", "language", "rows", "asked", "per_positive", "found", "kept"]
_ROW_DTYPES = {"id": "int64", "label": "Int8", "source_id": "Int64", "similarity": "float64", "rank": "Int64"}


def _check_arguments(top_k: int, rank_range: tuple[int, int] | None, sampling: str, per_positive: int,
                     share: float | None, index: str, batch_size: int) -> None:
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if rank_range is not None:
        first, last = rank_range
        if not 1 <= first <= last <= top_k:
            raise ValueError(f"rank_range must satisfy 1 <= first <= last <= top_k ({top_k}), "
                             f"got {rank_range}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if per_positive < 1:
        raise ValueError(f"negatives_per_positive must be at least 1, got {per_positive}")
    if share is not None and not 0 < share < 1:
        raise ValueError(f"target_positive_share must lie strictly between 0 and 1, got {share}")
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {', '.join(INDEX_KINDS)}, got {index!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def _check_share(share: float | None, positive_share: float | None) -> None:
    if share is None:
        return
    if not 0 < share < 1:
        raise ValueError(f"share must lie strictly between 0 and 1, got {share}")
    if positive_share is not None:
        raise ValueError("share and target_positive_share set the volume two ways: give one of them "
                         f"(share={share}, target_positive_share={positive_share})")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise ImportError("hard-negative mining needs faiss: pip install faiss-cpu (or faiss-gpu)") from err
    return faiss


def _gpu_count(faiss: Any) -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # faiss-cpu builds may lack it
        return 0


def next_id(tables: Sequence[pd.DataFrame]) -> int | str:
    """Where the ids of created rows start: one above every integer id, or a prefix no string id has
    (``qckit.data.first_new_id``)."""
    return first_new_id(tables, "negative")


def _mine_task(task: str, rows: pd.DataFrame, others: pd.DataFrame, extra: list[str], embed: Embedder,
               cfg: _Settings, score_rows: bool):
    """Mine one task. Returns (mined rows without ids, units with ``short``, row similarities, skip counts,
    index kind, timings)."""
    timings = {}
    units = _units(rows)
    units["want"] = units["n_positive"].to_numpy() * _per_positive_asks(rows, units, cfg)
    cand_texts = list(dict.fromkeys([*rows["target"], *extra]))
    query_texts = list(dict.fromkeys(rows["query"] if score_rows else units["query"]))
    tick = time.perf_counter()
    query_vecs = np.asarray(embed(query_texts, "query"), dtype=np.float32)
    cand_vecs = np.asarray(embed(cand_texts, "passage"), dtype=np.float32)
    timings["embed_s"] = time.perf_counter() - tick
    q_pos = {t: i for i, t in enumerate(query_texts)}
    c_pos = {t: i for i, t in enumerate(cand_texts)}
    positives = rows[rows["label"].astype("Int8").eq(1).fillna(False)]
    sims = _row_similarity(rows if score_rows else positives, query_vecs, cand_vecs, q_pos, c_pos)
    least = sims.loc[positives.index].groupby([positives["language"], positives["query"]], sort=True).min()
    units["min_positive"] = least.to_numpy()  # same keys and order as _units
    units["q"] = units["query"].map(q_pos).to_numpy()
    guards = _Guards(task, rows, others, cand_texts, units, cfg.skip_hierarchy)
    counts = np.zeros(len(SKIP_REASONS) + 1, dtype=np.int64)
    if cfg.sampling == "random_catalogue":
        timings["index_s"], kind = 0.0, "none"
        tick = time.perf_counter()
        picked, short = _draw_from_catalogue(task, units, cand_texts, query_vecs, cand_vecs, guards, cfg, counts)
    else:
        tick = time.perf_counter()
        k = min(cfg.top_k, len(cand_texts))
        index, kind = build_index(cand_vecs, kind=cfg.index, threshold=cfg.index_threshold, k=k, seed=cfg.seed)
        timings["index_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        picked, short = _search_neighbours(task, units, cand_texts, query_vecs, index, k, guards, cfg, counts)
    timings["search_s"] = time.perf_counter() - tick
    mined = _as_rows(task, units, cand_texts, picked)
    return mined, units.assign(short=short), sims, counts[1:], kind, timings


def _search_neighbours(task: str, units: pd.DataFrame, cand_texts: list[str], query_vecs: np.ndarray, index: Any,
                       k: int, guards: _Guards, cfg: _Settings,
                       counts: np.ndarray) -> tuple[list[pd.DataFrame], np.ndarray]:
    """The semantic samplers: each query's ``k`` nearest candidates, guarded, sampled (``_pick``)."""
    picked = []
    hashes = (_text_hash(units["query"]), _text_hash(cand_texts))
    short = np.zeros(len(units), dtype=bool)
    bar = progress(total=len(units), desc=f"mining {task}", unit="query")
    for start in range(0, len(units), cfg.batch_size):
        batch = units.iloc[start:start + cfg.batch_size]
        sim, ids = search(index, query_vecs[batch["q"].to_numpy()], k, batch_size=cfg.batch_size)
        found, short[start:start + len(batch)] = _pick(batch, start, sim, ids, guards, cfg, hashes, counts)
        picked.append(found)
        bar.update(len(batch))
    bar.close()
    return picked, short


def _draw_from_catalogue(task: str, units: pd.DataFrame, cand_texts: list[str], query_vecs: np.ndarray,
                         cand_vecs: np.ndarray, guards: _Guards, cfg: _Settings,
                         counts: np.ndarray) -> tuple[list[pd.DataFrame], np.ndarray]:
    """``random_catalogue``: per query, candidates drawn uniformly without replacement from every candidate,
    kept in draw order as the guards allow, until the query has its negatives.

    Each query first draws a few times what it needs; one still short then goes through the whole catalogue
    in a random order (a few such queries at a time, so memory stays bounded), so it ends short only when
    the guards leave too few candidates in all. A query's draw depends on the seed, its language and text,
    and the set of candidates, not on the order of the rows or the batch size.
    """
    n = len(cand_texts)
    catalogue = np.argsort(np.asarray(cand_texts, dtype=object), kind="stable")  # sorted: order-free draws
    unit_hash = _text_hash(units["language"].astype(str) + "\x1f" + units["query"].astype(str))
    want = units["want"].to_numpy()
    picked = []
    short = np.zeros(len(units), dtype=bool)
    retry_rows = max(1, 2**22 // max(n, 1))  # queries drawing the whole catalogue at a time
    bar = progress(total=len(units), desc=f"drawing {task}", unit="query")
    for start in range(0, len(units), cfg.batch_size):
        rows = np.arange(start, min(start + cfg.batch_size, len(units)))
        sizes = np.minimum(n, 4 * want[rows] + 16)
        ids = _catalogue_draws(unit_hash[rows], sizes, catalogue, cfg.seed)
        allowed, code, sims = _allowed(rows, ids, units, query_vecs, cand_vecs, guards, cfg)
        retry = (allowed.sum(axis=1) < want[rows]) & (sizes < n)
        done = rows[~retry]
        found, short[done] = _take_in_draw_order(done, ids[~retry], allowed[~retry], code[~retry], sims[~retry],
                                                 want[done], counts)
        picked.append(found)
        for first in range(0, int(retry.sum()), retry_rows):
            part = rows[retry][first:first + retry_rows]
            ids = _catalogue_draws(unit_hash[part], np.full(len(part), n), catalogue, cfg.seed)
            allowed, code, sims = _allowed(part, ids, units, query_vecs, cand_vecs, guards, cfg)
            found, short[part] = _take_in_draw_order(part, ids, allowed, code, sims, want[part], counts)
            picked.append(found)
        bar.update(len(rows))
    bar.close()
    return picked, short


def _catalogue_draws(unit_hash: np.ndarray, sizes: np.ndarray, catalogue: np.ndarray, seed: int) -> np.ndarray:
    """Per unit, ``size`` distinct candidate ids drawn uniformly (padded with -1), seeded by (seed, unit)."""
    out = np.full((len(sizes), int(sizes.max(initial=0))), -1, dtype=np.int64)
    for i, (h, size) in enumerate(zip(unit_hash.tolist(), sizes.tolist())):
        rng = np.random.default_rng([seed % 2**64, h])
        out[i, :size] = catalogue[rng.choice(len(catalogue), size=size, replace=False)]
    return out


def _allowed(rows: np.ndarray, ids: np.ndarray, units: pd.DataFrame, query_vecs: np.ndarray, cand_vecs: np.ndarray,
             guards: _Guards, cfg: _Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allowed mask, guard codes, cosine) of drawn candidates; ids -1 (padding) are never allowed."""
    safe = np.where(ids >= 0, ids, 0)
    sims = _pair_cosine(query_vecs[units["q"].to_numpy()[rows]], safe, cand_vecs)
    code = guards.reasons(rows, ids, sims, units["min_positive"].to_numpy()[rows], cfg)
    return (ids >= 0) & (code == 0), code, sims


def _pair_cosine(queries: np.ndarray, ids: np.ndarray, cand_vecs: np.ndarray, *, budget: int = 2**24) -> np.ndarray:
    """Cosine of each query row with its candidates ``ids`` (rows, width), gathering at most ``budget`` floats
    at a time; a row wider than that is scored against the whole catalogue instead of gathered."""
    out = np.zeros(ids.shape, dtype=np.float32)
    width, dim = ids.shape[1], cand_vecs.shape[1]
    if not ids.size:
        return out
    if width * dim > budget:
        for i in range(len(ids)):
            out[i] = (cand_vecs @ queries[i])[ids[i]]
        return out
    step = max(1, budget // (width * dim))
    for start in range(0, len(ids), step):
        chunk = slice(start, start + step)
        out[chunk] = np.einsum("ij,ikj->ik", queries[chunk], cand_vecs[ids[chunk]])
    return out


def _take_in_draw_order(rows: np.ndarray, ids: np.ndarray, allowed: np.ndarray, code: np.ndarray, sims: np.ndarray,
                        want: np.ndarray, counts: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The first ``want`` allowed draws of each unit and whether it is short; counts the skips met before the
    unit's quota was filled (what a one-at-a-time draw would have met)."""
    taken = np.cumsum(allowed, axis=1)
    examined = (ids >= 0) & (taken - allowed < want[:, None])
    counts += np.bincount(code[examined], minlength=len(counts))
    keep = allowed & (taken <= want[:, None])
    r, c = np.nonzero(keep)
    found = pd.DataFrame({"unit": rows[r], "cand": ids[r, c], "similarity": sims[r, c].astype("float64"),
                          "rank": pd.array([pd.NA] * len(r), dtype="Int64"), "slot": taken[r, c] - 1})
    return found, keep.sum(axis=1) < want


def _units(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (language, query) with a positive: its positive count and first positive row id."""
    positives = rows[rows["label"].astype("Int8").eq(1).fillna(False)]
    grouped = positives.groupby(["language", "query"], sort=True)["id"]
    return pd.DataFrame({"n_positive": grouped.size(), "source_id": grouped.min()}).reset_index()


def _per_positive_asks(rows: pd.DataFrame, units: pd.DataFrame, cfg: _Settings) -> np.ndarray:
    """Negatives each unit asks per positive row: ``negatives_per_positive``; with a share, per language one
    more than the share's quota over the language's positive rows, so short queries are made up by others."""
    if cfg.share is None:
        return np.full(len(units), cfg.per_positive, dtype=np.int64)
    quota = _share_quotas(rows, cfg.share)
    positives = units.groupby("language")["n_positive"].sum()
    ask = np.ceil(quota.reindex(positives.index).to_numpy() / positives.to_numpy() - 1e-9).astype(np.int64) + 1
    ask = pd.Series(np.maximum(ask, cfg.per_positive), index=positives.index)
    return units["language"].map(ask).to_numpy(dtype=np.int64)


def _share_quotas(rows: pd.DataFrame, share: float) -> pd.Series:
    """Per language (sorted), the mined rows that give it ``share``: ``share / (1 - share) * labelled rows``."""
    return rows.groupby("language", sort=True).size().astype("float64") * (share / (1 - share))


def _row_similarity(rows: pd.DataFrame, query_vecs: np.ndarray, cand_vecs: np.ndarray,
                    q_pos: dict[str, int], c_pos: dict[str, int]) -> pd.Series:
    q = rows["query"].map(q_pos).to_numpy()
    t = rows["target"].map(c_pos).to_numpy()
    sims = np.einsum("ij,ij->i", query_vecs[q], cand_vecs[t]) if len(rows) else np.empty(0)
    return pd.Series(sims.astype("float64"), index=rows.index)


class _Guards:
    """Integer keys of (normalised query, normalised target) pairs, and category-path ancestry."""

    def __init__(self, task: str, rows: pd.DataFrame, others: pd.DataFrame, cand_texts: list[str],
                 units: pd.DataFrame, skip_hierarchy: bool):
        labelled = pd.concat([rows, others], ignore_index=True)
        unit_queries, label_queries = normalise_queries(units["query"]), normalise_queries(labelled["query"])
        cand_targets = normalise_queries(pd.Series(cand_texts, dtype=object))
        label_targets = normalise_queries(labelled["target"])
        queries = pd.Index(pd.unique(pd.concat([label_queries, unit_queries])))
        targets = pd.Index(pd.unique(pd.concat([cand_targets, label_targets])))
        self.n_targets = len(targets)
        self.unit_q = queries.get_indexer(unit_queries).astype(np.int64)
        self.cand_t = targets.get_indexer(cand_targets).astype(np.int64)
        lq = queries.get_indexer(label_queries).astype(np.int64)
        lt = targets.get_indexer(label_targets).astype(np.int64)
        label = labelled["label"].astype("float64").to_numpy()
        self.positive = np.unique(lq[label == 1] * self.n_targets + lt[label == 1])
        self.negative = np.unique(lq[label == 0] * self.n_targets + lt[label == 0])
        self.hierarchy = None
        if skip_hierarchy and task == "QC":
            pos_paths = labelled.loc[label == 1, "target"].tolist()
            self.hierarchy = _Hierarchy(cand_texts, lq[label == 1], pos_paths)

    def reasons(self, unit_rows: np.ndarray, ids: np.ndarray, sims: np.ndarray, min_positive: np.ndarray,
                cfg: _Settings) -> np.ndarray:
        """Code per (query, neighbour): 0 allowed, else 1 + the index of the first reason in SKIP_REASONS."""
        q = self.unit_q[unit_rows][:, None]
        safe = np.where(ids >= 0, ids, 0)
        keys = q * self.n_targets + self.cand_t[safe]
        code = np.zeros(ids.shape, dtype=np.int8)
        if cfg.relative_margin is not None:
            limit = min_positive - cfg.relative_margin * np.abs(min_positive)
            code[sims > limit[:, None]] = 5
        if cfg.max_similarity is not None:
            code[sims > cfg.max_similarity] = 4
        code[np.isin(keys, self.negative)] = 3
        if self.hierarchy is not None:
            code[self.hierarchy.related(q, safe)] = 2
        code[np.isin(keys, self.positive)] = 1
        return code


class _Hierarchy:
    """Ancestors and descendants of each query's positive category paths, as integer keys."""

    def __init__(self, cand_texts: list[str], pos_queries: np.ndarray, pos_paths: list[str]):
        ids: dict[tuple[str, ...], int] = {}

        def path_id(levels: tuple[str, ...]) -> int:
            return ids.setdefault(levels, len(ids))

        cand_levels = [_levels(t) for t in cand_texts]
        self.cand_id = np.array([path_id(lv) for lv in cand_levels], dtype=np.int64)
        depth = max((len(lv) for lv in cand_levels), default=1)
        self.cand_prefixes = np.full((len(cand_texts), max(depth - 1, 1)), -1, dtype=np.int64)
        for i, lv in enumerate(cand_levels):
            for j in range(1, len(lv)):
                self.cand_prefixes[i, j - 1] = path_id(lv[:j])
        ancestors, paths = [], []
        for q, path in zip(pos_queries.tolist(), pos_paths):
            lv = _levels(path)
            paths.append((q, path_id(lv)))
            ancestors += [(q, path_id(lv[:j])) for j in range(1, len(lv))]
        self.n_paths = max(len(ids), 1)
        self.paths = np.unique([q * self.n_paths + p for q, p in paths] or [-1])
        self.ancestors = np.unique([q * self.n_paths + p for q, p in ancestors] or [-1])

    def related(self, q: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """True where the candidate is an ancestor or a descendant of one of the query's positives."""
        is_ancestor = np.isin(q * self.n_paths + self.cand_id[cand], self.ancestors)
        prefixes = self.cand_prefixes[cand]  # (queries, k, depth-1)
        keys = q[:, :, None] * self.n_paths + prefixes
        is_descendant = (np.isin(keys, self.paths) & (prefixes >= 0)).any(axis=2)
        return is_ancestor | is_descendant


@functools.lru_cache(maxsize=200_000)
def _levels(path: str) -> tuple[str, ...]:
    return tuple(normalise_query(level) for level in parse_category_path(path))


def _text_hash(texts: Sequence[str] | pd.Series) -> np.ndarray:
    return text_digests(list(texts)).view(np.uint64).reshape(-1, 2)[:, 0].copy()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: well spread 64-bit values from structured ones (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _pair_priority(query_hash: np.ndarray, cand_hash: np.ndarray, seed: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix(query_hash[:, None] ^ _mix(cand_hash + np.uint64(seed % 2**64)))


def _pick(batch: pd.DataFrame, start: int, sims: np.ndarray, ids: np.ndarray, guards: _Guards, cfg: _Settings,
          hashes: tuple[np.ndarray, np.ndarray], counts: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Apply the guards to one batch of neighbour lists and sample the negatives of each query.

    Returns the kept (unit, candidate) pairs and, per query, whether it got fewer negatives than asked.
    """
    unit_rows = np.arange(start, start + len(batch))
    rank = np.broadcast_to(np.arange(1, ids.shape[1] + 1), ids.shape)
    first, last = cfg.rank_range
    in_range = (rank >= first) & (rank <= last) & (ids >= 0)
    code = guards.reasons(unit_rows, ids, sims, batch["min_positive"].to_numpy(), cfg)
    counts += np.bincount(code[in_range], minlength=len(counts))
    allowed = in_range & (code == 0)
    if cfg.sampling == "random":
        priority = _pair_priority(hashes[0][unit_rows], hashes[1][np.where(ids >= 0, ids, 0)], cfg.seed)
    else:
        priority = rank.astype(np.uint64)
    priority = np.where(allowed, priority, np.iinfo(np.uint64).max)
    order = np.argsort(priority, axis=1, kind="stable")
    slot = np.empty_like(order)
    np.put_along_axis(slot, order, np.arange(ids.shape[1])[None, :].repeat(len(ids), 0), axis=1)
    want = batch["want"].to_numpy()[:, None]
    keep = allowed & (slot < want)
    r, c = np.nonzero(keep)
    found = pd.DataFrame({"unit": unit_rows[r], "cand": ids[r, c], "similarity": sims[r, c].astype("float64"),
                          "rank": rank[r, c], "slot": slot[r, c]})
    return found, keep.sum(1) < want[:, 0]


def _as_rows(task: str, units: pd.DataFrame, cand_texts: list[str],
             picked: list[pd.DataFrame]) -> pd.DataFrame:
    mined = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(
        {c: pd.Series(dtype="int64") for c in ("unit", "cand", "rank", "slot")}).assign(similarity=0.0)
    unit = units.iloc[mined["unit"].to_numpy()]
    return pd.DataFrame({
        "task": task, "language": unit["language"].to_numpy(), "query": unit["query"].to_numpy(),
        "target": np.asarray(cand_texts, dtype=object)[mined["cand"].to_numpy()],
        "source_id": unit["source_id"].to_numpy(), "similarity": mined["similarity"].to_numpy(),
        "rank": mined["rank"].to_numpy(), "slot": mined["slot"].to_numpy(),
    })


def _balance(task: str, mined: pd.DataFrame, units: pd.DataFrame, rows: pd.DataFrame, share: float | None,
             seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep at most as many negatives per language as ``share`` allows, spreading them over queries."""
    label = rows["label"].astype("float64")
    counts = label.groupby(rows["language"]).agg(["sum", "size"])
    found = mined.groupby("language").size()
    allowed = {}
    for language in units["language"].unique():
        allowed[language] = int(found.get(language, 0))
        if share is not None:
            positives, total = counts.loc[language, "sum"], counts.loc[language, "size"]
            room = math.floor(positives * (1 - share) / share + 1e-9) - int(total - positives)
            allowed[language] = min(allowed[language], max(0, room))
    return _keep_per_language(task, mined, units, allowed, seed)


def _keep_share(task: str, mined: pd.DataFrame, units: pd.DataFrame, rows: pd.DataFrame, share: float,
                seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Keep the number of negatives that gives the task ``share`` (or all found), spread over languages in
    proportion to their rows; also returns the task's ``share_report`` rows."""
    quota = _share_quotas(rows, share)
    found = mined.groupby("language").size().reindex(quota.index, fill_value=0).to_numpy()
    kept = _allocate(quota.to_numpy(), found)
    ask = (units["want"] // units["n_positive"]).groupby(units["language"]).max()
    report = pd.DataFrame({
        "task": task, "language": quota.index, "rows": rows.groupby("language", sort=True).size().to_numpy(),
        "asked": _allocate(quota.to_numpy(), np.full(len(quota), np.iinfo(np.int64).max)),
        "per_positive": ask.reindex(quota.index, fill_value=0).to_numpy(), "found": found, "kept": kept,
    }, columns=_SHARE_COLUMNS)
    mined, balance = _keep_per_language(task, mined, units, dict(zip(quota.index, kept.tolist())), seed)
    return mined, balance, report


def _allocate(quota: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Integers near ``quota`` summing to ``round(sum(quota))`` (or ``sum(limits)`` when smaller), none above
    its limit: each within one of its quota when no limit binds; what a limited group cannot take is spread
    over the others in proportion to their quota (largest remainder throughout, ties to the first)."""
    out = np.zeros(len(quota), dtype=np.int64)
    fixed = np.zeros(len(quota), dtype=bool)
    total, target = int(math.floor(quota.sum() + 0.5 + 1e-9)), quota.astype("float64")
    while (~fixed).any():
        part = np.zeros(len(quota), dtype=np.int64)
        part[~fixed] = _largest_remainder(target[~fixed], total - int(out[fixed].sum()))
        over = ~fixed & (part > limits)
        if not over.any():
            out[~fixed] = part[~fixed]
            break
        out[over], fixed = limits[over], fixed | over
        free = np.where(fixed, 0.0, quota)
        if free.sum() > 0:
            target = free * max(0, total - int(out[fixed].sum())) / free.sum()
    return out


def _largest_remainder(quota: np.ndarray, total: int) -> np.ndarray:
    """``floor(quota)`` plus one for the ``total - sum(floor)`` largest fractional parts (earliest first on ties)."""
    base = np.floor(quota + 1e-9).astype(np.int64)
    extra = max(0, min(total - int(base.sum()), len(quota)))
    order = np.argsort(-(quota - base), kind="stable")
    base[order[:extra]] += 1
    return base


def _keep_per_language(task: str, mined: pd.DataFrame, units: pd.DataFrame, allowed: Mapping[str, int],
                       seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep ``allowed[language]`` of each language's mined rows: every query's first negative before any
    query's second, ties in a seeded order; the report per task and language."""
    keep = np.ones(len(mined), dtype=bool)
    report = []
    for language, unit_part in units.groupby("language", sort=True):
        idx = np.flatnonzero(mined["language"].to_numpy() == language)
        allowed_here = min(len(idx), allowed.get(language, len(idx)))
        if allowed_here < len(idx):
            part = mined.iloc[idx]
            with np.errstate(over="ignore"):
                tie = _mix(_text_hash(part["query"]) ^ _mix(_text_hash(part["target"]) + np.uint64(seed + 1)))
            order = np.lexsort((tie, part["slot"].to_numpy()))  # every query's first negative comes first
            keep[idx[order[allowed_here:]]] = False
        report.append({"task": task, "language": language, "queries": len(unit_part),
                       "short": int(unit_part["short"].sum()), "mined": len(idx),
                       "dropped_for_balance": len(idx) - allowed_here, "added": allowed_here})
    report = pd.DataFrame(report, columns=_REPORT_COLUMNS)
    return mined[keep].drop(columns="slot").reset_index(drop=True), report


def _finish_rows(found: list[pd.DataFrame], first_id: int | str) -> pd.DataFrame:
    columns = [*BASE_COLUMNS, "similarity", "rank"]
    frames = [f for f in found if len(f)]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        return empty.astype({**_ROW_DTYPES, **id_dtypes(pd.Series(dtype=object if isinstance(first_id, str)
                                                                  else "int64"))})
    rows = pd.concat(frames, ignore_index=True)
    task_order = {t: i for i, t in enumerate(TASKS)}
    rows = rows.sort_values(["task", "language", "query", "rank"], key=lambda s: s.map(task_order)
                            if s.name == "task" else s, kind="stable").reset_index(drop=True)
    rows["id"] = new_ids(first_id, len(rows))
    rows["label"] = 0
    rows["origin"] = ORIGIN
    return rows[columns].astype({**_ROW_DTYPES, **id_dtypes(rows["id"])})


def _positive_share(labelled: pd.DataFrame) -> float | None:
    return float(labelled["label"].astype("float64").mean()) if len(labelled) else None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.astype(object).to_dict("records")]
