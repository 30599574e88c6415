"""A run directory is safe to receive: loading its models runs no code from it (issue 24, "No code from data").

The trees head saves its estimators with skops and loads them with an allow-list of types; transformer heads
save safetensors; every loader refuses a model folder holding a pickle, naming the file and why, before
reading anything. The planted pickles here write a marker file when unpickled: the tests check that the
marker never appears, through ``qckit.heads.load`` and through ``qckit predict --run`` as a user runs it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from qckit import heads
from qckit.config import Params, load_params
from qckit.data import read_pairs
from qckit.demo import write_demo
from qckit.heads import UnsafeArtefactError, transformer, trees
from qckit.runs import Run
from qckit.steps import CALIBRATION, TRAINING

skops_io = pytest.importorskip("skops.io")


class Planted:
    """A pickle that writes ``marker`` when it is unpickled: what a crafted ``estimator.joblib`` can do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return Path.write_text, (Path(self.marker), "code from the run directory ran")


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Planted(marker)))
    return path


def smoke_params(head: str, **embedding) -> Params:
    params = load_params(REPO / "params" / "smoke.yaml")
    tp = params.training.model_copy(update={
        "head": head, "embedding": params.training.embedding.model_copy(update={"trees": 10, **embedding})})
    return params.model_copy(update={"training": tp})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trees head trained on the smoke demo (tiny random BERT embeddings, 10 trees, class weights on, so the
    estimator holds every type it can), the estimator as fitted in memory, and the demo's files."""
    root = tmp_path_factory.mktemp("safety")
    paths = write_demo(root / "demo", seed=0, queries_per_language=8)
    train = pd.concat([read_pairs(paths["train_QC"]), read_pairs(paths["train_QI"])], ignore_index=True)
    dev = pd.concat([read_pairs(paths["dev_QC"]), read_pairs(paths["dev_QI"])], ignore_index=True)
    params = smoke_params("embedding")
    params = params.model_copy(update={"training": params.training.model_copy(update={"class_weight": "balanced"})})
    fitted = []
    save = trees.save_estimator
    trees.save_estimator = lambda estimator, path: fitted.append(estimator) or save(estimator, path)
    try:
        heads.train(train, dev, params, output_dir=root / "model")
    finally:
        trees.save_estimator = save
    return {"folder": root / "model", "estimator": fitted[0], "dev": dev, "paths": paths, "root": root}


def copy_model(trained, dest: Path) -> Path:
    shutil.copytree(trained["folder"], dest)
    return dest


def test_the_planted_pickle_runs_code_when_unpickled(tmp_path):
    """The payload is live: unpickled the way the kit used to load estimators (joblib), it writes its marker."""
    joblib = pytest.importorskip("joblib")
    marker = tmp_path / "marker"
    joblib.load(plant(tmp_path / "estimator.joblib", marker))
    assert marker.exists()


def test_trained_trees_are_saved_without_pickles_and_reload_with_identical_scores(trained):
    folder = trained["folder"]
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert trees.ESTIMATOR_FILE == "estimator.skops" and trees.ESTIMATOR_FILE in files
    assert not [f for f in files if f.endswith((".joblib", ".pkl", ".pickle", ".bin", ".pt", ".pth"))], files
    loaded = heads.load(folder)
    assert type(loaded.model) is type(trained["estimator"])
    dev = trained["dev"]
    from_file = heads.score(loaded, dev)
    in_memory = heads.score(dataclasses.replace(loaded, model=trained["estimator"]), dev)
    np.testing.assert_array_equal(from_file.logit.to_numpy(), in_memory.logit.to_numpy())


def test_a_freshly_trained_estimator_needs_no_type_beyond_the_allow_list(trained):
    """A scikit-learn upgrade that adds a type to HistGradientBoostingClassifier fails here, not for users:
    then add the type to ``trees.ESTIMATOR_TYPES`` once it has been checked to be plain data."""
    needed = skops_io.get_untrusted_types(file=trained["folder"] / trees.ESTIMATOR_FILE)
    extra = sorted(set(needed) - set(trees.ESTIMATOR_TYPES))
    assert not extra, f"types outside trees.ESTIMATOR_TYPES: {extra}"


@pytest.mark.parametrize("planted", [
    "estimator.joblib",  # a model saved by an earlier qckit, or a crafted one
    "bank.pkl",
    "second_encoder/estimator.pickle",
    "pytorch_model.bin",
])
def test_a_model_folder_holding_a_pickle_is_refused_and_runs_nothing(trained, tmp_path, planted):
    folder = copy_model(trained, tmp_path / "m")
    if planted == "estimator.joblib":  # as an old run has it: no skops file beside
        (folder / trees.ESTIMATOR_FILE).unlink()
    marker = tmp_path / "marker"
    plant(folder / planted, marker)
    for load in (heads.load, trees.load, lambda f: heads.score(f, trained["dev"])):
        with pytest.raises(UnsafeArtefactError) as err:
            load(folder)
        message = str(err.value)
        assert str(folder / planted) in message and "pickle" in message and "run" in message
        assert "cannot be loaded" in message and "train the model again" in message
        assert "\n" not in message
    assert isinstance(err.value, ValueError)
    assert not marker.exists()


