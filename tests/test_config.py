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
                    "  per_task:\n    QI:\n      learning_rate: 1.0e-4\n      embedding:\n"
                    "        cross_encoder:\n          enabled: true\n")
    tp = load_params(path).training
    qi, qc = tp.for_task("QI"), tp.for_task("QC")
    # merged key by key
    assert qi.embedding.cross_encoder.enabled and qi.embedding.trees == 50 and qi.learning_rate == 1e-4
    assert not qc.embedding.cross_encoder.enabled and qc.learning_rate == tp.learning_rate and qc == tp
    assert qi.per_task == {}


@pytest.mark.parametrize("body, message", [
    ("  per_task:\n    QI:\n      epochs: 2\n", "set tasks_mode: separate"),
    ("  tasks_mode: separate\n  per_task:\n    QI:\n      embedding:\n        treez: 2\n",
     r"per_task\.QI\.embedding\.treez: Extra inputs"),
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


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_extends_merges_mappings_key_by_key_and_replaces_lists(tmp_path: Path):
    write(tmp_path, "base.yaml", "name: base\ndata:\n  tasks: [QC, QI]\n  drop_empty: false\n"
          "training:\n  head: embedding\n  embedding:\n    trees: 50\n    neighbours: 10\n")
    child = write(tmp_path, "child.yaml", "extends: base\nname: child\ndata:\n  tasks: [QI]\n"
                  "training:\n  embedding:\n    trees: 80\n")
    params = load_params(child)
    assert params.name == "child"
    assert params.data.tasks == ["QI"]  # a list replaces the parent's, it is not appended to
    assert params.data.drop_empty is False  # a sibling the child does not state is inherited
    assert params.training.head == "embedding"
    assert (params.training.embedding.trees, params.training.embedding.neighbours) == (80, 10)


def test_extends_chain_of_two_and_relative_path(tmp_path: Path):
    (tmp_path / "bases").mkdir()
    write(tmp_path / "bases", "root.yaml", "name: root\nrun:\n  seed: 1\ndemo:\n  noise_rate: 0.2\n")
    write(tmp_path / "bases", "middle.yaml", "extends: root\nname: middle\nrun:\n  seed: 2\n")
    leaf = write(tmp_path, "leaf.yaml", "extends: bases/middle.yaml\nname: leaf\ndemo:\n  queries_per_language: 9\n")
    params = load_params(leaf)
    assert (params.run.seed, params.demo.noise_rate, params.demo.queries_per_language) == (2, 0.2, 9)


def test_extends_cycle_is_an_error_naming_the_files(tmp_path: Path):
    a = write(tmp_path, "a.yaml", "extends: b\nname: a\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(ParamsError, match="extends cycle") as err:
        load_params(a)
    assert "a.yaml -> " in str(err.value) and "b.yaml -> " in str(err.value)
    selfish = write(tmp_path, "self.yaml", "extends: self\nname: s\n")
    with pytest.raises(ParamsError, match="extends cycle"):
        load_params(selfish)


def test_extends_missing_parent_is_an_error_naming_it(tmp_path: Path):
    child = write(tmp_path, "child.yaml", "extends: nowhere\nname: c\n")
    with pytest.raises(ParamsError) as err:
        load_params(child)
    assert str(child) in str(err.value) and str(tmp_path / "nowhere.yaml") in str(err.value)
    write(tmp_path, "child.yaml", "extends: [a, b]\nname: c\n")
    with pytest.raises(ParamsError, match="extends: expected a profile name"):
        load_params(child)


def test_extends_child_and_parent_keys_are_still_validated(tmp_path: Path):
    write(tmp_path, "base.yaml", "name: base\n")
    child = write(tmp_path, "child.yaml", "extends: base\nname: child\ndata:\n  sourse: demo\n")
    with pytest.raises(ParamsError) as err:
        load_params(child)
    assert "data.sourse: unknown key" in str(err.value) and str(child) in str(err.value)
    write(tmp_path, "base.yaml", "name: base\ndemo:\n  noise_rate: lots\n")
    write(tmp_path, "child.yaml", "extends: base\nname: child\n")
    with pytest.raises(ParamsError, match=r"demo\.noise_rate: .*number") as err:
        load_params(child)
    assert "base.yaml" in str(err.value)  # the message says which file the child extends
    write(tmp_path, "base.yaml", "name: [unclosed\n")
    with pytest.raises(ParamsError, match="base.yaml: not valid YAML"):
        load_params(child)


def test_resolved_dump_has_no_extends_and_loads_alone(tmp_path: Path):
    write(tmp_path, "base.yaml", "name: base\ntraining:\n  head: embedding\n")
    child = write(tmp_path, "child.yaml", "extends: base\nname: child\ncalibration:\n  per_language: true\n")
    text = dump_params(load_params(child))
    assert "extends" not in __import__("yaml").safe_load(text)
    alone = write(tmp_path, "resolved.yaml", text)
    (tmp_path / "base.yaml").unlink()  # a run's params.yaml needs no other file
    again = load_params(alone)
    assert again.training.head == "embedding" and again.calibration.per_language and again.name == "child"


def test_shipped_variants_are_their_parent_with_what_they_state():
    tuned, trees = load_params(REPO / "params" / "cpu-tuned.yaml"), load_params(REPO / "params" / "cpu-trees.yaml")
    assert tuned.training.embedding.encoder.fine_tune and not trees.training.embedding.encoder.fine_tune
    assert tuned.model_dump(exclude={"name", "description", "training"}) == \
        trees.model_dump(exclude={"name", "description", "training"})
    best = load_params(REPO / "params" / "cpu-best.yaml").training
    assert best.head == "embedding" and best.for_task("QC").embedding.second_encoder.model == "use-multilingual-v3"
    assert best.for_task("QI").embedding.cross_encoder.enabled


# numbers are numbers (issue 24): YAML 1.1 reads yes/no/on/off/true/false as booleans, and pydantic's lax
# mode would read a boolean as 1 or 0 for a numeric key
@pytest.mark.parametrize("body, key", [
    ("training:\n  epochs: yes\n", "training.epochs"),
    ("demo:\n  noise_rate: no\n", "demo.noise_rate"),
    ("demo:\n  queries_per_language: true\n", "demo.queries_per_language"),
    ("run:\n  seed: off\n", "run.seed"),
    ("training:\n  max_train_rows: on\n", "training.max_train_rows"),  # int | None
    ("training:\n  num_labels: true\n", "training.num_labels"),  # Literal[1, 2]: True == 1 in Python
    ("training:\n  class_weight: yes\n", "training.class_weight"),  # 'none' | 'balanced' | a number
    ("negatives:\n  rank_range: [true, 3]\n", "negatives.rank_range"),  # inside a tuple
    ("training:\n  embedding:\n    encoder:\n      epochs: yes\n", "training.embedding.encoder.epochs"),  # nested
    ("training:\n  tasks_mode: separate\n  per_task:\n    QI:\n      learning_rate: yes\n",
     "per_task.QI.learning_rate"),
])
def test_yaml_booleans_are_refused_for_numeric_keys(tmp_path: Path, body: str, key: str):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\n" + body)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert f"{key}: " in str(err.value) and "expected a number, got a boolean" in str(err.value), str(err.value)
    assert str(path) in str(err.value)


def test_booleans_stay_valid_where_booleans_belong(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndata:\n  drop_empty: no\ntranslation:\n  vllm_engine: {enforce_eager: yes, "
                    "tensor_parallel_size: 2, gpu_memory_utilization: 0.9}\ntraining:\n  epochs: 3\n"
                    "  learning_rate: 1.0e-4\n  class_weight: 2\n")
    params = load_params(path)
    assert params.data.drop_empty is False
    assert params.translation.vllm_engine == {"enforce_eager": True, "tensor_parallel_size": 2,
                                              "gpu_memory_utilization": 0.9}
    assert params.training.epochs == 3.0 and params.training.class_weight == 2.0
