"""Synthetic multilingual CIKM-format data with known injected label noise (the `demo` data source).

``write_demo`` writes an AliExpress-style Query-Category (QC) and Query-Item (QI) data set in the
official CIKM AnalytiCup 2025 JSON-lines format, in ten languages, with:

- queries written natively per language (head phrases from :mod:`qckit.demo_vocab` plus colour,
  material, audience, size, brand and price words placed by per-language word order and agreement);
- labels that follow from the text: QC positives are the query's leaf category and its ancestors,
  QI positives are items of that leaf carrying every attribute the query asks for; negatives are easy
  (another top-level category) and hard (a sibling category, the same product for the other audience,
  an accessory of the product, or the same product with a wrong colour / material / size / model);
- train / dev / test split by query; de, it, pl and ar are in dev and test only, as in the challenge;
- a known share of flipped training labels (``noise_truth.jsonl``) and a few planted data defects
  (duplicates, a conflicting pair, an empty query) that the data audit must find.

The same arguments give byte-identical files: every random choice comes from ``random.Random``
instances seeded from ``seed``. The noise draws from a stream of its own, so the data with
``noise_rate=0`` is the data with noise, minus the flips.

Example:
    >>> from qckit.demo import write_demo
    >>> paths = write_demo("outputs/demo-data", seed=0)
    >>> sorted(paths)[:3]
    ['dev_QC', 'dev_QI', 'noise_truth']

Command line: ``python -m qckit.demo OUT_DIR [--seed N] [--noise-rate R] [--queries-per-language N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qckit import OFFICIAL_TRAIN_LANGUAGES, __version__
from qckit.demo_vocab import (
    AUDIENCE_FOR_WORDS,
    AUDIENCE_WORDS,
    BRAND_WORDS,
    COLOUR_WORDS,
    GENDERS,
    GERMAN_MATERIAL_PREFIX,
    LANGUAGES,
    LEAVES,
    MATERIAL_WORDS,
    PRICE_WORDS,
    SIZE_WORDS,
    STORE_BRANDS,
    TEMPLATES,
    TITLE_AUDIENCE,
    TITLE_COLOURS,
    TITLE_MATERIALS,
    TITLE_PREFIXES,
)

DEMO_LANGUAGES = LANGUAGES
TRAIN_LANGUAGES = tuple(lang for lang in DEMO_LANGUAGES if lang in OFFICIAL_TRAIN_LANGUAGES)
ZERO_SHOT_LANGUAGES = tuple(lang for lang in DEMO_LANGUAGES if lang not in OFFICIAL_TRAIN_LANGUAGES)
SPLITS = ("train", "dev", "test")
HELD_OUT_SHARE = 0.15  # of each language's queries, for dev and again for test
TARGET_FIELD = {"QC": "category_path", "QI": "item_title"}
FILE_NAMES = ("train_QC", "dev_QC", "test_QC", "train_QI", "dev_QI", "test_QI")

_SLOTS = ("head", "brand", "colour", "colour_adj", "material", "aud", "aud_for", "size", "price")
_ATTR_PROB = 0.35  # chance a query names one of its leaf's attributes
_CHEAP_PROB = 0.12


@dataclass(frozen=True)
class Query:
    """One search query: its text and the intent it was written from."""

    text: str
    language: str
    leaf: int  # index into LEAVES
    attrs: tuple[tuple[str, str], ...]  # (attribute, value) the query asks for


def taxonomy() -> list[tuple[str, ...]]:
    """The level names of every leaf category of the demo (join with "," for a ``category_path``).

    Level names may themselves hold commas ("arts,crafts & sewing", "flags, banners & accessories"),
    which is why the levels are given as tuples.
    """
    return [leaf["path"] for leaf in LEAVES]


def _related_leaves() -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Siblings (same parent), twins (same leaf name elsewhere) and cousins (same top level) per leaf."""
    siblings, twins, cousins = [], [], []
    for i, leaf in enumerate(LEAVES):
        path = leaf["path"]
        others = [j for j in range(len(LEAVES)) if j != i]
        siblings.append([j for j in others if LEAVES[j]["path"][:-1] == path[:-1]])
        twins.append([j for j in others if LEAVES[j]["path"][-1] == path[-1] and j not in siblings[i]])
        cousins.append([j for j in others if LEAVES[j]["path"][0] == path[0] and j not in siblings[i]])
    return siblings, twins, cousins


