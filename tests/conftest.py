from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
# tests import benchmarks/ (not an installed package) as well as qckit: the repository root must be importable
# whether pytest runs as `python -m pytest` (which adds the working folder) or as the `pytest` script
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (vLLM / bitsandbytes path)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A step notebook: a tagged parameters cell, then the given code cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('params_file = ""\nrun_dir = ""\nrecompute = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def smoke_params(tmp_path: Path) -> Path:
    dst = tmp_path / "smoke.yaml"
    shutil.copy(REPO / "params" / "smoke.yaml", dst)
    return dst


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None
