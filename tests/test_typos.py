"""Misspelled queries (issue 25, item 6): the typo generator, typo'd training copies (step 05) and the
robustness slice of step 07, the last two on the smoke profile."""
from __future__ import annotations

import random
import shutil
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from qckit import analysis
from qckit.config import ParamsError, load_params, parse_params
from qckit.pipeline import step_input_hash
from qckit.runs import Run
from qckit.steps import NOISE, TRAINING, audit, calibration, error_analysis, training
from qckit.typos import KINDS, add_typos, keyboard_neighbours, misspell, typo_copies


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def latin_queries(n: int, seed: int = 0) -> list[str]:
    """Queries of 2-4 random lower-case words with a number now and then."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(400)]
    return [" ".join(rng.sample(words, rng.randint(2, 4))) + (f" {rng.randint(1, 99)}" if rng.random() < 0.3 else "")
            for _ in range(n)]


def letters(text: str) -> int:
    return sum(c.isalpha() for c in text)


# the generator ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_measured_edit_rate_is_the_rate(rate):
    texts = latin_queries(2000)
    typoed = add_typos(texts, rate, seed=3)
    edits = sum(osa_distance(a, b) for a, b in zip(texts, typoed))
    # a transposition takes two letters: about rate / (1 + rate / 4) edits per letter with the four kinds
    assert edits / sum(map(letters, texts)) == pytest.approx(rate / (1 + rate / 4), rel=0.08)


def test_deletions_alone_remove_the_rate_of_letters():
    texts = latin_queries(2000, seed=1)
    typoed = add_typos(texts, 0.1, seed=0, kinds=("delete",))
    removed = sum(len(a) - len(b) for a, b in zip(texts, typoed))
    assert removed / sum(map(letters, texts)) == pytest.approx(0.1, rel=0.06)


def test_rate_zero_leaves_texts_unchanged():
    texts = latin_queries(50) + ["東京 タワー", "", "Größe 42"]
    assert add_typos(texts, 0.0, seed=1) == texts


def test_same_seed_same_output_whatever_the_batch():
    texts = latin_queries(300)
    first = add_typos(texts, 0.2, seed=7)
    assert add_typos(texts, 0.2, seed=7) == first
    assert add_typos(texts[::-1], 0.2, seed=7) == first[::-1]  # independent of order and batch
    assert add_typos(texts[:10], 0.2, seed=7) == first[:10]
    other = add_typos(texts, 0.2, seed=8)
    assert sum(a != b for a, b in zip(first, other)) > 200
    # the same text gets the same misspelling wherever it appears
    assert len(set(add_typos(["red running shoes"] * 5, 0.3, seed=7))) == 1


def test_keyboard_neighbours_are_the_qwerty_keys_around_a_letter():
    assert set(keyboard_neighbours("a")) == set("qwsz")
    assert set(keyboard_neighbours("g")) == set("fhtyvb")
    assert set(keyboard_neighbours("p")) == set("ol")
    assert set(keyboard_neighbours("m")) == set("njk")
    assert set(keyboard_neighbours("G")) == set("FHTYVB")  # case kept
    assert keyboard_neighbours("é") == keyboard_neighbours("e") and keyboard_neighbours("Ñ") == keyboard_neighbours("N")
    assert keyboard_neighbours("東") == keyboard_neighbours("ł") == keyboard_neighbours("ß") == ""


def test_substitutions_are_keyboard_neighbours():
    texts = latin_queries(200) + ["Chaussures Été", "zapatillas niño"]
    for text, typo in zip(texts, add_typos(texts, 1.0, seed=2, kinds=("substitute",))):
        assert len(typo) == len(text)
        for old, new in zip(text, typo):
            assert new in keyboard_neighbours(old) if old.isalpha() else new == old


def test_insertions_type_a_neighbour_after_the_letter():
    typo = misspell("abc", 1.0, seed=0, kinds=("insert",))
    assert len(typo) == 6 and typo[::2] == "abc"
    assert all(typo[i + 1] in keyboard_neighbours(typo[i]) for i in (0, 2, 4))


def test_non_letters_are_untouched():
    assert add_typos(["12 -- 4.5!? 300 %"], 1.0, seed=0) == ["12 -- 4.5!? 300 %"]
    texts = ["usb-c cable 2m, 3 pack!", "téléphone 5G (128 Go)", "kids' shoes size 30/31"]
    for seed in range(20):
        for text, typo in zip(texts, add_typos(texts, 0.5, seed=seed)):
            assert [c for c in typo if not c.isalpha()] == [c for c in text if not c.isalpha()]


def test_empty_and_missing_texts():
    assert add_typos(["", None], 0.5, seed=0) == ["", None]
    assert add_typos([], 0.5, seed=0) == []


@pytest.mark.parametrize("text", ["東京タワー 模型", "무선 이어폰 케이스", "เสื้อยืด ผู้ชาย", "سماعات لاسلكية",
                                  "złoty łańcuch"])
def test_scripts_without_a_keyboard_map_get_deletions_and_transpositions_only(text):
    unmapped = "".join(c for c in text if c.isalpha() and not keyboard_neighbours(c))
    assert misspell(unmapped, 1.0, seed=0, kinds=("substitute", "insert")) == unmapped
    for seed in range(20):
        typo = misspell(text, 0.5, seed=seed)
        added = Counter(typo) - Counter(text)  # only Latin letters of a mapped key may come in
        assert all(keyboard_neighbours(c) for c in added), (text, typo)
        assert not Counter(c for c in typo if c in unmapped) - Counter(unmapped)
    assert any(misspell(text, 0.5, seed=s) != text for s in range(5))


def test_bad_rate_or_kinds_are_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        add_typos(["a"], 1.5, seed=0)
    with pytest.raises(ValueError, match="typo kinds"):
        add_typos(["a"], 0.1, seed=0, kinds=("swap",))
    with pytest.raises(ValueError, match="typo kinds"):
        add_typos(["a"], 0.1, seed=0, kinds=())
    assert set(KINDS) == {"substitute", "insert", "delete", "transpose"}


# typo'd copies ----------------------------------------------------------------------------------------
def pairs_table(n: int, ids=None) -> pd.DataFrame:
    queries = latin_queries(n, seed=5)
    return pd.DataFrame({"id": ids if ids is not None else np.arange(10, 10 + n), "task": "QC", "language": "en",
                         "query": queries, "target": [f"t{i}" for i in range(n)], "label": pd.array([1, 0] * (n // 2),
                         dtype="Int8"), "origin": "original", "source_id": pd.array([pd.NA] * n, dtype="Int64")})


def test_typo_copies_adds_the_share_of_rows_with_source_ids():
    pairs = pairs_table(200)
    copies = typo_copies(pairs, rate=1.0, share=0.25, seed=4)
    assert len(copies) == 50  # every drawn query has letters: at rate 1 each one changes
    assert copies["id"].tolist() == list(range(210, 260)) and copies["id"].dtype == "int64"
    assert copies["source_id"].dtype == "Int64" and copies["source_id"].is_unique
    sources = pairs.set_index("id").loc[copies["source_id"].to_numpy()]
    assert (copies["origin"] == "augmented").all()
    assert copies["query"].tolist() == add_typos(sources["query"].tolist(), 1.0, seed=4)
    assert (copies["query"].to_numpy() != sources["query"].to_numpy()).all()
    for column in ("task", "language", "target", "label"):
        assert copies[column].tolist() == sources[column].tolist()
    assert typo_copies(pairs, rate=1.0, share=0.25, seed=4).equals(copies)


def test_typo_copies_drop_copies_the_typos_left_unchanged():
    pairs = pairs_table(400)
    copies = typo_copies(pairs, rate=0.05, share=0.5, seed=1)
    drawn = 200
    sources = pairs.set_index("id").loc[copies["source_id"].to_numpy(), "query"]
    assert (copies["query"].to_numpy() != sources.to_numpy()).all()
    # a query of L letters keeps every letter with probability 0.95 ** L
    expected = sum(1 - 0.95 ** letters(q) for q in pairs["query"]) / len(pairs) * drawn
    assert 0.8 * expected < len(copies) < min(drawn, 1.2 * expected)


def test_typo_copies_with_string_ids_and_nothing_to_copy():
    pairs = pairs_table(20, ids=[f"q{i}" for i in range(20)])
    copies = typo_copies(pairs, rate=1.0, share=0.5, seed=0)
    assert copies["id"].tolist() == [f"typo-{k}" for k in range(1, 11)]
    assert set(copies["source_id"]) <= set(pairs["id"])
    none = typo_copies(pairs_table(20), rate=0.3, share=0.0, seed=0)
    assert none.empty and list(none.columns) == list(pairs.columns)
    with pytest.raises(ValueError, match="share"):
        typo_copies(pairs, rate=0.1, share=2.0, seed=0)


# clean against typo'd F1 ------------------------------------------------------------------------------
def test_typo_robustness_scores_both_sides_at_the_same_thresholds():
    clean = pd.DataFrame({"id": range(6), "task": "QC", "language": ["en"] * 4 + ["de"] * 2,
                          "query": list("abcdef"), "target": "x", "label": pd.array([1, 1, 0, 0, 1, 0], dtype="Int8"),
                          "score": [0.9, 0.8, 0.1, 0.2, 0.7, 0.3]})
    # en: one positive falls below 0.5 and one negative rises above it; de: the typo changed nothing
    typo = clean.assign(query=["A", "B", "C", "d", "e", "f"], score=[0.9, 0.4, 0.6, 0.2, 0.7, 0.3])
    table = analysis.typo_robustness(clean, typo, thresholds={"QC": 0.5})
    assert table[["task", "language"]].values.tolist() == [["QC", "en"], ["QC", "de"]]
    en, de = table.to_dict(orient="records")
    assert (en["f1_clean"], en["f1_typo"]) == (1.0, pytest.approx(0.5)) and en["typo_gap"] == pytest.approx(0.5)
    assert en["queries_changed"] == 0.75 and de["queries_changed"] == 0.0
    assert de["f1_clean"] == de["f1_typo"] == 1.0 and de["typo_gap"] == 0.0
    assert en["all_positive_f1"] == pytest.approx(2 / 3)
    # a language threshold applies to both sides: at 0.35 for en the lowered positive still counts
    lang = analysis.typo_robustness(clean, typo, thresholds={"QC": 0.5}, language_thresholds={"QC": {"en": 0.35}})
    assert lang.loc[0, "f1_typo"] == pytest.approx(0.8)
    pooled = analysis.robustness(clean, typo, thresholds={"QC": 0.5}, typo_rate=0.1, seed=1)
    # pooled: tp 2, fp 1, fn 1 with typos -> F1 2/3
    assert pooled["typo_gap"] == {"QC": pytest.approx(1 / 3, abs=1e-4)} and len(pooled["by_language"]) == 2
    with pytest.raises(ValueError, match="same rows"):
        analysis.typo_robustness(clean, typo.iloc[::-1], thresholds={"QC": 0.5})


def test_typo_sections_are_validated():
    params = parse_params({"name": "t"})
    assert params.augmentation.typos.rate == 0.0 and params.augmentation.typos.share == 0.0
    assert params.analysis.typo_rate > 0
    with pytest.raises(ParamsError, match="augmentation.typos.rat: unknown key"):
        parse_params({"name": "t", "augmentation": {"typos": {"rat": 0.1}}})
    with pytest.raises(ParamsError, match="analysis.typo_rate"):
        parse_params({"name": "t", "analysis": {"typo_rate": 1.5}})


# on the smoke profile -----------------------------------------------------------------------------------
SLICE_RATE = 0.2


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[object, Run, dict]:
    """Steps 01, 05, 06 and 07 on the smoke profile, with typo'd training copies and the robustness slice."""
    raw = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    raw["augmentation"] = {"typos": {"rate": 0.3, "share": 0.25}}
    raw["analysis"] = {"typo_rate": SLICE_RATE}
    params = parse_params(raw)
    run = Run(Path(tmp_path_factory.mktemp("typos")) / "run").ensure()
    for step in (audit, training, calibration):
        step.run(params, run)
    return params, run, error_analysis.run(params, run)


