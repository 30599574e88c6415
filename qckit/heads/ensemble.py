"""K-fold ensembles (``training.folds``): one model folder holding k ordinary model folders, each trained on all
query-grouped folds but one, scored by the mean of their log-odds.

Layout of ``models/<name>/`` when step 05 trains k folds::

    qckit-ensemble.json    the manifest: format, k, seed, head, tasks, members (folder names inside this folder)
    fold-0/ ... fold-{k-1}/  one ordinary model folder per fold (``qckit-model.json``, weights)
    folds.parquet          the fold of every labelled row the ensemble learnt from: id (as text), task, split, fold
    oof.parquet            out-of-fold log-odds of the dev rows: id (as text), task, fold, logit

Member ``f`` learnt from every fold but ``f``, so a row of fold ``f`` scored by member ``f`` is scored by a
model that never saw its query: that is how dev gets honest scores while every labelled row is trained on.

Reading an ensemble runs no code: the manifest is JSON, its members must be folders inside the ensemble folder
(a member path leading elsewhere is refused with ``UnsafeArtefactError``), and each member is loaded like any
model folder (``qckit.heads.load``: pickles refused).

Example:
    >>> from qckit.heads import ensemble
    >>> ensemble.is_ensemble("outputs/x/models/joint")
    True
    >>> ensemble.member_dirs("outputs/x/models/joint")
    [PosixPath('outputs/x/models/joint/fold-0'), ...]
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.heads.common import META_FILE, UNSAFE_SUFFIXES, UnsafeArtefactError, unsafe_artefact
from qckit.runs import write_json_atomic, write_parquet_atomic

MANIFEST_FILE = "qckit-ensemble.json"
FOLDS_FILE = "folds.parquet"
OOF_FILE = "oof.parquet"
FORMAT = 1

# scores df's rows with one member folder: df's rows (same order) with a ``logit`` column
ScoreMember = Callable[[Path, pd.DataFrame], pd.DataFrame]


def member_name(fold: int) -> str:
    """The folder name of fold ``fold``'s model inside an ensemble folder."""
    return f"fold-{fold}"


def is_ensemble(folder: str | Path) -> bool:
    """Whether ``folder`` holds a k-fold ensemble (its manifest) rather than one model."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def write_manifest(folder: str | Path, *, k: int, seed: int, head: str, tasks: list[str]) -> Path:
    """Write the manifest naming members ``fold-0 .. fold-{k-1}``; written last, so a folder whose training was
    cut short holds no manifest and is never scored as a whole ensemble."""
    manifest = {"format": FORMAT, "k": k, "seed": seed, "head": head, "tasks": list(tasks),
                "members": [member_name(f) for f in range(k)]}
    return write_json_atomic(Path(folder) / MANIFEST_FILE, manifest)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an ensemble folder, checked: ``k`` members, each a folder inside ``folder``.

    Raises ``UnsafeArtefactError`` for a member that leads outside the folder (an absolute path, ``..``, a link)
    or a pickle lying in the ensemble folder itself, ``ValueError`` for a manifest that is not what qckit writes.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ensemble manifest ({type(err).__name__}: {err})") from None
    members, k = (manifest.get("members"), manifest.get("k")) if isinstance(manifest, dict) else (None, None)
    if not isinstance(k, int) or isinstance(k, bool) or k < 2 or not isinstance(members, list) \
            or len(members) != k or not all(isinstance(m, str) and m for m in members):
        raise ValueError(f"{path}: not a qckit ensemble manifest (needs 'k' >= 2 and 'members': k folder names)")
    root = folder.resolve()
    for member in members:
        resolved = (folder / member).resolve()
        if Path(member).is_absolute() or resolved == root or root not in resolved.parents:
            raise UnsafeArtefactError(f"{path}: refused: member {member!r} lies outside the ensemble folder "
                                      f"{folder}; an ensemble's members must be folders inside it")
    for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
        if name.lower().endswith(UNSAFE_SUFFIXES):  # the members are checked when each is loaded
            raise unsafe_artefact(folder / name, "a pickle in an ensemble folder")
    return manifest


def member_dirs(folder: str | Path) -> list[Path]:
    """The member model folders of an ensemble, fold 0 first (checked by ``read_manifest``)."""
    return [Path(folder) / m for m in read_manifest(folder)["members"]]


def _keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    # ids as text: the files hold ids of any type, and a row is known by its task and id
    return list(zip(df["task"].astype(str), df["id"].astype(str)))


def write_fold_assignment(folder: str | Path, rows: pd.DataFrame, folds: np.ndarray) -> Path:
    """Record the fold of every labelled row (``id``, ``task``, ``split`` columns of ``rows``)."""
    frame = pd.DataFrame({"id": rows["id"].astype(str).to_numpy(), "task": rows["task"].to_numpy(),
                          "split": rows["split"].to_numpy(), "fold": np.asarray(folds, dtype=np.int64)})
    return write_parquet_atomic(frame, Path(folder) / FOLDS_FILE)


def fold_assignment(folder: str | Path) -> pd.DataFrame:
    """The ensemble's ``folds.parquet`` (``id`` as text, ``task``, ``split``, ``fold``); empty when absent."""
    path = Path(folder) / FOLDS_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["id", "task", "split", "fold"])