SIBLINGS, TWINS, COUSINS = _related_leaves()


# ---------------------------------------------------------------- query writing


def _pick(entry: str, lang: str, gender: str | None, rng: random.Random) -> str:
    """One alternative of ``"a|b"``, in the form agreeing with ``gender`` (see demo_vocab notation)."""
    alternative = rng.choice(entry.split("|"))
    if "/" not in alternative:
        return alternative
    forms = alternative.split("/")
    order = GENDERS.get(lang, ())
    return forms[order.index(gender)] if gender in order else forms[0]


def _localised(words: dict[str, str], lang: str) -> str:
    return words.get(lang) or words["*"]


def _parse_head(head: str, lang: str) -> tuple[str, str | None]:
    if lang in GENDERS:
        text, _, gender = head.rpartition(":")
        return text, gender
    return head, None


def _german_attributive(bare: str, gender: str | None) -> str:
    # Strong declension without article, nominative: schwarzer Koffer, schwarze Tasse, schwarzes Zelt.
    if bare.endswith("a"):  # rosa, lila do not inflect
        return bare
    return bare + {"m": "er", "f": "e", "n": "es", "pl": "e"}[gender or "f"]


def _with_material(lang: str, material: str, head: str, gender: str | None,
                   rng: random.Random) -> tuple[str, str]:
    """The head and the material slot; German, Korean and Japanese often fuse the two into one word."""
    if " " not in head and rng.random() < 0.5:
        if lang == "de":
            prefix = GERMAN_MATERIAL_PREFIX[material]
            joint = "-" if "-" in head or head[:2].isupper() else ""
            return prefix + joint + (head if joint else head[0].lower() + head[1:]), ""
        if lang == "ko":
            return _pick(MATERIAL_WORDS[lang][material], lang, None, rng) + head, ""
        if lang == "ja":
            return _pick(MATERIAL_WORDS[lang][material], lang, None, rng) + rng.choice(("の", "")) + head, ""
    return head, _pick(MATERIAL_WORDS[lang][material], lang, gender, rng)


def _typing_habits(text: str, lang: str, rng: random.Random) -> str:
    """What shoppers do to queries: drop accents, skip capitals, fuse words, type a full-width space."""
    # Germans write "ue" rather than drop an umlaut, so German keeps its accents.
    if lang in ("fr", "es", "pt", "it", "pl") and rng.random() < 0.12:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        text = unicodedata.normalize("NFC", text)
    if lang == "de" and rng.random() < 0.3:
        text = text.lower()
    if lang == "ko" and rng.random() < 0.3:
        words = text.split(" ")
        price_words = PRICE_WORDS[lang].split("|")  # "싼생일" reads as one word: keep price words apart
        joinable = [i for i in range(len(words) - 1) if _is_hangul(words[i]) and _is_hangul(words[i + 1])
                    and words[i] not in price_words]
        if joinable:
            i = rng.choice(joinable)
            words[i:i + 2] = [words[i] + words[i + 1]]
            text = " ".join(words)
    if lang == "ja" and " " in text and rng.random() < 0.15:
        text = text.replace(" ", "\u3000", 1)
    return text


def _is_hangul(word: str) -> bool:
    return all("\uac00" <= c <= "\ud7a3" for c in word)


