"""Step 06: thresholds, temperature scaling, ECE and bootstrap on constructed scores with known answers."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_curve

from qckit import calibrate as cal
from qckit.config import parse_params
from qckit.runs import Run
from qckit.steps import CALIBRATION, calibration

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from qckit.plots import evaluation as plots_eval  # noqa: E402

SIX_LABELS = [0, 0, 1, 0, 1, 1]
SIX_SCORES = [0.1, 0.3, 0.4, 0.6, 0.8, 0.9]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def predictions(labels, scores, *, task="QC", language="en", queries=None, logits=None) -> pd.DataFrame:
    """A predictions table in the step-05 layout from labels (None = unlabelled) and scores."""
    n = len(labels)
    scores = np.asarray(scores, dtype=float)
    with np.errstate(divide="ignore"):
        logit = np.log(scores) - np.log1p(-scores) if logits is None else np.asarray(logits, dtype=float)
    return pd.DataFrame({
        "id": [f"{task}-{language}-{i}" for i in range(n)],
        "task": task, "language": language,
        "query": queries if queries is not None else [f"{language} query {i}" for i in range(n)],
        "target": "t", "label": pd.array(list(labels), dtype="Int8"), "origin": "original",
        "score": scores, "logit": logit,
    })


def overconfident(n: int, *, t_true: float = 2.0, seed: int = 0, task: str = "QC", language: str = "en"):
    """Labels drawn from sigmoid(z / t_true) while the model reports sigmoid(z): over-confident for t > 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.5, 3.0, n)
    y = (rng.random(n) < expit(z / t_true)).astype(int)
    return predictions(y, expit(z), logits=z, task=task, language=language,
                       queries=[f"q{i}" for i in rng.integers(0, n // 3, n)])


# the sweep and the best threshold ---------------------------------------------------------------
def test_sweep_on_six_points_matches_hand_values():
    sweep = cal.sweep_thresholds(SIX_LABELS, SIX_SCORES)
    assert sweep["threshold"].tolist() == SIX_SCORES
    # by hand: rows with score >= t predicted positive; 3 positives in all
    assert sweep["tp"].tolist() == [3, 3, 3, 2, 2, 1]
    assert sweep["fp"].tolist() == [3, 2, 1, 1, 0, 0]
    np.testing.assert_allclose(sweep["precision"], [3 / 6, 3 / 5, 3 / 4, 2 / 3, 1, 1])
    np.testing.assert_allclose(sweep["recall"], [1, 1, 1, 2 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(sweep["f1"], [6 / 9, 6 / 8, 6 / 7, 4 / 6, 4 / 5, 2 / 4])
    threshold, f1 = cal.best_threshold(SIX_LABELS, SIX_SCORES)
    assert f1 == pytest.approx(6 / 7)
    assert threshold == pytest.approx(0.35)  # midpoint of the best plateau (0.3, 0.4]


def test_sweep_matches_sklearn_and_f1_at_on_random_scores():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    s = np.round(np.clip(0.3 * y + rng.random(3000) * 0.7, 0, 1), 3)  # rounding makes ties
    sweep = cal.sweep_thresholds(y, s)
    precision, recall, thresholds = precision_recall_curve(y, s)
    ref = pd.DataFrame({"threshold": thresholds, "precision": precision[:-1], "recall": recall[:-1]})
    merged = sweep.merge(ref, on="threshold", suffixes=("", "_sk"))
    assert len(merged) == len(ref) > 100
    np.testing.assert_allclose(merged["precision"], merged["precision_sk"])
    np.testing.assert_allclose(merged["recall"], merged["recall_sk"])
    grid = cal.sweep_thresholds(y, s, grid=51)
    assert len(grid) == 51
    for t, f1 in zip(grid["threshold"].iloc[::10], grid["f1"].iloc[::10]):
        assert f1 == pytest.approx(f1_score(y, (s >= t).astype(int), zero_division=0))
        assert cal.f1_at(y, s, t) == pytest.approx(f1)
    best_t, best_f1 = cal.best_threshold(y, s)
    assert best_f1 == pytest.approx(sweep["f1"].max())
    assert cal.f1_at(y, s, best_t) == pytest.approx(best_f1)


def test_separable_scores_give_f1_one_between_the_classes():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.05, 0.2, 0.3, 0.6, 0.7, 0.95]
    threshold, f1 = cal.best_threshold(labels, scores)
    assert f1 == 1.0
    assert threshold == pytest.approx(0.45)
    assert cal.f1_at(labels, scores, threshold) == 1.0


def test_ties_take_the_widest_plateau_and_the_lowest_starts_at_zero():
    # ascending labels 1, 0, 0, 1: all-positive and "only the top row" both score F1 2/3
    labels = [1, 0, 0, 1]
    assert cal.best_threshold(labels, [0.1, 0.2, 0.3, 0.9]) == (pytest.approx(0.6), pytest.approx(2 / 3))
    assert cal.best_threshold(labels, [0.5, 0.6, 0.7, 0.8]) == (pytest.approx(0.25), pytest.approx(2 / 3))
    # a positive below everything: the best plateau is (0, 0.2], every row positive
    assert cal.best_threshold([1, 0, 1], [0.2, 0.5, 0.9]) == (pytest.approx(0.1), pytest.approx(0.8))


def test_all_positive_f1_and_input_checks():
    assert cal.all_positive_f1([1, 1, 0, 0]) == pytest.approx(2 / 3)
    assert cal.all_positive_f1([0, 0]) == 0.0
    assert cal.all_positive_f1(pd.array([1, 0, 1], dtype="Int8")) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="drop unlabelled rows"):
        cal.f1_at(pd.array([1, None], dtype="Int8"), [0.5, 0.5], 0.5)
    with pytest.raises(ValueError, match="2 values but labels has 3"):
        cal.sweep_thresholds([1, 0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="no labelled rows"):
        cal.best_threshold([], [])


# thresholds on tables ---------------------------------------------------------------------------------
def shifted_languages(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """en scores sit high (classes split at 0.7), de low (split at 0.3): one threshold cannot fit both."""
    rng = np.random.default_rng(seed)
    frames = []
    for lang, split in (("en", 0.7), ("de", 0.3)):
        y = rng.integers(0, 2, n)
        s = np.where(y == 1, split + rng.random(n) * 0.2, split - 0.2 + rng.random(n) * 0.19)
        frames.append(predictions(y, s, language=lang, queries=[f"{lang}{i // 2}" for i in range(n)]))
    return pd.concat(frames, ignore_index=True)


def test_language_thresholds_fall_back_below_min_support():
    data = shifted_languages(200)
    small = data[data["language"].eq("de")].head(30)
    mixed = pd.concat([data[data["language"].eq("en")], small], ignore_index=True)
    task = cal.fit_task_thresholds(mixed)
    table = cal.language_threshold_table(mixed, min_support=50, task_thresholds=task)
    de = table.set_index("language").loc["de"]
    assert de["source"] == "task" and de["threshold"] == task["QC"] and de["rows"] == 30
    en = table.set_index("language").loc["en"]
    assert en["source"] == "language" and 0.6 < en["threshold"] <= 0.7
    own = cal.fit_language_thresholds(mixed, min_support=10, task_thresholds=task)
    assert own[("QC", "de")] != task["QC"] and 0.2 < own[("QC", "de")] <= 0.3
    # one class only: no threshold of its own however many rows
    positives = mixed[mixed["label"].eq(1)]
    only = cal.language_threshold_table(positives, min_support=5, task_thresholds={"QC": 0.5})
    assert set(only["source"]) == {"task"}


def test_apply_thresholds_uses_language_then_task_threshold():
    preds = pd.concat([predictions([1, 0], [0.5, 0.25], language="en"),
                       predictions([1, 0], [0.5, 0.25], language="pl"),
                       predictions([1, 0], [0.5, 0.25], task="QI", language="en")], ignore_index=True)
    task = {"QC": 0.6, "QI": 0.2}
    assert cal.apply_thresholds(preds, task).tolist() == [0, 0, 0, 0, 1, 1]
    nested = {"QC": {"en": 0.3}}
    assert cal.apply_thresholds(preds, task, language_thresholds=nested).tolist() == [1, 0, 0, 0, 1, 1]
    flat = {("QC", "en"): 0.3}
    assert cal.apply_thresholds(preds, task, language_thresholds=flat).tolist() == [1, 0, 0, 0, 1, 1]
    assert cal.apply_thresholds(preds, 0.5).tolist() == [1, 0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match=r"no threshold for task\(s\) \['QI'\]"):
        cal.apply_thresholds(preds, {"QC": 0.5})


def test_query_folds_keep_a_query_on_one_side():
    queries = pd.Series([f"q{i % 37}" for i in range(500)])
    folds = cal.query_folds(queries, folds=5, seed=3)
    assert pd.DataFrame({"q": queries, "f": folds}).groupby("q")["f"].nunique().max() == 1
    assert set(folds) == set(range(5))
    assert (cal.query_folds(queries, folds=5, seed=3) == folds).all()


def test_cross_validation_shows_when_language_thresholds_help():
    data = shifted_languages(400)
    cv = cal.cross_validate_language_thresholds(data, folds=5, seed=1, min_support=50)
    assert cv["language"].tolist() == ["all", "en", "de"]
    pooled = cv.iloc[0]
    assert pooled["rows"] == len(data)
    assert pooled["f1_language_threshold"] == pytest.approx(1.0)  # each language separable on its own
    assert pooled["gain"] > 0.05 and pooled["own_threshold_share"] == 1.0
    # without support every language falls back: both columns identical
    none = cal.cross_validate_language_thresholds(data, folds=5, seed=1, min_support=10_000)
    assert (none["gain"] == 0).all() and (none["own_threshold_share"] == 0).all()


# temperature and calibration error ------------------------------------------------------------------
@pytest.mark.parametrize("t_true", [0.5, 2.0])
def test_fit_temperature_recovers_the_true_temperature(t_true):
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 3.0, 200_000)
    y = (rng.random(len(z)) < expit(z / t_true)).astype(int)
    assert cal.fit_temperature(z, y) == pytest.approx(t_true, rel=0.05)


def test_fit_temperature_matches_unpenalised_logistic_regression():
    data = overconfident(20_000, t_true=1.7, seed=2)
    z, y = data["logit"].to_numpy(), data["label"].to_numpy(dtype=int)
    t = cal.fit_temperature(z, y)
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=1000).fit(z[:, None], y)
    t_lr = 1.0 / lr.coef_[0, 0]
    assert t == pytest.approx(t_lr, rel=1e-3)
    assert cal.log_loss_at(z, y, t) <= cal.log_loss_at(z, y, t_lr) + 1e-9
    assert cal.log_loss_at(z, y, t) < cal.log_loss_at(z, y, 1.0)


def test_fit_temperature_survives_saturated_scores():
    z = np.array([-np.inf, -2.0, 0.5, 3.0, np.inf, 1.0])
    t = cal.fit_temperature(z, [0, 0, 1, 1, 1, 0])
    assert np.isfinite(t) and t > 0
    assert np.all(np.isfinite(cal.apply_temperature(z, t)))


def test_ece_is_zero_for_calibrated_bins_and_the_hand_value_otherwise():
    # five bins of width 0.2; in each, ten rows at the bin's centre with exactly that share positive
    probs = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 10)
    labels = np.concatenate([[1] * k + [0] * (10 - k) for k in (1, 3, 5, 7, 9)])
    assert cal.expected_calibration_error(labels, probs, n_bins=5) == pytest.approx(0.0, abs=1e-12)
    # every row at 0.8 with half positive: off by 0.3 everywhere
    assert cal.expected_calibration_error([1, 0] * 50, [0.8] * 100) == pytest.approx(0.3)
    # two bins: (|0.5 - 0.2| * 2 + |1 - 0.8| * 2) / 4
    assert cal.expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.8, 0.8], n_bins=5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cal.expected_calibration_error([0, 1], [0.2, 1.2])


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_table_matches_sklearn_calibration_curve(strategy):
    rng = np.random.default_rng(4)
    p = rng.beta(2, 3, 5000)
    p[:20] = 0.2  # on a bin edge: both put it in the lower bin
    y = (rng.random(5000) < p**1.3).astype(int)
    table = cal.reliability_table(y, p, n_bins=10, strategy=strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy=strategy)
    np.testing.assert_allclose(table["fraction_positive"], prob_true)
    np.testing.assert_allclose(table["mean_predicted"], prob_pred)
    assert table["rows"].sum() == 5000
    ece = np.sum(table["rows"] * np.abs(prob_true - prob_pred)) / 5000
    assert cal.expected_calibration_error(y, p, n_bins=10, strategy=strategy) == pytest.approx(ece)


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    data = overconfident(20_000, t_true=2.0, seed=5)
    z, y = data["logit"], data["label"]
    t = cal.fit_temperature(z, y)
    before = cal.expected_calibration_error(y, data["score"])
    after = cal.expected_calibration_error(y, cal.apply_temperature(z, t))
    assert before > 0.05 and after < before / 3


# bootstrap ------------------------------------------------------------------------------------------
def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_rows():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    pred = np.where(rng.random(500) < 0.8, y, 1 - y)
    f1, lo, hi = cal.bootstrap_f1(y, pred, n=2000, seed=1)
    assert f1 == pytest.approx(f1_score(y, pred))
    assert lo < f1 < hi
    f1_big, lo_big, hi_big = cal.bootstrap_f1(np.tile(y, 20), np.tile(pred, 20), n=2000, seed=1)
    assert f1_big == pytest.approx(f1)
    assert (hi_big - lo_big) < (hi - lo) / 3  # about 1 / sqrt(20) as wide
    assert cal.bootstrap_f1(y, pred, n=2000, seed=1) == (f1, lo, hi)
    assert cal.bootstrap_f1(y, y, n=200) == (1.0, 1.0, 1.0)


def test_bootstrap_matches_resampling_rows():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.7, y, 1 - y)
    idx = rng.integers(0, 400, (4000, 400))
    naive = np.array([f1_score(y[i], pred[i]) for i in idx[:1500]])
    _, lo, hi = cal.bootstrap_f1(y, pred, n=4000, seed=9)
    lo_naive, hi_naive = np.quantile(naive, [0.025, 0.975])
    assert lo == pytest.approx(lo_naive, abs=0.012)
    assert hi == pytest.approx(hi_naive, abs=0.012)
    with pytest.raises(ValueError, match="0/1 predictions"):
        cal.bootstrap_f1(y, rng.random(400))


