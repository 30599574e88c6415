"""Every committed step notebook: built by scripts/make_notebook.py, thin, without outputs."""
from __future__ import annotations

import importlib.util

import nbformat
import pytest

from conftest import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebook", REPO / "scripts" / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def test_every_committed_notebook_has_a_generator():
    committed = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert committed == sorted(GENERATOR.NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(GENERATOR.NOTEBOOKS))
def test_notebook_matches_its_generator_and_is_clean(name):
    path = REPO / "notebooks" / f"{name}.ipynb"
    built = nbformat.writes(GENERATOR.build_notebook(GENERATOR.NOTEBOOKS[name]()))
    assert path.read_text(encoding="utf-8").strip() == built.strip(), (
        f"notebooks/{name}.ipynb differs from its cells in scripts/; "
        f"regenerate it with `python scripts/make_notebook.py {name}`")
    nb = nbformat.read(str(path), as_version=4)
    first = nb.cells[0]
    assert first.metadata.get("tags") == ["parameters"]
    assert sorted(line.split("=")[0].strip() for line in first.source.splitlines()) == ["params_file", "run_dir"]
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