def write_query(lang: str, leaf_index: int, attrs: dict[str, str], cheap: bool, rng: random.Random) -> str:
    """Write one query natively in ``lang`` for a leaf and the attributes it asks for.

    Example:
        >>> write_query("fr", 10, {"colour": "black", "audience": "men"}, False, random.Random(2))
        'portefeuille noir homme'
    """
    leaf = LEAVES[leaf_index]
    head, gender = _parse_head(rng.choice(leaf["heads"][lang]), lang)
    slots = dict.fromkeys(_SLOTS, "")
    if "material" in attrs:
        head, slots["material"] = _with_material(lang, attrs["material"], head, gender, rng)
    if "colour" in attrs:
        slots["colour"] = slots["colour_adj"] = _pick(COLOUR_WORDS[lang][attrs["colour"]], lang, gender, rng)
        if lang == "de":
            slots["colour_adj"] = _german_attributive(slots["colour"], gender)
    if "audience" in attrs:
        slots["aud"] = _pick(AUDIENCE_WORDS[lang][attrs["audience"]], lang, gender, rng)
        slots["aud_for"] = _pick(AUDIENCE_FOR_WORDS[lang][attrs["audience"]], lang, gender, rng)
    if "size" in attrs:
        slots["size"] = _pick(_localised(SIZE_WORDS[attrs["size"]], lang), lang, gender, rng)
    if "brand" in attrs:
        slots["brand"] = _pick(_localised(BRAND_WORDS[attrs["brand"]], lang), lang, gender, rng)
    if cheap:
        slots["price"] = _pick(PRICE_WORDS[lang], lang, gender, rng)
    slots["head"] = head
    text = " ".join(rng.choice(TEMPLATES[lang]).format(**slots).split())
    return _typing_habits(text, lang, rng)


def _sample_intent(leaf_index: int, rng: random.Random) -> tuple[dict[str, str], bool]:
    """The attributes a query on this leaf asks for, and whether it asks for a cheap one."""
    leaf = LEAVES[leaf_index]
    attrs = {}
    for name, values in leaf["attrs"].items():
        if rng.random() < (leaf["brand_prob"] if name == "brand" else _ATTR_PROB):
            attrs[name] = rng.choice(values)
    # A gendered clothing leaf is only told from its twin by the audience word, so its queries say it.
    if leaf["audience"] and (not leaf["audience_optional"] or rng.random() < 0.5):
        attrs["audience"] = leaf["audience"]
    return attrs, rng.random() < _CHEAP_PROB


def _make_queries(lang: str, count: int, used: set[str], rng: random.Random) -> list[Query]:
    """``count`` distinct queries in ``lang``, spread evenly over the leaves, none already in ``used``.

    A leaf with few attributes runs out of distinct phrasings first; its turn then passes to the next leaf.
    """
    order = list(range(len(LEAVES)))
    rng.shuffle(order)
    queries = []
    for n in range(count):
        query = None
        for leaf_index in order[n % len(order):] + order[:n % len(order)]:
            query = _new_query(lang, leaf_index, used, rng)
            if query:
                break
        if query is None:
            raise RuntimeError(f"demo vocabulary ran out of distinct {lang} queries; "
                               "lower queries_per_language")
        used.add(query.text)
        queries.append(query)
    return queries


def _new_query(lang: str, leaf_index: int, used: set[str], rng: random.Random,
               tries: int = 30) -> Query | None:
    for _ in range(tries):
        attrs, cheap = _sample_intent(leaf_index, rng)
        text = write_query(lang, leaf_index, attrs, cheap, rng)
        if text not in used:
            return Query(text, lang, leaf_index, tuple(sorted(attrs.items())))
    return None


def _split_queries(queries_per_language: int, rng: random.Random) -> dict[tuple[str, str], list[Query]]:
    """Queries per (task, split); zero-shot languages only get their dev and test share."""
    held = max(1, round(HELD_OUT_SHARE * queries_per_language))
    n_train = queries_per_language - 2 * held
    splits: dict[tuple[str, str], list[Query]] = {(t, s): [] for t in TARGET_FIELD for s in SPLITS}
    used: set[str] = set()  # query texts are unique across languages, tasks and splits
    for lang in DEMO_LANGUAGES:
        for task in TARGET_FIELD:
            sizes = {"train": n_train if lang in TRAIN_LANGUAGES else 0, "dev": held, "test": held}
            queries = _make_queries(lang, sum(sizes.values()), used, rng)
            rng.shuffle(queries)
            start = 0
            for split in SPLITS:
                splits[task, split].extend(queries[start:start + sizes[split]])
                start += sizes[split]
    return splits


