"""Benchmark experiments: the method's questions, each one `qckit sweep`, on the real QC sample.

Every experiment is a sweep (``qckit.sweep.run_sweep``) of a profile made by ``benchmarks.realdata.profile``:
the real CIKM QC sample (ten languages), the data steps of ``params/cikm.yaml`` and the model of
``params/cpu-trees.yaml``. The first setting of each sweep is its reference; every other row carries its dev
F1 at held-out thresholds with a bootstrap interval, the paired bootstrap gain over the reference (the same
resampled dev rows for both), and the all-positive F1 of the same rows. What each experiment asks, and the
command a user runs for it on their own profile:

- ``negative_share``: no negatives against mined negatives at 10 / 30 / 50 % of the training table:
  ``qckit sweep -p P --zip --set negatives.enabled=false,true,true,true --set negatives.share=null,0.1,0.3,0.5``
- ``negative_sampler``: semantic (top-k) against random-catalogue negatives at the same volume (a fixed share;
  asked per query alone, the guards leave top-k shorter than the catalogue):
  ``qckit sweep -p P --set negatives.enabled=true --set negatives.share=0.1
  --set negatives.sampling=top,random_catalogue``
- ``noise_level``: self-validation flags at confidence 0.7 / 0.8 / 0.9 removed, the detector's precision measured
  against 10 % of labels flipped in a copy: ``qckit sweep -p P --set noise.enabled=true
  --set noise.threshold=0.7,0.8,0.9``
- ``noise_action``: removal against relabelling where a majority of three detectors agree:
  ``qckit sweep -p P --set noise.enabled=true --set noise.action=remove,relabel_vote``
- ``translation_source``: Italian from Spanish, English or French (Apertium; en and fr through Spanish), its
  Italian F1 beside the whole: ``qckit sweep -p P --set translation.enabled=true
  --set translation.sources=[es],[en],[fr]``
- ``typos``: step 07's robustness slice (dev scored again with typos in the queries) without and with typo'd
  training copies: ``qckit sweep -p P --set augmentation.typos.share=0,0.3``
- ``sweep_cost``: a three-value sweep of a step-05 key on the demo against three separate runs of the same
  settings: ``qckit sweep -p params/default.yaml --set training.embedding.trees=50,100,200``

Run: ``python -m benchmarks.experiments [--only negative_share,noise_action] [--keep DIR]`` (writes
benchmarks/results/experiments.json; an experiment left out keeps its earlier figures in the file).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO, RESULTS_DIR, write_result
from benchmarks.realdata import available, profile, slice_f1
from qckit.runs import Run
from qckit.sweep import run_sweep

QC = "QC"
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "negative_share": {
        "profile": {"negatives": {"enabled": True}},
        "sets": [("negatives.enabled", [False, True, True, True]), ("negatives.share", [None, 0.1, 0.3, 0.5])],
        "mode": "zip", "step": "03_negative_mining"},
    "negative_sampler": {  # a fixed share: both samplers add exactly as many rows (top-k alone finds fewer)
        "profile": {"negatives": {"enabled": True, "share": 0.1}},
        "sets": [("negatives.sampling", ["top", "random_catalogue"])], "mode": "grid", "step": "03_negative_mining"},
    "noise_level": {
        "profile": {"noise": {"enabled": True, "scores": "self_validation", "measure_rate": 0.1}},
        "sets": [("noise.enabled", [False, True, True, True]), ("noise.threshold", [0.7, 0.7, 0.8, 0.9])],
        "mode": "zip", "step": "04_noise_detection"},
    "noise_action": {
        "profile": {"noise": {"enabled": True, "measure_rate": 0.1}},
        "sets": [("noise.enabled", [False, True, True]), ("noise.action", ["remove", "remove", "relabel_vote"])],
        "mode": "zip", "step": "04_noise_detection"},
    "translation_source": {
        "profile": {"translation": {"enabled": True, "targets": ["it"], "pivot": "es", "tasks": [QC]}},
        "sets": [("translation.enabled", [False, True, True, True]),
                 ("translation.sources", [["es"], ["es"], ["en"], ["fr"]])],
        "mode": "zip", "step": "02_translation", "language": "it"},
    "typos": {
        "profile": {"augmentation": {"typos": {"rate": 0.1}}},
        "sets": [("augmentation.typos.share", [0.0, 0.3])], "mode": "grid", "step": "07_error_analysis"},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def experiment_profile(out: Path, name: str, extra: dict[str, Any]) -> Path:
    """The real-QC cpu-trees profile of ``benchmarks.realdata`` with the experiment's sections merged in."""
    path = profile(out, dataset=QC, model_profile="cpu-trees", name=name)
    merged = _merge(yaml.safe_load(path.read_text(encoding="utf-8")), extra)
    path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    return path


