"""Model heads: one ``train / load / score`` switch over every kind of relevance model.

- ``classifier`` and ``yes_no`` (``qckit.heads.transformer``): the HF Trainer, full / LoRA / QLoRA; scored by
  ``qckit.heads.llm_scoring`` (prefix-cached HF scorer, or vLLM);
- ``embedding`` (``qckit.heads.trees``): frozen or fine-tuned encoders feeding gradient-boosted trees, with
  an optional cross-encoder (``qckit.heads.cross_encoder``) and USE encoder (``qckit.heads.use_encoder``).

The head is chosen by ``training.head`` when training and saved with the model (``qckit-model.json``), so
``load`` and ``score`` need only the folder. ``load`` returns one type, ``LoadedModel``, whatever the head.

Loading runs no code from the folder: weights are safetensors, the trees' estimators skops files read with an
allow-list of types; a folder holding a pickle is refused with ``UnsafeArtefactError`` (a ``ValueError``)
naming the file. ``trust_remote_code`` is off unless the caller passes it.

Example:
    >>> from qckit import heads
    >>> figures = heads.train(train_df, dev_df, params, output_dir="outputs/x/models/joint")
    >>> model = heads.load("outputs/x/models/joint")
    >>> heads.score(model, dev_df)[["id", "score", "logit"]]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.config import Params
from qckit.heads import ensemble, llm_scoring, transformer, trees
from qckit.heads.common import META_FILE, LoadedModel, UnsafeArtefactError, read_meta, refuse_unsafe_files
from qckit.progress import stage

__all__ = ["META_FILE", "LoadedModel", "UnsafeArtefactError", "fit_and_score", "load", "read_meta", "score",
           "score_folder", "train"]


def train(train_df: pd.DataFrame, dev_df: pd.DataFrame | None, params: Params, *, output_dir: str | Path,
          resume: bool = True, keep_model: bool = False) -> dict[str, Any]:
    """Train the head ``params.training.head`` on labelled pairs and save it in ``output_dir``.

    Returns the training figures: log history (loss, dev F1 per evaluation), time, throughput, memory.
    ``resume`` continues an interrupted Trainer run from its last checkpoint; ``keep_model`` returns the
    trained torch model under ``"model"`` (transformer heads).
    """
    head = params.training.head
    with stage(f"training the {head} head on {len(train_df):,} rows into {Path(output_dir).name}"):
        if head == "embedding":  # no Trainer, no checkpoints: the trees fit in seconds
            return trees.train(train_df, dev_df, params, output_dir=output_dir)
        return transformer.train(train_df, dev_df, params, output_dir=output_dir, resume=resume,
                                 keep_model=keep_model)


def load(model_dir: str | Path, *, trust_remote_code: bool = False, **kwargs: Any) -> LoadedModel:
    """The model saved in ``model_dir``, whatever its head (keyword arguments go to the transformer loader:
    ``device``, ``quantize``).

    Raises ``UnsafeArtefactError`` for a folder holding a pickle or an estimator outside the allow-list.
    ``trust_remote_code`` (transformer heads) is what the caller passes, False by default; the folder's own
    metadata never turns it on.
    """
    if ensemble.is_ensemble(model_dir):  # k models, not one: its members' checkpoints would read as unsafe files
        raise ValueError(f"{model_dir} holds a k-fold ensemble (training.folds), not one model: score it with "
                         "qckit.heads.score_folder(folder, rows, params), or load one member folder (fold-0, ...)")
    refuse_unsafe_files(model_dir)  # before anything of the folder is read
    if read_meta(model_dir)["head"] == "embedding":
        return trees.load(model_dir)
    return transformer.load(model_dir, trust_remote_code=trust_remote_code, **kwargs)


def score(model: LoadedModel | str | Path, df: pd.DataFrame, *, batch_size: int = 64,
          prefix_cache: bool = True) -> pd.DataFrame:
    """df's rows with ``logit`` (log-odds of relevance) and ``score`` (p(yes)) added.

    Args:
        model: a ``LoadedModel`` or a model folder.
        df: pairs-table rows (``task``, ``language``, ``query``, ``target``).
        batch_size: rows per forward pass (transformer heads).
        prefix_cache: reuse the shared prompt prefix's key/value cache (``yes_no`` head).
    """
    loaded = model if isinstance(model, LoadedModel) else load(model)
    if loaded.head == "embedding":
        logodds = trees.logodds(loaded, df)
    else:
        logodds = llm_scoring.logodds(loaded, df, batch_size=batch_size, prefix_cache=prefix_cache)
    result = df.copy()
    result["logit"] = logodds
    result["score"] = 1.0 / (1.0 + np.exp(-logodds))
    return result


def score_folder(model_dir: str | Path, df: pd.DataFrame, params: Params, *,
                 out_of_fold: bool = False) -> pd.DataFrame:
    """df's rows scored by the model saved in ``model_dir`` the way a run's ``params`` say (batch size,
    ``trust_remote_code``): what step 05, step 07 and ``qckit predict`` call for a trained model.

    A k-fold ensemble folder (``training.folds``; ``qckit.heads.ensemble``) scores each row by the mean of its
    members' log-odds; with ``out_of_fold``, rows it learnt from (by task and id) are scored by the one member
    that did not see them instead.
    """
    if ensemble.is_ensemble(model_dir):
        return ensemble.score(model_dir, df, lambda member, rows: _score_one(member, rows, params),
                              out_of_fold=out_of_fold)
    return _score_one(model_dir, df, params)


def _score_one(model_dir: str | Path, df: pd.DataFrame, params: Params) -> pd.DataFrame:
    """``score_folder`` for a folder holding one model, by ``params.scoring.backend``: the HF scorer, or vLLM
    (``llm_scoring.score_pairs_vllm``: the same token ids and log-odds, on GPUs)."""
    if params.scoring.backend == "vllm":
        return llm_scoring.score_pairs_vllm(model_dir, df, scoring=params.scoring,
                                            trust_remote_code=params.models.trust_remote_code)
    loaded = load(model_dir, trust_remote_code=params.models.trust_remote_code)
    return score(loaded, df, batch_size=params.training.eval_batch_size)


def fit_and_score(train_df: pd.DataFrame, score_df: pd.DataFrame, params: Params, *, output_dir: str | Path,
                  max_rows: int | None = None) -> np.ndarray:
    """Train on train_df (at most max_rows) and return p(yes) for score_df's rows (the noise detector)."""
    if max_rows:
        params = params.model_copy(update={"training": params.training.model_copy(update={"max_train_rows": max_rows})})
    train(train_df, None, params, output_dir=output_dir, resume=False)
    return score(output_dir, score_df)["score"].to_numpy()
