"""The run directory: where every step reads and writes, atomically.

```
outputs/<run-id>/
  params.yaml  data/  models/  predictions/  metrics/<step>.json  notebooks/  report/  run.log
```

Every write goes to a temporary name in the same folder and is renamed into place, so a step killed
mid-write leaves either the old file or the new one, never half of one.

Example:
    >>> run = Run("outputs/demo-1")
    >>> run.write_table("train", df)          # outputs/demo-1/data/train.parquet
    >>> run.write_metrics("01_data_audit", {"rows": 10})
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

# Newest first: 04 noise filtering > 03 hard negatives > 02 translation > 01 audit.
TRAINING_TABLES = ("train_clean", "train_negatives", "train_translated", "train")
SUBDIRS = ("data", "models", "predictions", "metrics", "notebooks", "report")


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where the system allows.

    Linux shows it in ``/proc/self/status``; elsewhere ``os.umask`` must set it to read it, which is put
    back at once (a file another thread creates in between would get mode 0o077-masked, never wider).
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The file gets ``mode`` (e.g. 0o644 for reports meant to be shared), by default what a plain
    ``open(path, "w")`` gives: 0o666 less the umask. (``mkstemp`` creates 0600 files, and the rename keeps
    the temporary file's mode.) On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask() if mode is None else mode)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) atomically; ``mode`` as in :func:`atomic_path`."""
    with atomic_path(path, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths: what step metrics usually hold
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_parquet_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


class Run:
    """Paths and atomic readers/writers of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @property
    def id(self) -> str:
        return self.root.name

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def ensure(self) -> Run:
        for sub in SUBDIRS:
            self.path(sub).mkdir(parents=True, exist_ok=True)
        return self

    # tables -------------------------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        return self.path("data", f"{name}.parquet")

    def has_table(self, name: str) -> bool:
        return self.table_path(name).exists()

    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        return write_parquet_atomic(df, self.table_path(name))

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.table_path(name)
        if not path.exists():
            raise FileNotFoundError(f"{path}: table '{name}' not found; run the step that writes it first")
        return pd.read_parquet(path)

    def training_table_name(self, *, before: str | None = None) -> str:
        """The newest training table: each data step writes its own, later steps read the latest.

        ``before`` (one of ``TRAINING_TABLES``): the newest table written before that one, what the step
        writing it reads, so a rerun of a step never reads its own or a later step's output.
        """
        names = TRAINING_TABLES if before is None else TRAINING_TABLES[TRAINING_TABLES.index(before) + 1:]
        for name in names:
            if self.has_table(name):
                return name
        raise FileNotFoundError(f"{self.path('data')}: no training table; run step 01 first")

    def read_training_table(self) -> pd.DataFrame:
        return self.read_table(self.training_table_name())

    # metrics ------------------------------------------------------------------------------------
    def metrics_path(self, step: str) -> Path:
        return self.path("metrics", f"{step}.json")

    def write_metrics(self, step: str, metrics: dict[str, Any]) -> Path:
        return write_json_atomic(self.metrics_path(step), metrics)

    def read_metrics(self, step: str) -> dict[str, Any]:
        path = self.metrics_path(step)
        if not path.exists():
            raise FileNotFoundError(f"{path}: metrics of step '{step}' not found; run that step first")
        return json.loads(path.read_text(encoding="utf-8"))

    def all_metrics(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in sorted(self.path("metrics").glob("*.json")):
            out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
        return out

    def log(self, message: str) -> None:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path("run.log"), "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")
