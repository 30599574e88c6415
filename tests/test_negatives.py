"""Tests of qckit.negatives: the guards on hand-made cases, sampling, batching, determinism, the step."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("faiss")

from qckit import BASE_COLUMNS, negatives
from qckit import embed as embed_module
from qckit.config import load_params
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


def test_step_writes_tables_and_metrics(audited_run, tmp_path):
    params, run = audited_run
    cfg = params.negatives.model_copy(update={"cache_dir": str(tmp_path)})
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
