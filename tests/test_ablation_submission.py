"""`qckit ablate` on the smoke profile (shared steps run once) and `qckit predict` submission files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def ablation(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("abl")
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "ablate", "-p", "params/smoke.yaml", "--variants", "baseline,all",
         "--ablation-id", "a", "--outputs-dir", str(out), "-q"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    return proc, out / "a"


def test_ablation_runs_every_variant_and_shares_the_audit(ablation):
    proc, root = ablation
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = json.loads((root / "baseline" / "run_status.json").read_text())
    full = json.loads((root / "all" / "run_status.json").read_text())
    assert all(s["status"] == "done" for s in base["steps"])
    status = {s["step"]: s["status"] for s in full["steps"]}
    assert status["01_data_audit"] == "shared"  # executed once, in the first variant
    assert status["05_fine_tuning"] == "done"  # different training data: executed again
    log = (root / "all" / "run.log").read_text()
    assert "01_data_audit: shared from" in log


def test_ablation_report_has_the_table_per_task_and_variant(ablation):
    proc, root = ablation
    html = (root / "index.html").read_text()
    for text in ("baseline", "all", "QC", "QI", "paper_dev_f1", "all_positive_f1", "data:image/png;base64,"):
        assert text in html
    assert "0.8919" in html  # the paper's figure for the full method, for reference
    assert "<script" not in html


def test_predict_writes_official_submission_files(ablation, tmp_path):
    _, root = ablation
    run = root / "all"
    inputs = [run / "data" / "raw" / "test_QC.jsonl", run / "data" / "raw" / "test_QI.jsonl"]
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "predict", "--run", str(run), "--input", *map(str, inputs),
         "--output", str(tmp_path / "sub")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task, src in zip(("QC", "QI"), inputs):
        original = [json.loads(line) for line in src.read_text().splitlines()]
        submitted = [json.loads(line) for line in (tmp_path / "sub" / f"submit_{task}.txt").read_text().splitlines()]
        assert len(submitted) == len(original)
        assert [s["id"] for s in submitted] == [o["id"] for o in original]
        for s, o in zip(submitted, original):
            assert {k: v for k, v in s.items() if k != "prediction"} == o
            assert list(s)[:-1] == list(o) and s["prediction"] in (0, 1)
    names = zipfile.ZipFile(tmp_path / "sub" / "submit.zip").namelist()
    assert sorted(names) == ["submit_QC.txt", "submit_QI.txt"]


def test_predict_refuses_a_task_the_run_has_no_model_for(ablation, tmp_path):
    _, root = ablation
    run = tmp_path / "qc-only"
    shutil.copytree(root / "all", run)
    for step, key in (("05_fine_tuning", "plan"), ("06_calibration", "thresholds")):
        path = run / "metrics" / f"{step}.json"
        metrics = json.loads(path.read_text())
        if key == "plan":
            metrics["plan"] = {name: [t for t in tasks if t != "QI"] for name, tasks in metrics["plan"].items()}
        else:
            metrics["thresholds"].pop("QI")
        path.write_text(json.dumps(metrics))
    proc = subprocess.run(
        [sys.executable, "-m", "qckit", "predict", "--run", str(run), "--input",
         str(run / "data" / "raw" / "test_QI.jsonl"), "--output", str(tmp_path / "sub")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 2
    assert "task QI" in proc.stderr and "QC only" in proc.stderr
    assert not (tmp_path / "sub" / "submit_QI.txt").exists()
