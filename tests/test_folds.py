"""training.folds: k models on query-grouped folds of train and dev, dev scored out of fold, test by the mean of
the members' log-odds; for the transformer heads and the trees head, on the smoke profile (tiny models)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from pydantic import ValidationError

from qckit import heads
from qckit.config import dump_params, load_params
from qckit.features import normalise_queries
from qckit.heads import ensemble
from qckit.heads.common import META_FILE, UnsafeArtefactError
from qckit.runs import Run
from qckit.steps import audit, calibration, error_analysis, training


def smoke_params(**training_update):
    params = load_params(REPO / "params" / "smoke.yaml")
    if training_update.get("head") == "embedding":
        training_update["embedding"] = params.training.embedding.model_copy(update={"trees": 10})
    return params.model_copy(update={"training": params.training.model_copy(update=training_update)})


def fold_run(root: Path, params) -> Run:
    run = Run(root).ensure()
    (run.root / "params.yaml").write_text(dump_params(params), encoding="utf-8")  # what `qckit predict` reads
    audit.run(params, run)
    return run


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """Joint classifier head on tiny:bert, 3 folds, with typo'd copies (created rows carrying source_id)."""
    params = smoke_params(folds=3)
    typos = params.augmentation.typos.model_copy(update={"rate": 0.1, "share": 0.3})
    params = params.model_copy(update={"augmentation": params.augmentation.model_copy(update={"typos": typos})})
    run = fold_run(tmp_path_factory.mktemp("folds") / "run", params)
    metrics = training.run(params, run)
    return params, run, metrics


def learnt_rows(params, run: Run, tasks: list[str]) -> pd.DataFrame:
    """The labelled rows step 05 gave a model of ``tasks``: its training rows (typo'd copies too) and dev."""
    train, _ = training.training_rows(params, run)
    rows = pd.concat([train, run.read_table("dev")], ignore_index=True)
    return rows[rows.task.isin(tasks)].dropna(subset=["label"])


def assert_dev_scored_out_of_fold(params, run: Run, name: str, tasks: list[str]) -> None:
    """Every labelled dev row scored exactly once, by the member whose training folds hold no row of its query;
    the dev predictions are those out-of-fold scores."""
    folder = run.path("models", name)
    manifest = ensemble.read_manifest(folder)
    k = manifest["k"]
    assert manifest["members"] == [f"fold-{f}" for f in range(k)] and k == 3
    assignment = ensemble.fold_assignment(folder)
    rows = learnt_rows(params, run, tasks)
    assert sorted(assignment.id) == sorted(rows.id.astype(str))  # every labelled row has a fold, once
    fold = dict(zip(assignment.id, assignment.fold))
    rows = rows.assign(fold=rows.id.astype(str).map(fold), group=normalise_queries(rows["query"]).to_numpy())
    # a created row goes with the row it came from, which brings its query's rows along
    by_id = dict(zip(rows.id.astype(str), rows.group))
    created = rows.source_id.notna() if "source_id" in rows else pd.Series(False, index=rows.index)
    rows.loc[created, "group"] = rows.loc[created, "source_id"].astype(str).map(by_id)
    assert rows.groupby("group").fold.nunique().max() == 1
    dev = run.read_table("dev")
    dev = dev[dev.task.isin(tasks)].dropna(subset=["label"])
    oof = pd.read_parquet(folder / ensemble.OOF_FILE)
    assert sorted(oof.id) == sorted(dev.id.astype(str)) and not oof.duplicated(["task", "id"]).any()
    per_fold = {e["fold"]: e for e in training.load(run).metrics["models"][name]["per_fold"]}
    for f in range(k):
        unseen = set(rows.group[rows.fold == f])
        assert not unseen & set(rows.group[rows.fold != f])
        assert per_fold[f]["train_rows"] == int((rows.fold != f).sum())  # member f learnt from the other folds
        mine = oof[oof.fold == f]
        assert set(mine.id) == set(dev.id.astype(str)[dev.id.astype(str).map(fold) == f])
        # the recorded score is member f's own score of those rows
        held = dev[dev.id.astype(str).isin(mine.id)]
        again = heads.score(folder / f"fold-{f}", held)
        np.testing.assert_allclose(again.logit.to_numpy(), mine.set_index("id").loc[held.id.astype(str), "logit"],
                                   rtol=1e-5, atol=1e-5)
    preds = pd.read_parquet(run.path("predictions", "dev.parquet")).dropna(subset=["label"])
    preds = preds[preds.task.isin(tasks)]
    np.testing.assert_allclose(preds.logit.to_numpy(), oof.set_index("id").loc[preds.id.astype(str), "logit"])
    np.testing.assert_allclose(preds.score, 1 / (1 + np.exp(-preds.logit)))