# step 06 ----------------------------------------------------------------------------------------------
def test_calibrate_writes_every_figure_step_06_needs():
    data = pd.concat([overconfident(3000, seed=1), overconfident(3000, seed=2, task="QI", language="fr"),
                      predictions([None, None], [0.3, 0.9], task="QI", language="de")], ignore_index=True)
    metrics = cal.calibrate(data, n_bootstrap=300)
    json.dumps(metrics, allow_nan=False)
    assert set(metrics["thresholds"]) == {"QC", "QI"} and metrics["language_thresholds"] is None
    qc = metrics["tasks"]["QC"]
    part = data[data["task"].eq("QC")]
    assert qc["rows"] == 3000
    assert qc["threshold"] == cal.best_threshold(part["label"], part["score"])[0]
    assert qc["f1_ci"][0] <= qc["f1"] <= qc["f1_ci"][1]
    assert qc["f1"] >= qc["f1_at_0.5"] and qc["f1"] >= qc["f1_at_paper"]
    assert qc["paper_threshold"] == 0.4 and metrics["tasks"]["QI"]["paper_threshold"] == 0.2
    assert qc["all_positive_f1"] == pytest.approx(cal.all_positive_f1(part["label"]))
    assert qc["temperature"] == pytest.approx(2.0, rel=0.15) == metrics["temperature"]["QC"]
    assert qc["ece_after"] < qc["ece_before"] and qc["ece_after_held_out"] < qc["ece_before"]
    assert qc["log_loss_after"] < qc["log_loss_before"]
    # the calibrated threshold draws the same line through the rows
    calibrated = cal.apply_temperature(part["logit"], qc["temperature"])
    assert ((calibrated >= qc["threshold_calibrated"]) == (part["score"] >= qc["threshold"])).mean() > 0.999
    headline = metrics["headline"]
    assert len(headline) <= 8 and all(isinstance(v, (int, float, str)) for v in headline.values())
    assert headline["f1_QC"] == pytest.approx(qc["f1"], abs=1e-4)


