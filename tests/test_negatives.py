"""Tests of qckit.negatives: the guards on hand-made cases, sampling, batching, determinism, the step."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("faiss")

from qckit import BASE_COLUMNS, negatives
from qckit import embed as embed_module
from qckit.config import ParamsError, load_params, parse_params
from qckit.data import parse_category_path
from qckit.features import normalise_query
from qckit.negatives import leak_check, mine_hard_negatives, next_id, search
from qckit.runs import Run
from qckit.steps import NEGATIVES, run_or_load
from qckit.steps import audit as audit_step
from qckit.steps import negatives as negatives_step

DIM = 64


class PlantedEmbedder:
    """Queries along axis 0; a candidate planted at similarity s is s*e0 + sqrt(1-s^2)*e_j, j its own axis.

    So the cosine of query and candidate is exactly s. Texts not planted get random unit vectors.
    """

    def __init__(self, similarities: dict[str, float]):
        self.similarities = similarities
        self.calls: list[tuple[str, int]] = []

    def __call__(self, texts, kind):
        self.calls.append((kind, len(texts)))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            if kind == "query":
                out[i, 0] = 1.0
            elif text in self.similarities:
                s = self.similarities[text]
                out[i, 0] = s
                out[i, 1 + list(self.similarities).index(text)] = np.sqrt(1 - s * s)
            else:
                v = np.random.default_rng(abs(hash(text)) % 2**32).normal(size=DIM)
                out[i] = v / np.linalg.norm(v)
        return out


def pairs(rows: list[tuple], start_id: int = 1) -> pd.DataFrame:
    """(task, language, query, target, label) tuples as a pairs table."""
    df = pd.DataFrame(rows, columns=["task", "language", "query", "target", "label"])
    df.insert(0, "id", np.arange(start_id, start_id + len(df), dtype="int64"))
    df["label"] = df["label"].astype("Int8")
    df["origin"] = "original"
    df["source_id"] = pd.array([pd.NA] * len(df), dtype="Int64")
    return df


def qc_case() -> tuple[pd.DataFrame, PlantedEmbedder]:
    sims = {
        "tools,hand tools,wrenches": 0.90,        # the positive
        "tools,hand tools": 0.88,                # its ancestor
        "tools,hand tools,wrenches,torque": 0.87,  # its descendant
        "tools,power tools,drills": 0.86,        # labelled positive in dev only (other case / spacing)
        "tools,power tools,saws": 0.84,          # labelled negative already
        "home,kitchen,knives": 0.80,
        "home,kitchen,pans": 0.70,
        "toys,dolls": 0.30,
    }
    train = pairs([
        ("QC", "en", "torque wrench", "tools,hand tools,wrenches", 1),
        ("QC", "en", "torque wrench", "tools,power tools,saws", 0),
        # other queries bring the rest of the candidates
        ("QC", "en", "doll", "toys,dolls", 1),
        ("QC", "en", "pan", "home,kitchen,pans", 1),
        ("QC", "en", "knife", "home,kitchen,knives", 1),
        ("QC", "en", "drill", "tools,power tools,drills", 1),
        ("QC", "en", "socket", "tools,hand tools", 0),
        ("QC", "en", "torque", "tools,hand tools,wrenches,torque", 0),
    ])
    return train, PlantedEmbedder(sims)


def mined_for(result, query: str) -> list[str]:
    return result.rows.loc[result.rows["query"] == query, "target"].tolist()


def test_positives_hierarchy_and_known_labels_are_never_mined():
    train, embed = qc_case()
    dev = pairs([("QC", "en", "Torque  WRENCH", "Tools,Power Tools,Drills", 1)], start_id=100)
    result = mine_hard_negatives(train, embed, known=[dev], negatives_per_positive=3, tasks=["QC"])
    got = mined_for(result, "torque wrench")
    assert got == ["home,kitchen,knives", "home,kitchen,pans", "toys,dolls"]
    skipped = result.skipped.set_index("reason")["candidates"]
    # counted for the query "torque wrench"; the other queries skip their own positive each
    assert skipped["hierarchy"] >= 2 and skipped["labelled_negative"] >= 1
    assert leak_check(result.rows, {"train": train, "dev": dev})["total"] == 0


def test_hierarchy_guard_can_be_turned_off():
    train, embed = qc_case()
    result = mine_hard_negatives(train, embed, negatives_per_positive=2, skip_hierarchy=False, tasks=["QC"])
    assert mined_for(result, "torque wrench") == ["tools,hand tools", "tools,hand tools,wrenches,torque"]


def test_hierarchy_is_qc_only():
    train, embed = qc_case()
    qi = train.assign(task="QI")
    result = mine_hard_negatives(qi, embed, negatives_per_positive=1)
    assert mined_for(result, "torque wrench") == ["tools,hand tools"]


def test_relative_margin_and_absolute_cap_are_honoured():
    train, embed = qc_case()
    # least similar positive 0.90: margin 0.12 skips everything above 0.792, the cap skips above 0.85
    result = mine_hard_negatives(train, embed, negatives_per_positive=1, relative_margin=0.12,
                                 max_similarity=0.85, skip_hierarchy=False, tasks=["QC"])
    assert mined_for(result, "torque wrench") == ["home,kitchen,pans"]
    reasons = result.skipped.set_index("reason")["candidates"]
    assert reasons["above_cap"] >= 3 and reasons["within_margin"] >= 1
    mined = result.rows[result.rows["query"] == "torque wrench"]
    assert (mined["similarity"] <= 0.90 - 0.12 * 0.90 + 1e-6).all()


def test_margin_uses_the_least_similar_positive():
    train, embed = qc_case()
    extra = pairs([("QC", "en", "torque wrench", "home,kitchen,pans", 1)], start_id=50)  # positive at 0.70
    result = mine_hard_negatives(pd.concat([train, extra], ignore_index=True), embed, relative_margin=0.0,
                                 negatives_per_positive=1, tasks=["QC"])
    assert mined_for(result, "torque wrench") == ["toys,dolls"]  # 0.80 > 0.70 is within the margin


def test_rank_range_and_random_sampling_are_deterministic():
    train, embed = qc_case()
    kwargs = {"negatives_per_positive": 1, "sampling": "random", "rank_range": (2, 8), "tasks": ["QC"]}
    first = mine_hard_negatives(train, embed, seed=1, **kwargs).rows
    again = mine_hard_negatives(train.sample(frac=1, random_state=0), embed, seed=1, **kwargs).rows
    pd.testing.assert_frame_equal(first, again)
    assert first["rank"].between(2, 8).all()
    draws = {tuple(mine_hard_negatives(train, embed, seed=s, **kwargs).rows["target"]) for s in range(8)}
    assert len(draws) > 1  # the seed matters


def test_rows_are_well_formed_with_fresh_ids():
    train, embed = qc_case()
    result = mine_hard_negatives(train, embed, negatives_per_positive=1, tasks=["QC"])
    rows = result.rows
    assert tuple(rows.columns[:8]) == BASE_COLUMNS
    assert rows["id"].min() == train["id"].max() + 1 and rows["id"].is_unique
    assert (rows["label"] == 0).all() and (rows["origin"] == "mined_negative").all()
    first_positive = train[train.label == 1].groupby("query")["id"].min()
    assert (rows["source_id"].to_numpy() == rows["query"].map(first_positive).to_numpy()).all()
    assert result.similarity.notna().all() and len(result.similarity) == len(train)
    assert abs(result.similarity.iloc[0] - 0.90) < 1e-6
    assert mine_hard_negatives(train, embed, start_id=10**9, tasks=["QC"]).rows["id"].min() == 10**9


def test_target_positive_share_caps_negatives_per_language():
    rng = np.random.default_rng(0)
    vectors = {f"cat {i}": rng.normal(size=DIM) for i in range(40)}
    rows = [("QC", lang, f"{lang} q{i}", f"cat {i}", 1) for lang in ("en", "fr") for i in range(30)]
    rows += [("QC", "en", "en q0", "cat 39", 0)]
    train = pairs(rows)

    def embed(texts, kind):
        out = np.stack([vectors[t] if t in vectors else rng.normal(size=DIM) for t in texts])
        out = out.astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    result = mine_hard_negatives(train, embed, negatives_per_positive=2, target_positive_share=0.6,
                                 tasks=["QC"])
    report = result.report.set_index("language")
    # en: 30 positives, 1 negative: 0.6 share allows 20 negatives in all, so 19 added; fr: 20
    assert report.loc["en", "added"] == 19 and report.loc["fr", "added"] == 20
    assert report.loc["en", "mined"] == 60 and report.loc["en", "dropped_for_balance"] == 41
    en = result.rows[result.rows.language == "en"]
    assert en["query"].nunique() == 19  # spread over queries: one each before any query gets a second


def test_batched_search_equals_exact_search():
    rng = np.random.default_rng(3)
    cands = rng.normal(size=(500, DIM)).astype(np.float32)
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    queries = rng.normal(size=(230, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index, _ = negatives.build_index(cands, kind="flat", gpu=False)
    sims, ids = search(index, queries, 20, batch_size=32)
    full = queries @ cands.T
    exact = np.argsort(-full, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(ids, exact)
    np.testing.assert_allclose(sims, np.take_along_axis(full, exact, axis=1), atol=1e-5)


def test_mining_does_not_depend_on_the_batch_size():
    rng = np.random.default_rng(5)
    vocab = {f"target {i}": rng.normal(size=DIM) for i in range(120)}
    rows = [("QI", "en", f"query {i}", f"target {rng.integers(120)}", int(rng.random() < 0.7))
            for i in range(300)]
    train = pairs(rows).drop_duplicates(["query", "target"])

    def embed(texts, kind):
        out = np.stack([vocab.get(t, np.random.default_rng(len(t) * 7919 + sum(map(ord, t))).normal(size=DIM))
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    kwargs = {"negatives_per_positive": 2, "relative_margin": 0.05, "sampling": "random", "seed": 4}
    small = mine_hard_negatives(train, embed, batch_size=7, **kwargs)
    large = mine_hard_negatives(train, embed, batch_size=4096, **kwargs)
    pd.testing.assert_frame_equal(small.rows, large.rows)
    pd.testing.assert_frame_equal(small.skipped, large.skipped)
    assert len(small.rows) > 30


def test_approximate_indexes_find_most_exact_neighbours():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, DIM))
    cands = (centres[rng.integers(20, size=3000)] + 0.3 * rng.normal(size=(3000, DIM))).astype(np.float32)
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    queries = cands[:100] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, exact = search(negatives.build_index(cands, kind="flat", gpu=False)[0], queries, 10)
    for kind in ("ivf", "hnsw"):
        index, used = negatives.build_index(cands, kind=kind, k=10)
        assert used == kind
        _, ids = search(index, queries, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
        assert recall > 0.9, kind
    assert negatives.build_index(cands, kind="auto", threshold=1000, k=10)[1] == "ivf"


def test_leak_check_finds_a_planted_leak():
    train, _ = qc_case()
    leaked = pairs([("QC", "en", "TORQUE wrench", "tools,hand tools,wrenches", 0)], start_id=900)
    assert leak_check(leaked, {"train": train}) == {"train": 1, "total": 1}


def test_bad_arguments_are_errors():
    train, embed = qc_case()
    for kwargs, match in [({"rank_range": (0, 5)}, "rank_range"), ({"sampling": "best"}, "sampling"),
                          ({"index": "lsh"}, "index"), ({"target_positive_share": 1.0}, "share"),
                          ({"negatives_per_positive": 0}, "negatives_per_positive")]:
        with pytest.raises(ValueError, match=match):
            mine_hard_negatives(train, embed, **kwargs)


# ------------------------------------------------------------------ random_catalogue: the control for semantic mining


def hashed_embedder(texts, kind):
    """A pseudo-random unit vector per text, the same in every process: a stand-in model for fast tests."""
    seeds = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts]
    out = np.stack([np.random.default_rng(s).normal(size=DIM) for s in seeds]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_random_catalogue_draws_only_what_the_guards_allow():
    train, embed = qc_case()
    dev = pairs([("QC", "en", "Torque  WRENCH", "Tools,Power Tools,Drills", 1)], start_id=100)
    result = mine_hard_negatives(train, embed, known=[dev], negatives_per_positive=10, sampling="random_catalogue",
                                 tasks=["QC"])
    # of the 8 targets: its own positive, the dev positive, a labelled negative, the positive's ancestor and
    # descendant are never drawn; the three left are, however far from the query
    assert sorted(mined_for(result, "torque wrench")) == ["home,kitchen,knives", "home,kitchen,pans", "toys,dolls"]
    assert (result.report["short"] == result.report["queries"]).all()  # 10 asked, fewer allowed: all short
    assert result.sampling == "random_catalogue"
    assert result.rows["rank"].isna().all() and result.index == {"QC": "none"}
    assert result.rows["similarity"].notna().all()  # every drawn pair scored
    assert leak_check(result.rows, {"train": train, "dev": dev})["total"] == 0
    unguarded = mine_hard_negatives(train, embed, known=[dev], negatives_per_positive=10, skip_hierarchy=False,
                                    sampling="random_catalogue", tasks=["QC"])
    assert {"tools,hand tools", "tools,hand tools,wrenches,torque"} <= set(mined_for(unguarded, "torque wrench"))


def planted_catalogue() -> tuple[pd.DataFrame, PlantedEmbedder]:
    """30 targets, ``target 00`` the most similar to every query (all queries embed alike), ``target 29`` the
    least; ten queries with one positive each (targets 10 to 19); a query labelled on all 30 (negative)."""
    sims = {f"target {i:02d}": 0.95 - 0.02 * i for i in range(30)}
    rows = [("QI", "en", f"query {i}", f"target {10 + i:02d}", 1) for i in range(10)]
    rows += [("QI", "en", "catalogue", f"target {i:02d}", 0) for i in range(30)]
    return pairs(rows), PlantedEmbedder(sims)


def test_random_catalogue_draws_outside_the_top_k():
    train, embed = planted_catalogue()
    top_3 = {"target 00", "target 01", "target 02"}  # every query's 3 nearest: all queries embed alike
    semantic = mine_hard_negatives(train, embed, top_k=3, sampling="random", negatives_per_positive=1)
    assert set(semantic.rows["target"]) <= top_3
    drawn = set()
    for seed in range(10):
        rows = mine_hard_negatives(train, embed, top_k=3, sampling="random_catalogue", negatives_per_positive=1,
                                   seed=seed).rows
        assert len(rows) == 10 and rows["query"].nunique() == 10
        drawn |= set(rows["target"])
    assert "target 29" in drawn  # the least similar target, in no query's top 3: drawn too
    assert len(drawn) > 15  # spread over the catalogue, not over the nearest


def test_random_catalogue_is_seeded_and_order_free():
    train, embed = planted_catalogue()
    kwargs = {"sampling": "random_catalogue", "negatives_per_positive": 2, "tasks": ["QI"]}
    first = mine_hard_negatives(train, embed, seed=3, **kwargs)
    again = mine_hard_negatives(train.sample(frac=1, random_state=1), embed, seed=3, batch_size=3, **kwargs)
    pd.testing.assert_frame_equal(first.rows, again.rows)
    pd.testing.assert_frame_equal(first.skipped, again.skipped)
    draws = {tuple(mine_hard_negatives(train, embed, seed=s, **kwargs).rows["target"]) for s in range(4)}
    assert len(draws) == 4  # each seed its own draw


def test_random_catalogue_can_go_through_the_whole_catalogue():
    # 40 of 41 targets are positives of the one query: its first draws are nearly all guarded, so it goes on
    # through the rest of the catalogue and still finds the one allowed target
    rows = [("QI", "en", "q", f"target {i:02d}", 1) for i in range(40)] + [("QI", "en", "other", "target 40", 1)]
    train = pairs(rows)
    result = mine_hard_negatives(train, hashed_embedder, sampling="random_catalogue", negatives_per_positive=1)
    assert mined_for(result, "q") == ["target 40"]
    assert result.report["short"].sum() == 1  # "q" asked 40 and got 1; "other" got its one
    assert result.skipped.set_index("reason").loc["labelled_positive", "candidates"] == 40


def smoke_tables(audited_run) -> tuple[pd.DataFrame, pd.DataFrame]:
    _, run = audited_run
    return run.read_table("train"), run.read_table("dev")


@pytest.mark.parametrize("share", [None, 0.6])
def test_random_catalogue_mines_the_volume_of_the_top_sampler(audited_run, share):
    train, dev = smoke_tables(audited_run)
    kwargs = {"known": [dev], "negatives_per_positive": 2, "top_k": 30, "target_positive_share": share}
    top = mine_hard_negatives(train, hashed_embedder, **kwargs)
    drawn = mine_hard_negatives(train, hashed_embedder, sampling="random_catalogue", **kwargs)
    assert top.report["short"].sum() == 0  # top_k leaves every query enough candidates: volumes comparable
    columns = ["task", "language", "queries", "short", "mined", "dropped_for_balance", "added"]
    pd.testing.assert_frame_equal(top.report[columns], drawn.report[columns])
    assert len(drawn.rows) == len(top.rows) > 0
    if share is None:  # the same count for every query (the cap picks which queries keep theirs)
        per_query = [r.rows.groupby(["task", "language", "query"]).size() for r in (top, drawn)]
        pd.testing.assert_series_equal(*per_query)
        assert len(drawn.rows) > 500
    else:
        assert top.report["dropped_for_balance"].sum() > 0
    same_pairs = drawn.rows.merge(top.rows, on=["task", "language", "query", "target"])
    assert len(same_pairs) < len(drawn.rows) / 2  # the volume is the same, the negatives are not


def related_paths(a: str, b: str) -> bool:
    """One category path equals the other or is an ancestor of it (levels compared as the guards do)."""
    la, lb = ([normalise_query(level) for level in parse_category_path(p)] for p in (a, b))
    shorter, longer = sorted((la, lb), key=len)
    return longer[:len(shorter)] == shorter


def hierarchy_hits(mined: pd.DataFrame, labelled: pd.DataFrame) -> int:
    """Mined QC negatives that equal, contain or lie under a positive path of their query."""
    positives = labelled[(labelled["task"] == "QC") & (labelled["label"] == 1)]
    paths = positives.groupby(positives["query"].map(normalise_query))["target"].agg(list)
    qc = mined[mined["task"] == "QC"]
    return sum(related_paths(t, p) for q, t in zip(qc["query"].map(normalise_query), qc["target"])
               for p in paths.get(q, []))


def test_random_catalogue_never_draws_a_known_positive_on_smoke_data(audited_run):
    train, dev = smoke_tables(audited_run)
    result = mine_hard_negatives(train, hashed_embedder, known=[dev], negatives_per_positive=3,
                                 sampling="random_catalogue", seed=7)
    assert leak_check(result.rows, {"train": train, "dev": dev}) == {"train": 0, "dev": 0, "total": 0}
    assert hierarchy_hits(result.rows, pd.concat([train, dev])) == 0
    skipped = result.skipped.groupby("reason")["candidates"].sum()
    assert skipped["labelled_positive"] > 0 and skipped["hierarchy"] > 0  # the guards were met, and held
    # the same draw without the hierarchy guard does take ancestors and descendants of positives
    unguarded = mine_hard_negatives(train, hashed_embedder, known=[dev], negatives_per_positive=3,
                                    sampling="random_catalogue", seed=7, skip_hierarchy=False)
    assert hierarchy_hits(unguarded.rows, pd.concat([train, dev])) > 0
    labelled_negatives = train[train["label"] == 0].assign(q=lambda d: d["query"].map(normalise_query))
    repeats = result.rows.assign(q=result.rows["query"].map(normalise_query)).merge(
        labelled_negatives, on=["task", "q", "target"])
    assert repeats.empty  # nor a pair already labelled negative


# ------------------------------------------------------------------ share: the hard-negative ratio as one setting


@pytest.mark.parametrize("sampling", negatives.SAMPLINGS)
def test_share_is_reached_per_task_and_language_on_smoke_data(audited_run, sampling):
    train, dev = smoke_tables(audited_run)
    labelled = train[train["label"].notna()]
    rows = labelled.groupby(["task", "language"]).size()
    for share in (0.1, 0.3, 0.5):
        result = mine_hard_negatives(train, hashed_embedder, known=[dev], top_k=30, sampling=sampling, share=share)
        kept = result.rows.groupby(["task", "language"]).size().reindex(rows.index, fill_value=0)
        # within one row of the share in every task and language, and the nearest whole count per task
        ideal = share / (1 - share) * rows
        assert ((kept - ideal).abs() < 1).all(), (share, (kept - ideal).abs().max())
        for task, n in kept.groupby(level="task").sum().items():
            assert abs(n - share / (1 - share) * rows[task].sum()) <= 0.5
            assert abs(n / (rows[task].sum() + n) - share) < 1 / (rows[task].sum() + n)
        report = result.share_report.set_index(["task", "language"])
        assert (report["found"] >= report["asked"]).all()  # enough candidates: the case the sweep relies on
        pd.testing.assert_series_equal(report["kept"], kept, check_names=False)
        assert (report["per_positive"] >= 2).all()  # one more than the share needs: short queries made up
        assert leak_check(result.rows, {"train": train, "dev": dev})["total"] == 0
        metrics = negatives.mining_metrics(result, train, negatives.combine(train, result), {"total": 0}, model="m",
                                           source_table="train", seconds=0.0)
        per_task = metrics["share"]["per_task"]
        assert metrics["share"]["asked"] == share and all(t["enough"] for t in per_task.values())
        assert {t: v["share_reached"] for t, v in per_task.items()} == metrics["mined_share"]
        assert abs(metrics["headline"]["mined_share"] - share) < 0.01 and len(metrics["headline"]) <= 8


def test_share_subset_is_seeded_and_order_free(audited_run):
    train, dev = smoke_tables(audited_run)
    for sampling in ("top", "random"):
        kwargs = {"known": [dev], "top_k": 30, "sampling": sampling, "share": 0.2}
        first = mine_hard_negatives(train, hashed_embedder, seed=5, **kwargs).rows
        again = mine_hard_negatives(train.sample(frac=1, random_state=2).reset_index(drop=True), hashed_embedder,
                                    seed=5, **kwargs).rows
        pd.testing.assert_frame_equal(first, again)
        draws = {tuple(mine_hard_negatives(train, hashed_embedder, seed=s, **kwargs).rows["target"]) for s in range(4)}
        assert len(draws) > 1, sampling  # the seed picks the subset
        # spread over queries: no query keeps a second negative while another of its language has none
        queries = train[train["label"] == 1].groupby(["task", "language", "query"]).size().index
        per_query = first.groupby(["task", "language", "query"]).size().reindex(queries, fill_value=0)
        spread = per_query.groupby(level=["task", "language"]).agg(lambda n: n.max() - n.min())
        assert (spread <= 1).all() and per_query.max() >= 1


def few_candidates() -> pd.DataFrame:
    """Five targets: six queries relevant to t0, t1 and t2 (each may take t3 and t4), one relevant to t3 and t4
    (it may take t0, t1, t2): 20 labelled rows, 15 allowed candidates in all."""
    rows = [("QI", "en", f"q{i}", f"t{j}", 1) for i in range(6) for j in range(3)]
    return pairs(rows + [("QI", "en", "other", "t3", 1), ("QI", "en", "other", "t4", 1)])


@pytest.mark.parametrize("sampling", negatives.SAMPLINGS)
def test_share_keeps_all_and_says_so_when_too_few_are_found(sampling):
    train = few_candidates()
    short = mine_hard_negatives(train, hashed_embedder, top_k=5, sampling=sampling, share=0.5)
    assert len(short.rows) == 15 and leak_check(short.rows, {"train": train})["total"] == 0  # every allowed one
    report = short.share_report.iloc[0]
    assert (report["rows"], report["asked"], report["found"], report["kept"]) == (20, 20, 15, 15)
    metrics = negatives.mining_metrics(short, train, negatives.combine(train, short), {"total": 0}, model="m",
                                       source_table="train", seconds=0.0)
    assert metrics["share"]["per_task"]["QI"] == {"rows": 20, "asked": 20, "found": 15, "kept": 15,
                                                  "share_reached": round(15 / 35, 4), "enough": False}
    assert "too few found: QI kept 15 of 20 asked" in negatives_step.share_note(metrics)
    # the same data with a share it can give: exactly that many (round(0.3 / 0.7 * 20) = 9)
    enough = mine_hard_negatives(train, hashed_embedder, top_k=5, sampling=sampling, share=0.3)
    assert len(enough.rows) == 9 and enough.share_report["found"].sum() == 15


def test_share_moves_a_short_languages_deficit_to_the_others():
    # every query sees the same four nearest targets A, B, C, D; the en queries are relevant to A, B and C, so
    # each finds only D (5 in all); the fr queries, asking 2 each (one more than the share needs), find 22
    sims = {"A": 0.9, "B": 0.85, "C": 0.8, "D": 0.75, **{f"f{i}": 0.5 - 0.02 * i for i in range(10)}}
    rows = [("QI", "en", f"e{i}", t, 1) for i in range(5) for t in "ABC"]
    rows += [("QI", "fr", f"r{i}", f"f{i}", 1) for i in range(10)] + [("QI", "fr", "rD", "D", 1)]
    result = mine_hard_negatives(pairs(rows), PlantedEmbedder(sims), top_k=4, share=0.5)
    report = result.share_report.set_index("language")
    assert report["asked"].to_dict() == {"en": 15, "fr": 11} and report["found"].to_dict() == {"en": 5, "fr": 22}
    # en keeps all it found; fr takes the 10 en could not, so the task still gets exactly its share
    assert result.rows.groupby("language").size().to_dict() == {"en": 5, "fr": 21}
    assert report["kept"].to_dict() == {"en": 5, "fr": 21} and report["per_positive"].to_dict() == {"en": 2, "fr": 2}


def test_share_replaces_the_cap():
    train, embed = qc_case()
    with pytest.raises(ValueError, match="give one"):
        mine_hard_negatives(train, embed, share=0.3, target_positive_share=0.5)
    with pytest.raises(ValueError, match="share must lie"):
        mine_hard_negatives(train, embed, share=1.0)
    params = load_params(Path(__file__).resolve().parents[1] / "params" / "smoke.yaml")
    raw = params.model_dump(mode="json")  # a resolved profile carries every key, the cap included
    raw["negatives"]["share"] = 0.3
    assert parse_params(raw).negatives.share == 0.3 and parse_params(raw).negatives.target_positive_share == 0.5
    for bad in (0, 1, 1.5, "many"):
        raw["negatives"]["share"] = bad
        with pytest.raises(ParamsError, match="negatives.share"):
            parse_params(raw)


# ------------------------------------------------------------------ with a real (tiny) model and the step


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    env = os.environ.get("QCKIT_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("qckit-models")


def test_second_mining_embeds_nothing(tmp_path, models_dir, monkeypatch):
    pytest.importorskip("sentence_transformers")
    calls = []
    real = embed_module._encoder
    monkeypatch.setattr(embed_module, "_encoder", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    train, _ = qc_case()
    embedder = negatives.make_embedder("tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    first = mine_hard_negatives(train, embedder, tasks=["QC"])
    assert len(calls) == 2  # queries, then candidates
    second = mine_hard_negatives(train, embedder, tasks=["QC"])
    assert len(calls) == 2
    pd.testing.assert_frame_equal(first.rows, second.rows)


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory, models_dir):
    pytest.importorskip("sentence_transformers")
    params = load_params(Path(__file__).resolve().parents[1] / "params" / "smoke.yaml")
    models = params.models.model_copy(update={"cache_dir": str(models_dir)})
    params = params.model_copy(update={"models": models})
    run = Run(tmp_path_factory.mktemp("run") / "r").ensure()
    audit_step.run(params, run)
    return params, run


@pytest.fixture(scope="module")
def embed_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


def test_step_writes_tables_and_metrics(audited_run, embed_cache):
    params, run = audited_run
    cfg = params.negatives.model_copy(update={"cache_dir": str(embed_cache)})
    params = params.model_copy(update={"negatives": cfg})
    assert negatives_step.input_table_name(run) == "train"
    metrics = negatives_step.run(params, run)
    assert negatives_step.STEP == NEGATIVES == "03_negative_mining"
    train = run.read_table("train")
    mined = run.read_table("negatives")
    ids = pd.concat([run.read_table(n)["id"] for n in ("train", "dev", "test")])
    assert len(mined) > 0 and mined["id"].min() > ids.max()
    combined = run.read_table("train_negatives")
    assert len(combined) == len(train) + len(mined) and combined["id"].is_unique
    assert run.training_table_name() == "train_negatives"
    # a rerun still mines the audit's table, never its own output
    assert negatives_step.input_table_name(run) == "train"
    saved = json.loads(run.metrics_path(NEGATIVES).read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["leak_check"]["total"] == 0 and len(saved["headline"]) <= 8
    assert saved["sampling"] == saved["headline"]["sampling"] == "top"
    assert set(saved["skipped_total"]) == set(negatives.SKIP_REASONS)
    assert saved["skipped_total"]["hierarchy"] > 0  # the demo labels a leaf's ancestors positive
    results = negatives_step.load(run)
    assert results.metrics == saved
    pd.testing.assert_frame_equal(results.before, train)
    pd.testing.assert_frame_equal(results.after, combined)
    pd.testing.assert_frame_equal(results.mined, mined)
    # the same again gives the same created rows
    run.table_path("train_negatives").unlink()
    run_or_load(negatives_step, params, run, recompute=True)
    pd.testing.assert_frame_equal(mined, run.read_table("negatives"))


def test_step_says_which_sampler_ran(audited_run, embed_cache):
    params, run = audited_run
    cfg = params.negatives.model_copy(update={"cache_dir": str(embed_cache), "sampling": "random_catalogue"})
    metrics = negatives_step.run(params.model_copy(update={"negatives": cfg}), run)
    assert metrics["sampling"] == metrics["headline"]["sampling"] == "random_catalogue"
    assert metrics["index"] == {"QC": "none", "QI": "none"} and metrics["leak_check"]["total"] == 0
    mined = run.read_table("negatives")
    assert metrics["rows"]["mined"] == len(mined) > 0 and mined["rank"].isna().all()
    assert "(random_catalogue sampling)" in run.path("run.log").read_text()
    raw = params.model_dump(mode="json")
    raw["negatives"]["sampling"] = "catalogue"
    with pytest.raises(ParamsError, match="negatives.sampling"):
        parse_params(raw)


def test_step_reaches_the_share_without_the_cap(audited_run, embed_cache):
    params, run = audited_run
    # a positive share of 0.6 would allow about half as many; share replaces the cap
    cfg = params.negatives.model_copy(update={"cache_dir": str(embed_cache), "share": 0.5,
                                              "target_positive_share": 0.6})
    metrics = negatives_step.run(params.model_copy(update={"negatives": cfg}), run)
    train, mined = run.read_table("train"), run.read_table("negatives")
    rows = train[train["label"].notna()].groupby("task").size()
    assert mined.groupby("task").size().to_dict() == rows.to_dict()  # 0.5: as many mined as labelled rows
    for task, figures in metrics["share"]["per_task"].items():
        assert figures["enough"] and figures["kept"] == figures["asked"] == rows[task]
        assert figures["share_reached"] == metrics["mined_share"][task] == 0.5
    assert metrics["headline"]["mined_share"] == 0.5 and len(metrics["headline"]) <= 8
    assert metrics["parameters"]["share"] == 0.5 and metrics["leak_check"]["total"] == 0
    assert "share 0.5 asked, reached QC 0.5, QI 0.5" in run.path("run.log").read_text()


def test_share_none_writes_what_a_profile_without_the_field_writes(audited_run, embed_cache):
    params, run = audited_run
    raw = params.model_dump(mode="json")
    raw["negatives"]["cache_dir"] = str(embed_cache)
    del raw["negatives"]["share"]
    written = {}
    for name, profile in [("without", parse_params(raw)), ("none", parse_params({**raw, "negatives": {
            **raw["negatives"], "share": None}})), ("share", parse_params({**raw, "negatives": {
            **raw["negatives"], "share": 0.3, "target_positive_share": None}}))]:
        metrics = negatives_step.run(profile, run)
        written[name] = [run.table_path(t).read_bytes() for t in ("negatives", "train_negatives")]
        assert ("share" in metrics) == (name == "share")
    assert written["none"] == written["without"] != written["share"]


def test_disabled_step_writes_only_metrics(audited_run, tmp_path):
    params, run = audited_run
    for name in ("negatives", "train_negatives"):
        run.table_path(name).unlink(missing_ok=True)
    cfg = params.negatives.model_copy(update={"enabled": False})
    metrics = negatives_step.run(params.model_copy(update={"negatives": cfg}), run)
    assert metrics["enabled"] is False and "enabled" in metrics["note"]
    assert not run.has_table("negatives") and not run.has_table("train_negatives")
    assert json.loads(run.metrics_path(NEGATIVES).read_text())["enabled"] is False
    results = negatives_step.load(run)
    assert results.mined.empty and list(results.mined.columns[:8]) == list(BASE_COLUMNS)
    pd.testing.assert_frame_equal(results.after, results.before)
    pd.testing.assert_frame_equal(results.before, run.read_table("train"))


def test_next_id_is_above_every_id_of_every_table():
    assert next_id([pairs([("QC", "en", "q", "t", 1)] * 3), pairs([("QC", "en", "q", "t", 1)], start_id=40)]) == 41
    assert next_id([pairs([("QC", "en", "q", "t", 1)] * 2, start_id=7), pairs([])]) == 9
