"""GPU paths on one CUDA GPU: the paper profile's training on a small model, scoring, adapters, speed.

What CPU tests cannot reach, checked on a real GPU in one short run (a few minutes on an H100/H200):

- the paper profile's training section (``params/paper.yaml``: yes/no head, LoRA r=32 alpha 64 dropout 0.1 on
  all linear layers, bf16, gradient checkpointing, batch 8 x 4 accumulation, max length 160) on a small
  randomly initialised Qwen3 (no model hub here; the tiny tokenizer of ``tiny:qwen3``), as ``lora`` (bf16
  weights) and as ``qlora`` (bitsandbytes 4-bit nf4, double quantisation, bf16 compute);
- the saved adapter reloaded through peft onto the GPU in the trained precision (4-bit again for QLoRA) and
  scored by qckit's HF scorer: prefix cache on and off, and a plain full forward pass, agree;
- the merged model (``merge_adapter``) loads in transformers alone and scores like the adapter;
- the classifier head (``tiny:bert``) trained and scored in bf16;
- scoring speed: qckit's scorer against batched ``generate(max_new_tokens=1)`` on the same rows and batch size;
- vLLM, when it is installed: the adapter through ``LoRARequest`` against the HF scorer.

Data: the synthetic demo set (``qckit.demo``; QC and QI, ten languages), since the real sample does not travel.
The figures are plumbing and speed, not quality: the model is random before training.

    python -m benchmarks.gpu_paths [--train-rows 4000] [--speed-rows 2000] [--out DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import REPO, RESULTS_DIR, write_result
from benchmarks.scoring_speed import generate_baseline
from qckit import heads
from qckit.config import Params, TrainingParams, load_params
from qckit.data import read_pairs
from qckit.demo import write_demo
from qckit.heads.common import LoadedModel
from qckit.heads.llm_scoring import score_pairs_vllm
from qckit.heads.transformer import Encoder, auto_class
from qckit.models import inference_device, resolve

SMALL_QWEN3 = {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
               "head_dim": 64, "intermediate_size": 1536, "max_position_embeddings": 512}
# Qwen3-0.6B's shape (its vocabulary aside): where the forward pass, not Python, sets the scoring speed
MEDIUM_QWEN3 = {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                "head_dim": 128, "intermediate_size": 3072, "max_position_embeddings": 512}


# figures entries that describe the run, not a check
META = ("environment", "environment_of_kept_checks", "kept_checks")


def precision():
    """The dtype qckit trains and scores in here: bf16 on a GPU (paper.yaml's precision), fp32 on a CPU."""
    import torch

    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def small_qwen3(out: Path, shape: dict[str, int] = SMALL_QWEN3) -> Path:
    """A randomly initialised Qwen3 (~25M parameters by default) with the tiny:qwen3 tokenizer, saved to `out`."""
    import torch
    import transformers as tf

    tiny = Path(resolve("tiny:qwen3", cache_dir=out.parent / "cache"))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny / name, out / name)
    tok = tf.AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    model = tf.Qwen3ForCausalLM(tf.Qwen3Config(
        vocab_size=len(tok), tie_word_embeddings=True, bos_token_id=None, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, **shape))
    model.save_pretrained(out)
    return out


