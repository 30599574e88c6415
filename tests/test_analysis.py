"""Step 07: metrics per group and slice, confident errors, run comparison, heatmap; hand-built tables."""
from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from qckit import analysis
from qckit.config import parse_params
from qckit.runs import Run
from qckit.steps import AUDIT, CALIBRATION, ERROR_ANALYSIS, error_analysis

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from qckit.plots import evaluation as plots_eval  # noqa: E402
from qckit.plots.style import ZERO_SHOT_COLOR  # noqa: E402

THRESHOLDS = {"QC": 0.55, "QI": 0.2}
COMMA_PATH = "home & garden,arts,crafts & sewing,soap making"  # three levels, one with a comma


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def predictions(rows: list[tuple]) -> pd.DataFrame:
    """A predictions table from (task, language, query, target, label, score); label None = unlabelled."""
    df = pd.DataFrame(rows, columns=["task", "language", "query", "target", "label", "score"])
    df["label"] = pd.array(df["label"].tolist(), dtype="Int8")
    df.insert(0, "id", [f"r{i}" for i in range(len(df))])
    df["origin"] = "original"
    df["logit"] = np.log(df["score"]) - np.log1p(-df["score"])
    return df


@pytest.fixture
def preds() -> pd.DataFrame:
    """QC en: 8 rows with known counts at 0.55 (tp 3, fp 1, fn 1, tn 3); QC de 4; QI en 3; 1 unlabelled."""
    qc_en = [(1, 0.9), (1, 0.8), (1, 0.3), (0, 0.7), (0, 0.2), (0, 0.1), (1, 0.6), (0, 0.5)]
    queries = ["shoes", "red shoes for women", "a" * 45, "hat", "bag", "kids shoes", "flip flop",
               "running shoes"]
    rows = [("QC", "en", q, COMMA_PATH if i % 2 else "toys,dolls", y, s)
            for i, ((y, s), q) in enumerate(zip(qc_en, queries))]
    rows += [("QC", "de", "schuhe", "toys", 1, 0.95), ("QC", "de", "hut", "toys", 0, 0.9),
             ("QC", "de", "tasche", "toys,dolls", 1, 0.4), ("QC", "de", "mütze", "toys", 0, 0.05)]
    rows += [("QI", "en", "usb cable", "USB-C cable", 1, 0.6), ("QI", "en", "usb cable", "hose", 0, 0.1),
             ("QI", "en", "lamp", "desk lamp", 1, 0.15)]
    rows += [("QI", "en", "mug", "coffee mug", None, 0.9)]
    return predictions(rows)


@pytest.fixture
def train() -> pd.DataFrame:
    """en original for both tasks; de only translated rows (and a mined negative) for QC."""
    rows = [("QC", "en", "original"), ("QC", "en", "translated"), ("QC", "de", "translated"),
            ("QC", "de", "translated"), ("QC", "de", "mined_negative"), ("QI", "en", "original")]
    return pd.DataFrame(rows, columns=["task", "language", "origin"])


# metrics per group -------------------------------------------------------------------------------------
def test_metrics_by_language_matches_hand_counts(preds):
    table = analysis.metrics_by(preds, ["task", "language"], thresholds=THRESHOLDS)
    assert table[["task", "language"]].values.tolist() == [["QC", "en"], ["QC", "de"], ["QI", "en"]]
    en = table.iloc[0]
    assert (en["rows"], en["positives"], en["tp"], en["fp"], en["fn"], en["tn"]) == (8, 4, 3, 1, 1, 3)
    assert en["precision"] == pytest.approx(0.75) and en["recall"] == pytest.approx(0.75)
    assert en["f1"] == pytest.approx(0.75)
    assert en["all_positive_f1"] == pytest.approx(2 * 4 / (2 * 4 + 4))
    qi = table.iloc[2]
    assert qi["rows"] == 3  # the unlabelled row is left out
    assert (qi["tp"], qi["fp"], qi["fn"], qi["tn"]) == (1, 0, 1, 1)