# ---------------------------------------------------------------- QC candidates


def _join(path: tuple[str, ...]) -> str:
    return ",".join(path)


def _negative_prefix(leaf_index: int, positives: list[tuple[str, ...]], taken: list[tuple[str, ...]],
                     rng: random.Random) -> tuple[str, ...] | None:
    path = LEAVES[leaf_index]["path"]
    prefixes = [path[:k] for k in range(2, len(path) + 1)]
    choices = [p for p in prefixes if p not in positives and p not in taken]
    return rng.choice(choices) if choices else None


def qc_candidates(query: Query, rng: random.Random) -> list[tuple[str, int]]:
    """Category paths judged for a query: the leaf and its ancestors (1), a sibling leaf (0, hard) and
    sometimes a twin, cousin or unrelated category (0) at a random depth."""
    path = LEAVES[query.leaf]["path"]
    positives = [path[:k] for k in range(2, len(path) + 1)]
    negatives = [LEAVES[rng.choice(SIBLINGS[query.leaf])]["path"]]
    if rng.random() < 0.5:
        pool = TWINS[query.leaf] if TWINS[query.leaf] and rng.random() < 0.6 else None
        if pool is None:
            pool = COUSINS[query.leaf] if rng.random() < 0.5 else _unrelated_leaves(query.leaf)
        extra = _negative_prefix(rng.choice(pool), positives, negatives, rng)
        if extra:
            negatives.append(extra)
    return [(_join(p), 1) for p in positives] + [(_join(p), 0) for p in negatives]


def _unrelated_leaves(leaf_index: int) -> list[int]:
    top = LEAVES[leaf_index]["path"][0]
    return [j for j, leaf in enumerate(LEAVES) if leaf["path"][0] != top]


# ---------------------------------------------------------------- QI candidates


def _choose(entry: str, rng: random.Random) -> str:
    return rng.choice(entry.split("|"))


def item_title(leaf_index: int, attrs: dict[str, str], rng: random.Random) -> str:
    """An English, keyword-stuffed marketplace title for an item of a leaf with these attributes.

    Example:
        >>> item_title(10, {"colour": "black", "material": "leather", "audience": "men"}, random.Random(1))
        "KUMIVA 2025 New Men's Leather Wallet Photo Window Minimalist Black"
    """
    leaf = LEAVES[leaf_index]
    words = leaf["title"]
    brand = attrs.get("brand")
    parts = []
    if brand and leaf["brand_style"] == "prefix":
        parts.append(BRAND_WORDS[brand]["title"])
    elif rng.random() < 0.25:
        parts.append(rng.choice(STORE_BRANDS))
    parts.append(rng.choice(TITLE_PREFIXES))
    audience = attrs.get("audience") or leaf["audience"]
    if audience:
        parts.append(_choose(TITLE_AUDIENCE[audience], rng))
    colour_first = rng.random() < 0.4
    if "colour" in attrs and colour_first:
        parts.append(TITLE_COLOURS[attrs["colour"]])
    if "material" in attrs:
        parts.append(_choose(TITLE_MATERIALS[attrs["material"]], rng))
    features = rng.sample(words["features"], k=min(len(words["features"]), rng.randint(1, 3)))
    if rng.random() < 0.4:
        parts.append(features.pop())
    parts.append(rng.choice(words["nouns"]))
    parts.extend(features)
    if "size" in attrs:
        parts.append(SIZE_WORDS[attrs["size"]]["title"])
    if brand and leaf["brand_style"] == "for":
        parts.append("for " + BRAND_WORDS[brand]["title"])
    if words["specs"] and rng.random() < 0.4:
        parts.append(rng.choice(words["specs"]))
    if "colour" in attrs and not colour_first:
        parts.append(TITLE_COLOURS[attrs["colour"]])
    return " ".join(p for p in parts if p)


