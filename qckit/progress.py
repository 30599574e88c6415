"""Progress bars that show in JupyterLab and a terminal and stay quiet in headless runs.

Papermill stores every tqdm update in the executed notebook; the runner sets QCKIT_HEADLESS=1 for
the kernel so bars are disabled there.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def headless() -> bool:
    return os.environ.get("QCKIT_HEADLESS") == "1"


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """`tqdm.auto.tqdm`, disabled when running headless (unless `disable` is given)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", headless())
    return tqdm(iterable, **kwargs)
