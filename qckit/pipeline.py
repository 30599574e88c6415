"""The notebook chain: run the step notebooks in order with papermill, resume, summarise failures.

A step is a notebook `notebooks/NN_name.ipynb`; its id is the file stem (`01_data_audit`). Each step
gets two parameters, `params_file` (the run's resolved `params.yaml`) and `run_dir`.

Resume works with done-markers (`<run>/.done/<step>.json`). A marker records a hash of what the step
depended on (its parameter sections, the notebook source, the external data files, and the state
left by the steps before it) and a hash of every file the step wrote. A resumed run skips a step when
its marker's input hash still matches and its outputs are still on disk unchanged; otherwise the step
and everything after it run again (later steps see a new state hash). Papermill writes the executed
notebook into a scratch folder first and it is moved into `notebooks/` only when the step finished,
so a run killed mid-step leaves no half artifact that looks complete.

One process per run: the runner holds an exclusive ``flock`` on ``<run>/run.lock`` from before it
touches the run (clean-up, ``params.yaml``) until the chain and its report are done. The operating
system drops the lock when the process dies, so a killed run never blocks its ``--resume``; a second
process on a run that is being run stops with ``RunError`` (``qckit run`` exits 2) naming the holder.

Example:
    >>> from qckit.pipeline import run_chain
    >>> result = run_chain("params/smoke.yaml", run_id="smoke-1")
    >>> result.report_index
    PosixPath('.../outputs/smoke-1/report/index.html')
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from qckit.config import Params, dump_params, load_params
from qckit.launch import check_launch, with_absolute_paths
from qckit.report import render_report
from qckit.runs import Run, atomic_path, write_json_atomic, write_text_atomic
from qckit.steps import AUDIT, CALIBRATION, ERROR_ANALYSIS, NEGATIVES, NOISE, TRAINING, TRANSLATION

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "qckit"

# Parameter sections each step depends on. A step not listed depends on every section: resuming is
# conservative for steps whose dependencies are not declared here.
STEP_SECTIONS: dict[str, tuple[str, ...]] = {
    AUDIT: ("data", "demo", "audit"),
    TRANSLATION: ("data", "demo", "audit", "translation"),
    NEGATIVES: ("data", "demo", "audit", "translation", "negatives", "models"),
    # training: the finetuned detector trains with it (step_input_hash drops it for the other detector)
    NOISE: ("data", "demo", "audit", "translation", "negatives", "noise", "models", "training"),
    TRAINING: ("data", "demo", "audit", "translation", "negatives", "noise", "models", "training", "augmentation",
               "scoring"),
    CALIBRATION: ("calibration",),
    ERROR_ANALYSIS: ("analysis", "scoring"),  # its typo slice scores dev again with step 05's model(s)
}
# Files a step writes that are not its artifacts (hashing them would make every marker stale).
_VOLATILE_DIRS = ("notebooks", "report", ".done", ".scratch")
_VOLATILE_FILES = ("run.log", "run.lock", "run_status.json", "params.yaml")


class RunError(RuntimeError):
    """The chain cannot start or a step failed; the message says what and where."""


@dataclass
class StepResult:
    step: str
    status: str  # "done", "skipped" (resumed), "shared" (copied from another run), "failed"
    seconds: float = 0.0
    peak_rss_mib: float | None = None
    notebook: Path | None = None
    error: str | None = None


@dataclass
class ChainResult:
    run: Run
    steps: list[StepResult] = field(default_factory=list)
    report_index: Path | None = None

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)


# --- discovery --------------------------------------------------------------------------------------
def discover_steps(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[str]:
    """Step ids of the notebooks present, in order (`01_data_audit`, `02_translation`, ...)."""
    paths = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    return [p.stem for p in paths]


def select_steps(all_steps: list[str], wanted: list[str] | None) -> list[str]:
    """Filter steps by id or number prefix (`01`, `1`, `01_data_audit`); unknown names are an error."""
    if not wanted:
        return list(all_steps)
    chosen = []
    for w in wanted:
        w = w.strip()
        hits = [s for s in all_steps if s == w or s.split("_", 1)[0] == w.zfill(2)]
        if not hits:
            raise RunError(f"unknown step '{w}'; steps present: {', '.join(all_steps)}")
        chosen.extend(h for h in hits if h not in chosen)
    return [s for s in all_steps if s in chosen]


# --- hashing ----------------------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def step_input_hash(params: Params, step: str, notebook: Path, prev_state: str) -> str:
    """Hash of everything a step depends on: its parameter sections, notebook, data files, prior state."""
    dumped = params.model_dump(mode="json")
    sections = STEP_SECTIONS.get(step) or tuple(k for k in dumped if k != "run")
    if step == NOISE and not (params.noise.enabled and params.noise.detector == "finetuned"):
        sections = tuple(s for s in sections if s != "training")  # only that detector trains with it
    parts = {k: dumped[k] for k in sections}
    parts["run.seed"] = dumped["run"]["seed"]
    parts["notebook"] = _sha256_file(notebook)
    parts["prev_state"] = prev_state
    parts["data_files"] = {p: _sha256_file(Path(p)) for p in _data_files(params) if Path(p).is_file()}
    if step == TRAINING:  # an edited DeepSpeed config trains again
        parts["deepspeed_configs"] = {p: _sha256_file(Path(p)) for p in _deepspeed_files(params) if Path(p).is_file()}
    return _sha256_text(json.dumps(parts, sort_keys=True))


def _deepspeed_files(params: Params) -> list[str]:
    tp = params.training
    configs = [tp.deepspeed, *(tp.for_task(task).deepspeed for task in tp.per_task)]
    return sorted({c for c in configs if c})


def _data_files(params: Params) -> list[str]:
    if params.data.source != "files":
        return []
    return [*params.data.train, *params.data.dev, *params.data.test]


def snapshot(run: Run) -> dict[str, str]:
    """sha256 of every artifact file in the run (excluding notebooks, reports, logs, markers)."""
    out = {}
    for path in sorted(run.root.rglob("*")):
        rel = path.relative_to(run.root)
        if not path.is_file() or rel.parts[0] in _VOLATILE_DIRS or str(rel) in _VOLATILE_FILES:
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        out[str(rel)] = _sha256_file(path)
    return out


def _marker_path(run: Run, step: str) -> Path:
    return run.path(".done", f"{step}.json")


def read_marker(run: Run, step: str) -> dict | None:
    path = _marker_path(run, step)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged marker only means the step runs again


def marker_matches(run: Run, marker: dict | None, input_hash: str) -> bool:
    """True when the marker was made from the same inputs and its outputs are intact on disk."""
    if not marker or marker.get("input_hash") != input_hash:
        return False
    for rel, digest in marker.get("outputs", {}).items():
        path = run.path(rel)
        if not path.is_file() or _sha256_file(path) != digest:
            return False
    return True


def _state_after(prev_state: str, outputs: dict[str, str]) -> str:
    return _sha256_text(prev_state + json.dumps(outputs, sort_keys=True))


# --- run directory ----------------------------------------------------------------------------------
def resolve_params_paths(params: Params, base: Path) -> Params:
    """Data paths and the DeepSpeed config made absolute (notebooks execute in another folder)."""
    data = params.data.model_copy(
        update={k: [str((base / p).resolve()) for p in getattr(params.data, k)] for k in ("train", "dev", "test")}
    )
    return with_absolute_paths(params.model_copy(update={"data": data}), base)


_RUN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
LOCK_FILE = "run.lock"


def check_run_id(run_id: str, what: str = "run id") -> str:
    """``run_id`` when it is a plain name (one path component: letters, digits, ``.``, ``_``, ``-``, not
    starting with ``.``, at most 200 characters); otherwise ``RunError``. Run ids are names, not paths."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise RunError(
            f"invalid {what} {run_id!r}: use a name of letters, digits, '.', '_' and '-' that does not start "
            "with '.' (no '/', no '..')"
        )
    return run_id


