"""Tests of the synthetic demo data set (qckit.demo): format, languages, splits, labels, noise, defects."""
from __future__ import annotations

import collections
import itertools
import json
import random
import re
from pathlib import Path

import pytest

from qckit import demo
from qckit.demo import Query, qc_candidates, qi_candidates, taxonomy, write_demo, write_query
from qckit.demo_vocab import LEAVES, TEMPLATES

FILES = ("train_QC", "dev_QC", "test_QC", "train_QI", "dev_QI", "test_QI")
TEN = {"en", "fr", "es", "ko", "pt", "ja", "de", "it", "pl", "ar"}
ZERO_SHOT = {"de", "it", "pl", "ar"}
HANGUL = re.compile("[\uac00-\ud7a3]")
KANA_KANJI = re.compile("[\u3040-\u30ff\u4e00-\u9fff]")
ARABIC = re.compile("[\u0600-\u06ff]")
LATIN = re.compile("[a-zA-Z\u00c0-\u017f]")
NON_LATIN = re.compile("[\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff\u0600-\u06ff]")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leaf_index(name: str) -> int:
    return next(i for i, leaf in enumerate(LEAVES) if leaf["path"][-1] == name)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo(out, seed=0)
    return out


@pytest.fixture(scope="module")
def data(demo_dir) -> dict[str, list[dict]]:
    loaded = {name: read_jsonl(demo_dir / f"{name}.jsonl") for name in FILES}
    labels = {r["id"]: r["label"] for r in read_jsonl(demo_dir / "test_labels.jsonl")}
    for name in ("test_QC", "test_QI"):  # labelled copies, for the label checks
        loaded[name + "_labelled"] = [{**r, "label": labels[r["id"]]} for r in loaded[name]]
    loaded["noise_truth"] = read_jsonl(demo_dir / "noise_truth.jsonl")
    return loaded


def target(row: dict) -> str:
    return row.get("category_path") or row["item_title"]


def queries(rows: list[dict]) -> set[str]:
    return {r["origin_query"] for r in rows if r["origin_query"]}


# ---------------------------------------------------------------- determinism and format


def test_same_arguments_give_the_same_bytes_and_another_seed_does_not(demo_dir, tmp_path):
    again = write_demo(tmp_path / "again", seed=0)
    other = write_demo(tmp_path / "other", seed=1)
    for name, path in again.items():
        assert path.read_bytes() == (demo_dir / path.name).read_bytes(), name
    for name in FILES:
        assert other[name].read_bytes() != again[name].read_bytes(), name


def test_returns_every_path_by_name(demo_dir, tmp_path):
    paths = write_demo(tmp_path, seed=0, queries_per_language=5)
    assert set(paths) == {*FILES, "noise_truth", "test_labels", "readme"}
    assert all(p.exists() and p.parent == tmp_path for p in paths.values())
    assert paths["readme"].name == "README.md"


def test_every_file_follows_the_official_schema(demo_dir, data):
    all_ids = []
    for name in FILES:
        task = name.split("_")[1]
        target = "category_path" if task == "QC" else "item_title"
        keys = ["id", "task", "language", "origin_query", target]
        keys += [] if name.startswith("test") else ["label"]
        raw = (demo_dir / f"{name}.jsonl").read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")
        for row in data[name]:
            assert list(row) == keys, (name, row)
            assert type(row["id"]) is int and row["task"] == task and row["language"] in TEN
            assert isinstance(row["origin_query"], str) and isinstance(row[target], str) and row[target]
            if "label" in row:
                assert type(row["label"]) is int and row["label"] in (0, 1)
            all_ids.append(row["id"])
    assert len(all_ids) == len(set(all_ids))
    test_labels = read_jsonl(demo_dir / "test_labels.jsonl")
    assert all(list(r) == ["id", "task", "label"] for r in test_labels)
    test_ids = sorted(r["id"] for n in ("test_QC", "test_QI") for r in data[n])
    assert sorted(r["id"] for r in test_labels) == test_ids
    assert all(list(r) == ["id", "task", "clean_label", "noisy_label"] for r in data["noise_truth"])


