"""Step 05 under torchrun: one job per model of its plan, on one node or several (``training.launcher``).

With ``training.launcher.kind: torchrun`` step 05 trains each model of its plan (``joint``, or one per task;
a two-stage model's both stages run inside its job) with one torchrun job running
``python -m qckit.steps.training --params P --run-dir R --model NAME`` in every process; the HF Trainer does
the distribution (DDP, or DeepSpeed with ``training.deepspeed``) and qckit writes no distribution code of its
own. Rank 0 saves the model and writes its training figures to ``models/<name>/train-figures.json``; step 05
then scores dev and test in its own process, as without a launcher.

While node 0 launches, ``<run>/launch/plan.json`` names the jobs in order and the one running now; each job's
output goes to ``<run>/launch/<name>.log``. Other nodes, whose run directory is the same shared folder, run
``python -m qckit.steps.training --run-dir R --join`` (``join``): it waits for that plan and runs the same
torchrun command for each job, so every node meets node 0 at the same rendezvous.

Example:
    >>> from qckit.launch import torchrun_command
    >>> torchrun_command(params.training.launcher, params_file="run/params.yaml", run_dir="run", model="QC",
    ...                  rdzv_id="run-QC")[:4]
    ['/usr/bin/python3', '-m', 'torch.distributed.run', '--nproc-per-node=gpu']
"""
from __future__ import annotations

import collections
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qckit.config import LauncherParams, Params, ParamsError, dump_params, load_params
from qckit.progress import headless, report
from qckit.runs import Run, write_json_atomic, write_text_atomic

LAUNCH_DIR = "launch"
PLAN_FILE = "plan.json"
FIGURES_FILE = "train-figures.json"
WORKER_MODULE = "qckit.steps.training"
SANE_ZERO_STAGES = (0, 1, 2)
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class TrainingJobError(RuntimeError):
    """A torchrun job that failed, or a launch that cannot go on; the message names the model and the log."""


# --- checks before anything runs -------------------------------------------------------------------
def check_launch(params: Params) -> None:
    """Raise ``ParamsError`` (naming the key and the file) when step 05's launch cannot work here.

    The DeepSpeed config of the section (and of each task's model) must be a readable JSON object with ZeRO
    stage 0, 1 or 2, and the ``deepspeed`` package importable; ``nproc_per_node: gpu`` needs a GPU. Called by
    ``qckit run`` before step 01, and by step 05 itself.
    """
    tp = params.training
    if not tp.enabled:
        return
    sections = [("training.deepspeed", tp)] + [(f"training.per_task.{t}.deepspeed", tp.for_task(t))
                                               for t in tp.per_task]
    configs = [(key, t.deepspeed) for key, t in sections if t.deepspeed]
    for key, path in configs:
        deepspeed_config(path, key=key)
    if configs and importlib.util.find_spec("deepspeed") is None:
        raise ParamsError(f"{configs[0][0]}: the deepspeed package is not installed in this environment "
                          f"({sys.executable}): pip install deepspeed on the GPU machines, or remove it")
    if tp.launcher.kind == "torchrun" and tp.launcher.nproc_per_node == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ParamsError("training.launcher.nproc_per_node: 'gpu' but this machine has no CUDA GPU; give a "
                              "number of processes (gloo on CPU) or run on a GPU machine")


