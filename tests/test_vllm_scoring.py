"""`scoring.backend: vllm` on CPU, tested up to the engine with a stand-in.

The stand-in is a fake `vllm` package put into `sys.modules`: its `LLM` records its constructor arguments and
the token ids it is given, and answers `generate` with a real forward pass of the base model plus the LoRA
adapter (transformers + peft), log-probabilities as vLLM computes them (`logprobs_mode`, `allowed_token_ids`).
So the vLLM path's prompt building, truncation, LoRA request and log-odds are checked against the HF scorer's
without a GPU. The real engine is tested in tests/test_train.py (`gpu` marker).
"""
from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from test_train import params_for, toy_pairs

from qckit import heads
from qckit.cli import main as cli_main
from qckit.config import ParamsError, ScoringParams, TrainingParams, dump_params, load_params, parse_params
from qckit.heads import llm_scoring
from qckit.heads.transformer import Encoder, load
from qckit.pipeline import step_input_hash
from qckit.prompts import build_prompt
from qckit.runs import Run
from qckit.steps import AUDIT, CALIBRATION, ERROR_ANALYSIS, TRAINING, audit, training
from qckit.submission import SubmissionError, predict_files

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


# the stand-in engine ---------------------------------------------------------------------------------------------
class StandInLLM:
    """``vllm.LLM`` answered by transformers: the base model (plus the request's LoRA adapter), one forward pass
    per prompt, the answer token's log-probabilities after (processed) or before (raw) ``allowed_token_ids``."""

    instances: list[StandInLLM] = []

    def __init__(self, model: str, **kwargs):
        self.model, self.kwargs = model, kwargs
        self.received: list[list[int]] = []
        self.lora_requests: list = []
        self._models: dict = {}
        StandInLLM.instances.append(self)

    def _network(self, lora):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        key = lora.lora_path if lora else None
        if key not in self._models:
            model = AutoModelForCausalLM.from_pretrained(self.model, dtype=getattr(torch, self.kwargs["dtype"]))
            self._models[key] = (PeftModel.from_pretrained(model, lora.lora_path) if lora else model).eval()
        return self._models[key]

    def generate(self, prompts, sampling, lora_request=None, use_tqdm=True):
        model = self._network(lora_request)
        self.lora_requests.append(lora_request)
        processed = self.kwargs.get("logprobs_mode", "raw_logprobs") == "processed_logprobs"
        outputs = []
        for prompt in prompts:
            ids = list(prompt["prompt_token_ids"])
            self.received.append(ids)
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            masked = logits.clone()
            if sampling.allowed_token_ids:
                keep = torch.zeros_like(masked, dtype=torch.bool)
                keep[sampling.allowed_token_ids] = True
                masked[~keep] = float("-inf")
            logprobs = torch.log_softmax(masked if processed else logits, dim=-1)
            top = torch.topk(logprobs, sampling.logprobs)
            sampled = int(masked.argmax())  # greedy: temperature 0
            step = {int(i): SimpleNamespace(logprob=float(v)) for v, i in zip(top.values, top.indices)}
            step[sampled] = SimpleNamespace(logprob=float(logprobs[sampled]))
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=[sampled], logprobs=[step])]))
        return outputs


class StandInSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class StandInLoRARequest:
    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


@pytest.fixture
def stand_in(monkeypatch):
    """The fake ``vllm`` package in ``sys.modules``; yields the list of engines built, released afterwards."""
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = StandInLLM, StandInSamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # a TypedDict in vLLM: a plain dict of its keys
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest = StandInLoRARequest
    for name, module in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    StandInLLM.instances = []
    yield StandInLLM.instances
    llm_scoring.release_vllm_engine()


@pytest.fixture
def no_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    yield
    llm_scoring.release_vllm_engine()


# one LoRA adapter on tiny:qwen3, rows long enough to be truncated -------------------------------------------------
MAX_LENGTH = 96


def pairs_with_long_rows() -> pd.DataFrame:
    df = toy_pairs(24, easy=True)
    long_title = " ".join(["Premium Stainless Steel Kitchen Organiser Rack"] * 6)
    df.loc[0, "target"] = long_title
    df.loc[1, "query"] = "cheap " * 40 + "mug"
    df.loc[2, ["task", "target"]] = ["QC", ",".join(["home & kitchen", "storage & organisation"] * 8 + ["mug"])]
    return df


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vllm") / "joint"
    params = params_for("tiny:qwen3", "yes_no", method="lora", epochs=1, max_length=MAX_LENGTH,
                        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})
    heads.train(toy_pairs(48, easy=True), None, params, output_dir=folder)
    return folder