def test_an_estimator_file_that_is_not_an_allowed_skops_file_is_refused(trained, tmp_path):
    """A pickle renamed estimator.skops, a skops file needing a function, one holding another estimator."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    marker = tmp_path / "marker"
    cases = {
        "pickle": lambda path: plant(path, marker),
        "function": lambda path: skops_io.dump(FunctionTransformer(func=os.system), path),
        "other estimator": lambda path: skops_io.dump(LogisticRegression(), path),
    }
    reasons = {"pickle": "not a skops file", "function": "outside qckit's allow-list",
               "other estimator": "not a HistGradientBoostingClassifier"}
    for case, write in cases.items():
        folder = copy_model(trained, tmp_path / case.replace(" ", "_"))
        (folder / trees.ESTIMATOR_FILE).unlink()
        write(folder / trees.ESTIMATOR_FILE)
        with pytest.raises(UnsafeArtefactError, match=reasons[case]) as err:
            heads.load(folder)
        assert str(folder / trees.ESTIMATOR_FILE) in str(err.value), case
    assert "system" in str(pytest.raises(UnsafeArtefactError, trees.load_estimator,
                                         tmp_path / "function" / trees.ESTIMATOR_FILE).value)
    assert not marker.exists()


def test_a_model_folder_cannot_point_its_parts_outside_itself(trained, tmp_path):
    folder = copy_model(trained, tmp_path / "m")
    meta = json.loads((folder / heads.META_FILE).read_text(encoding="utf-8"))
    (folder / heads.META_FILE).write_text(json.dumps({**meta, "cross_encoder": "../elsewhere"}), encoding="utf-8")
    with pytest.raises(UnsafeArtefactError, match="cross_encoder"):
        heads.load(folder)


def predict(run_dir: Path, inputs: list[Path], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qckit", "predict", "--run", str(run_dir),
                           "--input", *map(str, inputs), "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def received_run(trained, root: Path) -> Run:
    """A run as someone else might send it: one joint model, trained and calibrated."""
    run = Run(root).ensure()
    copy_model(trained, run.path("models", "joint"))
    run.write_metrics(TRAINING, {"plan": {"joint": ["QC", "QI"]}})
    run.write_metrics(CALIBRATION, {"thresholds": {"QC": 0.5, "QI": 0.5}})
    return run


def test_predict_refuses_a_received_run_with_a_planted_pickle_in_one_line(trained, tmp_path):
    """`qckit predict --run` on a received run: a planted estimator.joblib is refused with a one-line error
    naming the file, the exit status is non-zero, no traceback, nothing written, and its code never ran; the
    same run without the pickle predicts."""
    run = received_run(trained, tmp_path / "run")
    test_input = [trained["paths"]["test_QC"]]
    marker = tmp_path / "marker"
    planted = plant(run.path("models", "joint", "estimator.joblib"), marker)
    done = predict(run.root, test_input, tmp_path / "out")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("qckit predict: ") and str(planted) in lines[0] and "pickle" in lines[0]
    assert "train the model again" in lines[0]
    assert not marker.exists() and not (tmp_path / "out" / "submit_QC.txt").exists()
    planted.unlink()
    done = predict(run.root, test_input, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "submit_QC.txt").exists()


def tiny_transformer_folder(tmp_path: Path) -> tuple[Path, Params]:
    """A classifier folder as ``transformer.train`` saves it (tiny random BERT, no training steps)."""
    params = smoke_params("classifier")
    model, tokenizer, path = transformer.load_base(params.models.classifier, params.training)
    transformer.save_trained(model, tokenizer, tmp_path / "clf", params, base_path=path)
    return tmp_path / "clf", params


def test_transformer_heads_save_safetensors_and_refuse_pickled_weights(tmp_path):
    folder, _ = tiny_transformer_folder(tmp_path)
    names = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in names and "pytorch_model.bin" not in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib"))], names
    assert heads.load(folder, device="cpu").head == "classifier"
    # the weights as a torch pickle only, as an old transformers or a crafted folder has them
    marker = tmp_path / "marker"
    (folder / "model.safetensors").unlink()
    plant(folder / "pytorch_model.bin", marker)
    with pytest.raises(UnsafeArtefactError, match="pytorch_model.bin"):
        heads.load(folder, device="cpu")
    with pytest.raises(UnsafeArtefactError, match="torch pickle"):
        transformer.load(folder, device="cpu")
    assert not marker.exists()


def test_trust_remote_code_comes_from_the_caller_never_from_the_folder(tmp_path, monkeypatch):
    """A received folder whose metadata says trust_remote_code: true still loads with it off; the profile's
    setting is recorded at save time, and only an explicit argument turns it on."""
    folder, params = tiny_transformer_folder(tmp_path)
    meta = json.loads((folder / heads.META_FILE).read_text(encoding="utf-8"))
    assert meta["trust_remote_code"] is params.models.trust_remote_code is False
    (folder / heads.META_FILE).write_text(json.dumps({**meta, "trust_remote_code": True}), encoding="utf-8")
    seen: list[dict] = []
    real = transformer.auto_class

    class Spy:
        @staticmethod
        def from_pretrained(path, **kwargs):
            seen.append(kwargs)
            return real("classifier").from_pretrained(path, **{**kwargs, "trust_remote_code": False})

    monkeypatch.setattr(transformer, "auto_class", lambda head: Spy)
    heads.load(folder, device="cpu")
    transformer.load(folder, device="cpu")
    heads.load(folder, device="cpu", trust_remote_code=True)
    assert [kw["trust_remote_code"] for kw in seen] == [False, False, True]
    assert all(kw["use_safetensors"] is True for kw in seen)
