"""File modes of what a run writes: reports are shared (0644), data, models and metrics keep the umask."""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from qckit.ablation import ablation_table, write_ablation_report
from qckit.report import REPORT_FILE_MODE, render_report
from qckit.runs import Run, atomic_path, current_umask, write_text_atomic


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _executed_run(root: Path) -> Run:
    """A run with one executed notebook (a Markdown cell, a code cell with its output), a table, metrics."""
    run = Run(root).ensure()
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print('hello')")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Step\n\nSome *text*."), code]
    nbformat.write(nb, str(run.path("notebooks", "01_step.ipynb")))
    run.write_table("train", pd.DataFrame({"query": ["a", "b"], "label": [1, 0]}))
    run.write_metrics("01_step", {"rows": 2})
    return run


@pytest.mark.parametrize("mask", [0o077, 0o022, 0o002])
def test_current_umask_reads_without_changing_it(mask: int):
    with umask(mask):
        assert current_umask() == mask
        assert current_umask() == mask  # unchanged by reading
        assert os.umask(mask) == mask


def test_report_files_are_world_readable_while_data_keeps_a_private_umask(tmp_path: Path):
    with umask(0o077):
        run = _executed_run(tmp_path / "run")
        index = render_report(run.root)
    files = sorted(p for p in run.path("report").rglob("*") if p.is_file())
    assert index in files and run.path("report", "01_step.html") in files
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(0o644) for p in files}
    assert REPORT_FILE_MODE == 0o644
    assert _mode(run.table_path("train")) == 0o600
    assert _mode(run.metrics_path("01_step")) == 0o600
    assert not list(run.root.rglob(".*.tmp"))  # no temporary file left behind


def test_data_follows_an_open_umask(tmp_path: Path):
    with umask(0o022):
        run = _executed_run(tmp_path / "run")
        render_report(run.root)
    assert _mode(run.table_path("train")) == 0o644
    assert _mode(run.metrics_path("01_step")) == 0o644
    assert _mode(run.path("report", "index.html")) == 0o644
    with umask(0o002):
        run.write_table("train", pd.DataFrame({"query": ["c"], "label": [1]}))  # rewriting takes the new umask
    assert _mode(run.table_path("train")) == 0o664


def test_ablation_index_is_world_readable(tmp_path: Path):
    with umask(0o077):
        index = write_ablation_report(tmp_path, ablation_table(tmp_path, ["baseline"]), {})
    assert index == tmp_path / "index.html" and _mode(index) == 0o644


def test_atomic_path_explicit_mode_and_failure(tmp_path: Path):
    with umask(0o077):
        path = write_text_atomic(tmp_path / "shared.txt", "x", mode=0o640)
        assert _mode(path) == 0o640
        with pytest.raises(RuntimeError), atomic_path(tmp_path / "never.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert not (tmp_path / "never.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.txt"]
