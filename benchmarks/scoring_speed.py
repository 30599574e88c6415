"""Scoring speed: qckit's HF scorer against batched `model.generate(max_new_tokens=1)`, same batch size.

Both score the same real QC rows with Gemma-3-270m (yes/no head, the base model: the speed and the
agreement of the two paths do not depend on fine-tuning) from the same token ids. The baseline is what
one writes with transformers alone: left-padded batches in file order, one generated token with its
logits, p(yes) = softmax over the yes/no logits. qckit sorts by length, reuses the shared prompt
prefix's key/value cache and computes only the two label logits.

    python -m benchmarks.scoring_speed [--rows 2000] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.common import peak_rss_mib, shared_data_dir, write_result
from qckit import heads
from qckit.config import TrainingParams
from qckit.data import read_pairs
from qckit.heads.common import LoadedModel
from qckit.heads.transformer import Encoder
from qckit.models import resolve


def generate_baseline(model, tokenizer, feats, label_ids, batch_size: int) -> np.ndarray:
    import torch

    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(feats), batch_size):
        rows = [f["input_ids"] for f in feats[i:i + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, do_sample=False,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=pad)
        logits = gen.logits[0][:, list(label_ids)].float()
        out.append(torch.softmax(logits, dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    data = shared_data_dir()
    if data is None:
        print("scoring_speed: ../shared/data/cikm-qc-sample is missing; nothing measured", file=sys.stderr)
        return 2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    df = read_pairs(data / "cikm-qc-sample" / "dev_QC.jsonl").sample(frac=1.0, random_state=0).head(args.rows)
    path = resolve("gemma-3-270m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tp = TrainingParams(head="yes_no", max_length=96)
    loaded = LoadedModel("yes_no", {"head": "yes_no", "training": tp.model_dump(mode="json")}, model,
                         tokenizer=tokenizer)
    encoder = Encoder(tokenizer, "yes_no", tp)
    feats = encoder.encode(df)

    start = time.perf_counter()
    fast = heads.score(loaded, df, batch_size=args.batch_size)["score"].to_numpy()
    qckit_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        base = generate_baseline(model, tokenizer, feats, encoder.label_ids, args.batch_size)
    base_s = time.perf_counter() - start

    diff = float(np.max(np.abs(fast - base)))
    speedup = base_s / qckit_s
    figures = {
        "rows": len(df), "batch_size": args.batch_size, "threads": args.threads,
        "qckit_pairs_per_s": round(len(df) / qckit_s, 2), "generate_pairs_per_s": round(len(df) / base_s, 2),
        "speedup": round(speedup, 2), "max_abs_prob_diff": diff,
        "mean_tokens_per_row": round(float(np.mean([len(f["input_ids"]) for f in feats])), 1),
        "shared_prefix_tokens": len(encoder.prefix_ids("QC")), "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    path = write_result(
        "scoring_speed",
        baseline="batched model.generate(max_new_tokens=1, output_logits=True), same ids and batch size",
        figures=figures, goal="at least 3x the pairs/s of the generate baseline, probabilities equal within 1e-4",
        met=bool(speedup >= 3.0 and diff <= 1e-4),
        data=f"{len(df)} rows of cikm-qc-sample/dev_QC.jsonl (shuffled, seed 0), Gemma-3-270m (base, fp32)",
    )
    print(figures)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