def test_calibrate_per_language_and_thresholds_from_metrics():
    data = shifted_languages(400)
    metrics = cal.calibrate(data, per_language=True, min_support=50, n_bootstrap=100)
    json.dumps(metrics, allow_nan=False)
    qc = metrics["tasks"]["QC"]
    sources = {r["language"]: r["source"] for r in qc["language_thresholds"]}
    assert sources == {"en": "language", "de": "language"}
    assert qc["language_threshold_cv"][0]["language"] == "all" and qc["language_threshold_cv"][0]["gain"] > 0
    task_thr, lang_thr = cal.thresholds_from_metrics(metrics)
    assert task_thr == metrics["thresholds"] and lang_thr == metrics["language_thresholds"]
    assert (cal.apply_thresholds(data, task_thr, language_thresholds=lang_thr) == data["label"]).all()
    # language thresholds that did not help held out are not used unless asked for
    qc["language_threshold_cv"][0]["gain"] = -0.01
    assert cal.thresholds_from_metrics(metrics)[1] is None
    assert cal.thresholds_from_metrics(metrics, per_language=True)[1] == metrics["language_thresholds"]
    with pytest.raises(ValueError, match="no labelled rows"):
        cal.calibrate(predictions([None], [0.5]))


# figures ----------------------------------------------------------------------------------------------
def test_calibration_figures_draw_headless():
    data = pd.concat([overconfident(2000, seed=1), overconfident(2000, seed=2, task="QI")], ignore_index=True)
    metrics = cal.calibrate(data, n_bootstrap=50)
    sweeps = cal.sweep_by_task(data, grid=101)
    assert set(sweeps) == {"QC", "QI"} and len(sweeps["QC"]) == 101
    fig = plots_eval.f1_threshold_curve(sweeps, metrics["thresholds"], cal.PAPER_THRESHOLDS,
                                        all_positive={"QC": 0.7})
    assert [ax.get_title() for ax in fig.axes] == ["QC", "QI"]
    qc, qi = fig.axes
    assert (qc.get_xlabel(), qc.get_ylabel()) == ("threshold", "score")
    labels = [t.get_text() for t in qc.get_legend().get_texts()]
    chosen = metrics["thresholds"]["QC"]
    assert labels[:3] == ["precision", "recall", "F1"]
    assert labels[3].startswith(f"chosen {chosen:.3f} (F1 ") and labels[4].startswith("paper 0.4 (F1 ")
    assert labels[5] == "all-positive F1 0.700"
    assert len(qi.get_legend().get_texts()) == 5  # no all-positive floor given for QI
    # three curves over the sweep's 101 thresholds, and the vertical line at the chosen threshold
    curves = [line for line in qc.get_lines() if len(line.get_xdata()) == 101]
    assert len(curves) == 3
    np.testing.assert_allclose(curves[2].get_ydata(), sweeps["QC"]["f1"])
    assert any(list(line.get_xdata()) == [chosen, chosen] for line in qc.get_lines())

    table = cal.reliability_by_task(data, metrics["temperature"], n_bins=10)
    assert set(table["stage"]) == {"before", "after"} and set(table["task"]) == {"QC", "QI"}
    ece = {task: {"before": s["ece_before"], "after": s["ece_after"]} for task, s in metrics["tasks"].items()}
    fig = plots_eval.reliability_diagram(table, ece=ece)
    assert [ax.get_title() for ax in fig.axes] == ["QC", "QI"]
    assert fig.axes[0].get_xlabel() == "mean predicted probability"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["perfect calibration", f"before temperature scaling (ECE {ece['QC']['before']:.3f})",
                      f"after temperature scaling (ECE {ece['QC']['after']:.3f})"]
    # one marker per bin and stage
    points = [len(c.get_offsets()) for c in fig.axes[0].collections]
    qc_table = table[table["task"].eq("QC")]
    assert points == [int(qc_table["stage"].eq("before").sum()), int(qc_table["stage"].eq("after").sum())]
    # without ece given, the legend's value is computed from the (15-bin) table: the same ECE
    fig = plots_eval.reliability_diagram(cal.reliability_by_task(data, metrics["temperature"]))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"before temperature scaling (ECE {ece['QC']['before']:.3f})" in legend
    for empty in (plots_eval.reliability_diagram(table.iloc[:0]), plots_eval.f1_threshold_curve({}, {})):
        (ax,) = empty.axes
        assert ax.get_title() == "(no labels)" and [t.get_text() for t in ax.texts] == ["no labelled rows"]
        assert not ax.get_lines() and not ax.collections