def test_non_ascii_text_is_written_as_is(demo_dir):
    text = (demo_dir / "dev_QC.jsonl").read_text(encoding="utf-8")
    assert "\\u" not in text and HANGUL.search(text)


# ---------------------------------------------------------------- languages and phrasing


def test_ten_languages_each_in_its_own_script(data):
    by_language = collections.defaultdict(set)
    for name in FILES:
        for row in data[name]:
            if row["origin_query"]:
                by_language[row["language"]].add(row["origin_query"])
    assert TEN <= set(by_language)
    for lang, texts in by_language.items():
        script = {"ko": HANGUL, "ja": KANA_KANJI, "ar": ARABIC}.get(lang)
        if script is not None:
            assert all(script.search(q) for q in texts), lang
        else:
            assert all(LATIN.search(q) and not NON_LATIN.search(q) for q in texts), lang
    for a, b in itertools.combinations(sorted(by_language), 2):
        assert len(by_language[a] & by_language[b]) < 0.5 * min(len(by_language[a]), len(by_language[b]))


def test_queries_use_their_own_words_not_english_ones(data):
    words = collections.defaultdict(collections.Counter)
    for name in FILES:
        for row in data[name]:
            words[row["language"]].update(row["origin_query"].lower().split())
    for a, b in itertools.permutations(words, 2):
        shared = sum(n for w, n in words[a].items() if w in words[b]) / sum(words[a].values())
        # Brands, models and units are shared; Spanish and Portuguese share many words, as they do.
        assert shared < (0.3 if "en" in (a, b) else 0.6), (a, b, shared)


@pytest.mark.parametrize("lang, form", [("fr", "noire"), ("es", "negra"), ("pl", "czarna"), ("ar", "سوداء")])
def test_colour_agrees_with_a_feminine_head(lang, form):
    suitcases = leaf_index("suitcases")  # every head of this leaf is feminine in these languages
    for seed in range(20):
        text = write_query(lang, suitcases, {"colour": "black"}, False, random.Random(seed))
        assert form in text, text


@pytest.mark.parametrize("lang", ["fr", "es", "pt", "it"])
def test_romance_queries_put_the_colour_after_the_noun(lang):
    wallets = leaf_index("wallets")
    colours = {"rouge", "rojo", "roja", "vermelho", "vermelha", "rosso", "rossa"}
    for seed in range(20):
        text = write_query(lang, wallets, {"colour": "red"}, False, random.Random(seed))
        assert text.split()[0] not in colours and set(text.split()) & colours, text


def test_german_declines_a_colour_before_the_noun():
    tents = leaf_index("tents")  # das Zelt: "grünes Zelt", or bare "Zelt grün" after it
    texts = {write_query("de", tents, {"colour": "green"}, False, random.Random(s)).lower()
             for s in range(40)}
    assert all(re.search(r"grünes \w*zelt|zelt.* grün\b", t) for t in texts), texts


def test_every_template_holds_every_slot_once():
    for lang, templates in TEMPLATES.items():
        for template in templates:
            slots = re.findall(r"{(\w+)}", template)
            assert len(slots) == len(set(slots)), (lang, template)
            assert {"head", "brand", "material", "size", "price"} <= set(slots), (lang, template)
            assert len({"colour", "colour_adj"} & set(slots)) == 1, (lang, template)
            assert len({"aud", "aud_for"} & set(slots)) == 1, (lang, template)


# ---------------------------------------------------------------- taxonomy


def test_taxonomy_is_deep_wide_and_has_comma_names(data):
    leaves = taxonomy()
    assert len(leaves) >= 30 and all(len(levels) >= 3 for levels in leaves)
    levels = {name for path in leaves for name in path}
    assert any(", " in name for name in levels)  # like "flags, banners & accessories"
    assert any(re.search(",[^ ]", name) for name in levels)  # like "arts,crafts & sewing"
    for path in leaves:
        assert sum(other[:-1] == path[:-1] for other in leaves) >= 2, f"{path} has no sibling"
    known = {",".join(path[:k]) for path in leaves for k in range(2, len(path) + 1)}
    for name in ("train_QC", "dev_QC", "test_QC"):
        assert {r["category_path"] for r in data[name]} <= known


