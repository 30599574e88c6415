"""Profiles and runs on the real samples, shared by quality_cpu and the data-step effect benchmarks.

A benchmark profile takes its data steps from ``params/cikm.yaml`` (Apertium es→it, e5 mining with the
guards, the e5 noise detector), its model from a CPU profile (``default``, ``cpu-llm``, ``cpu-trees``),
and its data from ``../shared/data``: ``QC`` is the real CIKM QC sample (ten languages), ``QI`` the
English query–item sample. Runs go through ``qckit.ablation.run_ablation``, so a variant shares every
step whose inputs match one already run.

Dev F1 is reported twice: at the threshold fitted on all of dev (step 06's) and at held-out thresholds
(each query-grouped fold of dev judged at the threshold fitted on the other folds), which is the honest
figure; both beside the all-positive F1 of the same rows, with bootstrap 95% intervals.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import REPO, shared_data_dir, write_result
from qckit.ablation import run_ablation
from qckit.calibrate import all_positive_f1, bootstrap_f1, f1_from_counts, held_out_threshold_predictions
from qckit.config import load_params
from qckit.noise import inject_noise

OFFICIAL_TRAIN_LANGUAGES = ["en", "fr", "es", "ko", "pt", "ja"]
FILES = {"QC": ("cikm-qc-sample", "train_QC.jsonl", "dev_QC.jsonl"),
         "QI": ("qi-en-sample", "train_QI.jsonl", "dev_QI.jsonl")}


def available(dataset: str) -> bool:
    data = shared_data_dir()
    return data is not None and (data / FILES[dataset][0] / FILES[dataset][1]).exists()


def dev_sample(out: Path, dataset: str, rows: int, seed: int = 0) -> Path:
    """A seeded sample of ``rows`` dev rows, stratified by language and label, as JSON lines under out."""
    folder, _, dev = FILES[dataset]
    lines = (shared_data_dir() / folder / dev).read_text(encoding="utf-8").splitlines()
    frame = pd.DataFrame({"line": lines, "key": [str((r["language"], r["label"])) for r in map(json.loads, lines)]})
    frac = min(1.0, rows / len(frame))
    sample = frame.groupby("key", group_keys=False).sample(frac=frac, random_state=seed).sort_index()
    path = out / f"dev-sample-{dataset}-{rows}.jsonl"
    path.write_text("\n".join(sample["line"]) + "\n", encoding="utf-8")
    return path


def flipped_train(out: Path, dataset: str, rate: float, seed: int = 0) -> Path:
    """The train file with ``rate`` of its labels flipped (``qckit.noise.inject_noise``), as JSON lines under out."""
    folder, train, _ = FILES[dataset]
    raw = pd.read_json(shared_data_dir() / folder / train, lines=True, dtype=False)
    noisy, _ = inject_noise(raw, rate, seed=seed)
    path = out / f"train-{dataset}-flipped-{rate:g}.jsonl"
    noisy.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def profile(out: Path, *, dataset: str, model_profile: str, name: str, train_languages: list[str] | None = None,
            training: dict[str, Any] | None = None, dev_rows: int | None = None,
            train_file: Path | None = None) -> Path:
    """Write a profile for ``dataset`` with ``model_profile``'s models/training/calibration; returns its path.

    ``dev_rows``: score a stratified sample of dev of that size (for profiles too slow to score all of it);
    ``train_file``: train on this file instead of the sample's own (e.g. ``flipped_train``).
    """
    # resolved profiles: every section present, `extends` applied
    base = load_params(REPO / "params" / "cikm.yaml").model_dump(mode="json")
    model = load_params(REPO / "params" / f"{model_profile}.yaml").model_dump(mode="json")
    folder, train, dev = FILES[dataset]
    data = shared_data_dir() / folder
    dev_file = dev_sample(out, dataset, dev_rows) if dev_rows else data / dev
    base["name"] = name
    base["data"].update({"train": [str(train_file or data / train)], "dev": [str(dev_file)], "test": [],
                         "tasks": [dataset], "train_languages": train_languages})
    for section in ("translation", "negatives"):
        base[section]["tasks"] = [dataset]
    if dataset == "QI":  # English only: no zero-shot language to translate into
        base["translation"]["enabled"] = False
    for section in ("models", "training", "calibration"):
        base[section] = model[section]
    base["training"] = {**base["training"], **(training or {})}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def run_variants(params_path: Path, variants: list[str], out: Path, ablation_id: str) -> pd.DataFrame:
    """Run the variants (``qckit.ablation``); the ablation table (one row per variant and task)."""
    table, _ = run_ablation(params_path, variants=variants, ablation_id=ablation_id, outputs_dir=out,
                            progress=False)
    return table


def run_dir(out: Path, ablation_id: str, variant: str) -> Path:
    return out / ablation_id / variant


def training_figures(run: Path) -> dict[str, Any]:
    """Training time, rows and peak memory of step 05 (summed / maxed over its models)."""
    metrics = json.loads((run / "metrics" / "05_fine_tuning.json").read_text())
    models = metrics.get("models", {}).values()
    return {"train_rows": sum(m.get("train_rows", 0) for m in models),
            "training_seconds": round(sum(m.get("seconds", 0.0) for m in models), 1),
            "peak_memory_mib": round(max((m.get("peak_memory_mib", 0.0) for m in models), default=0.0), 1)}


def held_out_predictions(run: Path, *, folds: int = 5, seed: int = 13) -> pd.DataFrame:
    """A run's labelled dev predictions with ``pred``: 0/1 at held-out thresholds (fitted on the other folds)."""
    preds = pd.read_parquet(run / "predictions" / "dev.parquet").dropna(subset=["label"]).reset_index(drop=True)
    return preds.assign(pred=held_out_threshold_predictions(preds, folds=folds, seed=seed))


