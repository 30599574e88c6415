"""A mean-pooled cross-encoder beside the trees of the ``embedding`` head (``training.embedding.cross_encoder``).

Query and target are read *together* by the encoder (multilingual-e5-small by default), its token states
averaged and a linear layer turns them into a log-odds of relevance; sentence-transformers' modular
``CrossEncoder`` (Transformer -> mean Pooling -> Dense to ``scores``) trained by its ``CrossEncoderTrainer``
with binary cross-entropy. The pooling is the point: e5 was trained to mean-pool, and
``AutoModelForSequenceClassification`` (the ``classifier`` head) reads the untrained [CLS] pooler instead.
The score layer starts at zero with its own, higher learning rate (``cross_encoder.head_learning_rate``):
at the encoder's rate it barely moves, and while it is near zero the encoder behind it gets no gradient.

Example:
    >>> figures = train_cross_encoder(train_df, "multilingual-e5-small", folder, params.training, seed=13)
    >>> logits = cross_encoder_logits(folder, dev_df)
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.config import TrainingParams
from qckit.embed import st_prompt_name
from qckit.heads.common import refuse_unsafe_files, sample_rows, trainer_progress
from qckit.models import inference_device, resolve


def pair_inputs(df: pd.DataFrame, prompts: tuple[str, str]) -> list[tuple[str, str]]:
    """(query side, target side) of every row, each with the encoder's own prompt (e5: "query: " / "passage: ")."""
    queries = df["query"].fillna("").astype(str)
    targets = df["target"].fillna("").astype(str)
    return list(zip((prompts[0] + queries).tolist(), (prompts[1] + targets).tolist()))


def _prompts(folder: Path) -> tuple[str, str]:
    """The query / passage prompts the base encoder was trained with (its sentence-transformers config), else none."""
    config = folder / "config_sentence_transformers.json"
    if not config.exists():
        return "", ""
    prompts = json.loads(config.read_text(encoding="utf-8")).get("prompts", {}) or {}
    return tuple(prompts.get(st_prompt_name(prompts, kind) or "", "") for kind in ("query", "passage"))  # type: ignore[return-value]


def length_grouped_batch_sampler(dataset, batch_size: int, drop_last: bool, valid_label_columns=None,
                                 generator=None, seed: int = 0):
    """Batches of rows of about the same length, in random order: what ``group_by_length`` does in qckit's HF
    Trainer path, for the sentence-transformers Trainers (their ``batch_sampler`` argument takes a callable).

    sentence-transformers pads each batch to its longest row and has no length grouping of its own; random
    batches of short search pairs are padded to their one long title. Rows are shuffled, cut into mega-batches
    of 50 batches, each sorted by length (transformers' ``LengthGroupedSampler``), so batches stay random in
    order and composition across the epoch. Length is counted in characters of the text columns: no
    tokenizer pass needed, and close enough to tokens for grouping.
    """
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    texts = [c for c in dataset.column_names if c not in (valid_label_columns or ()) and c not in ("label", "score")]
    lengths = np.zeros(len(dataset), np.int64)
    for column in texts:
        lengths += np.fromiter((len(t) for t in dataset[column]), np.int64, len(dataset))
    sampler = LengthGroupedSampler(batch_size, lengths=lengths.tolist(), generator=generator)
    return DefaultBatchSampler(sampler, batch_size=batch_size, drop_last=drop_last,
                               valid_label_columns=valid_label_columns, generator=generator, seed=seed)


def batch_sampler(length_grouping: bool):
    """The ``batch_sampler`` argument of a sentence-transformers Trainer: length-grouped or the library's random
    batches (``training.embedding.length_grouping``)."""
    from sentence_transformers.base.sampler import BatchSamplers

    return length_grouped_batch_sampler if length_grouping else BatchSamplers.BATCH_SAMPLER


def device_args() -> dict[str, bool]:
    """The device settings of a sentence-transformers Trainer: bf16 where the GPU has it, the CPU without a GPU."""
    import torch

    gpu = torch.cuda.is_available()
    return {"bf16": gpu and torch.cuda.is_bf16_supported(), "use_cpu": not gpu}