# ---------------------------------------------------------------- splits


def test_zero_shot_languages_are_only_in_dev_and_test(data):
    for task in ("QC", "QI"):
        train = {r["language"] for r in data[f"train_{task}"]}
        assert train == TEN - ZERO_SHOT
        for split in ("dev", "test"):
            assert {r["language"] for r in data[f"{split}_{task}"]} == TEN


def test_no_query_is_in_two_splits(data):
    sets = {name: queries(data[name]) for name in FILES}
    for a, b in itertools.combinations(FILES, 2):
        assert not sets[a] & sets[b], (a, b, sorted(sets[a] & sets[b])[:3])


def test_size_follows_queries_per_language(data, tmp_path):
    assert 2000 <= len(data["train_QI"]) <= 4000
    assert 600 <= len(data["dev_QI"]) <= 1000 and 600 <= len(data["test_QI"]) <= 1000
    assert 900 <= len(data["train_QC"]) and 300 <= len(data["dev_QC"])
    double = write_demo(tmp_path, seed=0, queries_per_language=120)
    for name in FILES:
        ratio = len(read_jsonl(double[name])) / len(data[name])
        assert 1.7 < ratio < 2.3, (name, ratio)


# ---------------------------------------------------------------- labels


def test_positive_share_is_like_the_real_data(data):
    for name in ("train_QC", "dev_QC", "test_QC_labelled", "train_QI", "dev_QI", "test_QI_labelled"):
        share = sum(r["label"] for r in data[name]) / len(data[name])
        assert 0.55 <= share <= 0.75, (name, share)


def test_qc_negatives_include_siblings_of_the_positive_leaf(data):
    paths = {",".join(path): path for path in taxonomy()}
    by_query = collections.defaultdict(list)
    for row in data["dev_QC"]:
        by_query[row["origin_query"]].append(row)
    with_sibling = 0
    for rows in by_query.values():
        leaf = paths[max((r["category_path"] for r in rows if r["label"] == 1), key=len)]
        negatives = [paths[r["category_path"]] for r in rows
                     if r["label"] == 0 and r["category_path"] in paths]
        with_sibling += any(p[:-1] == leaf[:-1] for p in negatives)
    assert with_sibling >= 0.8 * len(by_query)


def test_qi_near_misses_are_the_same_product_with_a_wrong_attribute():
    wallets = leaf_index("wallets")
    query = Query("portefeuille cuir noir homme", "fr", wallets,
                  (("audience", "men"), ("colour", "black"), ("material", "leather")))
    near_misses = 0
    for seed in range(10):
        for title, label in qi_candidates(query, random.Random(seed)):
            is_wallet = re.search(r"Wallet|Purse", title)
            if label == 1:
                assert is_wallet and "Black" in title and "Leather" in title and "Men" in title, title
            elif is_wallet:
                near_misses += 1
                assert "Black" not in title or "Women" in title or "Ladies" in title, title
    assert near_misses >= 10


def test_qi_accessory_negatives_carry_the_query_model():
    cases = leaf_index("phone cases")
    query = Query("coque iphone 15", "fr", cases, (("brand", "iphone15"),))
    titles = [t for s in range(10) for t, label in qi_candidates(query, random.Random(s)) if label == 0]
    assert any("for iPhone 15" in t and re.search("Glass|Screen Protector|Film", t) for t in titles)
    assert any("for iPhone 14" in t or "Galaxy" in t or "Redmi" in t for t in titles)


def test_qc_candidates_label_the_leaf_and_its_ancestors_positive():
    for name in ("mugs", "jeans", "flags", "yarn"):
        path = LEAVES[leaf_index(name)]["path"]
        rows = qc_candidates(Query(name, "en", leaf_index(name), ()), random.Random(0))
        assert {p for p, label in rows if label == 1} == {",".join(path[:k]) for k in range(2, len(path) + 1)}
        assert any(label == 0 for _, label in rows)


