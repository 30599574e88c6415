from __future__ import annotations

from pathlib import Path

import pytest

from qckit.config import Params, ParamsError, dump_params, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", sorted((REPO / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_profile_validates_and_round_trips(profile: Path):
    params = load_params(profile)
    assert params.name
    again = parse_params(__import__("yaml").safe_load(dump_params(params)))
    assert again == params


def test_unknown_key_is_named(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndata:\n  sourse: demo\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "data.sourse: unknown key" in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_section_is_named(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntraning:\n  lr: 1\n")
    with pytest.raises(ParamsError, match="traning: unknown key"):
        load_params(path)


def test_wrong_type_is_named(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndemo:\n  noise_rate: lots\n")
    with pytest.raises(ParamsError, match=r"demo\.noise_rate: .*number"):
        load_params(path)


def test_out_of_range_and_bad_choice(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndemo:\n  noise_rate: 0.9\ndata:\n  conflicts: merge\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "demo.noise_rate" in str(err.value) and "data.conflicts" in str(err.value)


def test_missing_name_and_bad_yaml_and_missing_file(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("data: {}\n")
    with pytest.raises(ParamsError, match="name: Field required"):
        load_params(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)
    path.write_text("- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")


def test_defaults_are_the_documented_ones():
    params = Params(name="x")
    assert params.data.source == "demo" and params.data.drop_duplicates is True
    assert params.models.trust_remote_code is False


@pytest.mark.parametrize("extra, message", [("  method: lora\n", "method must be 'full'"),
                                            ("  two_stage: true\n", "two_stage needs a fine-tuned model")])
def test_embedding_head_refuses_settings_it_cannot_honour(tmp_path: Path, extra: str, message: str):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntraining:\n  head: embedding\n" + extra)
    with pytest.raises(ParamsError, match=message) as err:
        load_params(path)
    assert "training" in str(err.value)


@pytest.mark.parametrize("head", ["yes_no", "embedding"])
def test_head_learning_rate_is_refused_where_there_is_no_new_head(tmp_path: Path, head: str):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: x\ntraining:\n  head: {head}\n  head_learning_rate: 1.0e-3\n")
    with pytest.raises(ParamsError, match=f"head_learning_rate is for the classifier head.*{head}"):
        load_params(path)
    path.write_text("name: x\ntraining:\n  head: classifier\n  head_learning_rate: 1.0e-3\n")
    assert load_params(path).training.head_learning_rate == 1e-3


def test_per_task_settings_merge_into_one_tasks_model(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntraining:\n  head: embedding\n  tasks_mode: separate\n  embedding:\n    trees: 50\n"
                    "  per_task:\n    QI:\n      learning_rate: 1.0e-4\n      embedding:\n        cross_encoder: true\n")
    tp = load_params(path).training
    qi, qc = tp.for_task("QI"), tp.for_task("QC")
    assert qi.embedding.cross_encoder and qi.embedding.trees == 50 and qi.learning_rate == 1e-4  # merged key by key
    assert not qc.embedding.cross_encoder and qc.learning_rate == tp.learning_rate and qc == tp
    assert qi.per_task == {}


@pytest.mark.parametrize("body, message", [
    ("  per_task:\n    QI:\n      epochs: 2\n", "set tasks_mode: separate"),
    ("  tasks_mode: separate\n  per_task:\n    QI:\n      embedding:\n        treez: 2\n", r"per_task\.QI\.embedding\.treez: Extra inputs"),
    ("  tasks_mode: separate\n  per_task:\n    QI:\n      head: embedding\n      method: lora\n",
     r"per_task\.QI: .*method must be 'full'"),
    ("  tasks_mode: separate\n  per_task:\n    QX:\n      epochs: 2\n", r"per_task\.QX"),
])
def test_per_task_settings_are_checked_when_the_profile_loads(tmp_path: Path, body: str, message: str):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntraining:\n" + body)
    with pytest.raises(ParamsError, match=message) as err:
        load_params(path)
    assert str(path) in str(err.value)
