"""qckit.features: the one query normalisation every step shares, and the folds built on it.

The query groups and grouped folds of the noise detector are tested in tests/test_noise.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qckit.calibrate import query_folds
from qckit.features import category_leaves, normalise_queries, normalise_query, pair_features


@pytest.mark.parametrize(("text", "expected"), [
    ("  Red  SHOES ", "red shoes"),
    ("Straße", "strasse"),  # casefold, not lower
    ("a\tb\nc\u00a0d\u3000e", "a b c d e"),  # tabs, newlines, no-break and ideographic spaces
    ("", ""),
    ("   ", ""),
    ("赤い 靴", "赤い 靴"),
    (42, "42"),
])
def test_normalise_query(text, expected):
    assert normalise_query(text) == expected


def test_normalise_queries_keeps_the_index_and_empties_missing_values():
    series = pd.Series(["B  b", None, float("nan"), pd.NA, " x "], index=[10, 11, 12, 13, 14], dtype=object)
    out = normalise_queries(series)
    assert out.tolist() == ["b b", "", "", "", "x"]
    assert out.index.tolist() == [10, 11, 12, 13, 14] and out.dtype == object
    # a pandas string column and a plain list give the same values (a list gets a fresh index)
    assert normalise_queries(series.astype("string")).tolist() == out.tolist()
    listed = normalise_queries(["B  b", None])
    assert listed.tolist() == ["b b", ""] and listed.index.tolist() == [0, 1]
    assert normalise_queries(pd.Series([], dtype=object)).empty


def test_calibration_query_folds_group_by_the_normalised_query():
    # the same query written four ways, and other queries: every spelling lands in one fold
    spellings = ["Red Shoes", "red  shoes", " RED SHOES", "red\tshoes"]
    queries = pd.Series(spellings * 5 + [f"query {i}" for i in range(40)] + [None, ""])
    folds = query_folds(queries, folds=5, seed=3)
    assert len(folds) == len(queries) and set(folds) == set(range(5))
    assert len(set(folds[:20])) == 1
    assert folds[-2] == folds[-1]  # a missing query and an empty one are the same (empty) query
    groups = pd.DataFrame({"q": normalise_queries(queries), "f": folds}).groupby("q")["f"].nunique()
    assert groups.max() == 1 and len(groups) == 42
    np.testing.assert_array_equal(query_folds(queries, folds=5, seed=3), folds)  # seeded


def test_category_leaves_and_pair_features():
    leaves = category_leaves(pd.Series(["shoes,women's shoes", "home & garden,arts,crafts & sewing", None, ""]))
    assert leaves.tolist() == ["women's shoes", "arts,crafts & sewing", "", ""]
    q = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    t = np.array([[0.0, 1.0], [0.6, 0.8]], np.float32)
    x = pair_features(q, t)
    assert x.shape == (2, 2 * 4 + 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], [1, 0, 0, 1, 0, 0, 1, 1, 0])  # q, t, q*t, |q-t|, cos
    np.testing.assert_allclose(x[1, -1], 1.0, rtol=1e-6)
    with_leaf = pair_features(q, t, leaf_emb=q)
    assert with_leaf.shape == (2, 2 * 4 + 1 + 2 * 2 + 1)
    np.testing.assert_allclose(with_leaf[:, -1], [1.0, 1.0], rtol=1e-6)  # cos(q, leaf) of q with itself
