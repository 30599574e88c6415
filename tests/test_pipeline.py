"""The chain runner on small purpose-built notebooks: order, resume, failures, kill -9, no overwrite, one process
per run, run ids, unusable outputs folders."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, write_notebook

from qckit.pipeline import RunError, check_run_id, discover_steps, lock_run, run_chain, select_steps
from qckit.runs import Run

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

SLEEPY = """
import time
from qckit.runs import Run
run = Run(run_dir)
time.sleep(2)
run.write_metrics("01_sleepy", {"headline": {"slept_s": 2}})
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


def _cli_run(params: Path, nbdir: Path, out: Path, run_id: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qckit", "run", "-p", str(params), "--run-id", run_id, "-q",
            "--notebooks-dir", str(nbdir), "--outputs-dir", str(out), *extra]


def _one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr.strip()


def test_two_resumes_at_once_exactly_one_runs(smoke_params: Path, tmp_path: Path):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "01_sleepy.ipynb", [SLEEPY])
    out = tmp_path / "outputs"
    run_dir = out / "X"
    cmd = _cli_run(smoke_params, nbdir, out, "X", "--resume")
    for attempt in range(5):  # the first on a fresh run, then on the finished run with its step to redo
        shutil.rmtree(run_dir / ".done", ignore_errors=True)
        procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        codes = [p.returncode for p in procs]
        assert sorted(codes) == [0, 2], (attempt, codes, outputs)
        winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
        message = _one_line_error(outputs[loser][1])
        assert message == (f"qckit run: run X ({run_dir.resolve()}) is being run by process {procs[winner].pid}; "
                           "wait for it to finish or stop it, then resume"), (attempt, message)
        status = json.loads((run_dir / "run_status.json").read_text())
        assert status["ok"] and [s["status"] for s in status["steps"]] == ["done"], (attempt, status)
        assert not (run_dir / "run.lock").exists()
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / ".scratch").exists()


def test_a_locked_run_is_not_touched_and_a_dead_holder_never_blocks(chain: Path, smoke_params: Path,
                                                                     tmp_path: Path):
    out = tmp_path / "outputs"
    run_dir = out / "L"
    run_dir.mkdir(parents=True)
    writing = run_dir / "data" / ".first.parquet.abc123.tmp"  # the holder's file being written
    writing.parent.mkdir()
    writing.write_text("half")
    (run_dir / ".scratch").mkdir()
    with lock_run(Run(run_dir)):
        proc = subprocess.run(_cli_run(smoke_params, chain, out, "L", "--resume"), capture_output=True, text=True,
                              cwd=REPO, timeout=300)
        assert proc.returncode == 2
        assert f"run L ({run_dir.resolve()}) is being run by process {os.getpid()}" in _one_line_error(proc.stderr)
        with pytest.raises(RunError, match=f"is being run by process {os.getpid()}"):  # in-process too
            _run(smoke_params, chain, out, run_id="L", resume=True)
        # nothing was written or cleaned up without the lock
        assert writing.exists() and (run_dir / ".scratch").is_dir()
        assert sorted(p.name for p in run_dir.iterdir()) == [".scratch", "data", "run.lock"]
        assert (run_dir / "run.lock").read_text().strip() == str(os.getpid())
    assert not (run_dir / "run.lock").exists()
    # a lock file left by a process that died (kill -9) holds no lock: the next run goes ahead and cleans up
    (run_dir / "run.lock").write_text("999999999\n")
    result = _run(smoke_params, chain, out, run_id="L", resume=True)
    assert result.ok and [s.status for s in result.steps] == ["done", "done"]
    assert not writing.exists() and not (run_dir / ".scratch").exists() and not (run_dir / "run.lock").exists()


@pytest.mark.parametrize("bad", ["../../x", "../x", "a/b", "/tmp/x", ".hidden", "..", ".", "", "x\n", "a b", "x" * 201])
def test_run_ids_are_names_not_paths(bad: str, chain: Path, smoke_params: Path, tmp_path: Path):
    out = tmp_path / "deep" / "outputs"
    with pytest.raises(RunError, match="invalid run id"):
        _run(smoke_params, chain, out, run_id=bad)
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x").exists()


def test_run_id_checks_on_the_command_line(chain: Path, smoke_params: Path, tmp_path: Path):
    for good in ("cikm-1", "a.b_c-2", "R2"):
        assert check_run_id(good) == good
    out = tmp_path / "a" / "b" / "outputs"
    proc = subprocess.run(_cli_run(smoke_params, chain, out, "../../x"), capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "invalid run id '../../x'" in _one_line_error(proc.stderr)
    assert not (tmp_path / "a").exists()
    proc = subprocess.run([sys.executable, "-m", "qckit", "ablate", "-p", str(smoke_params), "-q",
                           "--ablation-id", "../abl", "--outputs-dir", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "invalid ablation id '../abl'" in _one_line_error(proc.stderr)
    assert not (tmp_path / "a").exists()


def test_unusable_outputs_dir_is_a_one_line_error(chain: Path, smoke_params: Path, tmp_path: Path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(_cli_run(smoke_params, chain, blocker / "sub", "r"), capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    message = _one_line_error(proc.stderr)
    assert f"cannot create the run directory {blocker / 'sub' / 'r'} (outputs folder {blocker / 'sub'})" in message
    assert "Not a directory" in message
    # the run id names a file: not a run directory, with or without --resume
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "f").write_text("")
    for resume in (False, True):
        with pytest.raises(RunError, match=f"cannot use {out / 'f'} as a run directory: it is not a folder"):
            _run(smoke_params, chain, out, run_id="f", resume=resume)
    # any other OSError creating the run directory or its lock: read-only, permission denied, disk full
    real_mkdir, real_open = Path.mkdir, os.open

    def deny_mkdir(self, *a, **k):
        if self.name == "denied":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    def full_open(path, *a, **k):
        if str(path).endswith("run.lock"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(Path, "mkdir", deny_mkdir)
    with pytest.raises(RunError, match=f"cannot create the run directory {out / 'denied'}.*Permission denied"):
        _run(smoke_params, chain, out, run_id="denied")
    monkeypatch.setattr(os, "open", full_open)
    with pytest.raises(RunError, match=f"cannot write to the run directory {out / 'full'}: No space left"):
        _run(smoke_params, chain, out, run_id="full")


def test_ablation_into_an_unusable_outputs_dir_is_a_one_line_error(tmp_path: Path, smoke_params: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "qckit", "ablate", "-p", str(smoke_params), "--variants", "baseline",
                           "--outputs-dir", str(blocker / "sub"), "--ablation-id", "abl"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot create the ablation folder" in proc.stderr and str(blocker / "sub") in proc.stderr
