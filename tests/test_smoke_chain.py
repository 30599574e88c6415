"""The real chain on params/smoke.yaml, end to end, through the CLI, with the report checked."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
from conftest import REPO

from qckit.pipeline import discover_steps, kernel_name
from qckit.steps import STEPS


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("outputs")
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "run", "-p", "params/smoke.yaml", "--run-id", "smoke", "-q",
         "--outputs-dir", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    return proc, out / "smoke"


def test_smoke_chain_completes_and_prints_the_report(smoke_run):
    proc, run_dir = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = run_dir / "report" / "index.html"
    assert f"report: {index}" in proc.stdout
    status = json.loads((run_dir / "run_status.json").read_text())
    assert [s["step"] for s in status["steps"]] == discover_steps()
    assert all(s["status"] == "done" for s in status["steps"])
    for step in discover_steps():
        assert (run_dir / "notebooks" / f"{step}.ipynb").exists()
        assert (run_dir / "report" / f"{step}.html").exists()
        assert (run_dir / ".done" / f"{step}.json").exists()


def test_audit_step_writes_tables_and_metrics(smoke_run):
    _, run_dir = smoke_run
    train = pd.read_parquet(run_dir / "data" / "train.parquet")
    dev = pd.read_parquet(run_dir / "data" / "dev.parquet")
    assert {"id", "task", "language", "query", "target", "label", "origin", "source_id"} <= set(train.columns)
    assert set(train.task) == {"QC", "QI"} and len(dev) > 0
    metrics = json.loads((run_dir / "metrics" / "01_data_audit.json").read_text())
    # the demo leaves de, it, pl, ar out of training, as the challenge did
    assert {"de", "it", "pl", "ar"} <= set(metrics["zero_shot_languages"])
    assert not {"de", "it", "pl", "ar"} & set(train.language)


def test_report_index_shows_headline_figures_and_links(smoke_run):
    _, run_dir = smoke_run
    html = (run_dir / "report" / "index.html").read_text()
    assert "01_data_audit" in html and "href='01_data_audit.html'" in html
    assert "completed" in html
    page = (run_dir / "report" / "01_data_audit.html").read_text()
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", page)) >= 3
    assert "run_or_load(" not in page  # code hidden


def test_resume_of_a_finished_run_skips_every_step(smoke_run):
    _, run_dir = smoke_run
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "run", "-p", "params/smoke.yaml", "--run-id", "smoke", "-q",
         "--outputs-dir", str(run_dir.parent), "--resume"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((run_dir / "run_status.json").read_text())
    assert all(s["status"] == "skipped" for s in status["steps"])


def _file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("step", STEPS)
def test_notebook_explores_a_finished_run_without_changing_it(smoke_run, step, tmp_path):
    """Opening a step's notebook on a finished run shows that run's results and writes nothing into it."""
    _, run_dir = smoke_run
    before = _file_hashes(run_dir)
    out = tmp_path / f"{step}.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / f"{step}.ipynb"), str(out),
                        parameters={"params_file": "../params/default.yaml", "run_dir": str(run_dir)},
                        kernel_name=kernel_name(), progress_bar=False, cwd=str(REPO / "notebooks"))
    assert _file_hashes(run_dir) == before
    nb = nbformat.read(str(out), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    if step == "01_data_audit":  # the run's own tables were shown (default.yaml would make other data)
        rows = len(pd.read_parquet(run_dir / "data" / "train.parquet"))
        assert f"train {rows:,}" in "".join(o.get("text", "") for o in outputs)