def _item_attrs(leaf_index: int, wanted: dict[str, str], rng: random.Random) -> dict[str, str]:
    """Attributes of an item of ``leaf_index``: the wanted ones it supports, others at random or unset."""
    attrs = {}
    for name, values in LEAVES[leaf_index]["attrs"].items():
        if wanted.get(name) in values:
            attrs[name] = wanted[name]
        elif rng.random() < 0.5:
            attrs[name] = rng.choice(values)
    return attrs


def _near_miss_attrs(query: Query, rng: random.Random) -> dict[str, str] | None:
    """Same product, but one attribute the query asks for is wrong (the other colour, audience, model...)."""
    leaf_attrs = LEAVES[query.leaf]["attrs"]
    wanted = dict(query.attrs)
    flippable = [name for name in wanted if len(leaf_attrs.get(name, ())) > 1]
    if not flippable:
        return None
    attrs = _item_attrs(query.leaf, wanted, rng)
    name = rng.choice(flippable)
    attrs[name] = rng.choice([v for v in leaf_attrs[name] if v != wanted[name]])
    return attrs


def qi_candidates(query: Query, rng: random.Random) -> list[tuple[str, int]]:
    """Item titles judged for a query: 5-7 matching items (1); near misses, sibling / twin / accessory
    items carrying the query's attributes, and one unrelated item (0)."""
    wanted = dict(query.attrs)
    items: list[tuple[int, dict[str, str], int]] = []
    for _ in range(rng.randint(5, 7)):
        items.append((query.leaf, _item_attrs(query.leaf, wanted, rng), 1))
    n_positive = len(items)
    for _ in range(1 + (rng.random() < 0.4)):
        attrs = _near_miss_attrs(query, rng)
        if attrs is not None:
            items.append((query.leaf, attrs, 0))
    related = SIBLINGS[query.leaf] + TWINS[query.leaf]
    # Without a near miss (nothing to get wrong), a second related item keeps the hard negatives.
    for _ in range(1 if len(items) > n_positive else 2):
        leaf_index = rng.choice(related)
        items.append((leaf_index, _item_attrs(leaf_index, wanted, rng), 0))
    other = rng.choice(_unrelated_leaves(query.leaf))
    items.append((other, _item_attrs(other, {}, rng), 0))
    return _distinct_titles(items, rng)


def _distinct_titles(items: list[tuple[int, dict[str, str], int]],
                     rng: random.Random) -> list[tuple[str, int]]:
    rows, seen = [], set()
    for leaf_index, attrs, label in items:
        for _ in range(10):
            title = item_title(leaf_index, attrs, rng)
            if title not in seen:
                seen.add(title)
                rows.append((title, label))
                break
    return rows


# ---------------------------------------------------------------- rows, defects, noise


def _rows_for(task: str, queries: list[Query], rng: random.Random) -> list[dict]:
    candidates = qc_candidates if task == "QC" else qi_candidates
    rows = []
    for query in queries:
        for target, label in candidates(query, rng):
            rows.append({"id": 0, "task": task, "language": query.language, "origin_query": query.text,
                         TARGET_FIELD[task]: target, "label": label})
    rng.shuffle(rows)
    return rows


def _insert_copy(rows: list[dict], rng: random.Random, avoid: Sequence[dict] = (),
                 **changes) -> tuple[dict, dict]:
    """Copy a row not in ``avoid`` (with ``changes``) to a random place; return (original, copy)."""
    original = rng.choice([r for r in rows if r["origin_query"] and all(r is not a for a in avoid)])
    copy = {**original, **changes}
    rows.insert(rng.randrange(len(rows) + 1), copy)
    return original, copy