def test_metrics_by_matches_sklearn_on_random_rows():
    rng = np.random.default_rng(0)
    n = 2000
    rows = list(zip(rng.choice(["QC", "QI"], n), rng.choice(["en", "fr", "ja"], n), ["q"] * n, ["t"] * n,
                    rng.integers(0, 2, n).tolist(), rng.uniform(0.01, 0.99, n)))
    data = predictions(rows)
    table = analysis.metrics_by(data, ["task", "language"], thresholds=THRESHOLDS)
    assert table["rows"].sum() == n
    for row in table.itertuples():
        part = data[data["task"].eq(row.task) & data["language"].eq(row.language)]
        y, p = part["label"].astype(int), (part["score"] >= THRESHOLDS[row.task]).astype(int)
        precision, recall, f1, _ = precision_recall_fscore_support(y, p, average="binary", zero_division=0)
        assert (row.precision, row.recall, row.f1) == pytest.approx((precision, recall, f1))
        (tn, fp), (fn, tp) = confusion_matrix(y, p, labels=[0, 1])
        assert (row.tp, row.fp, row.fn, row.tn) == (tp, fp, fn, tn)
    pooled = analysis.metrics_by(data, [], thresholds=THRESHOLDS)
    assert len(pooled) == 1 and pooled["rows"].iloc[0] == n and pooled["tp"].iloc[0] == table["tp"].sum()


def test_language_thresholds_change_the_metrics(preds):
    strict = analysis.metrics_by(preds, "task", thresholds=THRESHOLDS,
                                 language_thresholds={"QC": {"de": 0.92}})
    qc = strict.set_index("task").loc["QC"]
    # de at 0.92: only the 0.95 positive is predicted; en unchanged (tp 3, fp 1, fn 1)
    assert (qc["tp"], qc["fp"], qc["fn"]) == (3 + 1, 1 + 0, 1 + 1)


def test_confusion_is_sklearns_layout(preds):
    table = analysis.confusion(preds, thresholds=THRESHOLDS, by=["task"])
    qc = preds[preds["task"].eq("QC")]
    y, p = qc["label"].astype(int), (qc["score"] >= 0.55).astype(int)
    expected = confusion_matrix(y, p, labels=[1, 0])
    got = table[table["task"].eq("QC")][["predicted_1", "predicted_0"]].to_numpy()
    assert table[table["task"].eq("QC")]["actual"].tolist() == [1, 0]
    np.testing.assert_array_equal(got, expected)


# slices ---------------------------------------------------------------------------------------------------
def test_slices_by_length_depth_top_level_and_support(preds, train):
    tables = analysis.slices(preds, thresholds=THRESHOLDS, train=train)
    assert set(tables) == {"language", "query_length", "category_depth", "top_level", "zero_shot",
                           "training_support"}
    lengths = tables["query_length"]
    qc = lengths[lengths["task"].eq("QC")].set_index("query_length")["rows"]
    # QC query lengths: 5 "shoes", 19, 45, 3, 3, 10, 9, 13 (en) and 6, 3, 6, 5 (de)
    assert qc.to_dict() == {"<10": 8, "10-19": 3, "40-79": 1}
    depth = tables["category_depth"].set_index("category_depth")["rows"].to_dict()
    assert depth == {1: 3, 2: 5, 3: 4}  # the comma inside "arts,crafts & sewing" is not a level break
    top = tables["top_level"]
    assert top["top_level"].tolist() == ["toys", "home & garden"] and top["rows"].tolist() == [8, 4]
    language = tables["language"].set_index(["task", "language"])
    assert language.loc[("QC", "de"), "support"] == "translated only"
    assert language.loc[("QC", "de"), "train_translated"] == 2
    assert language.loc[("QC", "de"), "train_mined_negative"] == 1
    assert language.loc[("QC", "en"), "support"] == "original"
    # de has no original training rows: zero-shot when the audit's list is not given
    assert language.loc[("QC", "de"), "zero_shot"] and not language.loc[("QC", "en"), "zero_shot"]
    support = tables["training_support"]
    assert support[["task", "support"]].astype(str).values.tolist() == [
        ["QC", "original"], ["QC", "translated only"], ["QI", "original"]]
    assert support["rows"].tolist() == [8, 4, 3]


