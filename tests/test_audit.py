"""Step 01: audit functions on small hand-built tables with known answers, the step, plots.

The notebook itself is checked in tests/test_notebooks.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from qckit import BASE_COLUMNS, audit
from qckit.config import parse_params
from qckit.data import category_depth
from qckit.features import normalise_queries
from qckit.runs import Run
from qckit.steps import AUDIT, run_or_load
from qckit.steps import audit as audit_step

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qckit.plots import audit as plots  # noqa: E402
from qckit.plots.style import ZERO_SHOT_COLOR  # noqa: E402

COMMA_PATH = "home & garden,arts,crafts & sewing,soap making,soap molds"


def pairs(rows: list[tuple]) -> pd.DataFrame:
    """A pairs table from (task, language, query, target, label) tuples; label None is unlabelled."""
    df = pd.DataFrame(rows, columns=["task", "language", "query", "target", "label"])
    df["label"] = pd.array(df["label"].tolist(), dtype="Int8")
    df.insert(0, "id", [str(i) for i in range(len(df))])
    df["origin"] = "original"
    df["source_id"] = pd.array([None] * len(df), dtype="string")
    return df[list(BASE_COLUMNS)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    """en and fr trained; de only in dev (QC zero-shot); fr QI only in dev (QI zero-shot); test empty."""
    train = pairs([
        ("QC", "en", "red shoes", "shoes,women's shoes", 1),
        ("QC", "en", "red shoes", "shoes,women's shoes", 1),     # exact duplicate of the row above
        ("QC", "en", "blue hat", "apparel accessories,hats & caps", 1),
        ("QC", "en", "blue hat", "apparel accessories,hats & caps", 0),  # conflicting pair
        ("QC", "fr", "chaussures", "shoes,women's shoes", 0),
        ("QI", "en", "usb cable", "USB-C cable 1 m", 1),
        ("QI", "en", "usb cable", "Garden hose 20 m", 0),
    ])
    dev = pairs([
        ("QC", "en", "Red  Shoes ", "shoes,women's shoes", 1),  # same query as train once normalised
        ("QC", "de", "rote schuhe", "shoes,women's shoes", 1),
        ("QC", "de", "hut", "apparel accessories,hats & caps", 0),
        ("QI", "fr", "câble usb", "USB-C cable 1 m", 1),
    ])
    return {"train": train, "dev": dev, "test": pairs([])}


# coverage and zero-shot --------------------------------------------------------------------------
def test_coverage_tidy_counts_rows_per_language_task_split(splits):
    cov = audit.coverage(splits)
    assert list(cov.columns) == ["language", "task", "split", "rows"]
    got = {(r.language, r.task, r.split): r.rows for r in cov.itertuples()}
    assert got == {("en", "QC", "train"): 4, ("en", "QC", "dev"): 1, ("en", "QI", "train"): 2,
                   ("fr", "QC", "train"): 1, ("fr", "QI", "dev"): 1, ("de", "QC", "dev"): 2}
    assert list(cov["language"].unique()) == ["en", "fr", "de"]  # project order, not alphabetical


def test_coverage_wide_fills_zeros_and_totals(splits):
    wide = audit.coverage(splits, layout="wide")
    assert wide.loc["de", ("QC", "train")] == 0
    assert wide.loc["de", ("QC", "dev")] == 2
    assert wide.loc["en", ("total", "")] == 7
    assert list(wide.columns[:2]) == [("QC", "train"), ("QC", "dev")]
    with pytest.raises(ValueError, match="layout"):
        audit.coverage(splits, layout="long")


def test_zero_shot_languages_detected_overall_and_per_task(splits):
    assert audit.zero_shot_languages(splits) == ["de"]  # fr has QC training rows
    assert audit.zero_shot_languages(splits, by_task=True) == {"QC": ["de"], "QI": ["fr"]}


def test_zero_shot_override_wins(splits):
    assert audit.zero_shot_languages(splits, override=["it", "de"]) == ["it", "de"]
    # per task the override is narrowed to the languages the task has rows for
    assert audit.zero_shot_languages(splits, override=["it", "de"], by_task=True) == {"QC": ["de"], "QI": []}


def test_zero_shot_none_when_every_language_is_trained():
    one = pairs([("QC", "en", "a", "x,y", 1)])
    assert audit.zero_shot_languages({"train": one, "dev": one, "test": pairs([])}) == []


# balance, lengths, empties -----------------------------------------------------------------------
def test_class_balance_counts_and_share(splits):
    test = pairs([("QC", "en", "q", "x,y", None), ("QC", "en", "r", "x,y", None)])
    bal = audit.class_balance({**splits, "test": test})
    row = bal[(bal["split"] == "train") & (bal["task"] == "QC") & (bal["language"] == "en")].iloc[0]
    assert (row.rows, row.positives, row.negatives, row.unlabelled) == (4, 3, 1, 0)
    assert row.positive_share == pytest.approx(0.75)
    unlabelled = bal[bal["split"] == "test"].iloc[0]
    assert unlabelled.unlabelled == 2 and math.isnan(unlabelled.positive_share)
    # a single table has no split column: grouped by task and language only
    single = audit.class_balance(splits["train"])
    assert "split" not in single.columns and len(single) == 3


def test_class_balance_wide_is_share_per_language(splits):
    wide = audit.class_balance(splits, layout="wide")
    assert wide.loc["en", ("QC", "train")] == pytest.approx(0.75)
    assert wide.loc["fr", ("QI", "dev")] == pytest.approx(1.0)
    assert math.isnan(wide.loc["de", ("QC", "train")])


def test_length_stats_chars_and_tokens():
    df = pairs([("QC", "en", "red shoes", "a,b", 1), ("QC", "en", "blue", "a,b,c", 0),
                ("QC", "ja", "赤い靴下", "a,b", 1)])
    stats = audit.length_stats(df).set_index("language")
    assert stats.loc["en", "query_chars_mean"] == pytest.approx(6.5)
    assert stats.loc["en", "query_tokens_mean"] == pytest.approx(1.5)
    assert stats.loc["en", "one_token_share"] == pytest.approx(0.5)
    assert stats.loc["ja", "query_chars_mean"] == 4 and stats.loc["ja", "query_tokens_mean"] == 1
    assert stats.loc["en", "target_chars_mean"] == pytest.approx(4.0)
    assert stats.loc["en", "query_chars_p95"] == pytest.approx(8.75)


def test_text_lengths_treat_missing_text_as_empty():
    df = pairs([("QC", "en", None, "a b", 1)])
    out = audit.text_lengths(df).iloc[0]
    assert (out.query_chars, out.query_tokens, out.target_chars, out.target_tokens) == (0, 0, 3, 2)


def test_empty_text_counts_missing_and_blank(splits):
    train = pairs([("QC", "en", "", "a,b", 1), ("QC", "en", "   ", "a,b", 1), ("QI", "en", "q", None, 0),
                   ("QI", "en", "q", "title", 0)])
    out = audit.empty_text({"train": train, "dev": splits["dev"]})
    got = {(r.split, r.task): (r.empty_queries, r.empty_targets) for r in out.itertuples()}
    assert got[("train", "QC")] == (2, 0)
    assert got[("train", "QI")] == (0, 1)
    assert got[("dev", "QC")] == (0, 0)


# duplicates, conflicts, leakage -----------------------------------------------------------------
def test_duplicates_conflicts_and_leakage(splits):
    test = pairs([("QC", "de", "HUT", "x,y", None)])
    found = audit.duplicates_and_conflicts({**splits, "test": test})
    counts = found["counts"].set_index(["split", "task"])
    assert counts.loc[("train", "QC"), "duplicate_rows"] == 1
    assert counts.loc[("train", "QC"), "conflicting_pairs"] == 1
    assert counts.loc[("train", "QC"), "conflicting_rows"] == 2
    assert counts.loc[("train", "QI"), "duplicate_rows"] == 0
    assert counts.loc[("dev", "QC"), "conflicting_pairs"] == 0
    assert len(found["duplicates"]) == 1 and found["duplicates"].iloc[0]["query"] == "red shoes"
    assert set(found["conflicts"]["label"].tolist()) == {0, 1}
    assert set(found["conflicts"]["query"]) == {"blue hat"}

    leak = found["leakage"].set_index(["seen_in", "evaluated_in", "task"])
    assert leak.loc[("train", "dev", "QC"), "shared_queries"] == 1  # "Red  Shoes " == "red shoes"
    assert leak.loc[("train", "dev", "QC"), "shared_pairs"] == 1
    assert leak.loc[("train", "dev", "QI"), "shared_queries"] == 0
    assert leak.loc[("dev", "test", "QC"), "shared_queries"] == 1  # "HUT" == "hut"
    assert leak.loc[("dev", "test", "QC"), "shared_pairs"] == 0  # different target
    assert set(found["leaked"]["query"]) == {"Red  Shoes ", "HUT"}


def test_duplicates_and_conflicts_skip_empty_splits(splits):
    found = audit.duplicates_and_conflicts({"train": splits["train"], "test": pairs([])})
    assert set(found["counts"]["split"]) == {"train"}
    assert found["leakage"].empty


# category paths ----------------------------------------------------------------------------------
def test_category_stats_depth_and_top_level():
    df = pairs([
        ("QC", "en", "q1", "shoes,women's shoes", 1),
        ("QC", "en", "q2", "shoes,women's shoes", 0),
        ("QC", "fr", "q3", "home & garden,kitchen,cookware", 1),
        ("QC", "en", "q4", COMMA_PATH, 1),
        ("QI", "en", "q5", "a title, with commas, in it", 1),  # QI rows are ignored
    ])
    stats = audit.category_stats(df)
    top = stats["top_level"].set_index("top_level")
    assert top.loc["shoes", "rows"] == 2 and top.loc["shoes", "paths"] == 1
    assert top.loc["shoes", "positive_share"] == pytest.approx(0.5)
    assert top.loc["home & garden", "rows"] == 2
    assert stats["top_level"].iloc[0]["top_level"] in {"shoes", "home & garden"}
    assert stats["top_level"]["share"].sum() == pytest.approx(1.0)
    depth = stats["depth"].set_index("depth")["rows"].to_dict()
    # level names with commas ("arts,crafts & sewing") are kept whole by data.parse_category_path
    assert category_depth(COMMA_PATH) == 4
    assert depth == {2: 2, 3: 1, 4: 1}


def test_category_stats_without_qc_rows():
    stats = audit.category_stats(pairs([("QI", "en", "q", "title", 1)]))
    assert stats["depth"].empty and stats["top_level"].empty


# metrics and the step ----------------------------------------------------------------------------
METRIC_KEYS = {"rows", "languages", "zero_shot_languages", "zero_shot_languages_by_task", "train_languages",
               "positive_share", "duplicates", "conflicts", "empty_queries", "empty_targets", "leakage",
               "dropped", "load_info", "headline"}


def test_audit_metrics_json_serialisable_with_expected_keys(splits):
    info = {"source": "files",
            "train": {"files": ["t.jsonl"], "rows": {"read": {"QC": 7, "QI": 2}},
                      "dropped": {"duplicates": 2}, "kept": 7}}
    metrics = audit.audit_metrics(splits, info)
    assert METRIC_KEYS <= set(metrics)
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics
    assert metrics["rows"]["train"] == {"QC": 5, "QI": 2, "total": 7}
    assert metrics["rows"]["test"] == {"total": 0}
    assert metrics["languages"]["dev"] == ["en", "fr", "de"]
    assert metrics["train_languages"] == ["en", "fr"]
    assert metrics["zero_shot_languages"] == ["de"]
    assert metrics["zero_shot_languages_by_task"] == {"QC": ["de"], "QI": ["fr"]}
    assert metrics["positive_share"]["train"]["QC"] == pytest.approx(0.6)
    assert metrics["positive_share"]["test"] == {}
    assert metrics["duplicates"] == {"train": 1, "dev": 0, "test": 0}
    assert metrics["conflicts"] == {"train": 1, "dev": 0, "test": 0}
    assert metrics["leakage"]["train->dev"]["shared_queries"] == 1
    assert metrics["load_info"] == info
    assert metrics["dropped"] == {"train": {"duplicates": 2}}
    headline = metrics["headline"]
    assert len(headline) <= 8
    assert all(isinstance(v, (int, float, str)) for v in headline.values())
    assert headline["rows"] == 11 and headline["languages"] == 3
    assert headline["zero_shot_languages"] == "de"
    assert headline["train_positive_share_QC"] == pytest.approx(0.6)
    assert headline["duplicate_rows"] == 3  # one still in train, two dropped by the loader
    assert headline["conflicting_pairs"] == 1 and headline["leaked_queries"] == 1


def test_loading_table_reads_loader_counts():
    info = {"source": "demo",
            "train": {"files": [], "rows": {"read": {"QC": 10, "QI": 5}},
                      "dropped": {"empty": 1, "duplicates": 2}, "kept": 12},
            "test": {"files": [], "rows": {"read": {}}, "dropped": {"empty": 0, "duplicates": 0}, "kept": 0}}
    table = audit.loading_table(info)
    assert table.loc["train"].to_dict() == {"read": 15, "empty": 1, "duplicates": 2, "kept": 12}
    assert table.loc["test", "read"] == 0
    assert audit.loading_table({"unknown": 1}).empty


def test_audit_metrics_override_and_no_zero_shot(splits):
    metrics = audit.audit_metrics(splits, {}, zero_shot=["de", "it"])
    assert metrics["zero_shot_languages"] == ["de", "it"]
    assert metrics["headline"]["zero_shot_languages"] == "de, it"
    trained = {"train": splits["train"], "dev": splits["train"], "test": pairs([])}
    assert audit.audit_metrics(trained, {})["headline"]["zero_shot_languages"] == "none"


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_audit_step_writes_tables_and_metrics_and_loads_them_back(tmp_path):
    def row(i, lang, query, path, label):
        return {"id": i, "task": "QC", "language": lang, "origin_query": query, "category_path": path,
                "label": label}

    train = _write_jsonl(tmp_path / "train_QC.jsonl", [row(1, "en", "red shoes", "shoes,women's shoes", 1),
                                                      row(2, "en", "blue hat", COMMA_PATH, 0)])
    dev = _write_jsonl(tmp_path / "dev_QC.jsonl", [row(1, "de", "rote schuhe", "shoes,women's shoes", 1)])
    params = parse_params({"name": "t", "data": {"source": "files", "train": [train], "dev": [dev],
                                                 "tasks": ["QC"]}})
    run = Run(tmp_path / "run").ensure()
    metrics = audit_step.run(params, run)
    assert audit_step.STEP == AUDIT == "01_data_audit"
    for name in ("train", "dev", "test"):
        assert run.has_table(name)
        assert set(BASE_COLUMNS) <= set(run.read_table(name).columns)
    assert len(run.read_table("train")) == 2 and len(run.read_table("test")) == 0
    assert run.read_metrics(AUDIT) == metrics
    assert metrics["zero_shot_languages"] == ["de"]

    results = audit_step.load(run)
    assert results.metrics == metrics
    assert set(results.splits) == {"train", "dev", "test"}
    assert results.splits["train"]["query"].tolist() == ["red shoes", "blue hat"]
    assert results.splits["dev"]["language"].tolist() == ["de"] and results.splits["test"].empty
    # load changes nothing; run_or_load loads a done step instead of running it again
    stamp = run.metrics_path(AUDIT).stat().st_mtime_ns
    again = run_or_load(audit_step, params, run)
    assert again.metrics == metrics and run.metrics_path(AUDIT).stat().st_mtime_ns == stamp


def test_leakage_normalises_queries_like_the_rest_of_the_kit():
    # casefold (not lower: "ß" -> "ss") and every kind of whitespace collapsed, missing queries empty
    queries = pd.Series(["Straße  X", "STRASSE\tx", None, " a\u00a0b "], index=[5, 6, 7, 8])
    normalised = normalise_queries(queries)
    assert normalised.tolist() == ["strasse x", "strasse x", "", "a b"]
    assert normalised.index.tolist() == [5, 6, 7, 8] and normalised.dtype == object
    train = pairs([("QC", "de", "Straße  X", "a,b", 1)])
    dev = pairs([("QC", "de", "STRASSE\tx", "a,b", 1), ("QC", "de", "other", "a,b", 1)])
    found = audit.duplicates_and_conflicts({"train": train, "dev": dev})
    leak = found["leakage"].set_index(["seen_in", "evaluated_in", "task"])
    assert leak.loc[("train", "dev", "QC"), "shared_queries"] == 1
    assert found["leaked"]["query"].tolist() == ["STRASSE\tx"]


# plots ---------------------------------------------------------------------------------------------
def _titles(fig: Figure) -> str:
    parts = [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return " | ".join(parts)


def _render(fig: Figure) -> None:
    fig.canvas.draw()  # layout and text rendering errors surface here


def test_coverage_heatmap_marks_zero_shot(splits):
    fig = plots.coverage_heatmap(audit.coverage(splits), zero_shot=["de"])
    _render(fig)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and "Rows per language" in ax.get_title()
    assert ax.get_ylabel() == "language" and "task" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["en", "fr", "de (zero-shot)"]
    colours = [matplotlib.colors.to_hex(t.get_color()) for t in ax.get_yticklabels()]
    assert colours[2] == ZERO_SHOT_COLOR and ZERO_SHOT_COLOR not in colours[:2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["QC · train", "QC · dev", "QI · train", "QI · dev"]
    cells = [t.get_text() for t in ax.texts]  # row counts written in the cells, zeros included
    assert cells == ["4", "1", "2", "0", "1", "0", "0", "1", "0", "2", "0", "0"]
    assert max(fig.get_size_inches()) <= 10 and fig.get_size_inches()[1] <= 5
    plain = plots.coverage_heatmap(audit.coverage(splits)).axes[0]
    assert [t.get_text() for t in plain.get_yticklabels()] == ["en", "fr", "de"]
    assert all(t.get_rotation() == 0 for t in plain.get_yticklabels())


def test_class_balance_chart_one_panel_per_task(splits):
    fig = plots.class_balance_chart(audit.class_balance(splits), zero_shot=["de"])
    _render(fig)
    panels = [ax for ax in fig.axes if ax.get_title() in {"QC", "QI"}]
    assert [ax.get_title() for ax in panels] == ["QC", "QI"]
    assert all(ax.get_ylabel() == "positive share" and ax.get_xlabel() == "language" for ax in panels)
    assert "Share of positive labels" in _titles(fig)
    qc, qi = panels
    assert [t.get_text() for t in qc.get_xticklabels()] == ["en", "fr", "de"]
    de = qc.get_xticklabels()[2]
    assert matplotlib.colors.to_hex(de.get_color()) == ZERO_SHOT_COLOR and de.get_fontweight() == "bold"
    # one bar per (language, split) with labels: QC en train 0.75, en dev 1, fr train 0, de dev 0.5
    heights = sorted(round(b.get_height(), 2) for b in qc.patches if b.get_height() > 0 and b.get_width() > 0)
    assert heights == [0.5, 0.75, 1.0]
    assert [t.get_text() for t in qi.get_xticklabels()] == ["en", "fr"]


def test_length_distributions_query_and_target(splits):
    fig = plots.length_distributions(audit.stack_splits(splits))
    _render(fig)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Query", "Target (category path / item title)"]
    assert fig.axes[0].get_ylabel() == "length (characters)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["en", "fr", "de"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["QC", "QI"]
    tokens = plots.length_distributions(splits["train"], unit="tokens")
    assert tokens.axes[0].get_ylabel() == "length (whitespace tokens)"
    with pytest.raises(ValueError, match="unit"):
        plots.length_distributions(splits["train"], unit="bytes")


def _category_table(n_levels: int) -> dict[str, pd.DataFrame]:
    depth = pd.DataFrame({"depth": [2, 3, 4], "rows": [5, 10, 5], "paths": [1, 2, 1],
                          "share": [0.25, 0.5, 0.25]})
    rows = list(range(n_levels, 0, -1))
    top = pd.DataFrame({"top_level": [f"level {i}" for i in range(n_levels)], "rows": rows, "paths": rows,
                        "share": [r / sum(rows) for r in rows], "positive_share": [0.5] * n_levels})
    return {"depth": depth, "top_level": top}


def test_category_charts_top_n_with_other():
    fig = plots.category_charts(_category_table(15), top=12)
    _render(fig)
    left, right = fig.axes[:2]
    assert left.get_xlabel() == "depth" and "Depth" in left.get_title()
    assert [t.get_text() for t in left.get_xticklabels()] == ["2", "3", "4"]
    assert [round(b.get_height(), 2) for b in left.patches] == [0.25, 0.5, 0.25]
    assert [t.get_text() for t in left.texts] == ["5", "10", "5"]  # row counts on the depth bars
    labels = [t.get_text() for t in right.get_yticklabels()]
    assert len(labels) == 13 and labels[-1] == "other" and labels[0] == "level 0"
    widths = [b.get_width() for b in right.patches]
    shares = _category_table(15)["top_level"]["share"]
    assert widths[:12] == pytest.approx(shares[:12].tolist()) and widths[12] == pytest.approx(shares[12:].sum())
    assert "Top-level category" in right.get_title()
    few = plots.category_charts(_category_table(3), top=12)
    assert "other" not in [t.get_text() for t in few.axes[1].get_yticklabels()]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_plots_handle_single_language_and_empty_test_split():
    one = {"train": pairs([("QC", "en", "a b", "x,y", 1), ("QC", "en", "c", "x,z", 0)]),
           "dev": pairs([("QC", "en", "d", "x,y", 1)]), "test": pairs([])}
    heatmap = plots.coverage_heatmap(audit.coverage(one), zero_shot=[])
    _render(heatmap)
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()] == ["en"]
    assert _texts(heatmap.axes[0]) == ["2", "1"] and "zero-shot" not in heatmap.axes[0].get_title()
    balance = plots.class_balance_chart(audit.class_balance(one))
    _render(balance)
    (panel,) = [ax for ax in balance.axes if ax.get_title() == "QC"]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["en"]
    assert sorted(round(b.get_height(), 2) for b in panel.patches if b.get_width() > 0) == [0.5, 1.0]
    lengths = plots.length_distributions(audit.stack_splits(one))
    _render(lengths)
    assert [t.get_text() for t in lengths.axes[0].get_xticklabels()] == ["en"]


def test_plots_handle_no_rows_at_all():
    empty = {"train": pairs([]), "dev": pairs([]), "test": pairs([])}
    no_categories = {
        "depth": pd.DataFrame(columns=["depth", "rows", "paths", "share"]),
        "top_level": pd.DataFrame(columns=["top_level", "rows", "paths", "share", "positive_share"]),
    }
    figures = {"no rows": [plots.coverage_heatmap(audit.coverage(empty)),
                           plots.length_distributions(audit.stack_splits(empty))],
               "no labelled rows": [plots.class_balance_chart(audit.class_balance(empty))],
               "no QC rows": [plots.category_charts(no_categories)]}
    for message, figs in figures.items():
        for fig in figs:
            _render(fig)
            panels = [ax for ax in fig.axes if ax.get_title()]
            assert panels and all(_texts(ax) == [message] for ax in panels), message
            assert all(not ax.patches and not ax.collections for ax in panels)
