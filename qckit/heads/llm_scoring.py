"""Scoring pairs with a trained transformer head: the fast HF scorer (CPU, one GPU) and the vLLM scorer (GPUs).

Every path returns the same probabilities: ``score`` = p(yes) (softmax over the two label-word logits,
or the classifier's probability) and ``logit`` = its log-odds.

The HF scorer for the yes/no head:
- sorts rows by length so a batch carries little padding;
- computes the prompt prefix that all rows of a task share once, and reuses its key/value cache for
  every batch (what vLLM's prefix caching does on GPUs) — written here because transformers has no
  batched shared-prefix scoring;
- computes only the two label-word logits at each row's answer position.

The vLLM scorer (``score_pairs_vllm``; ``scoring.backend: vllm``) gives a vLLM engine the token ids the HF
scorer's ``Encoder`` builds (the same prompts, the same truncation), serves LoRA adapters through LoRA requests
on one engine per base model, with prefix caching on, and takes logit(yes) - logit(no) from the answer token's
log-probabilities with the answer restricted to the two label words, so both backends give the same scores.

Most callers go through ``qckit.heads.score``, which picks the head's scorer.

Example:
    >>> from qckit.heads import load, score
    >>> preds = score(load("outputs/run/models/joint"), dev_df)
    >>> preds[["id", "score"]].head()
"""
from __future__ import annotations

import copy
import gc
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit import TASKS
from qckit.config import ScoringParams, TrainingParams
from qckit.heads.common import LoadedModel, logits_to_logodds, read_meta, refuse_unsafe_files
from qckit.heads.transformer import Encoder, collate, yes_no_logits
from qckit.progress import headless, progress, quiet_libraries
from qckit.prompts import build_prompt


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


# --- vLLM (GPUs) ------------------------------------------------------------------------------------
# vLLM serves LoRA adapters up to a rank from this set (vllm.config.lora.MaxLoRARanks)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_engine: dict[str, Any] = {}  # the one live engine: {"key": ..., "llm": ..., "loras": {adapter folder: id}}


def yes_no_from_logprobs(logprobs: dict[int, float], label_ids: tuple[int, int]) -> float:
    """Log-odds of yes vs no from the answer token's log-probabilities (token id -> log-probability).

    Both words' log-probabilities share one normaliser, so their difference is logit(yes) - logit(no), the
    HF scorer's log-odds, whatever set they were normalised over.

    Raises:
        ValueError: a label word is missing (the engine did not restrict the answer to the two words).
    """
    missing = [i for i in label_ids if i not in logprobs]
    if missing:
        raise ValueError(f"vLLM returned no log-probability for label token(s) {missing}; the answer must be "
                         f"restricted to the label words (allowed_token_ids, logprobs_mode='processed_logprobs')")
    no, yes = (logprobs[i] for i in label_ids)
    return float(yes - no)


def _import_vllm():
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
    except ImportError as err:
        raise ImportError(f"scoring.backend vllm needs vLLM on a GPU machine (pip install 'qckit[gpu]'): {err}"
                          ) from None
    return LLM, SamplingParams, TokensPrompt, LoRARequest


def _engine_dtype(tp: TrainingParams) -> str:
    """The precision the HF scorer loads the model in: the training precision on a GPU, fp32 on a CPU."""
    import torch

    if not torch.cuda.is_available() or tp.precision == "fp32":
        return "float32"
    if tp.precision == "fp16" or (tp.precision == "auto" and not torch.cuda.is_bf16_supported()):
        return "float16"
    return "bfloat16"


def _lora_rank(model_dir: Path, scoring: ScoringParams) -> int:
    """``scoring.max_lora_rank``, or the adapter's own rank rounded up to one vLLM serves."""
    if scoring.max_lora_rank is not None:
        return scoring.max_lora_rank
    rank = int(json.loads((model_dir / "adapter_config.json").read_text(encoding="utf-8"))["r"])
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fits:
        raise ValueError(f"{model_dir}: LoRA rank {rank} is above the largest vLLM serves ({VLLM_LORA_RANKS[-1]})")
    return fits[0]


def _max_model_len(encoder: Encoder) -> int:
    """The longest prompt ``encoder`` can build (the longer task prefix, the row part at most
    ``max_length`` or the answer tail plus 8 tokens) and the one answer token."""
    tail = len(encoder.tokenizer(build_prompt("QC", "", "").tail, add_special_tokens=False)["input_ids"])
    prefix = max(len(encoder.prefix_ids(task)) for task in TASKS)
    return prefix + max(encoder.tp.max_length, tail + 8) + 1