def test_training_appends_typod_copies_and_leaves_the_table_on_disk(smoke_run):
    params, run, _ = smoke_run
    on_disk = run.read_training_table()
    assert not on_disk["origin"].eq("augmented").any()
    rows, figures = training.training_rows(params, run)
    copies = rows[rows["origin"].eq("augmented")]
    drawn = round(0.25 * len(on_disk))
    # a query keeps every letter with probability 0.7 ** letters: nearly all drawn rows get a copy
    assert 0.85 * drawn <= len(copies) == figures["rows_added"] <= drawn
    assert len(rows) == len(on_disk) + len(copies) and rows["id"].is_unique
    assert copies["source_id"].is_unique and set(copies["source_id"]) <= set(on_disk["id"])
    dev_ids = set(run.read_table("dev")["id"])
    assert not set(copies["id"]) & (set(on_disk["id"]) | dev_ids)
    sources = on_disk.set_index("id").loc[copies["source_id"].to_numpy()]
    assert copies["query"].tolist() == add_typos(sources["query"].tolist(), 0.3, seed=params.run.seed)
    metrics = run.read_metrics("05_fine_tuning")
    assert metrics["augmentation"]["typos"]["rows_added"] == len(copies)
    assert sum(metrics["augmentation"]["typos"]["rows_added_per_task"].values()) == len(copies)
    assert metrics["models"]["joint"]["train_rows"] == len(rows)  # the model learned from the copies too


