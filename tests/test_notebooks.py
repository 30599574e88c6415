"""The committed step notebooks are the source: clean, parameterised, thin, each calling its step."""
from __future__ import annotations

import ast

import nbformat
import pytest
from conftest import REPO

from qckit.steps import STEPS

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the step module each notebook drives, by the notebook's name
STEP_MODULES = {
    "01_data_audit": "audit", "02_translation": "translation", "03_negative_mining": "negatives",
    "04_noise_detection": "noise", "05_fine_tuning": "training", "06_calibration": "calibration",
    "07_error_analysis": "error_analysis",
}


def test_one_notebook_per_step():
    assert [p.stem for p in NOTEBOOKS] == list(STEPS)
    assert set(STEP_MODULES) == set(STEPS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} carries outputs"
    assert not any("papermill" in c.metadata or "injected-parameters" in c.metadata.get("tags", []) for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_comes_first(path):
    nb = nbformat.read(str(path), as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and first.metadata.get("tags") == ["parameters"]
    names = [t.id for node in ast.parse(first.source).body if isinstance(node, ast.Assign) for t in node.targets]
    assert names == ["params_file", "run_dir", "recompute"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_or_loads_its_own_step(path):
    nb = nbformat.read(str(path), as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    module = STEP_MODULES[path.stem]
    tree = ast.parse(source)
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "qckit.steps" for alias in node.names if alias.name == module}
    assert imported, f"{path.name} does not import qckit.steps.{module}"
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "run_or_load"]
    assert any(isinstance(c.args[0], ast.Name) and c.args[0].id in imported for c in calls), (
        f"{path.name} does not call run_or_load on its step")
    assert any(kw.arg == "recompute" for c in calls for kw in c.keywords)