def demo_pairs(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    paths = write_demo(folder, seed=0, queries_per_language=60)
    train = pd.concat([read_pairs(paths["train_QC"]), read_pairs(paths["train_QI"])], ignore_index=True)
    dev = pd.concat([read_pairs(paths["dev_QC"]), read_pairs(paths["dev_QI"])], ignore_index=True)
    return train, dev


def paper_params(model: str, method: str, *, train_rows: int) -> Params:
    params = load_params(REPO / "params" / "paper.yaml")
    # the paper's training section as is, but a random model needs a larger step to learn in 100 steps
    tp = params.training.model_copy(update={
        "method": method, "learning_rate": 1e-3, "max_train_rows": train_rows, "eval_steps": None,
        "save_steps": None, "merge_adapter": True, "dev_eval_rows": 400,
        "precision": tp_precision(params.training.precision)})
    models = params.models.model_copy(update={"classifier": model})
    return params.model_copy(update={"training": tp, "models": models})


def tp_precision(paper: str) -> str:
    import torch

    return paper if torch.cuda.is_available() else "fp32"  # the CPU dry run stays in fp32


def plain_forward_probs(model, tokenizer, meta, df) -> np.ndarray:
    """p(yes) from full-vocabulary logits of an ordinary forward pass, one row at a time."""
    import torch

    enc = Encoder(tokenizer, "yes_no", TrainingParams.model_validate(meta["training"]))
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for f in enc.encode(df):
            logits = model(input_ids=torch.tensor([f["input_ids"]], device=device)).logits[0, -1]
            out.append(float(torch.softmax(logits[list(enc.label_ids)].float(), -1)[1]))
    return np.array(out)


def check_yes_no(method: str, model_dir: Path, work: Path, train, dev, train_rows: int) -> dict[str, Any]:
    import torch
    from sklearn.metrics import roc_auc_score

    params = paper_params(str(model_dir), method, train_rows=train_rows)
    out = work / f"yes_no-{method}"
    figures = heads.train(train, dev, params, output_dir=out)
    losses = [h["loss"] for h in figures["log_history"] if "loss" in h]
    loaded = heads.load(out)
    param = next(loaded.model.parameters())
    n4bit = sum(type(m).__name__ == "Linear4bit" for m in loaded.model.modules())
    sample = dev.sample(n=min(300, len(dev)), random_state=0)
    fast = heads.score(loaded, sample, batch_size=64)
    slow = heads.score(loaded, sample, batch_size=16, prefix_cache=False)
    plain = plain_forward_probs(loaded.model, loaded.tokenizer, loaded.meta, sample.head(40))
    merged = auto_class("yes_no").from_pretrained(out / "merged", dtype=param.dtype if n4bit == 0 else torch.bfloat16)
    merged = merged.to(inference_device()).eval()
    merged_scores = heads.score(LoadedModel("yes_no", loaded.meta, merged, tokenizer=loaded.tokenizer), sample,
                                batch_size=64)
    result = {
        "train_rows": figures["train_rows"], "train_seconds": round(figures["seconds"], 1),
        "rows_per_second": round(figures["rows_per_second"], 1),
        "peak_gpu_memory_mib": round(figures["peak_memory_mib"]),
        "trainable_parameters": figures["trainable_parameters"],
        "loss_first_logs": round(float(np.mean(losses[:3])), 4),
        "loss_last_logs": round(float(np.mean(losses[-3:])), 4),
        "loaded_device": str(param.device), "loaded_dtype": str(param.dtype), "linear4bit_modules": n4bit,
        "dev_auc_300": round(float(roc_auc_score(sample.label.astype(int), fast.score)), 4),
        "max_diff_prefix_cache_vs_none": float(np.max(np.abs(fast.score - slow.score))),
        "max_diff_scorer_vs_plain_forward": float(np.max(np.abs(fast.score.to_numpy()[:40] - plain))),
        "max_diff_merged_vs_adapter": float(np.max(np.abs(merged_scores.score - fast.score))),
    }
    result["ok"] = bool(
        result["loss_last_logs"] < result["loss_first_logs"] and param.device.type == inference_device()
        and (n4bit > 0 if method == "qlora" else param.dtype == precision())
        and result["max_diff_prefix_cache_vs_none"] < 0.02 and result["max_diff_scorer_vs_plain_forward"] < 0.02
        # the merged bf16 model against the 4-bit adapter differs by the quantisation itself
        and result["max_diff_merged_vs_adapter"] < (0.1 if method == "qlora" else 0.02))
    return result


def check_classifier(work: Path, train, dev) -> dict[str, Any]:
    params = Params(name="gpu-classifier", models={"classifier": "tiny:bert", "cache_dir": str(work / "cache")},
                    training={"head": "classifier", "method": "lora", "precision": tp_precision("bf16"), "epochs": 1,
                              "batch_size": 32, "learning_rate": 1e-3, "max_length": 96, "max_train_rows": 2000,
                              "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"}})
    figures = heads.train(train, dev, params, output_dir=work / "classifier")
    loaded = heads.load(work / "classifier")
    scored = heads.score(loaded, dev.head(200))
    param = next(loaded.model.parameters())
    return {"train_seconds": round(figures["seconds"], 1), "loaded_device": str(param.device),
            "loaded_dtype": str(param.dtype), "score_std": float(scored.score.std()),
            "ok": bool(param.device.type == inference_device() and param.dtype == precision()
                       and np.isfinite(scored.score).all())}


