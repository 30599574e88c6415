"""Progress inside a step: headless bars and long phases report to run.log and the terminal, not the notebook."""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from conftest import write_notebook

from qckit import progress as progress_mod
from qckit.pipeline import run_chain

WAIT_IN_A_STAGE = """
import time
from qckit.progress import progress, stage
with stage("waiting for the test"):
    time.sleep(1.2)
for _ in progress(range(3), desc="counting", unit="item"):
    time.sleep(0.3)
print("step body done")
"""


@pytest.fixture
def headless_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "run.log"
    monkeypatch.setenv("QCKIT_HEADLESS", "1")
    monkeypatch.setenv("QCKIT_RUN_LOG", str(log))
    monkeypatch.setenv("QCKIT_STEP", "05_fine_tuning")
    monkeypatch.setattr(progress_mod, "HEARTBEAT_S", 0.2)
    return log


def test_headless_bar_writes_lines_to_the_run_log_and_nothing_to_the_terminal(headless_log, capsys):
    for _ in progress_mod.progress(range(4), desc="embedding query texts", unit="text"):
        time.sleep(0.25)
    lines = headless_log.read_text().splitlines()
    assert len(lines) >= 3 and all(" 05_fine_tuning: embedding query texts:" in line for line in lines)
    assert lines[-1].split("embedding query texts:")[1].strip().startswith("100%")
    assert "4/4" in lines[-1]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_a_long_stage_keeps_reporting(headless_log):
    with progress_mod.stage("fitting 300 trees"):
        time.sleep(1.0)
    text = headless_log.read_text()
    assert "fitting 300 trees ..." in text
    assert text.count("still fitting 300 trees") >= 2
    assert "fitting 300 trees: done in" in text


def test_interactive_runs_leave_the_run_log_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("QCKIT_HEADLESS", raising=False)
    monkeypatch.setenv("QCKIT_RUN_LOG", str(tmp_path / "run.log"))
    for _ in progress_mod.progress(range(2), disable=True):
        pass
    assert not (tmp_path / "run.log").exists()


def test_chain_shows_a_steps_progress_on_the_terminal_and_in_run_log(tmp_path, smoke_params, monkeypatch, capsys):
    monkeypatch.setenv("QCKIT_HEARTBEAT_S", "0.3")  # the kernel reads it at import
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "01_slow.ipynb", [WAIT_IN_A_STAGE])
    result = run_chain(smoke_params, notebooks_dir=nbdir, outputs_dir=tmp_path / "out", run_id="r", report=False)
    assert result.ok, result.steps[0].error
    log = (tmp_path / "out" / "r" / "run.log").read_text()
    assert "01_slow: still waiting for the test" in log
    assert "01_slow: counting: 100%" in log
    err = capsys.readouterr().err
    assert "01_slow: still waiting for the test" in err and "01_slow: counting: 100%" in err
    nb = nbformat.read(str(tmp_path / "out" / "r" / "notebooks" / "01_slow.ipynb"), as_version=4)
    stored = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert stored.strip() == "step body done"  # nothing of the progress in the executed notebook
