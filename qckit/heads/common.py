"""What every head shares: the model folder's metadata file, the loaded-model type, the refusal of unsafe
files, row sampling, class weights, the dev F1 monitor and peak memory.

Example:
    >>> from qckit.heads.common import read_meta
    >>> read_meta("outputs/x/models/joint")["head"]
    'embedding'
"""
from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.config import TrainingParams
from qckit.progress import HEARTBEAT_S, report, run_log

META_FILE = "qckit-model.json"
HEADS = ("classifier", "yes_no", "embedding")
# Files that unpickle when loaded (joblib / pickle, torch's `pytorch_model.bin`, `.pt`): loading one can run any
# code its writer put in it. qckit writes none into a model folder (safetensors, skops, JSON, npz), so a model
# folder that holds one is refused whole, never loaded. The Trainer's `checkpoints/` (its optimizer and RNG
# state, read only when resuming your own training) is not part of the saved model and is not looked at.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth", ".ckpt")
NOT_LOADED_DIRS = ("checkpoints",)


class UnsafeArtefactError(ValueError):
    """A model folder holds a file that could run code when loaded (a pickle, or a skops file needing types
    outside qckit's allow-list); nothing of it was loaded. The message names the file and says why."""


def unsafe_artefact(path: str | Path, why: str) -> UnsafeArtefactError:
    """The error refusing ``path``, with what to do: the model must be trained again with this qckit."""
    return UnsafeArtefactError(
        f"{path}: refused: {why}. A file that unpickles can run any code its writer put in it, so qckit loads "
        "models only from safe formats (safetensors, skops with an allow-list of types, JSON, npz). Models "
        "saved by earlier qckit versions (trees pickled with joblib) cannot be loaded: train the model again "
        "with this version of qckit (step 05 of the run).")


def refuse_unsafe_files(folder: str | Path) -> None:
    """Raise ``UnsafeArtefactError`` when ``folder`` or a sub-folder (``checkpoints/`` aside) holds a pickle
    (``UNSAFE_SUFFIXES``); call it before loading anything from a model folder."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):
        if Path(root) == folder:
            dirs[:] = [d for d in dirs if d not in NOT_LOADED_DIRS]
        for name in sorted(files):
            if name.lower().endswith(UNSAFE_SUFFIXES):
                kind = "a torch pickle" if name.lower().endswith((".bin", ".pt", ".pth", ".ckpt")) else "a pickle"
                raise unsafe_artefact(Path(root) / name, f"{kind} ({Path(name).suffix}) in a model folder")


@dataclass
class LoadedModel:
    """A trained model read back from its folder, whatever its head.

    ``model`` is the torch model (``classifier``, ``yes_no``) or the trees' estimator (``embedding``);
    ``tokenizer`` belongs to the torch heads, ``bank`` (the training neighbours) to the trees head.
    ``meta`` is the folder's ``qckit-model.json``; scoring reads the head's settings from it.
    """

    head: str
    meta: dict[str, Any]
    model: Any
    folder: Path | None = None
    tokenizer: Any = None
    bank: Any = None


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The ``qckit-model.json`` of a model folder, with a clear error when the folder holds no qckit model."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a model folder written by qckit")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("head") not in HEADS:
        raise ValueError(f"{path}: unknown head {meta.get('head')!r}; expected one of {', '.join(HEADS)}")
    return meta


def sample_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most n rows, stratified by task and label, in a seeded order."""
    if not n or len(df) <= n:
        return df
    frac = n / len(df)
    parts = [g.sample(n=max(1, round(len(g) * frac)), random_state=seed) for _, g in df.groupby(["task", "label"])]
    return pd.concat(parts).sort_index()


def positive_weight(labels: np.ndarray, tp: TrainingParams) -> float:
    """The loss weight of positive rows that ``training.class_weight`` asks for."""
    if tp.class_weight == "none":
        return 1.0
    if tp.class_weight == "balanced":
        pos = max(float(np.mean(labels)), 1e-6)
        return (1 - pos) / pos
    return float(tp.class_weight)


def logits_to_prob(logits: np.ndarray) -> np.ndarray:
    """p(positive) from (n, 1) or (n, 2) logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 1] / e.sum(axis=1)


def logits_to_logodds(logits: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of the positive class from (n, 1) or (n, 2) logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return logits.reshape(-1)
    return logits[:, 1] - logits[:, 0]


def f1_metrics(eval_pred) -> dict[str, float]:
    """Dev F1 at 0.5 and at the best threshold (for curves and early stopping), beside all-positive."""
    from sklearn.metrics import f1_score, precision_recall_curve

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    probs = logits_to_prob(logits)
    labels = np.asarray(labels).astype(int)
    prec, rec, _ = precision_recall_curve(labels, probs)
    f1s = 2 * prec * rec / np.clip(prec + rec, 1e-12, None)
    return {
        "f1": float(f1_score(labels, probs >= 0.5, zero_division=0)),
        "f1_best": float(np.max(f1s)),
        "f1_all_positive": float(f1_score(labels, np.ones_like(labels), zero_division=0)),
    }


def peak_memory_mib() -> float:
    """Peak GPU memory allocated by torch when there is a GPU, else the process's peak resident memory."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trainer_progress(what: str = "training") -> list:
    """``[callback]`` for an HF Trainer (sentence-transformers' included) that reports the step, epoch and
    last logged loss to the run log every ``HEARTBEAT_S`` seconds; ``[]`` when no run log is set."""
    if not run_log():
        return []
    from transformers import TrainerCallback

    class ReportProgress(TrainerCallback):
        last, loss = 0.0, None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.last < HEARTBEAT_S and state.global_step < state.max_steps:
                return
            self.last = time.monotonic()
            loss = "" if self.loss is None else f", loss {self.loss:.4f}"
            report(f"{what}: step {state.global_step}/{state.max_steps}, epoch {state.epoch or 0:.2f}{loss}")

    return [ReportProgress()]