# the step -----------------------------------------------------------------------------------------------
def test_calibration_step_fits_on_the_dev_predictions_and_loads_back(tmp_path):
    run = Run(tmp_path / "run").ensure()
    params = parse_params({"name": "t", "calibration": {"n_bootstrap": 20, "folds": 3}})
    with pytest.raises(FileNotFoundError, match="run step 05"):
        calibration.run(params, run)
    dev = pd.concat([overconfident(300, seed=1), overconfident(300, seed=2, task="QI")], ignore_index=True)
    run.path("predictions").mkdir(exist_ok=True)
    dev.to_parquet(run.path("predictions", "dev.parquet"))
    before = run.path("predictions", "dev.parquet").read_bytes()
    metrics = calibration.run(params, run)
    assert calibration.STEP == CALIBRATION == "06_calibration"
    assert run.read_metrics(CALIBRATION) == metrics
    expected = cal.calibrate(dev, seed=params.run.seed, n_bootstrap=20, folds=3)
    assert metrics["thresholds"] == pytest.approx(expected["thresholds"])
    assert run.path("predictions", "dev.parquet").read_bytes() == before  # step 05's file untouched
    results = calibration.load(run)
    assert results.metrics == metrics
    pd.testing.assert_frame_equal(results.dev, calibration.read_predictions(run))
    assert len(results.dev) == 600