def hf_encoder(folder: Path) -> Encoder:
    """The HF scorer's prompt encoder for a saved model folder."""
    loaded = load(folder)
    return Encoder(loaded.tokenizer, "yes_no", TrainingParams.model_validate(loaded.meta["training"]))


def test_vllm_scores_equal_the_hf_scorer(adapter, stand_in):
    df = pairs_with_long_rows()
    hf = heads.score(adapter, df)
    vl = llm_scoring.score_pairs_vllm(adapter, df)
    np.testing.assert_allclose(vl.logit.to_numpy(), hf.logit.to_numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(vl.score.to_numpy(), hf.score.to_numpy(), atol=1e-5, rtol=0)
    assert list(vl.columns) == list(hf.columns) and (vl.id.to_numpy() == df.id.to_numpy()).all()


def test_vllm_receives_the_hf_encoders_token_ids_truncation_included(adapter, stand_in):
    df = pairs_with_long_rows()
    llm_scoring.score_pairs_vllm(adapter, df)
    encoder = hf_encoder(adapter)
    expected = [f["input_ids"] for f in encoder.encode(df)]
    assert stand_in[0].received == expected
    # rows 0-2 are longer than max_length: what vLLM got was cut as the HF scorer cuts them
    whole = [len(encoder.tokenizer(build_prompt(r.task, r.query, r.target, language=r.language).suffix,
                                   add_special_tokens=False)["input_ids"]) for r in df.itertuples()]
    sent = [len(ids) - len(encoder.prefix_ids(task)) for ids, task in zip(expected, df.task)]
    assert all(whole[i] > MAX_LENGTH >= sent[i] for i in range(3))
    assert sent[3:] == whole[3:]  # the short rows whole


def test_engine_serves_the_adapter_with_prefix_caching_and_label_word_logprobs(adapter, stand_in):
    llm_scoring.score_pairs_vllm(adapter, toy_pairs(4), scoring=ScoringParams(gpu_memory_utilization=0.5))
    (engine,) = stand_in
    meta = json.loads((adapter / "qckit-model.json").read_text())
    assert engine.model == meta["base_model"] and "tokenizer" not in engine.kwargs  # token ids go in
    assert engine.kwargs["enable_prefix_caching"] is True and engine.kwargs["enable_lora"] is True
    assert engine.kwargs["max_lora_rank"] == 8  # the adapter's r=4, rounded up to a rank vLLM serves
    assert engine.kwargs["logprobs_mode"] == "processed_logprobs" and engine.kwargs["dtype"] == "float32"
    assert engine.kwargs["gpu_memory_utilization"] == 0.5 and engine.kwargs["tensor_parallel_size"] == 1
    encoder = hf_encoder(adapter)
    longest = max(len(encoder.prefix_ids(t)) for t in ("QC", "QI")) + MAX_LENGTH + 1
    assert engine.kwargs["max_model_len"] >= longest
    (request,) = engine.lora_requests
    assert Path(request.lora_path) == adapter and request.lora_int_id == 1


def test_one_engine_serves_every_adapter_of_a_base(adapter, stand_in, tmp_path):
    other = shutil.copytree(adapter, tmp_path / "QI")
    df = toy_pairs(4)
    a = llm_scoring.score_pairs_vllm(adapter, df)
    b = llm_scoring.score_pairs_vllm(other, df)
    llm_scoring.score_pairs_vllm(adapter, df)
    assert len(stand_in) == 1  # built once: dev and test, QC and QI adapters share it
    ids = [(Path(r.lora_path), r.lora_int_id) for r in stand_in[0].lora_requests]
    assert ids == [(adapter, 1), (other, 2), (adapter, 1)]
    np.testing.assert_allclose(a.logit, b.logit, atol=1e-6)
    llm_scoring.score_pairs_vllm(adapter, df, scoring=ScoringParams(engine={"enforce_eager": True}))
    assert len(stand_in) == 2 and stand_in[1].kwargs["enforce_eager"] is True  # other settings: a new engine


def test_a_full_model_is_served_from_its_folder(adapter, stand_in, tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "full"
    merged = load(adapter).model.merge_and_unload()
    merged.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(folder))
    meta = json.loads((adapter / "qckit-model.json").read_text())
    (folder / "qckit-model.json").write_text(json.dumps({**meta, "method": "full"}))
    df = pairs_with_long_rows()
    vl = llm_scoring.score_pairs_vllm(folder, df)
    (engine,) = stand_in
    assert engine.model == str(folder) and engine.kwargs["enable_lora"] is False
    assert "max_lora_rank" not in engine.kwargs and engine.lora_requests == [None]
    np.testing.assert_allclose(vl.logit, heads.score(adapter, df).logit, atol=1e-4)


def test_qlora_adapters_get_their_base_in_4_bit(adapter, tmp_path):
    folder = shutil.copytree(adapter, tmp_path / "q")
    meta = json.loads((folder / "qckit-model.json").read_text())
    meta["training"]["method"] = "qlora"
    (folder / "qckit-model.json").write_text(json.dumps(meta))
    assert llm_scoring.engine_arguments(folder, ScoringParams())["quantization"] == "bitsandbytes"
    assert "quantization" not in llm_scoring.engine_arguments(adapter, ScoringParams())
    args = llm_scoring.engine_arguments(adapter, ScoringParams(max_model_len=512, max_lora_rank=64,
                                                               engine={"dtype": "bfloat16"}))
    assert (args["max_model_len"], args["max_lora_rank"], args["dtype"]) == (512, 64, "bfloat16")


def test_log_odds_need_both_label_words():
    assert llm_scoring.yes_no_from_logprobs({5: -0.1, 7: -2.4}, (7, 5)) == pytest.approx(2.3)
    with pytest.raises(ValueError, match=r"no log-probability for label token\(s\) \[7\]"):
        llm_scoring.yes_no_from_logprobs({5: -0.1}, (7, 5))


# where the backend is chosen ------------------------------------------------------------------------------------
def test_score_folder_follows_the_run_s_backend(adapter, stand_in):
    df = toy_pairs(6)
    params = params_for("tiny:qwen3", "yes_no", method="lora", max_length=MAX_LENGTH)
    hf = heads.score_folder(adapter, df, params)
    assert stand_in == []
    vllm_params = params.model_copy(update={"scoring": ScoringParams(backend="vllm")})
    vl = heads.score_folder(adapter, df, vllm_params)
    assert len(stand_in) == 1
    np.testing.assert_allclose(vl.logit, hf.logit, atol=1e-4)


def smoke_raw(backend: str) -> dict:
    raw = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    raw["data"] = {"max_rows": 40}
    raw["models"] = {"embedder": "tiny:bert", "classifier": "tiny:qwen3"}
    raw["training"] = {"head": "yes_no", "method": "lora", "epochs": 1, "batch_size": 8, "max_length": MAX_LENGTH,
                       "max_train_rows": 48, "num_threads": 1, "tasks_mode": "separate",
                       "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    raw["scoring"] = {"backend": backend}
    return raw


def test_step_05_with_vllm_writes_the_predictions_of_hf(stand_in, tmp_path):
    params = parse_params(smoke_raw("vllm"))
    run = Run(tmp_path / "run").ensure()
    audit.run(params, run)
    metrics = training.run(params, run)
    assert sorted(metrics["plan"]) == ["QC", "QI"] and set(metrics["predictions"]) == {"dev", "test"}
    assert len(stand_in) == 1  # one engine: both tasks' adapters, dev and test
    assert sorted(r.lora_int_id for r in stand_in[0].lora_requests) == [1, 1, 2, 2]
    by_vllm = {s: pd.read_parquet(run.path("predictions", f"{s}.parquet")) for s in ("dev", "test")}
    training.score_run(parse_params(smoke_raw("hf")), run, metrics["plan"])
    for split, vl in by_vllm.items():
        hf = pd.read_parquet(run.path("predictions", f"{split}.parquet"))
        assert list(vl.id) == list(hf.id) and list(vl.columns) == list(hf.columns)
        np.testing.assert_allclose(vl.logit, hf.logit, atol=1e-4)
        np.testing.assert_allclose(vl.score, hf.score, atol=1e-5)


# qckit predict --backend ------------------------------------------------------------------------------------------
def official(ident: int, task: str) -> dict:
    target = {"category_path": "home,stuff,mug"} if task == "QC" else {"item_title": f"New 2024 Mug {ident}"}
    return {"id": ident, "task": task, "language": "en", "origin_query": "yes mug" if ident % 2 else "no lamp",
            **target}


def predict_run(root: Path, adapter: Path, params) -> Path:
    """A run with step 05's plan (one joint model: the adapter), step 06's thresholds and its params.yaml."""
    shutil.copytree(adapter, root / "models" / "joint")
    (root / "metrics").mkdir(parents=True)
    (root / "metrics" / f"{TRAINING}.json").write_text(json.dumps({"plan": {"joint": ["QC", "QI"]}}))
    (root / "metrics" / f"{CALIBRATION}.json").write_text(json.dumps({"thresholds": {"QC": 0.5, "QI": 0.5}}))
    (root / "params.yaml").write_text(dump_params(params))
    return root


def test_predict_backend_vllm_overrides_the_run_s_hf(adapter, stand_in, tmp_path):
    params = params_for("tiny:qwen3", "yes_no", method="lora", max_length=MAX_LENGTH)
    run = predict_run(tmp_path / "run", adapter, params)
    test = tmp_path / "test_QC.jsonl"
    test.write_text("".join(json.dumps(official(i, "QC")) + "\n" for i in range(1, 9)))
    assert cli_main(["predict", "--run", str(run), "--input", str(test), "--output", str(tmp_path / "hf"),
                     "--thresholds", "QC=0.5"]) == 0
    assert stand_in == []  # the run's own backend: hf
    assert cli_main(["predict", "--run", str(run), "--input", str(test), "--output", str(tmp_path / "vl"),
                     "--thresholds", "QC=0.5", "--backend", "vllm"]) == 0
    assert len(stand_in) == 1 and len(stand_in[0].received) == 8
    assert (tmp_path / "vl" / "submit_QC.txt").read_text() == (tmp_path / "hf" / "submit_QC.txt").read_text()


def test_predict_backend_vllm_refused_for_a_run_of_another_head(adapter, tmp_path):
    run = predict_run(tmp_path / "run", adapter, params_for("tiny:bert", "classifier"))
    test = tmp_path / "test_QC.jsonl"
    test.write_text(json.dumps(official(1, "QC")) + "\n")
    with pytest.raises(SubmissionError, match="--backend vllm: backend 'vllm' scores the yes_no head only; "
                                              "training.head is 'classifier'"):
        predict_files(run, [test], tmp_path / "sub", backend="vllm")
    assert not (tmp_path / "sub").exists()


def test_missing_vllm_is_a_clear_error(adapter, no_vllm, tmp_path, capsys):
    with pytest.raises(ImportError, match=r"scoring.backend vllm needs vLLM on a GPU machine \(pip install"):
        llm_scoring.score_pairs_vllm(adapter, toy_pairs(2))
    run = predict_run(tmp_path / "run", adapter, params_for("tiny:qwen3", "yes_no", method="lora"))
    test = tmp_path / "test_QC.jsonl"
    test.write_text(json.dumps(official(1, "QC")) + "\n")
    assert cli_main(["predict", "--run", str(run), "--input", str(test), "--output", str(tmp_path / "sub"),
                     "--backend", "vllm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qckit predict: scoring.backend vllm needs vLLM") and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / "sub").exists()


# validation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, message", [
    ({"scoring": {"backend": "vllm"}},
     "scoring: Value error, backend 'vllm' scores the yes_no head only; training.head is 'classifier'"),
    ({"scoring": {"backend": "vllm"}, "training": {"head": "embedding"}},
     "training.head is 'embedding' (set scoring.backend: hf)"),
    ({"scoring": {"backend": "vllm"}, "training": {"head": "yes_no", "tasks_mode": "separate",
                                                   "per_task": {"QI": {"head": "classifier"}}}},
     "training.head is 'classifier'"),
    ({"scoring": {"backend": "tgi"}}, "scoring.backend: Input should be 'hf' or 'vllm'"),
    ({"scoring": {"max_lora_rank": 24}}, "scoring.max_lora_rank: Value error, vLLM serves LoRA ranks"),
    ({"scoring": {"gpu_memory_utilization": 1.5}}, "scoring.gpu_memory_utilization: Input should be less than"),
    ({"scoring": {"engine": {"enable_prefix_caching": False, "max_model_len": 64}}},
     "scoring.engine: Value error, enable_prefix_caching, max_model_len: set by qckit or by their own scoring keys"),
    ({"scoring": {"tensor_parallel_size": True}}, "scoring.tensor_parallel_size: expected a number, got a boolean"),
])
def test_bad_scoring_sections_are_errors_naming_the_key(raw, message):
    with pytest.raises(ParamsError) as err:
        parse_params({"name": "x", **raw}, "p.yaml")
    assert message in str(err.value)


def test_vllm_with_the_yes_no_head_is_valid_and_paper_yaml_uses_it():
    ok = parse_params({"name": "x", "scoring": {"backend": "vllm", "engine": {"enforce_eager": True}},
                       "training": {"head": "yes_no"}})
    assert ok.scoring.backend == "vllm" and ok.scoring.engine == {"enforce_eager": True}
    assert load_params(REPO / "params" / "paper.yaml").scoring.backend == "vllm"
    assert parse_params({"name": "x"}).scoring.backend == "hf"


def test_scoring_is_an_input_of_steps_05_and_07_only(tmp_path):
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    hf = parse_params({"name": "x", "training": {"head": "yes_no"}})
    vl = parse_params({"name": "x", "training": {"head": "yes_no"}, "scoring": {"backend": "vllm"}})
    for step, changes in ((TRAINING, True), (ERROR_ANALYSIS, True), (AUDIT, False), (CALIBRATION, False)):
        assert (step_input_hash(hf, step, notebook, "") != step_input_hash(vl, step, notebook, "")) is changes