def test_robustness_slice_has_both_f1s_per_language(smoke_run):
    params, run, metrics = smoke_run
    robustness = metrics["robustness"]
    assert robustness["typo_rate"] == SLICE_RATE and robustness["seed"] == params.run.seed
    assert len(metrics["headline"]) <= 8  # the slice adds no headline scalar
    dev = error_analysis.load(run).dev
    table = error_analysis.load(run).robustness
    expected = dev.groupby(["task", "language"]).size()
    assert {(t, lang) for t, lang in zip(table["task"], table["language"])} == set(expected.index)
    assert table.set_index(["task", "language"])["rows"].to_dict() == expected.to_dict()
    for row in table.to_dict(orient="records"):
        assert 0 <= row["f1_clean"] <= 1 and 0 <= row["f1_typo"] <= 1
        assert row["typo_gap"] == pytest.approx(row["f1_clean"] - row["f1_typo"], abs=1e-5)
    # the clean F1 is step 07's own F1 of the language
    own = {(r["task"], r["language"]): r["f1"] for r in metrics["slices"]["language"]}
    assert all(own[r["task"], r["language"]] == pytest.approx(r["f1_clean"]) for r in table.to_dict("records"))
    assert set(robustness["typo_gap"]) == set(dev["task"])


def test_robustness_slice_typos_the_queries_at_about_the_rate(smoke_run):
    params, run, metrics = smoke_run
    dev = error_analysis.load(run).dev
    typoed = add_typos(dev["query"].tolist(), SLICE_RATE, seed=params.run.seed)
    changed = dev.assign(changed=[a != b for a, b in zip(dev["query"], typoed)])
    share = changed.groupby(["task", "language"])["changed"].mean()
    table = error_analysis.load(run).robustness.set_index(["task", "language"])
    assert table["queries_changed"].to_dict() == pytest.approx(share.to_dict(), abs=1e-6)
    distinct = dict(zip(dev["query"], typoed))  # dev repeats each query over its targets
    edits = sum(osa_distance(a, b) for a, b in distinct.items())
    assert edits / sum(map(letters, distinct)) == pytest.approx(SLICE_RATE, rel=0.4)