def engine_arguments(model_dir: str | Path, scoring: ScoringParams, *, trust_remote_code: bool = False,
                     encoder: Encoder | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for scoring the model saved in ``model_dir``.

    A LoRA adapter is served on its base model (LoRA requests, ``enable_lora``); a full model from its folder.
    The engine gets token ids (the HF scorer's), so its own tokenizer only names tokens; the arguments do not
    depend on the adapter, so adapters of one base share one engine. Prefix caching is on, log-probabilities are
    taken after the answer is restricted to the label words (``logprobs_mode='processed_logprobs'``).
    ``encoder``: the folder's prompt encoder, when the caller has one (else built here).
    """
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    tp = TrainingParams.model_validate(meta["training"])
    adapter = (model_dir / "adapter_config.json").exists()
    encoder = encoder or Encoder(_tokenizer(model_dir, trust_remote_code), "yes_no", tp)
    args: dict[str, Any] = {
        "model": meta["base_model"] if adapter else str(model_dir),
        "trust_remote_code": bool(trust_remote_code), "dtype": _engine_dtype(tp), "enable_prefix_caching": True,
        "logprobs_mode": "processed_logprobs", "tensor_parallel_size": scoring.tensor_parallel_size,
        "gpu_memory_utilization": scoring.gpu_memory_utilization,
        "max_model_len": scoring.max_model_len or _max_model_len(encoder),
        "enable_lora": adapter,
    }
    if adapter:
        args["max_lora_rank"] = _lora_rank(model_dir, scoring)
    if adapter and tp.method == "qlora":  # the base in 4-bit as in training (what the HF scorer loads on a GPU)
        args["quantization"] = "bitsandbytes"
    return {**args, **scoring.engine}


def _tokenizer(model_dir: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=bool(trust_remote_code))


def _llm(args: dict[str, Any]):
    """The engine for ``args``: the live one when it was built with the same arguments (step 05 scores dev and
    test, per-task adapters share their base), else a new one; the previous engine is released first, as two
    engines would not fit one GPU."""
    LLM = _import_vllm()[0]
    key = json.dumps(args, sort_keys=True, default=str)
    if _engine.get("key") != key:
        release_vllm_engine()
        _engine.update(key=key, llm=LLM(**args), loras={})
    return _engine["llm"]


def release_vllm_engine() -> None:
    """Drop the live vLLM engine (if any) and free its GPU memory."""
    if not _engine:
        return
    _engine.clear()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_pairs_vllm(model_dir: str | Path, df: pd.DataFrame, *, scoring: ScoringParams | None = None,
                     trust_remote_code: bool = False) -> pd.DataFrame:
    """df's rows with ``logit`` and ``score`` added, scored by vLLM (the ``yes_no`` head).

    vLLM reads the exact token ids the HF scorer builds (``Encoder``: the same prompt, the same truncation),
    generates one token restricted to the two label words, and the log-odds are logit(yes) - logit(no) from
    its log-probabilities, as in the HF scorer. A LoRA adapter goes through a ``LoRARequest`` on its base
    model; prefix caching reuses the prompt prefix every row of a task shares.

    Args:
        model_dir: a folder saved by step 05 (``qckit-model.json`` with head ``yes_no``).
        df: pairs-table rows (``task``, ``language``, ``query``, ``target``).
        scoring: the engine settings (``qckit.config.ScoringParams``); None: its defaults.
        trust_remote_code: passed to the tokenizer and the engine.

    Example:
        >>> preds = score_pairs_vllm("outputs/run/models/QC", dev_df[dev_df.task == "QC"])
    """
    _, SamplingParams, TokensPrompt, LoRARequest = _import_vllm()
    model_dir = Path(model_dir)
    refuse_unsafe_files(model_dir)  # no pickled weights (vLLM would read a .bin or .pt too)
    meta = read_meta(model_dir)
    if meta["head"] != "yes_no":
        raise ValueError(f"{model_dir}: scoring.backend vllm scores the yes_no head; this model's head is "
                         f"{meta['head']!r} (use scoring.backend: hf)")
    scoring = scoring or ScoringParams()
    if df.empty:  # no engine for nothing
        return df.assign(logit=np.zeros(0), score=np.zeros(0))
    encoder = Encoder(_tokenizer(model_dir, trust_remote_code), "yes_no",
                      TrainingParams.model_validate(meta["training"]))
    args = engine_arguments(model_dir, scoring, trust_remote_code=trust_remote_code, encoder=encoder)
    llm = _llm(args)
    lora = None
    if args["enable_lora"]:
        ids = _engine["loras"]  # one id per adapter folder served by this engine
        lora_id = ids.setdefault(str(model_dir.resolve()), len(ids) + 1)
        lora = LoRARequest(f"{model_dir.name}-{lora_id}", lora_id, str(model_dir))
    sampling = SamplingParams(max_tokens=1, temperature=0.0, logprobs=2, allowed_token_ids=list(encoder.label_ids))
    prompts = [TokensPrompt(prompt_token_ids=f["input_ids"]) for f in encoder.encode(df)]
    outputs = llm.generate(prompts, sampling, lora_request=lora, use_tqdm=not headless())
    logits = np.array([yes_no_from_logprobs({k: v.logprob for k, v in o.outputs[0].logprobs[0].items()},
                                            encoder.label_ids) for o in outputs])
    result = df.copy()
    result["logit"] = logits
    result["score"] = 1.0 / (1.0 + np.exp(-logits))
    return result