def deepspeed_config(path: str | Path, *, key: str = "training.deepspeed") -> dict[str, Any]:
    """The DeepSpeed config at ``path``, checked: a JSON object whose ``zero_optimization.stage`` is 0, 1 or 2.

    ZeRO-3 is refused: it shards the weights themselves, and step 05 saves the trained model from rank 0
    with ``save_pretrained``, which needs them whole (ZeRO-2 shards only gradients and optimizer state).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParamsError(f"{key}: cannot read {path} ({err.strerror or err}); a relative path is read from the "
                          "folder `qckit run` starts in") from None
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ParamsError(f"{key}: {path} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ParamsError(f"{key}: {path}: expected a JSON object, got {type(config).__name__}")
    zero = config.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise ParamsError(f"{key}: {path}: zero_optimization: expected an object, got {zero!r}")
    stage = zero.get("stage", 0)
    if stage == 3 and not isinstance(stage, bool):
        raise ParamsError(f"{key}: {path}: zero_optimization.stage 3 shards the weights, and step 05 saves the model "
                          "whole from rank 0: use stage 2 (params/deepspeed/zero2.json)")
    if isinstance(stage, bool) or stage not in SANE_ZERO_STAGES:
        raise ParamsError(f"{key}: {path}: zero_optimization.stage must be 0, 1 or 2, got {stage!r}")
    return config


def with_absolute_paths(params: Params, base: Path) -> Params:
    """``training.deepspeed`` (and each ``per_task`` one) made absolute against ``base``: steps run elsewhere."""
    tp = params.training
    update: dict[str, Any] = {}
    if tp.deepspeed:
        update["deepspeed"] = str((base / tp.deepspeed).resolve())
    per_task = {task: {**o, "deepspeed": str((base / o["deepspeed"]).resolve())} if o.get("deepspeed") else o
                for task, o in tp.per_task.items()}
    if per_task != tp.per_task:
        update["per_task"] = per_task
    if not update:
        return params
    return params.model_copy(update={"training": tp.model_copy(update=update)})


# --- the command ---------------------------------------------------------------------------------
def rendezvous_id(launcher: LauncherParams, run: Run, model: str) -> str:
    """The rendezvous id of one model's job: ``launcher.rdzv_id`` (default: the run id) and the model's name, so
    a node joining late never enters another model's job."""
    return f"{launcher.rdzv_id or run.id}-{model}"


def torchrun_command(launcher: LauncherParams, *, params_file: str | Path, run_dir: str | Path, model: str,
                     rdzv_id: str, python: str | None = None) -> list[str]:
    """The torchrun command (``python -m torch.distributed.run``, this interpreter's) of one model's job.

    Several nodes (or an explicit ``rdzv_endpoint``) meet at a c10d rendezvous; one node alone uses
    ``--master-port`` when it is set, else ``--standalone`` (a free port).
    """
    cmd = [python or sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={launcher.nproc_per_node}",
           f"--nnodes={launcher.nnodes}"]
    if launcher.rdzv_endpoint:
        cmd += [f"--rdzv-backend={launcher.rdzv_backend}", f"--rdzv-endpoint={launcher.rdzv_endpoint}",
                f"--rdzv-id={rdzv_id}"]
    elif launcher.master_port:
        cmd.append(f"--master-port={launcher.master_port}")
    else:
        cmd.append("--standalone")
    if launcher.max_restarts:
        cmd.append(f"--max-restarts={launcher.max_restarts}")
    return cmd + ["-m", WORKER_MODULE, "--params", str(params_file), "--run-dir", str(run_dir), "--model", model]


def job_params_file(params: Params, run: Run) -> Path:
    """The parameter file the jobs read: the run's ``params.yaml`` when it holds exactly ``params`` (a chain
    run), else a copy of ``params`` in ``<run>/launch/params.yaml`` (a step called from a script)."""
    text = dump_params(params)
    own = run.path("params.yaml")
    if own.is_file() and own.read_text(encoding="utf-8") == text:
        return own
    return write_text_atomic(run.path(LAUNCH_DIR, "params.yaml"), text)


# --- running the jobs ----------------------------------------------------------------------------
def _worker_env() -> dict[str, str]:
    # the workers import qckit from this checkout, whatever folder the step runs in (notebooks/ in a chain),
    # and write their lines as they come (a pipe would hold them in a buffer until the job ends)
    path = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run_job(cmd: list[str], log_path: Path, *, echo: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run one job, its output (stdout and stderr) written to ``log_path`` as it comes and passed to ``echo``.

    Returns the exit status and the last 40 lines. An interrupt stops the job (torchrun passes it on).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                env=_worker_env())
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
                if echo:
                    echo(line.rstrip("\n"))
            return proc.wait(), list(tail)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            proc.stdout.close()


def write_figures(run: Run, model: str, figures: dict[str, Any]) -> Path:
    """What rank 0 of a job hands back: its model's training figures, atomically."""
    return write_json_atomic(run.path("models", model, FIGURES_FILE), figures)