def _plant_defects(files: dict[str, list[dict]], rng: random.Random) -> dict[str, tuple[dict, dict]]:
    """Few, known defects in train, as real files have: the audit must find them, the loader may drop them."""
    qc, qi = files["train_QC"], files["train_QI"]
    defects = {"duplicate_QC": _insert_copy(qc, rng)}
    defects["empty_QC"] = _insert_copy(qc, rng, avoid=defects["duplicate_QC"], origin_query="")
    defects["duplicate_QI"] = _insert_copy(qi, rng)
    original, copy = _insert_copy(qi, rng, avoid=defects["duplicate_QI"])
    copy["label"] = 1 - original["label"]
    defects["conflict_QI"] = (original, copy)
    return defects


def _assign_ids(files: dict[str, list[dict]]) -> None:
    next_id = 1
    for name in FILE_NAMES:
        for row in files[name]:
            row["id"] = next_id
            next_id += 1


def _inject_noise(files: dict[str, list[dict]], noise_rate: float, protected: set[int],
                  rng: random.Random) -> list[dict]:
    """Flip ``round(noise_rate * rows)`` training labels per task (defect rows excepted); return the truth."""
    truth = []
    for task in TARGET_FIELD:
        rows = files[f"train_{task}"]
        eligible = [r for r in rows if r["id"] not in protected]
        flipped = rng.sample(eligible, min(len(eligible), round(noise_rate * len(rows))))
        for row in sorted(flipped, key=lambda r: r["id"]):
            clean = row["label"]
            row["label"] = 1 - clean
            truth.append({"id": row["id"], "task": task, "clean_label": clean, "noisy_label": row["label"]})
    return truth


# ---------------------------------------------------------------- writing


