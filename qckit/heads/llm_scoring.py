"""Scoring pairs with a trained transformer head: the fast HF scorer (CPU, one GPU) and the vLLM scorer (GPUs).

Every path returns the same probabilities: ``score`` = p(yes) (softmax over the two label-word logits,
or the classifier's probability) and ``logit`` = its log-odds.

The HF scorer for the yes/no head:
- sorts rows by length so a batch carries little padding;
- computes the prompt prefix that all rows of a task share once, and reuses its key/value cache for
  every batch (what vLLM's prefix caching does on GPUs) — written here because transformers has no
  batched shared-prefix scoring;
- computes only the two label-word logits at each row's answer position.

Most callers go through ``qckit.heads.score``, which picks the head's scorer.

Example:
    >>> from qckit.heads import load, score
    >>> preds = score(load("outputs/run/models/joint"), dev_df)
    >>> preds[["id", "score"]].head()
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.config import TrainingParams
from qckit.heads.common import LoadedModel, logits_to_logodds, read_meta, refuse_unsafe_files
from qckit.heads.transformer import Encoder, collate, yes_no_logits
from qckit.progress import progress, quiet_libraries
from qckit.prompts import build_prompt, label_token_ids


def _batches(order: np.ndarray, size: int):
    for i in range(0, len(order), size):
        yield order[i:i + size]


def logodds(loaded: LoadedModel, df: pd.DataFrame, *, batch_size: int = 64, prefix_cache: bool = True
            ) -> np.ndarray:
    """Log-odds of p(yes) for df's rows from a loaded ``classifier`` or ``yes_no`` model."""
    import torch

    quiet_libraries()
    tp = TrainingParams.model_validate(loaded.meta["training"])
    encoder = Encoder(loaded.tokenizer, loaded.head, tp)
    feats = encoder.encode(df)
    with torch.inference_mode():
        if loaded.head == "yes_no":
            return _score_yes_no(loaded.model, loaded.tokenizer, encoder, df, feats, batch_size, prefix_cache)
        return _score_classifier(loaded.model, loaded.tokenizer, feats, batch_size)


def _score_classifier(model, tokenizer, feats: list[dict[str, Any]], batch_size: int) -> np.ndarray:
    order = np.argsort([len(f["input_ids"]) for f in feats], kind="stable")
    out = np.zeros(len(feats))
    device = next(model.parameters()).device
    for idx in progress(list(_batches(order, batch_size)), desc="scoring", unit="batch"):
        batch = collate(tokenizer, [{k: v for k, v in feats[i].items() if k != "labels"} for i in idx])
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
        out[idx] = logits_to_logodds(logits)
    return out


def _score_yes_no(model, tokenizer, encoder, df, feats, batch_size: int, prefix_cache: bool) -> np.ndarray:
    """Log-odds of yes vs no, batch by batch, reusing each task's prefix cache."""
    out = np.zeros(len(feats))
    tasks = df["task"].to_numpy()
    for task in dict.fromkeys(tasks):
        rows = np.flatnonzero(tasks == task)
        rows = rows[np.argsort([len(feats[i]["input_ids"]) for i in rows], kind="stable")]
        cache = _prefix_cache(model, encoder.prefix_ids(task)) if prefix_cache else None
        for idx in progress(list(_batches(rows, batch_size)), desc=f"scoring {task}", unit="batch"):
            logits = _yes_no_batch(model, tokenizer, encoder, [feats[i] for i in idx], cache)
            out[idx] = logits[:, 1] - logits[:, 0]
    return out


def _prefix_cache(model, prefix_ids: list[int]):
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(model.parameters()).device
    ids = torch.tensor([prefix_ids], device=device)
    out = base.get_decoder()(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    return cache, len(prefix_ids)


def _yes_no_batch(model, tokenizer, encoder, feats, cache) -> np.ndarray:
    import torch

    device = next(model.parameters()).device
    if cache is None:
        batch = collate(tokenizer, [{k: f[k] for k in ("input_ids", "attention_mask")} for f in feats])
        logits = yes_no_logits(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                               encoder.label_ids)
        return logits.cpu().numpy()
    past, n_prefix = cache
    suffixes = [{"input_ids": f["input_ids"][n_prefix:], "attention_mask": f["attention_mask"][n_prefix:]}
                for f in feats]
    batch = collate(tokenizer, suffixes)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    n = ids.shape[0]
    # the forward pass appends to the cache in place: every batch gets its own copy of the prefix
    past = copy.deepcopy(past)
    past.batch_repeat_interleave(n)
    full_mask = torch.cat([torch.ones(n, n_prefix, dtype=mask.dtype, device=device), mask], dim=1)
    positions = (n_prefix + torch.arange(ids.shape[1], device=device)).unsqueeze(0).expand(n, -1)
    logits = yes_no_logits(model, ids, full_mask, encoder.label_ids, past_key_values=past, position_ids=positions)
    return logits.cpu().numpy()


# --- vLLM (GPU) -------------------------------------------------------------------------------------
def vllm_prompts(df: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    """The same Alpaca prompts the HF path uses, as text for vLLM."""
    return [
        build_prompt(r.task, r.query, r.target, language=r.language, language_tag=meta["language_tag"],
                     category_style=meta["category_style"]).text
        for r in df.itertuples(index=False)
    ]


def yes_no_from_logprobs(logprobs: dict[int, float], label_ids: tuple[int, int], *, floor: float = -30.0) -> float:
    """Log-odds of yes vs no from one generated token's top-k log-probabilities.

    Renormalising over the two words only needs their difference; a word missing from the returned
    top-k gets `floor` (it was less likely than every returned token, so the floor is an upper bound
    on how unlikely it is, and the score saturates at the right end).
    """
    no, yes = (logprobs.get(i, floor) for i in label_ids)
    if no == floor and yes == floor:
        return 0.0
    return float(yes - no)


def score_pairs_vllm(model_dir: str | Path, df: pd.DataFrame, *, base_model: str | None = None,
                     top_logprobs: int = 20, tensor_parallel_size: int = 1, max_lora_rank: int = 64) -> pd.DataFrame:
    """Score with vLLM: the LoRA adapter through LoRARequest, one generated token with log-probabilities."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as err:
        raise ImportError("vLLM scoring needs vllm on a GPU machine: pip install 'qckit[gpu]'") from err

    model_dir = Path(model_dir)
    refuse_unsafe_files(model_dir)  # no pickled weights (vLLM would read a .bin or .pt too)
    meta = read_meta(model_dir)
    adapter = (model_dir / "adapter_config.json").exists()
    llm = LLM(model=base_model or meta["base_model"] if adapter else str(model_dir), enable_lora=adapter,
              max_lora_rank=max_lora_rank, tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=True)
    label_ids = label_token_ids(llm.get_tokenizer(), tuple(meta["label_words"]))
    sampling = SamplingParams(max_tokens=1, temperature=0.0, logprobs=top_logprobs,
                              allowed_token_ids=list(label_ids))
    lora = LoRARequest("qckit", 1, str(model_dir)) if adapter else None
    outputs = llm.generate(vllm_prompts(df, meta), sampling, lora_request=lora)
    logits = []
    for o in outputs:
        step = o.outputs[0].logprobs[0]
        logits.append(yes_no_from_logprobs({k: v.logprob for k, v in step.items()}, label_ids))
    result = df.copy()
    result["logit"] = np.array(logits)
    result["score"] = 1.0 / (1.0 + np.exp(-result["logit"]))
    return result