def check_speed(model_dir: Path, dev, rows: int, batch_size: int, *, profile: bool = False) -> dict[str, Any]:
    """qckit's scorer (prefix cache on and off) against batched generate, same token ids and batch size."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    df = pd.concat([dev] * (rows // len(dev) + 1), ignore_index=True).head(rows)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=precision()).to(inference_device()).eval()
    tp = TrainingParams(head="yes_no", max_length=160)
    loaded = LoadedModel("yes_no", {"head": "yes_no", "training": tp.model_dump(mode="json")}, model, tokenizer=tok)
    enc = Encoder(tok, "yes_no", tp)
    feats = enc.encode(df)
    runs = {
        "qckit": lambda: heads.score(loaded, df, batch_size=batch_size)["score"].to_numpy(),
        "qckit_no_prefix_cache": lambda: heads.score(loaded, df, batch_size=batch_size,
                                                     prefix_cache=False)["score"].to_numpy(),
        "generate": lambda: generate_baseline(model, tok, feats, enc.label_ids, batch_size),
    }
    seconds, probs = {}, {}
    with torch.inference_mode():
        for name, fn in runs.items():
            fn()  # warm-up: kernels chosen, caches allocated
            _sync()
            start = time.perf_counter()
            probs[name] = fn()
            _sync()
            seconds[name] = time.perf_counter() - start
        if profile:  # where the scorer's time goes, printed for whoever tunes it
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            with torch_profile(activities=activities) as prof:
                runs["qckit"]()
                _sync()
            print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), flush=True)
    out = {"rows": len(df), "batch_size": batch_size, "parameters_m": round(model.num_parameters() / 1e6, 1),
           "mean_tokens": round(float(np.mean([len(f["input_ids"]) for f in feats])), 1),
           "shared_prefix_tokens": len(enc.prefix_ids("QC"))}
    out.update({f"{k}_pairs_per_s": round(len(df) / v, 1) for k, v in seconds.items()})
    out["speedup"] = round(seconds["generate"] / seconds["qckit"], 2)
    out["max_abs_prob_diff_vs_generate"] = float(np.max(np.abs(probs["qckit"] - probs["generate"])))
    out["ok"] = bool(out["max_abs_prob_diff_vs_generate"] < 0.02)
    return out


def check_vllm(work: Path, dev) -> dict[str, Any]:
    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vllm is not installed on this machine"}
    folder = work / "yes_no-lora"
    hf = heads.score(folder, dev.head(200))
    vl = score_pairs_vllm(folder, dev.head(200))
    diff = float(np.max(np.abs(hf.score.to_numpy() - vl.score.to_numpy())))
    return {"max_abs_prob_diff_vs_hf": diff, "ok": diff < 0.03}


def environment() -> dict[str, Any]:
    import peft
    import torch
    import transformers

    gpu = torch.cuda.is_available()
    env = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "gpu": torch.cuda.get_device_name(0) if gpu else None,
           "bf16_supported": gpu and torch.cuda.is_bf16_supported()}
    for name in ("bitsandbytes", "vllm"):
        env[name] = __import__(name).__version__ if importlib.util.find_spec(name) else None
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--speed-rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="print where the small model's scoring time goes")
    parser.add_argument("--only", default=None, help="comma-separated check names (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="also copy the result file here")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run the plumbing on the CPU (no QLoRA, small sizes); writes no result file")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("gpu_paths: no CUDA GPU here; nothing measured (--cpu-dry-run checks the plumbing)", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {"environment": environment()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = small_qwen3(work / "small-qwen3")
        train, dev = demo_pairs(work / "demo")
        checks = {
            "yes_no_lora_bf16": lambda: check_yes_no("lora", model_dir, work, train, dev, args.train_rows),
            "yes_no_qlora_4bit": lambda: check_yes_no("qlora", model_dir, work, train, dev, args.train_rows)
            if torch.cuda.is_available() else {"skipped": "4-bit needs a GPU"},
            "classifier_lora_bf16": lambda: check_classifier(work, train, dev),
            "scoring_speed_small": lambda: check_speed(model_dir, dev, args.speed_rows, args.batch_size,
                                                       profile=args.profile),
            "scoring_speed_medium": lambda: check_speed(small_qwen3(work / "medium-qwen3", MEDIUM_QWEN3), dev,
                                                        args.speed_rows, args.batch_size),
            "vllm": lambda: check_vllm(work, dev),
        }
        if args.only:
            checks = {k: v for k, v in checks.items() if k in args.only.split(",")}
        for name, check in checks.items():
            start = time.perf_counter()
            try:
                figures[name] = check()
            except Exception as exc:  # noqa: BLE001 -- one broken path must not hide the others' figures
                figures[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc()[-3000:]}
            figures[name]["check_seconds"] = round(time.perf_counter() - start, 1)
            print(name, json.dumps({k: v for k, v in figures[name].items() if k != "traceback"}), flush=True)
    result_file = RESULTS_DIR / "gpu_paths.json"
    if args.only and result_file.exists():  # a partial rerun keeps the other checks' last figures
        kept = json.loads(result_file.read_text())["figures"]
        if kept.get("environment") != figures["environment"]:  # say which machine measured the kept ones
            kept["environment_of_kept_checks"] = kept.get("environment_of_kept_checks", kept.get("environment"))
            kept["kept_checks"] = sorted(k for k in kept if k not in META and k not in figures)
        figures = {**kept, **figures}
    met = all(f.get("ok", True) for k, f in figures.items() if k not in META)
    if args.cpu_dry_run:
        print(f"dry run on the CPU: met={met}")
        return 0 if met else 1
    path = write_result(
        "gpu_paths", baseline="batched model.generate(max_new_tokens=1) for speed; a plain forward pass and the "
        "unmerged adapter for agreement", figures=figures,
        goal="every GPU path trains and scores on the GPU in its precision; scorer paths agree within 0.02",
        met=met, data="qckit demo set (seed 0, 60 queries per language and task); small random Qwen3 "
                      f"({SMALL_QWEN3['num_hidden_layers']} layers, hidden {SMALL_QWEN3['hidden_size']})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / path.name).write_text(path.read_text())
    print(f"wrote {path}; met={met}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
