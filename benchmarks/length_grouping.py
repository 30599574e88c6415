"""Benchmark length_grouping: cross-encoder fine-tuning with length-grouped batches against random batches.

Baseline: sentence-transformers' default batch sampler (random batches, each padded to its longest pair).
qckit's ``training.embedding.length_grouping`` (``qckit.heads.cross_encoder.length_grouped_batch_sampler``) batches
pairs of about the same length, in random order. Both fine-tune the same cross-encoder (multilingual-e5-small,
``params/cpu-best.yaml``'s QI settings: batch 32, at most 64 tokens) on the same rows, one epoch, one after
the other in this process; grouped first, random, then grouped again, and each side's faster run counts (the
least disturbed by the rest of the machine). Rows: a seeded sample of the real QI train file
(../shared/data/qi-en-sample) when present, else of the demo's QI rows.

Goal: grouped batches train at least 1.15x the rows per second of random ones, their mean training loss
within 0.05 of random batches' (grouping changes which rows share a batch, not what is learned per row).

    python -m benchmarks.length_grouping [--rows 1500]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks import realdata
from benchmarks.common import REPO, write_result
from qckit.config import load_params
from qckit.data import load_pairs
from qckit.demo import write_demo
from qckit.heads.cross_encoder import train_cross_encoder

GOAL_SPEED_UP = 1.15
GOAL_LOSS_GAP = 0.05


def rows_to_train(n: int, scratch: Path):
    if realdata.available("QI"):
        folder, train, _ = realdata.FILES["QI"]
        frame, _ = load_pairs(realdata.shared_data_dir() / folder / train)
        source = f"real QI ({folder}), {n} rows"
    else:
        frame, _ = load_pairs(write_demo(scratch / "demo", seed=0)["train_QI"])
        source = f"demo QI rows, {min(n, len(frame))} rows (real data absent)"
    frame = frame.dropna(subset=["label"])
    return frame.sample(min(n, len(frame)), random_state=0).reset_index(drop=True), source


def train_once(rows, grouped: bool, out: Path) -> dict:
    tp = load_params(REPO / "params" / "cpu-best.yaml").training.for_task("QI")
    tp = tp.model_copy(update={"embedding": tp.embedding.model_copy(
        update={"length_grouping": grouped,
                "cross_encoder": tp.embedding.cross_encoder.model_copy(update={"max_rows": None})})})
    figures = train_cross_encoder(rows, "multilingual-e5-small", out, tp, seed=13)
    losses = [h["loss"] for h in figures["cross_encoder_log_history"]]
    return {"seconds": round(figures["cross_encoder_seconds"], 2),
            "rows_per_second": round(len(rows) / figures["cross_encoder_seconds"], 2),
            "mean_training_loss": round(sum(losses) / len(losses), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1500)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {"grouped": [], "random": []}
    with tempfile.TemporaryDirectory(prefix="qckit-length-grouping-") as tmp:
        rows, source = rows_to_train(args.rows, Path(tmp))
        for i, grouped in enumerate((True, False, True, False)):
            run = train_once(rows, grouped, Path(tmp) / str(i))
            runs["grouped" if grouped else "random"].append(run)
            print(("grouped" if grouped else "random"), run, flush=True)
    best = {k: max(v, key=lambda r: r["rows_per_second"]) for k, v in runs.items()}
    speed_up = best["grouped"]["rows_per_second"] / best["random"]["rows_per_second"]
    loss_gap = abs(best["grouped"]["mean_training_loss"] - best["random"]["mean_training_loss"])
    path = write_result(
        "length_grouping",
        baseline="sentence-transformers' default random batches, same rows, model and settings, same run",
        figures={"rows": len(rows), "grouped": best["grouped"], "random": best["random"], "runs": runs,
                 "speed_up": round(speed_up, 3), "loss_gap": round(loss_gap, 4)},
        goal=f"length-grouped batches >= {GOAL_SPEED_UP}x the rows/s of random ones, mean training loss within "
             f"{GOAL_LOSS_GAP}",
        met=speed_up >= GOAL_SPEED_UP and loss_gap <= GOAL_LOSS_GAP,
        data=source + "; multilingual-e5-small cross-encoder, batch 32, max 64 tokens, one epoch",
    )
    print(f"speed-up {speed_up:.2f}x, loss gap {loss_gap:.4f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