def slice_f1(run: Path, *, language: str | None = None, folds: int = 5, seed: int = 13) -> dict[str, Any]:
    """Held-out-threshold dev F1 of one language (or all rows), its interval and all-positive F1.

    Thresholds are fitted per fold on all languages' other folds, then the language's rows are scored.
    """
    preds = held_out_predictions(run, folds=folds, seed=seed)
    pred = preds["pred"].to_numpy()
    keep = np.ones(len(preds), bool) if language is None else (preds["language"] == language).to_numpy()
    y = preds["label"].to_numpy(int)[keep]
    f1, lo, hi = bootstrap_f1(y, pred[keep], seed=seed)
    return {"rows": int(keep.sum()), "f1": round(f1, 4), "ci": [round(lo, 4), round(hi, 4)],
            "all_positive_f1": round(all_positive_f1(y), 4)}


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    cols = ["variant", "task", "f1_held_out", "f1_held_out_low", "f1_held_out_high", "f1", "all_positive_f1",
            "threshold", "train_rows"]
    return table[cols].round(4).to_dict(orient="records")


def step_effect(variant: str, dataset: str, out: Path, *, model_profile: str = "cpu-trees",
                flip_rate: float | None = None) -> dict[str, Any]:
    """Dev F1 without and with one data step (ablation variant ``variant``) on one real sample.

    ``flip_rate``: train on a copy of the train file with that share of labels flipped (seed 0).
    """
    name = f"{variant}-effect-{dataset.lower()}" + (f"-flipped-{flip_rate:g}" if flip_rate else "")
    train_file = flipped_train(out, dataset, flip_rate) if flip_rate else None
    params = profile(out, dataset=dataset, model_profile=model_profile, name=name, train_file=train_file)
    start = time.perf_counter()
    table = run_variants(params, ["baseline", variant], out, name)
    figures: dict[str, Any] = {"dataset": dataset, "model_profile": model_profile, "flip_rate": flip_rate,
                               "table": table_records(table),
                               "seconds": round(time.perf_counter() - start, 1)}
    for v in ("baseline", variant):
        run = run_dir(out, name, v)
        figures[v] = {**slice_f1(run), **training_figures(run)}
        step = {"negatives": "03_negative_mining", "noise": "04_noise_detection"}.get(v)
        if step:
            figures[v]["step_headline"] = json.loads((run / "metrics" / f"{step}.json").read_text()).get("headline")
    gain = figures[variant]["f1"] - figures["baseline"]["f1"]
    figures["gain"] = round(gain, 4)
    figures["paired_gain"] = paired_gain(run_dir(out, name, "baseline"), run_dir(out, name, variant))
    return figures