def _records(table) -> list[dict[str, Any]]:
    return json.loads(table.to_json(orient="records", double_precision=4))


def run_experiment(name: str, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    params = experiment_profile(out, name, spec["profile"])
    start = time.perf_counter()
    result = run_sweep(params, spec["sets"], mode=spec["mode"], sweep_id=name, outputs_dir=out, progress=False)
    figures: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 1), "errors": result.errors,
                               "table": _records(result.table)}
    steps = {}
    for setting in result.table["setting"].unique():
        run = Run(result.root / setting)
        metrics_path = run.metrics_path(spec["step"])
        headline = run.read_metrics(spec["step"]).get("headline") if metrics_path.exists() else None
        steps[setting] = {"step_headline": headline}
        if spec["step"] == "07_error_analysis" and metrics_path.exists():
            steps[setting]["robustness"] = run.read_metrics(spec["step"]).get("robustness")
        if spec.get("language"):
            steps[setting][spec["language"]] = slice_f1(run.root, language=spec["language"])
    figures["settings"] = steps
    return figures


def _chain(params: Path, run_id: str, out: Path, setting: tuple[str, Any]) -> float:
    """Seconds of one separate ``qckit run`` of ``params`` with one key set (a profile written beside it)."""
    key, value = setting
    raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    path = out / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qckit", "run", "-p", str(path), "--run-id", run_id, "-q",
                    "--outputs-dir", str(out)], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def sweep_cost(out: Path) -> dict[str, Any]:
    """A three-value step-05 sweep on the demo against three separate runs of the same settings."""
    values = [50, 100, 200]
    params = out / "sweep-cost.yaml"
    params.write_text(yaml.safe_dump({"extends": str(REPO / "params" / "default.yaml"), "name": "sweep-cost"}),
                      encoding="utf-8")
    separate = [_chain(params, f"separate-{v}", out, ("training.embedding.trees", v)) for v in values]
    start = time.perf_counter()
    result = run_sweep(params, [("training.embedding.trees", values)], sweep_id="sweep-cost", outputs_dir=out,
                       progress=False)
    swept = time.perf_counter() - start
    return {"values": values, "separate_runs_s": [round(s, 1) for s in separate],
            "separate_total_s": round(sum(separate), 1), "sweep_s": round(swept, 1),
            "speedup": round(sum(separate) / swept, 2), "errors": result.errors, "table": _records(result.table)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated experiments (default: all, and sweep_cost)")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    names = [n for n in (args.only or ",".join([*EXPERIMENTS, "sweep_cost"])).split(",") if n]
    unknown = [n for n in names if n not in EXPERIMENTS and n != "sweep_cost"]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}, sweep_cost")
    if any(n in EXPERIMENTS for n in names) and not available(QC):
        print("experiments: the real QC sample is missing under ../shared/data; nothing measured", file=sys.stderr)
        return 2
    previous_path = RESULTS_DIR / "experiments.json"
    previous = json.loads(previous_path.read_text())["figures"] if previous_path.exists() else {}
    figures = {k: v for k, v in previous.items() if k in [*EXPERIMENTS, "sweep_cost"]}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="qckit-experiments-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            print(f"experiments: {name} ...", flush=True)
            figures[name] = sweep_cost(out) if name == "sweep_cost" else run_experiment(name, EXPERIMENTS[name], out)
            figures[name]["load_average_at_start"] = round(load, 2)
            load = os.getloadavg()[0]
    measured = [n for n in [*EXPERIMENTS, "sweep_cost"] if n in figures]
    path = write_result(
        "experiments",
        baseline="each sweep's first setting (paired bootstrap gain on the same dev rows), and the all-positive F1 "
                 "of the same rows; sweep_cost: three separate qckit runs of the same settings",
        figures=figures,
        goal="the method's experiments as one command each, measured on the real QC sample with the cpu-trees model",
        met=all(not figures[n].get("errors") for n in measured) and len(measured) == len(EXPERIMENTS) + 1,
        data="cikm-qc-sample (QC, ten languages), params/cikm.yaml data steps, params/cpu-trees.yaml model; "
             "sweep_cost on the embedded demo (params/default.yaml)",
    )
    print(f"wrote {path} ({', '.join(measured)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