def write_out_of_fold(folder: str | Path, scored: pd.DataFrame) -> Path:
    """Record dev rows' out-of-fold log-odds (``id``, ``task``, ``fold``, ``logit`` of ``scored``)."""
    frame = pd.DataFrame({"id": scored["id"].astype(str).to_numpy(), "task": scored["task"].to_numpy(),
                          "fold": scored["fold"].to_numpy(np.int64), "logit": scored["logit"].to_numpy(float)})
    return write_parquet_atomic(frame, Path(folder) / OOF_FILE)


def add_out_of_fold(folder: str | Path, scored: pd.DataFrame) -> None:
    """Add to ``oof.parquet`` the rows of ``scored`` (``logit`` of the member that did not see them, as ``score``
    with ``out_of_fold`` gives) that the ensemble learnt from; other rows are left out."""
    folds = folds_of(folder, scored)
    new = scored[folds >= 0].assign(fold=folds[folds >= 0])
    if new.empty:
        return
    path = Path(folder) / OOF_FILE
    old = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["id", "task", "fold", "logit"])
    replaced = set(_keys(new))
    old = old[[key not in replaced for key in _keys(old)]]
    write_out_of_fold(folder, pd.concat([old, new[["id", "task", "fold", "logit"]].astype({"id": str})],
                                        ignore_index=True))


def recorded_out_of_fold(folder: str | Path, df: pd.DataFrame) -> np.ndarray:
    """The log-odds recorded in ``oof.parquet`` for df's rows (matched by task and id); NaN where none is."""
    path = Path(folder) / OOF_FILE
    if not path.is_file() or df.empty:
        return np.full(len(df), np.nan)
    oof = pd.read_parquet(path)
    known = dict(zip(_keys(oof), oof["logit"].to_numpy(float)))
    return np.array([known.get(key, np.nan) for key in _keys(df)], dtype=float)


def folds_of(folder: str | Path, df: pd.DataFrame) -> np.ndarray:
    """The fold of each of df's rows that the ensemble learnt from (matched by task and id); -1 for other rows."""
    assignment = fold_assignment(folder)
    if df.empty or "id" not in df or "task" not in df or assignment.empty:
        return np.full(len(df), -1, dtype=np.int64)
    known = dict(zip(_keys(assignment), assignment["fold"].to_numpy(np.int64)))
    return np.array([known.get(key, -1) for key in _keys(df)], dtype=np.int64)


def _member_logodds(score_member: ScoreMember, member: Path, rows: pd.DataFrame) -> np.ndarray:
    logit = score_member(member, rows)["logit"].to_numpy(float)
    if len(logit) != len(rows):
        raise ValueError(f"{member}: scored {len(logit)} rows of {len(rows)}")
    return logit


def score(folder: str | Path, df: pd.DataFrame, score_member: ScoreMember, *,
          out_of_fold: bool = False) -> pd.DataFrame:
    """df's rows with ``logit``, the mean of the members' log-odds, and ``score`` = sigmoid(logit).

    Args:
        folder: the ensemble folder.
        df: pairs-table rows.
        score_member: scores rows with one member folder (``qckit.heads.score_folder`` for a single model).
        out_of_fold: rows the ensemble learnt from (by task and id, ``folds.parquet``) are scored by the one
            member that did not see their fold, the others by the mean: honest scores for dev rows and for
            altered copies of them that keep their ids (step 07's typo'd queries).
    """
    members = member_dirs(folder)
    own = folds_of(folder, df) if out_of_fold else np.full(len(df), -1, dtype=np.int64)
    if own.max(initial=-1) >= len(members):
        raise ValueError(f"{Path(folder) / FOLDS_FILE}: folds up to {own.max()} for {len(members)} members")
    logits = np.zeros(len(df))
    rest = own < 0
    if rest.any():
        logits[rest] = np.mean([_member_logodds(score_member, m, df[rest]) for m in members], axis=0)
    for fold, member in enumerate(members):
        mine = own == fold
        if mine.any():
            logits[mine] = _member_logodds(score_member, member, df[mine])
    result = df.copy()
    result["logit"] = logits
    result["score"] = 1.0 / (1.0 + np.exp(-logits))
    return result


def start_training(folder: str | Path) -> None:
    """Ready ``folder`` for an ensemble's training: drop the manifest and recorded scores of an earlier one
    (written again when every member is trained) and a single model's metadata (the folder is no longer one
    model). Members' own checkpoints stay, so an interrupted member resumes."""
    folder = Path(folder)
    for name in (MANIFEST_FILE, OOF_FILE, FOLDS_FILE, META_FILE):
        (folder / name).unlink(missing_ok=True)


def clear(folder: str | Path) -> None:
    """Remove an earlier ensemble from ``folder`` (manifest, recorded files, ``fold-*`` members) before one model
    is trained into it: a stale member's checkpoints would otherwise lie inside the new model's folder."""
    folder = Path(folder)
    for name in (MANIFEST_FILE, OOF_FILE, FOLDS_FILE):
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir():
        for member in folder.glob("fold-*"):
            if member.is_symlink():
                member.unlink()
            elif member.is_dir():
                shutil.rmtree(member)