# ---------------------------------------------------------------- noise


def test_noise_truth_matches_the_flips(data, demo_dir, tmp_path):
    clean_paths = write_demo(tmp_path, seed=0, noise_rate=0.0)
    assert read_jsonl(clean_paths["noise_truth"]) == []
    truth = {t["id"]: t for t in data["noise_truth"]}
    for task in ("QC", "QI"):
        noisy = data[f"train_{task}"]
        clean = read_jsonl(clean_paths[f"train_{task}"])
        n_flips = sum(t["task"] == task for t in truth.values())
        assert abs(n_flips - round(0.05 * len(noisy))) <= 1
        assert [r["id"] for r in clean] == [r["id"] for r in noisy]
        for before, after in zip(clean, noisy):
            if after["id"] in truth:
                t = truth[after["id"]]
                assert t["task"] == task and t["clean_label"] == before["label"] == 1 - after["label"]
                assert t["noisy_label"] == after["label"]
            else:
                assert before == after
    for split in ("dev", "test"):  # held-out data stays clean
        for task in ("QC", "QI"):
            name = f"{split}_{task}"
            assert (demo_dir / f"{name}.jsonl").read_bytes() == clean_paths[name].read_bytes()


def test_noise_rate_sets_the_number_of_flips(tmp_path):
    paths = write_demo(tmp_path, seed=3, noise_rate=0.2, queries_per_language=20)
    truth = read_jsonl(paths["noise_truth"])
    for task in ("QC", "QI"):
        n_rows = len(read_jsonl(paths[f"train_{task}"]))
        assert abs(sum(t["task"] == task for t in truth) - round(0.2 * n_rows)) <= 1


# ---------------------------------------------------------------- planted defects


def test_planted_defects_are_in_train_only(data, demo_dir):
    def duplicates(rows):
        counts = collections.Counter((r["origin_query"], target(r), r["label"]) for r in rows)
        return [k for k, n in counts.items() if n > 1]

    def conflicts(rows):
        labels = collections.defaultdict(set)
        for r in rows:
            labels[r["origin_query"], target(r)].add(r["label"])
        return [k for k, v in labels.items() if len(v) > 1]

    assert len(duplicates(data["train_QC"])) == 1 and len(duplicates(data["train_QI"])) == 1
    assert len(conflicts(data["train_QI"])) == 1 and conflicts(data["train_QC"]) == []
    assert sum(r["origin_query"] == "" for r in data["train_QC"]) == 1
    for name in ("dev_QC", "test_QC_labelled", "dev_QI", "test_QI_labelled", "train_QI"):
        assert all(r["origin_query"] for r in data[name]), name
    for name in ("dev_QC", "test_QC_labelled", "dev_QI", "test_QI_labelled"):
        assert not duplicates(data[name]) and not conflicts(data[name]), name
    readme = (demo_dir / "README.md").read_text(encoding="utf-8")
    empty_id = next(r["id"] for r in data["train_QC"] if r["origin_query"] == "")
    assert f"id {empty_id} " in readme and "seed=0" in readme and "noise_rate=0.05" in readme


# ---------------------------------------------------------------- arguments and command line


@pytest.mark.parametrize("kwargs", [{"noise_rate": -0.1}, {"noise_rate": 0.6}, {"queries_per_language": 2}])
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        write_demo(tmp_path, **kwargs)


def test_command_line_writes_and_prints_the_paths(tmp_path, capsys):
    assert demo.main([str(tmp_path / "cli"), "--seed", "2", "--noise-rate", "0.1",
                      "--queries-per-language", "10"]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "cli" / "train_QC.jsonl") in printed and "noise_rate=0.1" in (
        tmp_path / "cli" / "README.md").read_text(encoding="utf-8")
    with pytest.raises(SystemExit):
        demo.main([str(tmp_path / "bad"), "--noise-rate", "2"])
