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
    """`tqdm.auto.tqdm`, or plain `tqdm` disabled when running headless (unless `disable` is given).

    Headless runs never import tqdm.auto: in a kernel without widgets it writes a warning into the
    executed notebook.
    """
    if headless() and kwargs.get("disable", True):
        from tqdm import tqdm

        kwargs["disable"] = True
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def quiet_libraries() -> None:
    """In headless runs, keep transformers' progress bars and load reports out of the stored notebook."""
    if not headless():
        return
    import warnings

    # tqdm.auto (imported by transformers) warns when ipywidgets is missing from the kernel
    warnings.filterwarnings("ignore", message="IProgress not found")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