def build_cross_encoder(base: str, *, max_length: int, models_dir: str | None = None, seed: int = 13,
                        prior: float = 0.5):
    """A fresh cross-encoder on ``base``: its transformer, mean pooling, and a linear score starting at zero
    weights and the log-odds of ``prior`` (the training rows' positive share) as bias."""
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    folder = resolve(base, cache_dir=models_dir)
    torch.manual_seed(seed)
    transformer = Transformer(str(folder), max_seq_length=max_length)
    dim = transformer.get_embedding_dimension()
    pooling = Pooling(dim, pooling_mode="mean")
    # zero weights: training starts from "every pair alike" instead of a random projection of e5's states
    prior = min(max(prior, 1e-3), 1 - 1e-3)
    score = Dense(dim, 1, activation_function=None, init_weight=torch.zeros(1, dim),
                  init_bias=torch.full((1,), float(np.log(prior / (1 - prior)))),
                  module_output_name="scores")
    return CrossEncoder(modules=[transformer, pooling, score],
                        device=inference_device()), _prompts(Path(folder))


def train_cross_encoder(train_df: pd.DataFrame, base: str, output_dir: Path, tp: TrainingParams, *, seed: int,
                        models_dir: str | None = None) -> dict[str, Any]:
    """Fine-tune a cross-encoder on the labelled pairs; save it (with its prompts) in output_dir."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    e = tp.embedding.cross_encoder
    rows = sample_rows(train_df, e.max_rows, seed).reset_index(drop=True)
    model, prompts = build_cross_encoder(base, max_length=e.max_length, models_dir=models_dir, seed=seed,
                                         prior=float(rows["label"].mean()))
    if tp.freeze_embeddings:  # most of a multilingual encoder's weights: frozen, a step costs about half as much
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    # two learning rates: the zero-initialised score layer must move fast, or the encoder behind it gets no
    # gradient; the Trainer adds its warm-up and linear decay to this optimizer
    head = list(model[2].parameters())
    body = [p for p in model[0].parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": body, "lr": e.learning_rate},
                                   {"params": head, "lr": e.head_learning_rate}],
                                  weight_decay=tp.weight_decay)
    queries, targets = zip(*pair_inputs(rows, prompts))
    data = Dataset.from_dict({"query": list(queries), "target": list(targets),
                              "label": rows["label"].astype(float).tolist()})
    steps = int(np.ceil(len(rows) / e.batch_size * e.epochs))
    scratch = tempfile.TemporaryDirectory(prefix="qckit-cross-encoder-")  # the Trainer's output_dir: nothing kept
    args = CrossEncoderTrainingArguments(
        output_dir=scratch.name, num_train_epochs=e.epochs,
        per_device_train_batch_size=e.batch_size, learning_rate=e.learning_rate,
        warmup_steps=int(np.ceil(0.06 * steps)), weight_decay=tp.weight_decay, seed=seed, save_strategy="no",
        report_to=[], logging_steps=max(1, steps // 20), disable_tqdm=True,
        batch_sampler=batch_sampler(tp.embedding.length_grouping),
        **device_args(),
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=BinaryCrossEntropyLoss(model),
                                  optimizers=(optimizer, None),
                                  callbacks=trainer_progress("fine-tuning the cross-encoder"))
    start = time.perf_counter()
    with scratch:
        trainer.train()
    seconds = time.perf_counter() - start
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(output_dir))
    (output_dir / "qckit-prompts.json").write_text(json.dumps(list(prompts)), encoding="utf-8")
    return {"cross_encoder_rows": len(rows), "cross_encoder_seconds": seconds,
            "cross_encoder_log_history": [h for h in trainer.state.log_history if "loss" in h]}


def cross_encoder_logits(folder: str | Path, df: pd.DataFrame, *, batch_size: int = 64) -> np.ndarray:
    """Log-odds of relevance for df's rows from a saved cross-encoder (batches sorted by length by the library)."""
    import torch
    from sentence_transformers import CrossEncoder

    if df.empty:
        return np.zeros(0)
    folder = Path(folder)
    refuse_unsafe_files(folder)  # safetensors only; the model's own code stays off (trust_remote_code=False)
    prompts = tuple(json.loads((folder / "qckit-prompts.json").read_text(encoding="utf-8")))
    model = CrossEncoder(str(folder), device=inference_device())
    scores = model.predict(pair_inputs(df, prompts), batch_size=batch_size, activation_fn=torch.nn.Identity(),
                           show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(scores, np.float64).reshape(-1)