def test_slices_without_train_use_the_given_zero_shot_list(preds):
    tables = analysis.slices(preds, thresholds=THRESHOLDS, zero_shot=["en"])
    assert "training_support" not in tables and "support" not in tables["language"]
    flags = tables["zero_shot"].set_index(["task", "zero_shot"])["rows"].to_dict()
    assert flags == {("QC", False): 4, ("QC", True): 8, ("QI", True): 3}
    assert not analysis.slices(preds, thresholds=THRESHOLDS)["language"]["zero_shot"].any()


def test_confident_errors_rank_false_positives_high_and_false_negatives_low(preds):
    errors = analysis.confident_errors(preds, thresholds={"QC": 0.15, "QI": 0.2}, k=2)
    en = errors[errors["task"].eq("QC") & errors["language"].eq("en")]
    fp = en[en["error"].eq("false positive")]
    # QC en negatives scored 0.7, 0.5, 0.2 (0.1 is correct at 0.15): the two highest
    assert fp["score"].tolist() == [0.7, 0.5] and fp["rank"].tolist() == [1, 2]
    assert (fp["label"] == 0).all() and {"id", "query", "target", "origin"} <= set(errors.columns)
    qi = errors[errors["task"].eq("QI")]
    assert qi["error"].tolist() == ["false negative"] and qi["score"].tolist() == [0.15]
    de = errors[errors["task"].eq("QC") & errors["language"].eq("de")]
    assert de["error"].tolist() == ["false positive"] and de["score"].tolist() == [0.9]
    fn = analysis.confident_errors(preds, thresholds={"QC": 0.95, "QI": 0.2}, k=1)
    lowest = fn[fn["task"].eq("QC") & fn["language"].eq("en") & fn["error"].eq("false negative")]
    assert lowest["score"].tolist() == [0.3]


# comparing runs ----------------------------------------------------------------------------------------
def test_compare_puts_runs_side_by_side(tmp_path):
    a, b = Run(tmp_path / "run-a").ensure(), Run(tmp_path / "run-b").ensure()
    a.write_metrics("06_calibration", {"thresholds": {"QC": 0.4, "QI": 0.2}, "tasks": {"QC": {"f1": 0.8}},
                                       "rows": [{"x": 1}], "zero_shot": ["de", "it"]})
    b.write_metrics("06_calibration", {"thresholds": {"QC": 0.45}, "tasks": {"QC": {"f1": 0.85}}})
    b.write_metrics("07_error_analysis", {"headline": {"f1_QC": 0.85, "worst": "de 0.6", "x": None}})
    table = analysis.compare([a.root, b.root])
    assert list(table.columns) == ["run-a", "run-b"]
    assert table.loc["06_calibration.thresholds.QC"].tolist() == [0.4, 0.45]
    assert math.isnan(table.loc["06_calibration.thresholds.QI", "run-b"])
    assert math.isnan(table.loc["07_error_analysis.headline.f1_QC", "run-a"])
    assert table.loc["06_calibration.zero_shot", "run-a"] == "de, it"
    assert not any(key.startswith("06_calibration.rows") for key in table.index)  # records are not figures
    numeric = analysis.compare([a.root, b.root], numeric_only=True)
    assert numeric.dtypes.eq(float).all() and "07_error_analysis.headline.worst" not in numeric.index
    assert numeric.loc["06_calibration.tasks.QC.f1"].tolist() == [0.8, 0.85]
    only = analysis.compare([a.root, b.root], steps=["07_error_analysis"])
    assert all(key.startswith("07_error_analysis.") for key in only.index)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        analysis.compare([a.root, tmp_path / "missing"])