def _write_atomic(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _readme(files: dict[str, list[dict]], defects: dict[str, tuple[dict, dict]], n_noise: dict[str, int],
            seed: int, noise_rate: float, queries_per_language: int) -> str:
    lines = [
        "# qckit demo data (synthetic)",
        "",
        f"Written by `qckit.demo.write_demo(seed={seed}, noise_rate={noise_rate}, "
        f"queries_per_language={queries_per_language})`, qckit {__version__}. The same arguments give "
        "byte-identical files. Every query, category and title is invented; no real data is copied.",
        "",
        "AliExpress-style multilingual search relevance in the official CIKM AnalytiCup 2025 JSON-lines "
        "format: "
        "QC rows `id, task, language, origin_query, category_path, label`, QI rows with `item_title` "
        "instead of `category_path`. Test files carry no `label`, as the official ones; their labels are in "
        "`test_labels.jsonl`. Ids are unique across all files.",
        "",
        "| file | rows | queries | languages | positive share |",
        "|---|---|---|---|---|",
    ]
    for name in FILE_NAMES:
        rows = files[name]
        langs = " ".join(lang for lang in DEMO_LANGUAGES if any(r["language"] == lang for r in rows))
        share = sum(r["label"] for r in rows) / max(1, len(rows))
        n_queries = len({r["origin_query"] for r in rows})
        lines.append(f"| {name}.jsonl | {len(rows)} | {n_queries} | {langs} | {share:.3f} |")
    lines += [
        "",
        "## Splits",
        f"Split by query: no query text is in two files. Each of {', '.join(TRAIN_LANGUAGES)} has "
        f"{queries_per_language} queries per task (about 70% train, 15% dev, 15% test); "
        f"{', '.join(ZERO_SHOT_LANGUAGES)} are zero-shot languages, as in the challenge: only their dev and "
        "test share exists.",
        "",
        "## Labels",
        "QC: the query's leaf category and every ancestor path of two or more levels are positive; a sibling "
        "leaf (same parent) is a hard negative, and some queries also get the same product for the other "
        "audience, a cousin or an unrelated category, at a random depth. QI: 5-7 items of the query's leaf "
        "carrying every attribute the query names are positive; negatives are the same product with one "
        "attribute wrong (colour, material, size, audience, phone model or brand), an item of a sibling leaf "
        "or accessory carrying the query's attributes, and one unrelated item.",
        "",
        "## Label noise",
        f"{noise_rate:.1%} of the training labels of each task were flipped "
        f"(QC: {n_noise['QC']}, QI: {n_noise['QI']} rows); `noise_truth.jsonl` lists them with "
        "`id, task, clean_label, noisy_label`. Dev and test are clean; defect rows are never flipped.",
        "",
        "## Planted defects (train only)",
    ]
    for key, (original, copy) in defects.items():
        what = {"duplicate": "exact duplicate row (all fields but the id)", "empty": "empty query",
                "conflict": "same query and target with the opposite label"}[key.split("_")[0]]
        lines.append(f"- `train_{key.rsplit('_', 1)[1]}.jsonl`: {what}: id {copy['id']} "
                     f"(copied from id {original['id']})")
    return "\n".join(lines) + "\n"


def _check_arguments(noise_rate: float, queries_per_language: int) -> None:
    if not 0.0 <= noise_rate <= 0.5:
        raise ValueError(f"noise_rate must be within [0, 0.5], got {noise_rate}")
    if queries_per_language < 3:
        raise ValueError("queries_per_language must be at least 3 (train, dev, test), "
                         f"got {queries_per_language}")


def write_demo(out_dir: str | Path, *, seed: int = 0, noise_rate: float = 0.05,
               queries_per_language: int = 60) -> dict[str, Path]:
    """Write the synthetic multilingual demo data set to ``out_dir`` and return its paths by name.

    Args:
        out_dir: folder to write into (created if missing; files in it are replaced).
        seed: seed of every random choice; the same arguments give byte-identical files.
        noise_rate: share of training labels flipped in each task, in [0, 0.5].
        queries_per_language: distinct queries per language and task (zero-shot languages keep only
            their dev and test share, about 30%).

    Returns:
        ``{"train_QC", "dev_QC", "test_QC", "train_QI", "dev_QI", "test_QI", "noise_truth",
        "test_labels", "readme"}`` mapped to the files written (``<name>.jsonl``, ``README.md``).

    Example:
        >>> paths = write_demo("/tmp/demo", seed=1, noise_rate=0.1)
        >>> paths["train_QC"].name
        'train_QC.jsonl'
    """
    _check_arguments(noise_rate, queries_per_language)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = _split_queries(queries_per_language, random.Random(f"qckit-demo:{seed}:queries"))
    rows_rng = random.Random(f"qckit-demo:{seed}:rows")
    files = {f"{split}_{task}": _rows_for(task, splits[task, split], rows_rng)
             for task in TARGET_FIELD for split in SPLITS}
    defects = _plant_defects(files, random.Random(f"qckit-demo:{seed}:defects"))
    _assign_ids(files)
    protected = {row["id"] for pair in defects.values() for row in pair}
    truth = _inject_noise(files, noise_rate, protected, random.Random(f"qckit-demo:{seed}:noise"))

    paths = {}
    for name in FILE_NAMES:
        records = files[name]
        if name.startswith("test_"):
            records = [{k: v for k, v in r.items() if k != "label"} for r in records]
        paths[name] = _write_atomic(out / f"{name}.jsonl", _jsonl(records))
    test_labels = [{"id": r["id"], "task": r["task"], "label": r["label"]}
                   for name in ("test_QC", "test_QI") for r in files[name]]
    paths["noise_truth"] = _write_atomic(out / "noise_truth.jsonl", _jsonl(truth))
    paths["test_labels"] = _write_atomic(out / "test_labels.jsonl", _jsonl(test_labels))
    n_noise = {task: sum(t["task"] == task for t in truth) for task in TARGET_FIELD}
    readme = _readme(files, defects, n_noise, seed, noise_rate, queries_per_language)
    paths["readme"] = _write_atomic(out / "README.md", readme)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qckit.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the data set into")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--noise-rate", type=float, default=0.05, help="share of training labels flipped")
    parser.add_argument("--queries-per-language", type=int, default=60,
                        help="distinct queries per language and task (default 60)")
    args = parser.parse_args(argv)
    try:
        paths = write_demo(args.out_dir, seed=args.seed, noise_rate=args.noise_rate,
                           queries_per_language=args.queries_per_language)
    except ValueError as err:
        parser.error(str(err))
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