def new_run_id(params: Params, kind: str = "") -> str:
    """``<profile name>[-<kind>]-<timestamp>``, the name reduced to the characters a run id allows."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", params.name).lstrip(".-")[:160] or "run"
    return f"{name}-{kind + '-' if kind else ''}{dt.datetime.now():%Y%m%d-%H%M%S}"


class RunLock:
    """An exclusive ``flock`` on ``<run>/run.lock`` (which holds the owner's pid); ``release`` ends it.

    The lock belongs to the open file, not to the file's contents: when the process dies, however it
    dies, the operating system releases it, so a leftover ``run.lock`` never blocks a later run.
    """

    def __init__(self, run: Run, fd: int):
        self.run, self.path, self._fd = run, run.path(LOCK_FILE), fd

    def release(self) -> None:
        """Remove ``run.lock`` (while still holding it, so no one else's lock file is removed) and unlock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                self.path.unlink()
        os.close(self._fd)  # closing the only descriptor drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(run: Run) -> RunLock:
    """Take the run's lock, atomically, without waiting; ``RunError`` names the holder's pid when it is taken.

    The run directory must exist. A holder that finishes removes ``run.lock`` just before unlocking it, so
    a lock won on a file that is no longer at that path is retried on the new file.
    """
    path = run.path(LOCK_FILE)
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise RunError(f"cannot write to the run directory {run.root}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise RunError(f"run {run.id} ({run.root}) is being run by {who}; "
                           "wait for it to finish or stop it, then resume") from None
        except OSError as err:
            os.close(fd)
            raise RunError(f"cannot lock {path}: {err.strerror or err}") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return RunLock(run, fd)
        os.close(fd)  # the previous holder removed the file we locked: lock the one there now
    raise RunError(f"cannot lock {path}: it keeps being replaced")


def _lock_holder(fd: int, wait_s: float = 2.0) -> int | None:
    """The pid in a lock file held by another process (which writes it just after locking)."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def prepare_run_dir(params: Params, run_dir: Path, *, resume: bool) -> tuple[Run, RunLock]:
    """Create the run directory, or reopen it for --resume, and lock it; never overwrite a run silently.

    Nothing in the run is written or removed before its lock is held (the directory itself is created
    first: the lock file lives in it). Returns the run and its lock, which the caller releases.
    """
    run = Run(run_dir)
    text = dump_params(params)
    params_path = run.path("params.yaml")
    if _run_contents(run) and not resume:  # checked again under the lock; this one writes nothing
        raise RunError(f"{run.root} already exists; pass --resume to continue it or choose a new --run-id")
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create the run directory {run.root} (outputs folder {run.root.parent}): "
                       f"{err.strerror or err}") from None
    lock = lock_run(run)
    try:
        if _run_contents(run):
            if not resume:
                raise RunError(
                    f"{run.root} already exists; pass --resume to continue it or choose a new --run-id"
                )
            if params_path.exists() and params_path.read_text(encoding="utf-8") != text:
                raise RunError(
                    f"{run.root} was started with different parameters (see {params_path}); "
                    "resume it with the same profile, or start a new --run-id"
                )
        _remove_scratch(run)  # safe: no other process runs this run while we hold its lock
        try:
            run.ensure()
            write_text_atomic(params_path, text)
        except OSError as err:
            raise RunError(f"cannot write to the run directory {run.root}: {err.strerror or err}") from None
    except BaseException:
        lock.release()
        raise
    return run, lock


def _run_contents(run: Run) -> list[str]:
    """Names in the run directory other than its lock file ([] when it does not exist)."""
    try:
        if not run.root.exists():  # also when a folder above it is missing or is a file
            return []
        if not run.root.is_dir():
            raise RunError(f"cannot use {run.root} as a run directory: it is not a folder")
        return [p.name for p in run.root.iterdir() if p.name != LOCK_FILE]
    except OSError as err:
        raise RunError(f"cannot use {run.root} as a run directory: {err.strerror or err}") from None


def _remove_scratch(run: Run) -> None:
    """Leftovers of a killed run: half-written temporaries (``.*.tmp``) and the scratch notebooks.

    Called only while holding the run's lock: no other runner is writing in the run then.
    """
    shutil.rmtree(run.path(".scratch"), ignore_errors=True)
    for tmp in run.root.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


# --- execution --------------------------------------------------------------------------------------
def kernel_name() -> str:
    """The registered qckit kernel when it runs this interpreter, else the default python3 kernel."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return KERNEL_NAME
    except Exception:  # noqa: BLE001 - any kernelspec problem means: use the default
        pass
    return "python3"


def _ipc_kernel_manager(socket_dir: str):
    """A kernel manager on local IPC sockets instead of TCP ports: nothing listens on the network (and
    ipykernel's unencrypted-TCP warning stays out of the logs). Socket paths are short (108-byte limit)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", os.path.join(socket_dir, "k"))
            super().__init__(**kwargs)

    return IPCKernelManager


class _PeakMemory:
    """Peak resident memory of the child processes (the kernel) while a step executes."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class _LogTail:
    """Copies the lines a step's kernel appends to ``run.log`` (its progress) to the terminal as they come."""

    def __init__(self, path: Path, echo, interval: float = 1.0):
        self.path, self.echo, self.interval = path, echo, interval
        self.offset = path.stat().st_size if path.exists() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._copy()
        self._copy()

    def _copy(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            fh.seek(self.offset)
            text = fh.read()
        complete = text[:text.rfind("\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            self.echo(line)

    def __enter__(self) -> _LogTail:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def execute_step(run: Run, step: str, params: Params, *, notebooks_dir: Path = NOTEBOOKS_DIR,
                 echo=None) -> StepResult:
    """Execute one notebook with papermill; on failure keep the notebook and describe the failing cell.

    The kernel reports its progress to ``run.log`` (``qckit.progress``); ``echo`` (a function of one line)
    receives those lines while the step runs, for the terminal.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source = Path(notebooks_dir) / f"{step}.ipynb"
    scratch = run.path(".scratch", f"{step}.ipynb")
    scratch.parent.mkdir(parents=True, exist_ok=True)
    final = run.path("notebooks", f"{step}.ipynb")
    failed = run.path("notebooks", f"{step}.failed.ipynb")
    failed.unlink(missing_ok=True)
    start = time.perf_counter()
    socket_dir = tempfile.mkdtemp(prefix="qckit-")
    # the kernel inherits these: bars stay out of the stored notebook and report to run.log instead
    env = {"QCKIT_HEADLESS": "1", "QCKIT_RUN_LOG": str(run.path("run.log")), "QCKIT_STEP": step}
    env_before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    tail = _LogTail(run.path("run.log"), echo) if echo else contextlib.nullcontext()
    try:
        with _PeakMemory() as mem, tail:
            pm.execute_notebook(
                str(source), str(scratch),
                parameters={"params_file": str(run.path("params.yaml")), "run_dir": str(run.root), "recompute": True},
                kernel_name=kernel_name(), progress_bar=False, cwd=str(Path(notebooks_dir)),
                execution_timeout=params.run.cell_timeout_s,
                kernel_manager_class=_ipc_kernel_manager(socket_dir),
            )
    except PapermillExecutionError as err:
        os.replace(scratch, failed)
        message = _describe_failure(step, err, failed)
        return StepResult(step, "failed", time.perf_counter() - start, mem.peak / 2**20, failed, message)
    except Exception as err:  # kernel died, timeout, unreadable notebook
        if scratch.exists():
            os.replace(scratch, failed)
        message = f"step {step} ({source.name}) failed: {type(err).__name__}: {err}\n  notebook: {failed}"
        return StepResult(step, "failed", time.perf_counter() - start, mem.peak / 2**20, failed, message)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    os.replace(scratch, final)
    return StepResult(step, "done", time.perf_counter() - start, mem.peak / 2**20, final)


def _describe_failure(step: str, err, saved: Path) -> str:
    source = (err.source or "").strip().splitlines()
    snippet = "\n".join(f"    | {line}" for line in source[:8])
    return (
        f"step {step} failed in cell {err.cell_index} (execution count {err.exec_count}):\n"
        f"{snippet}\n  {err.ename}: {err.evalue}\n  saved notebook: {saved}"
    )


def run_chain(
    params_file: str | Path,
    *,
    run_id: str | None = None,
    steps: list[str] | None = None,
    resume: bool = False,
    outputs_dir: str | Path | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    report: bool = True,
    progress: bool = True,
    share_from: list[str | Path] | None = None,
) -> ChainResult:
    """Validate parameters, then execute the step notebooks in order into `outputs/<run-id>/`.

    `share_from`: other run directories; a step whose inputs hash the same as a finished step there
    is copied from it instead of executed (how an ablation runs the shared audit only once).
    `run_id` is a name (``check_run_id``); the run is locked for this process while the chain runs.
    """
    params_file = Path(params_file)
    params = resolve_params_paths(load_params(params_file), Path.cwd())
    _check_data_files(params)
    all_steps = discover_steps(notebooks_dir)
    if not all_steps:
        raise RunError(f"no step notebooks (NN_name.ipynb) in {notebooks_dir}")
    selected = select_steps(all_steps, steps or params.run.steps)
    if TRAINING in selected:
        check_launch(params)  # step 05's launcher and DeepSpeed config, before step 01 runs
    base = Path(outputs_dir or params.run.outputs_dir)
    run_id = check_run_id(run_id) if run_id is not None else new_run_id(params)
    run, lock = prepare_run_dir(params, base / run_id, resume=resume)
    with lock:  # held until the chain and its report are done
        return _run_locked(run, params, params_file, all_steps, selected, resume=resume,
                           notebooks_dir=notebooks_dir, report=report, progress=progress, share_from=share_from)


def _run_locked(run: Run, params: Params, params_file: Path, all_steps: list[str], selected: list[str], *,
                resume: bool, notebooks_dir: str | Path, report: bool, progress: bool,
                share_from: list[str | Path] | None) -> ChainResult:
    from tqdm.auto import tqdm

    run.log(f"run started: params={params_file} steps={','.join(selected)} resume={resume}")
    result = ChainResult(run)
    state = ""
    bar = tqdm(all_steps, desc="qckit", unit="step", disable=not progress, file=sys.stderr)
    try:
        for step in bar:
            bar.set_postfix_str(step)
            notebook = Path(notebooks_dir) / f"{step}.ipynb"
            input_hash = step_input_hash(params, step, notebook, state)
            marker = read_marker(run, step)
            if step not in selected or (resume and marker_matches(run, marker, input_hash)):
                if marker and marker.get("input_hash") == input_hash:
                    state = marker["state_after"]
                if step in selected:
                    result.steps.append(StepResult(step, "skipped", notebook=run.path("notebooks", f"{step}.ipynb")))
                    run.log(f"{step}: skipped (marker matches)")
                continue
            _marker_path(run, step).unlink(missing_ok=True)
            shared = _share_step(run, step, input_hash, share_from or [])
            if shared:
                state = shared["state_after"]
                result.steps.append(StepResult(step, "shared", notebook=run.path("notebooks", f"{step}.ipynb")))
                run.log(f"{step}: shared from {shared['from']}")
                continue
            before = snapshot(run)
            res = execute_step(run, step, params, notebooks_dir=Path(notebooks_dir),
                               echo=(lambda line: bar.write(line, file=sys.stderr)) if progress else None)
            result.steps.append(res)
            run.log(f"{step}: {res.status} in {res.seconds:.1f}s")
            if res.status == "failed":
                run.log(res.error or "")
                break
            after = snapshot(run)
            outputs = {k: v for k, v in after.items() if before.get(k) != v}
            state = _state_after(state, outputs)
            write_json_atomic(_marker_path(run, step), {
                "step": step, "input_hash": input_hash, "state_after": state, "outputs": outputs,
                "seconds": round(res.seconds, 2), "peak_rss_mib": round(res.peak_rss_mib or 0, 1),
                "finished": dt.datetime.now().isoformat(timespec="seconds"),
            })
    finally:
        bar.close()
        _write_status(run, result)
        shutil.rmtree(run.path(".scratch"), ignore_errors=True)
    if report:
        result.report_index = render_report(run.root)
    return result


def _share_step(run: Run, step: str, input_hash: str, others: list[str | Path]) -> dict | None:
    """Copy a step's artifacts, notebook and marker from a run that did it with the same inputs."""
    for other in map(Run, others):
        if other.root == run.root:
            continue
        marker = read_marker(other, step)
        if not marker_matches(other, marker, input_hash):
            continue
        for rel in marker["outputs"]:
            target = run.path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(other.path(rel), tmp)
        notebook = other.path("notebooks", f"{step}.ipynb")
        if notebook.exists():
            shutil.copyfile(notebook, run.path("notebooks", f"{step}.ipynb"))
        write_json_atomic(_marker_path(run, step), {**marker, "shared_from": str(other.root)})
        return {**marker, "from": str(other.root)}
    return None


def _check_data_files(params: Params) -> None:
    missing = [p for p in _data_files(params) if not Path(p).is_file()]
    if params.data.source == "files" and not params.data.train and not params.data.dev and not params.data.test:
        raise RunError("data.source is 'files' but data.train, data.dev and data.test are all empty")
    if missing:
        raise RunError("data files not found:\n" + "\n".join(f"  {p}" for p in missing))


def _write_status(run: Run, result: ChainResult) -> None:
    status = {
        "run_id": run.id,
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "ok": result.ok,
        "steps": [
            {"step": s.step, "status": s.status, "seconds": round(s.seconds, 2),
             "peak_rss_mib": None if s.peak_rss_mib is None else round(s.peak_rss_mib, 1), "error": s.error}
            for s in result.steps
        ],
    }
    write_json_atomic(run.path("run_status.json"), status)