def test_compare_keeps_two_runs_with_the_same_id_apart(tmp_path):
    a, b = Run(tmp_path / "x" / "run").ensure(), Run(tmp_path / "y" / "run").ensure()
    a.write_metrics("05", {"f1": 0.1})
    b.write_metrics("05", {"f1": 0.2})
    table = analysis.compare([a.root, b.root])
    assert table.loc["05.f1"].tolist() == [0.1, 0.2] and len(set(table.columns)) == 2


# step 07 -------------------------------------------------------------------------------------------------
def test_analyse_is_json_with_a_short_headline(preds, train):
    metrics = analysis.analyse(preds, thresholds=THRESHOLDS, train=train, k=3)
    json.dumps(metrics, allow_nan=False)
    assert metrics["zero_shot_languages"] == ["de"]
    headline = metrics["headline"]
    assert len(headline) <= 8
    assert all(v is None or isinstance(v, (int, float, str)) for v in headline.values())
    # QC: en tp 3 fp 1 fn 1; de at 0.55: 0.95 tp, 0.9 fp, 0.4 fn -> tp 4, fp 2, fn 2
    assert headline["f1_QC"] == pytest.approx(round(8 / 12, 4))
    assert headline["zero_shot_f1_QC"] == pytest.approx(0.5)
    assert headline["worst_language_QC"] == "de 0.50"
    assert headline["zero_shot_f1_QI"] is None
    assert {r["task"] for r in metrics["by_task"]} == {"QC", "QI"}
    assert set(metrics["slices"]) >= {"language", "query_length", "training_support"}


# figure -------------------------------------------------------------------------------------------------
def test_f1_heatmap_marks_zero_shot_languages(preds):
    table = analysis.metrics_by(preds, thresholds=THRESHOLDS)
    fig = plots_eval.f1_heatmap(table, zero_shot=["de"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["en", "de (zero-shot)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["QC", "QI"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("task", "language")
    en, de = ax.get_yticklabels()
    assert matplotlib.colors.same_color(de.get_color(), ZERO_SHOT_COLOR)
    assert not matplotlib.colors.same_color(en.get_color(), ZERO_SHOT_COLOR)
    cells = [t.get_text() for t in ax.texts]
    # row by row, F1 and the all-positive F1 beneath; QI has no de rows: no text in that cell
    assert cells == ["0.750\n(0.667)", "0.667\n(0.800)", "0.500\n(0.667)"]
    empty = plots_eval.f1_heatmap(table.iloc[:0]).axes[0]
    assert [t.get_text() for t in empty.texts] == ["no labelled rows"] and not empty.collections


# the step ------------------------------------------------------------------------------------------------
def test_error_analysis_step_reads_the_run_and_loads_back(tmp_path, preds, train):
    run = Run(tmp_path / "run").ensure()
    run.path("predictions").mkdir(exist_ok=True)
    preds.to_parquet(run.path("predictions", "dev.parquet"))
    run.write_table("train", train)
    run.write_metrics(AUDIT, {"zero_shot_languages": ["de"]})
    run.write_metrics(CALIBRATION, {"thresholds": THRESHOLDS})
    params = parse_params({"name": "t", "analysis": {"examples": 1}})
    metrics = error_analysis.run(params, run)
    assert error_analysis.STEP == ERROR_ANALYSIS == "07_error_analysis"
    assert run.read_metrics(ERROR_ANALYSIS) == metrics
    assert metrics == json.loads(json.dumps(analysis.analyse(preds, thresholds=THRESHOLDS, train=train,
                                                             zero_shot=["de"], k=1)))
    results = error_analysis.load(run)
    assert results.metrics == metrics and results.thresholds == THRESHOLDS
    assert results.language_thresholds is None and results.zero_shot == ["de"]
    assert len(results.dev) == len(preds) - 1 and results.dev["label"].notna().all()  # labelled rows only
    assert results.train["origin"].tolist() == train["origin"].tolist()
