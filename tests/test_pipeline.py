"""The chain runner on small purpose-built notebooks: order, resume, failures, kill -9, no overwrite."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, write_notebook

from qckit.pipeline import RunError, discover_steps, run_chain, select_steps

WRITE_TABLE = """
import pandas as pd
from qckit.runs import Run
from qckit.config import load_params
params = load_params(params_file)
run = Run(run_dir)
run.write_table("first", pd.DataFrame({"x": range(1000), "seed": params.run.seed}))
run.write_metrics("01_first", {"headline": {"rows": 1000}})
"""
READ_AND_WRITE = """
import os, time
import pandas as pd
from qckit.runs import Run
run = Run(run_dir)
df = run.read_table("first")
if os.environ.get("QCKIT_TEST_SLOW") == "1":
    (run.root / "step2-started").write_text("1")
    time.sleep(60)
run.write_table("second", df.assign(y=df.x * 2))
run.write_metrics("02_second", {"rows": len(df), "sum_y": int((df.x * 2).sum())})
"""


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "01_first.ipynb", [WRITE_TABLE])
    write_notebook(nbdir / "02_second.ipynb", [READ_AND_WRITE])
    return nbdir


def _run(params: Path, nbdir: Path, out: Path, **kw):
    return run_chain(params, notebooks_dir=nbdir, outputs_dir=out, progress=False, **kw)


def test_discover_and_select(chain: Path):
    steps = discover_steps(chain)
    assert steps == ["01_first", "02_second"]
    assert select_steps(steps, ["2"]) == ["02_second"]
    assert select_steps(steps, ["02_second", "01"]) == steps
    with pytest.raises(RunError, match="unknown step '07'"):
        select_steps(steps, ["07"])


def test_chain_runs_in_order_and_resume_skips(chain: Path, smoke_params: Path, tmp_path: Path):
    out = tmp_path / "outputs"
    first = _run(smoke_params, chain, out, run_id="r1")
    assert first.ok and [s.status for s in first.steps] == ["done", "done"]
    run = first.run
    assert run.read_table("second").y.sum() == sum(2 * x for x in range(1000))
    assert (run.root / "notebooks" / "02_second.ipynb").exists()
    assert (run.root / "params.yaml").exists() and (run.root / ".done" / "01_first.json").exists()
    assert first.report_index and first.report_index.exists()

    again = _run(smoke_params, chain, out, run_id="r1", resume=True)
    assert [s.status for s in again.steps] == ["skipped", "skipped"]

    # a damaged artifact makes its step (and everything after it) run again
    run.table_path("first").write_bytes(b"garbage")
    third = _run(smoke_params, chain, out, run_id="r1", resume=True)
    assert [s.status for s in third.steps] == ["done", "done"]
    assert len(run.read_table("first")) == 1000


def test_existing_run_is_never_overwritten(chain: Path, smoke_params: Path, tmp_path: Path):
    out = tmp_path / "outputs"
    _run(smoke_params, chain, out, run_id="r1")
    with pytest.raises(RunError, match="already exists; pass --resume"):
        _run(smoke_params, chain, out, run_id="r1")
    changed = tmp_path / "changed.yaml"
    profile = yaml.safe_load(smoke_params.read_text())
    profile["run"]["seed"] = 14
    changed.write_text(yaml.safe_dump(profile))
    with pytest.raises(RunError, match="different parameters"):
        _run(changed, chain, out, run_id="r1", resume=True)


def test_failing_cell_is_reported_with_notebook_cell_and_error(smoke_params: Path, tmp_path: Path):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "01_ok.ipynb", ["x = 1"])
    write_notebook(nbdir / "02_broken.ipynb", ["y = 2", "raise ValueError('column target is empty')"])
    write_notebook(nbdir / "03_never.ipynb", ["z = 3"])
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "run", "-p", str(smoke_params), "--run-id", "bad", "-q",
         "--notebooks-dir", str(nbdir), "--outputs-dir", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    saved = out / "bad" / "notebooks" / "02_broken.failed.ipynb"
    assert "step 02_broken failed in cell" in proc.stderr
    assert "ValueError: column target is empty" in proc.stderr
    assert str(saved) in proc.stderr and saved.exists()
    assert not (out / "bad" / "notebooks" / "03_never.ipynb").exists()
    status = json.loads((out / "bad" / "run_status.json").read_text())
    assert [s["status"] for s in status["steps"]] == ["done", "failed"]


def test_invalid_params_stop_before_anything_runs(tmp_path: Path, chain: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrun:\n  cell_timeout_s: soon\n")
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "run", "-p", str(bad), "--notebooks-dir", str(chain),
         "--outputs-dir", str(tmp_path / "outputs")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert "run.cell_timeout_s" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_killed_run_resumes_and_completes(chain: Path, smoke_params: Path, tmp_path: Path):
    out = tmp_path / "outputs"
    env = dict(os.environ, QCKIT_TEST_SLOW="1")
    cmd = [sys.executable, "-m", "qckit", "run", "-p", str(smoke_params), "--run-id", "k", "-q",
           "--notebooks-dir", str(chain), "--outputs-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = out / "k" / "step2-started"
    deadline = time.time() + 180
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), "step 2 never started"
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-step, like kill -9
    proc.wait(timeout=30)
    run_dir = out / "k"
    assert not (run_dir / ".done" / "02_second.json").exists()
    assert not (run_dir / "notebooks" / "02_second.ipynb").exists()

    result = _run(smoke_params, chain, out, run_id="k", resume=True)
    assert [s.status for s in result.steps] == ["skipped", "done"]
    second = pd.read_parquet(run_dir / "data" / "second.parquet")
    assert len(second) == 1000
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / ".scratch").exists()
    assert not (run_dir / "run.lock").exists()