def assert_test_is_the_members_mean(run: Run, name: str, tasks: list[str]) -> None:
    folder = run.path("models", name)
    test = run.read_table("test")
    test = test[test.task.isin(tasks)]
    preds = pd.read_parquet(run.path("predictions", "test.parquet")).set_index("id").loc[test.id]
    members = [heads.score(folder / f"fold-{f}", test).logit.to_numpy() for f in range(3)]
    assert not np.allclose(members[0], members[1])  # the members differ: the mean is not one model's score
    np.testing.assert_allclose(preds.logit.to_numpy(), np.mean(members, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(preds.score.to_numpy(), 1 / (1 + np.exp(-np.mean(members, axis=0))), rtol=1e-5)


def test_classifier_folds_score_dev_out_of_fold_and_record_each_fold(classifier_run):
    params, run, metrics = classifier_run
    assert ensemble.is_ensemble(run.path("models", "joint"))
    assert not (run.path("models", "joint") / META_FILE).exists()  # the folder is an ensemble, not one model
    assert_dev_scored_out_of_fold(params, run, "joint", ["QC", "QI"])
    figures = metrics["models"]["joint"]
    assert figures["folds"] == 3 and len(figures["per_fold"]) == 3
    for entry in figures["per_fold"]:
        assert entry["dev_rows"] > 0 and entry["seconds"] > 0 and 0 <= entry["dev_f1_at_0.5"] <= 1
    assert {"QC", "QI"} <= set(metrics["dev"])
    # the curves hold every fold's log (seaborn draws their mean per step)
    assert {h["fold"] for h in metrics["curves"]["joint"]} == {0, 1, 2}
    assert len(training.load(run).curves)


def test_classifier_folds_score_test_by_the_mean_of_the_members_log_odds(classifier_run):
    _, run, _ = classifier_run
    assert_test_is_the_members_mean(run, "joint", ["QC", "QI"])


def test_dev_is_scored_out_of_fold_when_training_recorded_no_scores(classifier_run):
    """Under torchrun (or with a vLLM scorer) training records no scores: score_run scores each fold's dev rows
    with its member then, gets what training would have recorded, and records it."""
    params, run, _ = classifier_run
    before = pd.read_parquet(run.path("predictions", "dev.parquet"))
    folder = run.path("models", "joint")
    recorded = pd.read_parquet(folder / ensemble.OOF_FILE)
    (folder / ensemble.OOF_FILE).unlink()
    try:
        training.score_run(params, run, {"joint": ["QC", "QI"]})
        after = pd.read_parquet(run.path("predictions", "dev.parquet"))
        again = pd.read_parquet(folder / ensemble.OOF_FILE)
    finally:
        ensemble.write_out_of_fold(folder, recorded)
        training.score_run(params, run, {"joint": ["QC", "QI"]})
    assert list(after.id) == list(before.id)
    np.testing.assert_allclose(after.logit.to_numpy(), before.logit.to_numpy(), rtol=1e-5, atol=1e-5)
    again = again.set_index(["task", "id"]).loc[pd.MultiIndex.from_frame(recorded[["task", "id"]])]
    assert list(again.fold) == list(recorded.fold)
    np.testing.assert_allclose(again.logit.to_numpy(), recorded.logit.to_numpy(), rtol=1e-5, atol=1e-5)


def test_steps_06_07_and_predict_work_on_a_fold_run(classifier_run, tmp_path):
    params, run, _ = classifier_run
    assert calibration.run(params, run)["tasks"].keys() == {"QC", "QI"}
    # step 07's typo'd dev rows are scored by the member that did not see their fold, as dev was
    dev = pd.read_parquet(run.path("predictions", "dev.parquet")).dropna(subset=["label"])
    typo = error_analysis.score_with_typos(params, run, dev, {"joint": ["QC", "QI"]}, rate=0.3, seed=1)
    changed = typo["query"].to_numpy() != dev["query"].to_numpy()
    assert changed.any()
    folder = run.path("models", "joint")
    folds = ensemble.folds_of(folder, typo)
    for f in range(3):
        mine = changed & (folds == f)
        if mine.any():
            np.testing.assert_allclose(typo.logit[mine], heads.score(folder / f"fold-{f}", typo[mine]).logit,
                                       rtol=1e-5, atol=1e-5)
    assert "robustness" in error_analysis.run(params, run)
    inputs = [run.path("data", "raw", f"test_{task}.jsonl") for task in ("QC", "QI")]
    proc = subprocess.run([sys.executable, "-m", "qckit", "predict", "--run", str(run.root), "--input",
                           *map(str, inputs), "--output", str(tmp_path / "sub"), "--thresholds", "QC=0.5,QI=0.5"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = pd.read_parquet(run.path("predictions", "test.parquet"))
    for task, path in zip(("QC", "QI"), inputs):
        submitted = [json.loads(line) for line in (tmp_path / "sub" / f"submit_{task}.txt").read_text().splitlines()]
        assert [s["id"] for s in submitted] == [json.loads(line)["id"] for line in path.read_text().splitlines()]
        score = test[test.task == task].set_index("id").score
        # the same scores as step 05's (a score within float noise of the threshold may fall either side)
        assert all(s["prediction"] == int(score[s["id"]] >= 0.5) for s in submitted if abs(score[s["id"]] - 0.5) > 1e-5)


def test_trees_head_per_task_folds_and_back_to_one_model(tmp_path):
    """The embedding (trees) head, one ensemble per task; training one model into the folder afterwards removes
    the ensemble, so the folder is scored as that one model."""
    params = smoke_params(head="embedding", tasks_mode="separate", folds=3)
    run = fold_run(tmp_path / "run", params)
    metrics = training.run(params, run)
    assert metrics["plan"] == {"QC": ["QC"], "QI": ["QI"]}
    for task in ("QC", "QI"):
        assert ensemble.read_manifest(run.path("models", task))["tasks"] == [task]
        assert_dev_scored_out_of_fold(params, run, task, [task])
        assert_test_is_the_members_mean(run, task, [task])
    single = smoke_params(head="embedding", tasks_mode="separate")
    training.run(single, run)
    folder = run.path("models", "QC")
    assert not ensemble.is_ensemble(folder) and not list(folder.glob("fold-*"))
    test = run.read_table("test")
    test = test[test.task == "QC"]
    preds = pd.read_parquet(run.path("predictions", "test.parquet")).set_index("id").loc[test.id]
    np.testing.assert_allclose(preds.logit.to_numpy(), heads.score(folder, test).logit.to_numpy(), rtol=1e-6)


def test_two_stage_trains_stage_one_once_for_all_folds(tmp_path):
    params = smoke_params(tasks_mode="separate", two_stage=True, folds=2)
    run = fold_run(tmp_path / "run", params)
    metrics = training.run(params, run)
    for task in ("QC", "QI"):
        folder = run.path("models", task)
        assert "stage1" in metrics["models"][task] and metrics["models"][task]["folds"] == 2
        stage1 = run.path("models", f"{task}-stage1")
        for member in ensemble.member_dirs(folder):
            assert heads.read_meta(member)["base_spec"] == str(stage1)  # each fold starts from the one stage 1
    assert sorted(p.name for p in run.path("models").iterdir()) == ["QC", "QC-stage1", "QI", "QI-stage1"]


def test_an_ensemble_whose_manifest_leads_outside_its_folder_is_refused(classifier_run, tmp_path):
    params, run, _ = classifier_run
    folder = tmp_path / "ens"
    shutil.copytree(run.path("models", "joint"), folder, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.copytree(folder / "fold-0", tmp_path / "elsewhere")  # a real model folder, outside the ensemble
    (folder / "link").symlink_to(tmp_path / "elsewhere")
    rows = run.read_table("test").head(4)
    manifest = json.loads((folder / ensemble.MANIFEST_FILE).read_text())
    assert len(heads.score_folder(folder, rows, params)) == 4  # the copy scores as it is
    for member in ("../elsewhere", str(tmp_path / "elsewhere"), "link", "."):
        members = [member, *manifest["members"][1:]]
        (folder / ensemble.MANIFEST_FILE).write_text(json.dumps({**manifest, "members": members}))
        with pytest.raises(UnsafeArtefactError, match="outside the ensemble folder"):
            heads.score_folder(folder, rows, params)
    for bad in ({**manifest, "k": 5}, [1, 2], {**manifest, "members": [None] * 3}):
        (folder / ensemble.MANIFEST_FILE).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="not a qckit ensemble manifest"):
            heads.score_folder(folder, rows, params)
    (folder / ensemble.MANIFEST_FILE).write_text(json.dumps(manifest))
    (folder / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(UnsafeArtefactError, match="extra.pkl"):
        heads.score_folder(folder, rows, params)


def test_folds_is_validated():
    params = load_params(REPO / "params" / "smoke.yaml")
    assert params.training.folds is None
    raw = params.model_dump(mode="json")
    raw["training"]["folds"] = 1
    with pytest.raises(ValidationError, match="folds"):
        type(params).model_validate(raw)


def test_notebook_tables_show_one_row_per_fold_and_scalar_model_figures(classifier_run):
    _, _, metrics = classifier_run
    folds = training.fold_table(metrics)
    assert list(folds.fold) == [0, 1, 2] and set(folds.model) == {"joint"}
    assert (folds.train_rows > 0).all() and (folds.dev_rows > 0).all() and folds["dev_f1_at_0.5"].between(0, 1).all()
    table = training.model_table(metrics)
    assert table.loc["folds", "joint"] == 3 and "per_fold" not in table.index
    assert training.fold_table({"models": {"joint": {"seconds": 1.0}}}).empty
