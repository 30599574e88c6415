"""What every benchmark shares: where the real data is, the machine, timing, and the result file.

Example:
    >>> from benchmarks.common import best_time, shared_data_dir, write_result
    >>> data = shared_data_dir()                  # None when ../shared/data is absent
    >>> seconds = best_time(lambda: sum(range(10**6)), repeats=5)
    >>> write_result("example", baseline="nothing", figures={"s": seconds}, goal="run", met=True, data="none")
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qckit.runs import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"


def shared_data_dir() -> Path | None:
    """The real data folder: ``$QCKIT_SHARED_DATA``, else ``../shared/data`` beside the repository.

    Returns None when it does not exist, so callers can skip or say clearly that the data is missing.
    """
    env = os.environ.get("QCKIT_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def machine_info() -> str:
    """Cores and memory in words, e.g. ``"2 cores (AMD EPYC 7B13), 23 GiB memory"``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = f" ({line.split(':', 1)[1].strip()})"
                break
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB memory"
    except (ValueError, OSError, AttributeError):
        memory = "memory unknown"
    return f"{cores} cores{model}, {memory}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # macOS reports bytes, Linux KiB


@dataclass
class Timer:
    seconds: float = float("nan")


@contextlib.contextmanager
def timed() -> Iterator[Timer]:
    """Wall-clock time of a block: ``with timed() as t: ...`` then ``t.seconds``."""
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def best_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """The fastest of ``repeats`` runs, in seconds: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(repeats):
        with timed() as t:
            fn()
        best = min(best, t.seconds)
    return best


def write_result(name: str, *, baseline: str, figures: dict[str, Any], goal: str, met: bool,
                 data: str) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the fields DESIGN.md names, plus machine and date."""
    result = {
        "benchmark": name, "baseline": baseline, "figures": figures, "goal": goal, "met": bool(met),
        "data": data, "machine": machine_info(), "date": dt.date.today().isoformat(),
    }
    return write_json_atomic(RESULTS_DIR / f"{name}.json", result)