def wait_for_ranks() -> None:
    """Under torchrun: wait until every rank is here (rank 0 has written its files), then leave the group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train_plan(params: Params, run: Run, plan: dict[str, list[str]]) -> tuple[dict[str, dict[str, Any]],
                                                                               dict[str, Any]]:
    """Train every model of ``plan`` with one torchrun job each, in order; returns each model's figures (as its
    rank 0 wrote them) and what was launched (commands, seconds, logs) for the step's metrics.

    A failed job is a ``TrainingJobError`` naming the model, the exit status and the tail of its log.
    """
    check_launch(params)
    launcher = params.training.launcher
    params_file = job_params_file(params, run)
    jobs = [{"model": name, "rdzv_id": rendezvous_id(launcher, run, name)} for name in plan]
    plan_path = run.path(LAUNCH_DIR, PLAN_FILE)
    state: dict[str, Any] = {"params": str(params_file), "run_dir": str(run.root), "jobs": jobs, "current": None}
    figures, launched = {}, {"kind": launcher.kind, "params": str(params_file), "jobs": {}}
    echo = None if headless() else print  # headless (a chain run), the job's own rank 0 reports to run.log
    try:
        for job in jobs:
            name = job["model"]
            cmd = torchrun_command(launcher, params_file=params_file, run_dir=run.root, model=name,
                                   rdzv_id=job["rdzv_id"])
            out = run.path("models", name, FIGURES_FILE)
            out.unlink(missing_ok=True)  # an earlier attempt's figures must not pass for this job's
            write_json_atomic(plan_path, {**state, "current": name})  # nodes that join now start here
            log_path = run.path(LAUNCH_DIR, f"{name}.log")
            report(f"training model {name} with torchrun ({launcher.nproc_per_node} processes per node, "
                   f"{launcher.nnodes} node(s)); log: {log_path}")
            start = time.perf_counter()
            status, tail = run_job(cmd, log_path, echo=echo)
            seconds = time.perf_counter() - start
            if status != 0:
                raise TrainingJobError(f"training job for model {name} failed (torchrun exit status {status}); "
                                       f"last lines of {log_path}:\n" + "\n".join(tail))
            if not out.is_file():
                raise TrainingJobError(f"training job for model {name} ended without writing {out}; see {log_path}")
            figures[name] = json.loads(out.read_text(encoding="utf-8"))
            launched["jobs"][name] = {"command": cmd, "seconds": round(seconds, 2),
                                      "log": str(log_path.relative_to(run.root))}
            report(f"model {name} trained by torchrun in {seconds:.0f} s")
    finally:
        plan_path.unlink(missing_ok=True)  # no launch under way: a node that joins now waits for the next one
    return figures, launched


def join(run_dir: str | Path, *, nproc_per_node: str | None = None, wait_s: float = 86400.0,
         poll_s: float = 5.0) -> int:
    """On a node other than node 0: take part in the torchrun jobs node 0 launches for the run at ``run_dir``.

    Waits (up to ``wait_s``) for node 0's step 05 to write ``<run>/launch/plan.json``, then runs the same
    torchrun command as node 0 for the job running now and each one after it, in order; ``nproc_per_node``
    replaces the profile's for this node. Returns 0 when every job succeeded; a failed job raises
    ``TrainingJobError``.
    """
    run = Run(run_dir)
    plan_path = run.path(LAUNCH_DIR, PLAN_FILE)
    deadline = time.monotonic() + wait_s
    if not plan_path.is_file():
        print(f"waiting for node 0's step 05 to launch ({plan_path})", flush=True)
    while not plan_path.is_file():
        if time.monotonic() > deadline:
            raise TrainingJobError(f"no launch in {run.root} after {wait_s:.0f} s (waited for {plan_path})")
        time.sleep(poll_s)
    state = json.loads(plan_path.read_text(encoding="utf-8"))
    launcher = load_params(state["params"]).training.launcher
    if nproc_per_node is not None:
        launcher = _with_nproc(launcher, nproc_per_node)
    names = [job["model"] for job in state["jobs"]]
    first = names.index(state["current"]) if state.get("current") in names else 0
    for job in state["jobs"][first:]:
        cmd = torchrun_command(launcher, params_file=state["params"], run_dir=run.root, model=job["model"],
                               rdzv_id=job["rdzv_id"])
        print(f"joining the job of model {job['model']}: {' '.join(cmd)}", flush=True)
        status = subprocess.run(cmd, env=_worker_env(), check=False).returncode
        if status != 0:
            raise TrainingJobError(f"training job for model {job['model']} failed on this node (torchrun exit "
                                   f"status {status}); node 0's log: {run.path(LAUNCH_DIR, job['model'] + '.log')}")
    return 0


def _with_nproc(launcher: LauncherParams, value: str) -> LauncherParams:
    try:
        return LauncherParams.model_validate({**launcher.model_dump(), "nproc_per_node": value})
    except ValueError as err:
        raise ParamsError(f"--nproc-per-node: expected a number, 'gpu' or 'auto', got {value!r}") from err

