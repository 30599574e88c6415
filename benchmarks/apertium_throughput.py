"""Apertium throughput, batched vs one call per sentence: ``python -m benchmarks.apertium_throughput``.

Translates the distinct real queries of ``../shared/data/cikm-qc-sample`` (train + dev) with
``qckit.translate.ApertiumTranslator`` (many lines per process call) and, as the baseline, a sample of
them with one ``apertium`` process per sentence, in the same process; es→it plus every other installed
pair that has real source queries (en→es, fr→es, pt→es, es→pt, ...). No cache is involved.

It also records what step 02's filters drop on the real Spanish rows translated into Italian (no Italian
training rows, as in the challenge), under both language-filter rules, and how the language filter
judges genuine Italian queries (kept share) and untranslated Spanish ones (kept share, i.e. missed), and
the same drop figures for the demo data of ``params/default.yaml``.
Goal: batched Apertium at least 20x the per-sentence baseline and at least 1,000 sentences/s for es→it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import REPO, best_time, shared_data_dir, timed, write_result
from qckit.config import load_params
from qckit.runs import Run
from qckit.steps import audit, translation
from qckit.translate import ApertiumTranslator, apertium_available
from qckit.translation_filters import DROP_REASONS, drop_reasons, in_target_language

NAME = "apertium_throughput"
FILES = ("cikm-qc-sample/train_QC.jsonl", "cikm-qc-sample/dev_QC.jsonl")
BASELINE_SENTENCES = 40
REPEATS = 3


def _queries(data: Path) -> pd.DataFrame:
    rows = [json.loads(line) for f in FILES for line in (data / f).read_text(encoding="utf-8").splitlines() if line]
    return pd.DataFrame(rows).rename(columns={"origin_query": "query", "category_path": "target"})


def _per_sentence(texts: list[str], mode: str) -> None:
    for text in texts:
        subprocess.run(["apertium", "-u", mode], input=text + "\n", capture_output=True, text=True, check=True)


def throughput(apt: ApertiumTranslator, texts: list[str], source: str, target: str) -> dict:
    mode = apt.route(source, target)[0]
    batched = best_time(lambda: apt.translate(texts, source, target), REPEATS)
    sample = texts[:BASELINE_SENTENCES]
    single = best_time(lambda: _per_sentence(sample, mode), 1)
    per_s, base_per_s = len(texts) / batched, len(sample) / single
    return {"mode": mode, "sentences": len(texts), "batched_s": round(batched, 3),
            "sentences_per_s": round(per_s, 1), "per_sentence_calls_per_s": round(base_per_s, 1),
            "speedup": round(per_s / base_per_s, 1)}


def _rates(reasons: pd.Series) -> dict:
    n = len(reasons)
    out = {r: round(float((reasons == r).sum()) / n, 4) for r in DROP_REASONS}
    out["kept"] = round(float(reasons.isna().sum()) / n, 4)
    return out


def real_filter_rates(apt: ApertiumTranslator, df: pd.DataFrame) -> dict:
    """Drop rates of step 02's filters on every labelled real Spanish row, es→it."""
    es = df[df["language"] == "es"].reset_index(drop=True)
    texts = es["query"].astype(str).tolist()
    mapping = dict(zip(dict.fromkeys(texts), apt.translate(list(dict.fromkeys(texts)), "es", "it")))
    candidates = es.assign(source_query=es["query"], query=es["query"].map(mapping), language="it",
                           source_language="es")
    existing = df[df["language"].isin(["en", "fr", "es", "ko", "pt", "ja"])]
    out = {"rows": len(es), "distinct_queries": len(mapping)}
    for rule in ("beats_source", "min_prob", "off"):
        out[f"langid_{rule}"] = _rates(drop_reasons(candidates, existing, langid=rule))
    genuine = df.loc[df["language"] == "it", "query"].drop_duplicates().astype(str).tolist()
    spanish = df.loc[df["language"] == "es", "query"].drop_duplicates().astype(str).tolist()
    for rule in ("beats_source", "min_prob"):
        out[f"{rule}_keeps_genuine_italian"] = round(float(np.mean(
            in_target_language(genuine, ["es"] * len(genuine), ["it"] * len(genuine), rule=rule))), 4)
        out[f"{rule}_keeps_untranslated_spanish"] = round(float(np.mean(
            in_target_language(spanish, ["es"] * len(spanish), ["it"] * len(spanish), rule=rule))), 4)
    return out


def demo_filter_rates() -> dict:
    """What step 02 keeps and drops on the demo data of params/default.yaml (a temporary run and cache)."""
    with tempfile.TemporaryDirectory() as tmp:
        params = load_params(REPO / "params" / "default.yaml")
        cfg = params.translation.model_copy(update={"cache_dir": str(Path(tmp) / "cache")})
        params = params.model_copy(update={"translation": cfg})
        run = Run(Path(tmp) / "run").ensure()
        audit.run(params, run)
        translation.run(params, run)
        results = translation.load(run)
        candidates, metrics = results.candidates, results.metrics
    (pair,) = metrics["pairs"]
    return {"pair": pair["pair"], "rows": pair["requested"], **_rates(candidates["drop_reason"]),
            "uncovered_pairs": metrics["headline"]["uncovered_pairs"]}


def main() -> int:
    if not apertium_available():
        print("benchmarks.apertium_throughput: Apertium is not installed (apt-get install apertium "
              "apertium-spa-ita apertium-eng-spa apertium-es-pt apertium-fr-es)", file=sys.stderr)
        return 2
    data = shared_data_dir()
    if data is None or not all((data / f).exists() for f in FILES):
        print(f"benchmarks.apertium_throughput: real data missing in {data or '../shared/data'}: {FILES}",
              file=sys.stderr)
        return 2
    df = _queries(data)
    apt = ApertiumTranslator()
    pairs, broken = {}, {}
    for source, target in [("es", "it"), *sorted(p for p in apt.table if p != ("es", "it"))]:
        if not apt.check(source, target).supported:
            broken[f"{source}-{target}"] = apt.check(source, target).reason
            continue
        texts = df.loc[df["language"] == source, "query"].drop_duplicates().astype(str).tolist()
        if texts:
            pairs[f"{source}-{target}"] = throughput(apt, texts, source, target)
            print(f"{source}→{target}: {pairs[f'{source}-{target}']}")
    with timed() as t:
        filters = real_filter_rates(apt, df)
    demo = demo_filter_rates()
    main_pair = pairs["es-it"]
    met = main_pair["speedup"] >= 20 and main_pair["sentences_per_s"] >= 1000
    figures = {"es_it_sentences_per_s": main_pair["sentences_per_s"],
               "es_it_speedup_vs_per_sentence": main_pair["speedup"], "pairs": pairs,
               "listed_but_failing": broken,
               "real_es_it_filters": filters, "real_es_it_filter_seconds": round(t.seconds, 2),
               "demo_es_it_filters": demo}
    path = write_result(
        NAME, baseline=f"one apertium process per sentence (first {BASELINE_SENTENCES} queries of each pair)",
        figures=figures, met=met,
        goal="batched Apertium (qckit.translate.ApertiumTranslator) >= 20x the per-sentence baseline and "
             ">= 1,000 sentences/s for es→it",
        data=f"distinct real queries per source language of {', '.join(FILES)} from ../shared/data; "
             f"best of {REPEATS}; filters on every labelled es row, es→it; demo: params/default.yaml",
    )
    print(json.dumps({"real_es_it_filters": filters, "demo_es_it_filters": demo}, indent=1))
    print(f"goal {'met' if met else 'NOT met'}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