def effect_main(benchmark: str, variant: str, doc: str, argv: list[str] | None = None,
                flip_rates: tuple[float | None, ...] = (None,)) -> int:
    """Command line of the step-effect benchmarks: run ``step_effect`` per dataset (and flip rate), write the result.

    Result keys: the dataset (``QC``), or with a flip rate ``QC_flipped_0.1``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--datasets", default="QC,QI")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    missing = [d for d in datasets if not available(d)]
    if missing:
        print(f"{benchmark}: real data for {', '.join(missing)} is missing under ../shared/data; nothing measured",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix=f"qckit-{benchmark}-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        figures = {d + (f"_flipped_{r:g}" if r else ""): step_effect(variant, d, out, flip_rate=r)
                   for d in datasets for r in flip_rates}
    print(json.dumps(figures, indent=1))
    path = write_result(
        benchmark,
        baseline="the same model and data without the step (ablation 'baseline'), and all-positive F1 on the same rows",
        figures={**{f"gain_{k}": f["gain"] for k, f in figures.items()}, **figures,
                 "f1": "held-out thresholds: each query-grouped dev fold judged at the threshold of the "
                                  "others; ci = bootstrap 95%"},
        goal=f"report dev F1 with and without the step ({variant}) for the best CPU model, beside all-positive F1",
        met=all(f[v]["f1"] is not None for f in figures.values() for v in ("baseline", variant)),
        data="cikm-qc-sample (QC, train all ten languages) and qi-en-sample (QI, English); params/cpu-trees model",
    )
    print(f"wrote {path}")
    return 0


def paired_gain(run_a: Path, run_b: Path, *, language: str | None = None, n: int = 2000, seed: int = 13,
                folds: int = 5) -> dict[str, Any]:
    """F1(b) - F1(a) on the same dev rows with a paired bootstrap 95% interval (rows resampled jointly).

    Both runs' predictions are at held-out thresholds. The paired interval is what says whether a gain is
    clear: two overlapping marginal intervals can still hide a consistent difference, and vice versa.
    """
    keep = ["id", "language", "label", "pred"]
    both = held_out_predictions(run_a, folds=folds, seed=seed)[keep].merge(
        held_out_predictions(run_b, folds=folds, seed=seed)[keep], on=["id", "language", "label"],
        suffixes=("_a", "_b"))
    if language is not None:
        both = both[both["language"] == language]
    y = both["label"].to_numpy(int)
    pa, pb = both["pred_a"].to_numpy(int), both["pred_b"].to_numpy(int)

    def f1(weights: np.ndarray, pred: np.ndarray) -> np.ndarray:
        tp = weights @ ((pred == 1) & (y == 1))
        return f1_from_counts(tp, weights @ (pred == 1) - tp, weights @ (y == 1) - tp)

    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(y), np.full(len(y), 1 / len(y)), size=n).astype(float)  # row resampling counts
    diffs = f1(weights, pb) - f1(weights, pa)
    ones = np.ones((1, len(y)))
    gain = float((f1(ones, pb) - f1(ones, pa))[0])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"rows": len(y), "gain": round(gain, 4), "ci": [round(float(lo), 4), round(float(hi), 4)],
            "share_of_resamples_above_zero": round(float((diffs > 0).mean()), 3)}
