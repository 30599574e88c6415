"""Step 05 under torchrun (``training.launcher``) and DeepSpeed (``training.deepspeed``): the commands built, the
checks made before anything runs, the join command of other nodes, and step 05 of the smoke profile trained by
two gloo processes per model, compared with the single-process path and followed by step 06."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import REPO

from qckit import launch
from qckit.cli import main as cli_main
from qckit.config import LauncherParams, ParamsError, parse_params
from qckit.heads import transformer
from qckit.pipeline import resolve_params_paths
from qckit.runs import Run
from qckit.steps import CALIBRATION, TRAINING, audit, calibration, training

PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smoke_raw(**training) -> dict:
    raw = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text(encoding="utf-8"))
    raw["training"].update(training)
    return raw


def worker_tail(params_file: str, run_dir: str, model: str) -> list[str]:
    return ["-m", "qckit.steps.training", "--params", params_file, "--run-dir", run_dir, "--model", model]


# --- the command ---------------------------------------------------------------------------------
def test_one_node_gets_a_standalone_rendezvous_or_the_master_port():
    cmd = launch.torchrun_command(LauncherParams(kind="torchrun", nproc_per_node=2), params_file="r/params.yaml",
                                  run_dir="r", model="QC", rdzv_id="r-QC", python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1", "--standalone",
                   *worker_tail("r/params.yaml", "r", "QC")]
    fixed = LauncherParams(kind="torchrun", nproc_per_node="gpu", master_port=29600, max_restarts=2)
    cmd = launch.torchrun_command(fixed, params_file="p", run_dir="r", model="joint", rdzv_id="x", python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--nproc-per-node=gpu", "--nnodes=1", "--master-port=29600",
                   "--max-restarts=2", *worker_tail("p", "r", "joint")]


def test_several_nodes_meet_at_the_c10d_rendezvous_with_one_id_per_model(tmp_path):
    launcher = LauncherParams(kind="torchrun", nproc_per_node=8, nnodes="2:4", rdzv_endpoint="node0.cluster:29400")
    run = Run(tmp_path / "paper-20261207")
    cmd = launch.torchrun_command(launcher, params_file="p", run_dir=run.root, model="QI",
                                  rdzv_id=launch.rendezvous_id(launcher, run, "QI"), python="py")
    assert cmd[3:8] == ["--nproc-per-node=8", "--nnodes=2:4", "--rdzv-backend=c10d",
                        "--rdzv-endpoint=node0.cluster:29400", "--rdzv-id=paper-20261207-QI"]
    assert "--standalone" not in cmd and not any(c.startswith("--master-port") for c in cmd)
    named = launcher.model_copy(update={"rdzv_id": "exp7"})
    assert launch.rendezvous_id(named, run, "QC") == "exp7-QC"
    assert LauncherParams(nnodes="3", rdzv_endpoint="n0:1").nnodes == 3 and LauncherParams(nnodes="1:1").max_nodes == 1


@pytest.mark.parametrize(("training", "key", "words"), [
    ({"launcher": {"kind": "torchrun", "nnodes": 2}}, "training.launcher", "rdzv_endpoint"),
    ({"launcher": {"nnodes": "1:x"}}, "training.launcher.nnodes", "MIN:MAX"),
    ({"launcher": {"nnodes": "3:2"}}, "training.launcher.nnodes", "MIN <= MAX"),
    ({"launcher": {"nnodes": 0}}, "training.launcher.nnodes", "MIN <= MAX"),
    ({"launcher": {"rdzv_endpoint": "node0"}}, "training.launcher.rdzv_endpoint", "host:port"),
    ({"launcher": {"rdzv_endpoint": "node0:99999"}}, "training.launcher.rdzv_endpoint", "host:port"),
    ({"launcher": {"rdzv_endpoint": "n0:29400", "master_port": 29500}}, "training.launcher", "both set"),
    ({"launcher": {"nproc_per_node": 0}}, "training.launcher.nproc_per_node", "at least 1"),
    ({"launcher": {"nproc_per_node": "tpu"}}, "training.launcher.nproc_per_node", "gpu"),
    ({"launcher": {"kind": "mpirun"}}, "training.launcher.kind", "torchrun"),
    ({"launcher": {"master_port": 0}}, "training.launcher.master_port", "greater than or equal to 1"),
    ({"head": "embedding", "launcher": {"kind": "torchrun"}}, "training", "head 'embedding'"),
    ({"head": "embedding", "deepspeed": "ds.json", "launcher": {"kind": "torchrun"}}, "training", "deepspeed"),
    ({"deepspeed": "ds.json"}, "training", "launcher.kind: torchrun"),
    ({"tasks_mode": "separate", "per_task": {"QC": {"launcher": {"kind": "torchrun"}}}}, "training", "per_task"),
    ({"tasks_mode": "separate", "launcher": {"kind": "torchrun"}, "per_task": {"QI": {"head": "embedding"}}},
     "training", "per_task.QI"),
])
def test_bad_launcher_settings_are_errors_naming_the_key(training, key, words):
    with pytest.raises(ParamsError) as err:
        parse_params({"name": "t", "training": training})
    lines = [x for x in str(err.value).splitlines() if x.strip().startswith((key + ":", key + "."))]
    assert lines and words in " ".join(lines)


# --- DeepSpeed ------------------------------------------------------------------------------------
def test_the_shipped_zero2_config_passes_and_keeps_the_trainers_optimizer():
    config = launch.deepspeed_config(REPO / "params" / "deepspeed" / "zero2.json")
    assert config["zero_optimization"]["stage"] == 2
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["gradient_accumulation_steps"] == "auto"
    # no optimizer or scheduler of DeepSpeed's own: the Trainer's (head_learning_rate groups, warm-up) are used
    assert "optimizer" not in config and "scheduler" not in config


@pytest.mark.parametrize(("text", "words"), [
    (None, "cannot read"),
    ("{stage: 2}", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"zero_optimization": 2}', "zero_optimization: expected an object"),
    ('{"zero_optimization": {"stage": 3}}', "stage 3 shards the weights"),
    ('{"zero_optimization": {"stage": "two"}}', "must be 0, 1 or 2"),
    ('{"zero_optimization": {"stage": true}}', "must be 0, 1 or 2"),
])
def test_bad_deepspeed_configs_are_errors_naming_the_key_and_the_file(tmp_path, text, words):
    path = tmp_path / "ds.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError) as err:
        launch.deepspeed_config(path, key="training.per_task.QC.deepspeed")
    message = str(err.value)
    assert message.startswith("training.per_task.QC.deepspeed: ") and str(path) in message and words in message
    assert "\n" not in message


def _without_deepspeed(monkeypatch):
    real = launch.importlib.util.find_spec
    monkeypatch.setattr(launch.importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "deepspeed" else real(name, *a, **k))


def test_a_missing_deepspeed_package_is_said_before_anything_runs(monkeypatch):
    _without_deepspeed(monkeypatch)
    params = parse_params({"name": "t", "training": {"deepspeed": str(REPO / "params/deepspeed/zero2.json"),
                                                     "launcher": {"kind": "torchrun", "nproc_per_node": 1}}})
    with pytest.raises(ParamsError, match=r"^training.deepspeed: the deepspeed package is not installed"):
        launch.check_launch(params)
    launch.check_launch(params.model_copy(update={"training": params.training.model_copy(update={"enabled": False})}))


def test_gpu_processes_need_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = parse_params({"name": "t", "training": {"launcher": {"kind": "torchrun", "nproc_per_node": "gpu"}}})
    with pytest.raises(ParamsError, match=r"^training.launcher.nproc_per_node: 'gpu' but this machine has no CUDA GPU"):
        launch.check_launch(params)
    launch.check_launch(parse_params({"name": "t", "training": {"launcher": {"kind": "torchrun",
                                                                             "nproc_per_node": 2}}}))


@pytest.mark.parametrize("problem", ["missing file", "package missing"])
def test_qckit_run_stops_before_step_01(tmp_path, monkeypatch, capsys, problem):
    _without_deepspeed(monkeypatch)
    monkeypatch.chdir(tmp_path)
    if problem == "package missing":
        shutil.copy(REPO / "params" / "deepspeed" / "zero2.json", tmp_path / "ds.json")
    raw = smoke_raw(deepspeed="ds.json", launcher={"kind": "torchrun", "nproc_per_node": 1})
    raw["run"]["outputs_dir"] = str(tmp_path / "outputs")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert cli_main(["run", "-p", "p.yaml", "--run-id", "r", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("qckit run: training.deepspeed: ")
    # a relative path is read from the folder `qckit run` starts in
    assert (str(tmp_path / "ds.json") in err) if problem == "missing file" else ("not installed" in err)
    assert not (tmp_path / "outputs").exists()  # nothing ran, no run directory


def test_relative_deepspeed_paths_become_absolute_for_the_run(tmp_path):
    params = parse_params({"name": "t", "training": {
        "deepspeed": "ds/zero2.json", "launcher": {"kind": "torchrun"}, "tasks_mode": "separate",
        "per_task": {"QI": {"deepspeed": "ds/qi.json"}, "QC": {"epochs": 1}}}})
    resolved = resolve_params_paths(params, tmp_path)
    assert resolved.training.deepspeed == str(tmp_path / "ds" / "zero2.json")
    assert resolved.training.for_task("QI").deepspeed == str(tmp_path / "ds" / "qi.json")
    assert resolved.training.per_task["QC"] == {"epochs": 1}
    assert resolve_params_paths(parse_params({"name": "t"}), tmp_path).training.deepspeed is None


def test_an_edited_deepspeed_config_trains_step_05_again(tmp_path):
    from qckit.pipeline import step_input_hash

    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    notebook = tmp_path / "05.ipynb"
    notebook.write_text("{}")
    params = parse_params({"name": "t", "training": {"deepspeed": str(config), "launcher": {"kind": "torchrun"}}})
    before = {step: step_input_hash(params, step, notebook, "s") for step in (TRAINING, CALIBRATION)}
    config.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert step_input_hash(params, TRAINING, notebook, "s") != before[TRAINING]
    assert step_input_hash(params, CALIBRATION, notebook, "s") == before[CALIBRATION]


def test_the_trainer_gets_the_deepspeed_config_inside_a_torchrun_job_only(tmp_path, monkeypatch):
    tp = parse_params({"name": "t", "training": {"deepspeed": "/cfg/zero2.json",
                                                 "launcher": {"kind": "torchrun"}}}).training
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert transformer.trainer_settings(tp, tmp_path, seed=0, has_eval=False)["deepspeed"] == "/cfg/zero2.json"
    monkeypatch.delenv("LOCAL_RANK")  # a step's own process (step 04's fine-tuned detector): no launcher
    assert transformer.trainer_settings(tp, tmp_path, seed=0, has_eval=False)["deepspeed"] is None
    args = transformer.training_arguments(tp, tmp_path, seed=0, has_eval=False)  # builds without deepspeed there
    assert args.deepspeed is None and args.output_dir == str(tmp_path)


# --- jobs, failures, other nodes -----------------------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path) -> tuple:
    """A run with a train and a dev table of both tasks (nothing trained)."""
    params = parse_params(smoke_raw(tasks_mode="separate", launcher={"kind": "torchrun", "nproc_per_node": 2}))
    run = Run(tmp_path / "run").ensure()
    rows = pd.DataFrame({"id": range(8), "task": ["QC", "QI"] * 4, "language": "en", "query": "q", "target": "t",
                         "label": [1, 0] * 4, "origin": "original", "source_id": None})
    run.write_table("train", rows)
    run.write_table("dev", rows)
    return params, run


def test_a_failed_job_names_the_model_its_status_and_the_tail_of_its_log(tiny_run, monkeypatch):
    params, run = tiny_run
    script = "import sys; print('loading QC'); print('CUDA out of memory', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(launch, "torchrun_command", lambda *a, **k: [PY, "-c", script])
    with pytest.raises(launch.TrainingJobError) as err:
        launch.train_plan(params, run, {"QC": ["QC"], "QI": ["QI"]})
    message = str(err.value)
    assert message.startswith("training job for model QC failed (torchrun exit status 3)")
    assert "CUDA out of memory" in message and str(run.path("launch", "QC.log")) in message
    assert "CUDA out of memory" in run.path("launch", "QC.log").read_text()
    assert not run.path("launch", "QI.log").exists()  # the plan stops at the failed job
    assert not run.path("launch", launch.PLAN_FILE).exists()  # no launch under way any more


def test_a_job_that_writes_no_figures_is_an_error(tiny_run, monkeypatch):
    params, run = tiny_run
    monkeypatch.setattr(launch, "torchrun_command", lambda *a, **k: [PY, "-c", "pass"])
    with pytest.raises(launch.TrainingJobError, match=r"model QC ended without writing .*train-figures.json"):
        launch.train_plan(params, run, {"QC": ["QC"]})


def test_jobs_see_the_plan_while_they_run_and_hand_back_their_figures(tiny_run, monkeypatch):
    params, run = tiny_run
    plan_path = run.path("launch", launch.PLAN_FILE)
    # a stand-in job: checks the plan names it as the job running now, writes figures as rank 0 does
    script = ("import json, sys, pathlib; state = json.loads(pathlib.Path(sys.argv[1]).read_text()); "
              "assert state['current'] == sys.argv[2], state; "
              "p = pathlib.Path(sys.argv[3]); p.parent.mkdir(parents=True, exist_ok=True); "
              "p.write_text(json.dumps({'seconds': 1.5, 'log_history': [], 'model': sys.argv[2]}))")
    monkeypatch.setattr(launch, "torchrun_command", lambda launcher, **k: [
        PY, "-c", script, str(plan_path), k["model"], str(run.path("models", k["model"], launch.FIGURES_FILE))])
    run.path("models", "QI").mkdir(parents=True)
    run.path("models", "QI", launch.FIGURES_FILE).write_text('{"stale": true}')  # an earlier attempt's
    figures, launched = launch.train_plan(params, run, {"QC": ["QC"], "QI": ["QI"]})
    assert figures == {m: {"seconds": 1.5, "log_history": [], "model": m} for m in ("QC", "QI")}
    assert list(launched["jobs"]) == ["QC", "QI"] and launched["jobs"]["QI"]["log"] == "launch/QI.log"
    # the run has no params.yaml of these parameters: the jobs read a copy in launch/
    assert launched["params"] == str(run.path("launch", "params.yaml"))
    assert not plan_path.exists()


def test_join_waits_for_node_0_and_runs_its_commands_from_the_job_running_now(tiny_run, monkeypatch, capsys):
    params, run = tiny_run
    params = parse_params(smoke_raw(tasks_mode="separate", launcher={
        "kind": "torchrun", "nproc_per_node": 2, "nnodes": 2, "rdzv_endpoint": "node0:29400"}))
    params_file = launch.job_params_file(params, run)
    with pytest.raises(launch.TrainingJobError, match="no launch in .* after 0 s"):
        launch.join(run.root, wait_s=0, poll_s=0)
    jobs = [{"model": m, "rdzv_id": f"run-{m}"} for m in ("QC", "QI")]
    run.path("launch", launch.PLAN_FILE).write_text(json.dumps(
        {"params": str(params_file), "run_dir": str(run.root), "jobs": jobs, "current": "QI"}))
    ran = []
    monkeypatch.setattr(launch.subprocess, "run",
                        lambda cmd, **kw: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert launch.join(run.root, nproc_per_node="4") == 0
    node0 = launch.torchrun_command(params.training.launcher, params_file=params_file, run_dir=run.root,
                                    model="QI", rdzv_id="run-QI")
    assert ran == [[c.replace("--nproc-per-node=2", "--nproc-per-node=4") for c in node0]]
    monkeypatch.setattr(launch.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(launch.TrainingJobError, match="model QI failed on this node"):
        launch.join(run.root)
    with pytest.raises(ParamsError, match="--nproc-per-node"):
        launch.join(run.root, nproc_per_node="many")


def test_the_worker_entry_point_refuses_bad_usage_in_one_line(tiny_run, capsys):
    params, run = tiny_run
    params_file = launch.job_params_file(params, run)
    assert training.main(["--params", str(params_file), "--run-dir", str(run.root), "--model", "joint"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "qckit.steps.training: --model joint: not a model of step 05's plan for this run (QC, QI)"
    with pytest.raises(SystemExit) as exit_:
        training.main(["--run-dir", str(run.root), "--join", "--params", str(params_file)])
    assert exit_.value.code == 2 and "drop --params" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        training.main(["--run-dir", str(run.root), "--model", "QC"])
    assert "--params is required" in capsys.readouterr().err


# --- the smoke profile's step 05 with two gloo processes per model -------------------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple:
    """Step 01 once, then step 05 on two copies: in process, and under torchrun (two gloo processes per
    model, one model per task, two-stage); step 06 after the torchrun one."""
    raw = smoke_raw(tasks_mode="separate", two_stage=True, num_threads=1)
    single_params = parse_params(raw)
    root = tmp_path_factory.mktemp("launcher")
    single = Run(root / "single").ensure()
    audit.run(single_params, single)
    shutil.copytree(single.root, root / "torchrun")
    launched = Run(root / "torchrun")
    raw["training"]["launcher"] = {"kind": "torchrun", "nproc_per_node": 2, "master_port": free_port()}
    launched_params = parse_params(raw)
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        single_metrics = training.run(single_params, single)
        launched_metrics = training.run(launched_params, launched)
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = before
    calibration.run(launched_params, launched)
    return single, single_metrics, launched, launched_metrics


def test_torchrun_step_05_writes_what_the_single_process_path_writes(two_runs):
    single, single_metrics, launched, metrics = two_runs
    assert metrics["plan"] == single_metrics["plan"] == {"QC": ["QC"], "QI": ["QI"]}
    for name in ("QC", "QI"):
        for run in (single, launched):
            assert run.path("models", name, "qckit-model.json").is_file()
            assert run.path("models", f"{name}-stage1", "qckit-model.json").is_file()  # two-stage inside the job
        assert set(metrics["models"][name]) == set(single_metrics["models"][name])
        assert metrics["models"][name]["stage1"]["train_rows"] == single_metrics["models"][name]["stage1"]["train_rows"]
        assert metrics["models"][name]["train_rows"] == single_metrics["models"][name]["train_rows"]
        assert any("train_loss" in h for h in metrics["curves"][name])
    dev_single = pd.read_parquet(single.path("predictions", "dev.parquet"))
    dev = pd.read_parquet(launched.path("predictions", "dev.parquet"))
    assert dev["id"].tolist() == dev_single["id"].tolist() == launched.read_table("dev")["id"].tolist()
    assert list(dev.columns) == list(dev_single.columns) and dev["score"].between(0, 1).all()
    assert set(metrics["dev"]) == set(single_metrics["dev"]) == {"QC", "QI"}
    assert set(metrics["headline"]) == set(single_metrics["headline"])
    assert "launch" not in single_metrics


def test_torchrun_step_05_records_its_jobs_and_hands_over_to_step_06(two_runs):
    _, _, launched, metrics = two_runs
    assert list(metrics["launch"]["jobs"]) == ["QC", "QI"]
    for name, job in metrics["launch"]["jobs"].items():
        assert "--nproc-per-node=2" in job["command"] and job["command"][-2:] == ["--model", name]
        assert launched.path(job["log"]).is_file()
        assert launched.path("models", name, launch.FIGURES_FILE).is_file()
    assert not launched.path("launch", launch.PLAN_FILE).exists()
    assert launched.read_metrics(TRAINING) == json.loads(json.dumps(metrics))
    thresholds = launched.read_metrics(CALIBRATION)
    assert thresholds and training.load(launched).dev["id"].tolist() == launched.read_table("dev")["id"].tolist()