# thresholds judged on rows that did not choose them ------------------------------------------------
def test_held_out_thresholds_never_see_the_labels_they_judge():
    """A fold's predictions depend on the other folds' labels only: flipping every label of one fold
    leaves that fold's predictions as they were (and moves others')."""
    data = overconfident(1200, seed=4)
    folds = cal.query_folds(data["query"], folds=5, seed=13)
    before = cal.held_out_threshold_predictions(data, folds=5, seed=13)
    flipped = data.copy()
    k = folds == 2
    flipped.loc[k, "label"] = 1 - flipped.loc[k, "label"]
    after = cal.held_out_threshold_predictions(flipped, folds=5, seed=13)
    assert (after[k] == before[k]).all()
    assert (after[~k] != before[~k]).any()


def test_held_out_f1_is_below_the_dev_fitted_f1_on_noise():
    """On scores that carry no signal, the threshold fitted on all of dev finds a lucky cut; held-out
    thresholds do not, which is why quality figures use them."""
    rng = np.random.default_rng(5)
    n = 2000
    data = predictions(rng.integers(0, 2, n), rng.random(n), queries=[f"q{i}" for i in range(n)])
    metrics = cal.calibrate(data, n_bootstrap=200)["tasks"]["QC"]
    assert metrics["f1_held_out_threshold"] < metrics["f1"]
    lo, hi = metrics["f1_held_out_threshold_ci"]
    assert lo <= metrics["f1_held_out_threshold"] <= hi
    # separable scores: every fold finds a separating threshold
    sep = predictions([0, 1] * 200, [0.2, 0.8] * 200, queries=[f"q{i}" for i in range(400)])
    assert cal.f1_from_counts(*_counts(sep["label"], cal.held_out_threshold_predictions(sep))) == 1.0


def _counts(y, pred):
    y, pred = np.asarray(y, int), np.asarray(pred, int)
    tp = int(((y == 1) & (pred == 1)).sum())
    return tp, int(pred.sum()) - tp, int(y.sum()) - tp