def test_rows_the_typos_changed_are_scored_again(smoke_run):
    params, run, _ = smoke_run
    dev = error_analysis.load(run).dev
    typo = error_analysis.score_with_typos(params, run, dev, error_analysis.trained_plan(run), rate=SLICE_RATE,
                                           seed=params.run.seed)
    changed = typo["query"].to_numpy() != dev["query"].to_numpy()
    assert changed.any() and (~changed).any()
    assert np.array_equal(typo["score"].to_numpy()[~changed], dev["score"].to_numpy()[~changed])
    assert not np.allclose(typo["score"].to_numpy()[changed], dev["score"].to_numpy()[changed], rtol=0, atol=1e-9)


def test_slice_off_at_rate_zero(smoke_run, tmp_path):
    params, run, metrics = smoke_run
    copy = Run(shutil.copytree(run.root, tmp_path / "run"))
    off = params.model_copy(update={"analysis": params.analysis.model_copy(update={"typo_rate": 0.0})})
    without = error_analysis.run(off, copy)
    assert "robustness" not in without and error_analysis.load(copy).robustness.empty
    assert without == {k: v for k, v in metrics.items() if k != "robustness"}


def test_figure_pairs_clean_and_typod_bars_per_language(smoke_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qckit.plots.evaluation import f1_with_typos

    _, run, _ = smoke_run
    table = error_analysis.load(run).robustness
    fig = f1_with_typos(table, typo_rate=SLICE_RATE)
    try:
        assert f"typo rate {SLICE_RATE:g}" in fig.get_suptitle()
        for ax, task in zip(fig.axes, ["QC", "QI"]):
            part = table[table["task"].eq(task)]
            assert ax.get_title() == task
            assert [t.get_text() for t in ax.get_xticklabels()] == part["language"].tolist()
            assert len(ax.patches) == 2 * len(part)  # clean and typo'd bar per language
            assert sorted(round(p.get_height(), 6) for p in ax.patches) == sorted(
                round(v, 6) for v in [*part["f1_clean"], *part["f1_typo"]])
    finally:
        plt.close(fig)
    empty = f1_with_typos(table.iloc[:0])
    try:
        assert any("no robustness slice" in t.get_text() for t in empty.axes[0].texts)
    finally:
        plt.close(empty)


def test_augmentation_is_an_input_of_step_05_only(tmp_path):
    """A sweep or a resume must not reuse a step 05 trained without the typo'd copies it now asks for."""
    params = load_params(REPO / "params" / "smoke.yaml")
    augmented = params.model_copy(update={"augmentation": params.augmentation.model_copy(update={
        "typos": params.augmentation.typos.model_copy(update={"rate": 0.1, "share": 0.3})})})
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    assert step_input_hash(params, TRAINING, notebook, "") != step_input_hash(augmented, TRAINING, notebook, "")
    assert step_input_hash(params, NOISE, notebook, "") == step_input_hash(augmented, NOISE, notebook, "")
