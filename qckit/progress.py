"""Progress that shows in JupyterLab and a terminal, reaches ``run.log`` in headless runs, and stays out of
executed notebooks.

Interactively, ``progress`` is ``tqdm.auto`` (a widget in JupyterLab, a bar in a terminal). In a chain run
the kernel runs headless (``QCKIT_HEADLESS=1``, set by ``qckit.pipeline``) and papermill would store every
bar update in the executed notebook, so bars print nothing there; instead, when the runner names the run's
log (``QCKIT_RUN_LOG``), a bar writes one line to it at most every ``HEARTBEAT_S`` seconds ("embedding
query texts: 12000/67000 ...") and when it ends. ``stage`` names a long phase that has no bar of its own
(fitting trees, a Trainer run) and a heartbeat thread writes "still <phase>" whenever nothing else was
written for ``HEARTBEAT_S`` seconds; ``report`` writes one line. The runner copies the log's new lines to
the terminal while the step runs.

Example:
    >>> with stage("fitting trees on 53,622 rows"):
    ...     model.fit(X, y)
    >>> for batch in progress(batches, desc="scoring", unit="batch"):
    ...     ...
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

HEARTBEAT_S = float(os.environ.get("QCKIT_HEARTBEAT_S", "30"))
_lock = threading.Lock()
_state: dict[str, Any] = {"last": 0.0, "phases": [], "thread": None}


def headless() -> bool:
    return os.environ.get("QCKIT_HEADLESS") == "1"


def run_log() -> str | None:
    """The run log a headless step reports its progress to (set by the chain runner), or None."""
    return os.environ.get("QCKIT_RUN_LOG") or None


def report(message: str) -> None:
    """Append one progress line (``<time> <step>: <message>``) to the run log, when there is one."""
    path = run_log()
    if not path:
        return
    step = os.environ.get("QCKIT_STEP", "qckit")
    line = f"{dt.datetime.now().isoformat(timespec='seconds')} {step}: {' '.join(message.split())}\n"
    with _lock:
        _state["last"] = time.monotonic()
        with open(path, "a", encoding="utf-8") as fh:  # one short append: lines never interleave
            fh.write(line)


@contextlib.contextmanager
def stage(message: str) -> Iterator[None]:
    """Report that a long phase starts and ends; while it runs, a heartbeat line every ``HEARTBEAT_S`` s."""
    start = time.monotonic()
    report(f"{message} ...")
    _state["phases"].append((message, start))
    _ensure_heartbeat()
    try:
        yield
    finally:
        _state["phases"].remove((message, start))
        report(f"{message}: done in {time.monotonic() - start:.0f} s")


def _ensure_heartbeat() -> None:
    if not run_log() or (_state["thread"] and _state["thread"].is_alive()):
        return
    thread = threading.Thread(target=_heartbeat, name="qckit-heartbeat", daemon=True)
    _state["thread"] = thread
    thread.start()


def _heartbeat() -> None:
    while True:
        time.sleep(min(HEARTBEAT_S / 2, 5.0))
        phases = list(_state["phases"])
        if phases and time.monotonic() - _state["last"] >= HEARTBEAT_S:
            message, start = phases[-1]
            report(f"still {message} ({time.monotonic() - start:.0f} s)")


class _LogLines(io.TextIOBase):
    """A file for tqdm that turns each refresh of a bar into one line of the run log."""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            report(line)
        return len(text)


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """``tqdm.auto.tqdm`` interactively; headless, a bar that writes to the run log (or nothing).

    Headless runs never import tqdm.auto: in a kernel without widgets it writes a warning into the
    executed notebook. ``disable=True`` silences the bar everywhere.
    """
    if headless():
        if kwargs.get("disable") or not run_log():
            kwargs["disable"] = True
        else:
            kwargs.update(file=_LogLines(), mininterval=HEARTBEAT_S, miniters=1, ascii=True, ncols=100)
            _ensure_heartbeat()
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    with warnings.catch_warnings():  # a kernel without ipywidgets: tqdm falls back to text, and says so
        warnings.filterwarnings("ignore", message="IProgress not found")
        return auto_tqdm(iterable, **kwargs)


def quiet_libraries() -> None:
    """In headless runs, keep transformers' progress bars and load reports out of the stored notebook."""
    if not headless():
        return
    # tqdm.auto (imported by transformers) warns when ipywidgets is missing from the kernel
    warnings.filterwarnings("ignore", message="IProgress not found")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
