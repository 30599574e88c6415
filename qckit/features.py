"""What several steps and heads share: query normalisation, query groups and folds, embeddings, pair features.

Every module that compares queries (the audit's leakage check, the negatives' guards, translation's
duplicate filter, the noise detector's folds, calibration's held-out thresholds, the trees head's
neighbour bank) normalises them the same way, here: casefolded, whitespace collapsed.

Example:
    >>> from qckit.features import grouped_folds, normalise_query, pair_features, embed_pairs
    >>> normalise_query("  Red  SHOES ")
    'red shoes'
    >>> folds = grouped_folds(pairs, 5, seed=0)          # every row of a query in one fold
    >>> q, t = embed_pairs(pairs)                        # L2-normalised e5 embeddings, cached on disk
    >>> X = pair_features(q, t)                          # [q, t, q*t, |q-t|, cos]
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from qckit.data import parse_category_path
from qckit.embed import embed_texts


# ------------------------------------------------------------------------------------------ queries
def normalise_query(text: object) -> str:
    """Casefolded text with collapsed whitespace: how the kit decides that two queries are the same."""
    return " ".join(str(text).casefold().split())


def normalise_queries(texts: pd.Series | Iterable) -> pd.Series:
    """``normalise_query`` of every value (missing values become ``""``), index kept."""
    series = texts if isinstance(texts, pd.Series) else pd.Series(list(texts), dtype=object)
    values = series.astype(object).where(series.notna(), "").tolist()  # plain str methods: ~3x pandas' .str
    return pd.Series([normalise_query(v) for v in values], index=series.index, dtype=object)


def query_groups(pairs: pd.DataFrame) -> np.ndarray:
    """The fold group of every row: its normalised query, or its source row's query for created rows.

    A translation carries its source row's meaning in other words, so it stays in its source's group.
    """
    groups = normalise_queries(pairs["query"]).to_numpy(dtype=object)
    if "source_id" not in pairs or "id" not in pairs:
        return groups
    by_id = dict(zip(pairs["id"].to_numpy(), groups))
    sources = pairs["source_id"].to_numpy(dtype=object)
    for _ in range(3):  # a negative mined for a translation: follow the chain a few links up
        groups = np.array([by_id.get(s, g) if pd.notna(s) else g for s, g in zip(sources, groups)], dtype=object)
        by_id = dict(zip(pairs["id"].to_numpy(), groups))
    return groups


def grouped_folds(pairs: pd.DataFrame, k: int = 5, *, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of every row; all rows of a query share a fold, labels are stratified.

    Args:
        pairs: the pairs table (``query``, ``label``; ``id`` and ``source_id`` to group created rows).
        k: number of folds (fewer when there are fewer query groups, at least 2).
        seed: seed of the shuffle.

    Example:
        >>> folds = grouped_folds(pairs, 5, seed=0)
        >>> pairs.groupby("query").apply(lambda g: folds[g.index].nunique()).max()
        1
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    groups = query_groups(pairs)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise ValueError(f"cross-validation needs at least 2 distinct queries; the rows hold {n_groups} distinct "
                         f"{'query' if n_groups == 1 else 'queries'}")
    k = min(k, n_groups)
    labels = pairs["label"].fillna(0).astype(int).to_numpy()
    folds = np.empty(len(pairs), dtype=np.int64)
    if min(np.bincount(labels, minlength=2)) >= k:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(pairs)), labels, groups)):
        folds[test] = fold
    return folds


# ------------------------------------------------------------------------------------------ embeddings
def embed_column(texts: pd.Series, kind: str, model: str, cache_dir: str | Path | None = None,
                 models_dir: str | Path | None = None, batch_size: int = 64) -> np.ndarray:
    """float32 embeddings of a column of texts (missing ones as ``""``), through the on-disk cache."""
    return np.asarray(embed_texts(texts.fillna("").astype(str).tolist(), model=model, kind=kind,
                                  cache_dir=cache_dir, models_dir=models_dir, batch_size=batch_size), np.float32)


def embed_pairs(pairs: pd.DataFrame, *, model: str = "multilingual-e5-small", cache_dir: str | Path | None = None,
                models_dir: str | Path | None = None, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised embeddings of every row's query (``query: ``) and target (``passage: ``).

    Each distinct text is embedded once, through ``qckit.embed.embed_texts`` (which caches on disk in
    ``cache_dir``; ``models_dir`` is where built-in models are materialised).
    """
    return (embed_column(pairs["query"], "query", model, cache_dir, models_dir, batch_size),
            embed_column(pairs["target"], "passage", model, cache_dir, models_dir, batch_size))


def category_leaves(targets: pd.Series) -> pd.Series:
    """The most specific level of every category path (``""`` when a path has none)."""
    return targets.fillna("").astype(str).map(lambda p: (parse_category_path(p) or [""])[-1])


def pair_features(query_emb: np.ndarray, target_emb: np.ndarray, leaf_emb: np.ndarray | None = None) -> np.ndarray:
    """``[q, t, q*t, |q-t|, cos]`` (+ ``[l, q*l, cos(q, l)]`` with the leaf category): what a linear model
    needs to tell a relevant pair from another.

    ``q`` and ``t`` alone learn which queries and targets are mostly relevant; ``q*t`` is a learned,
    per-dimension weighting of their similarity; ``|q-t|`` where they differ; ``cos`` the plain similarity.
    A category path shares its upper levels with its siblings, which blurs ``t``; the leaf ``l`` does not.
    """
    q, t = np.asarray(query_emb, np.float32), np.asarray(target_emb, np.float32)
    parts = [q, t, q * t, np.abs(q - t), np.sum(q * t, axis=1, keepdims=True)]
    if leaf_emb is not None:
        leaf = np.asarray(leaf_emb, np.float32)
        parts += [leaf, q * leaf, np.sum(q * leaf, axis=1, keepdims=True)]
    return np.hstack(parts)
