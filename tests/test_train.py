"""Step 05 on tiny random models: heads, restricted loss, LoRA round trip, resume, DDP, scorer paths."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from benchmarks import gpu_paths
from qckit import heads
from qckit.config import Params, ScoringParams, TrainingParams
from qckit.heads import transformer
from qckit.heads.common import LoadedModel
from qckit.heads.llm_scoring import release_vllm_engine, score_pairs_vllm
from qckit.models import resolve
from qckit.prompts import build_prompt, label_token_ids
from qckit.runs import Run

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def toy_pairs(n: int = 96, seed: int = 0, *, easy: bool = False) -> pd.DataFrame:
    """A learnable toy task: relevant when the query names the category's leaf (easy: says so)."""
    rng = np.random.default_rng(seed)
    leaves = ["shoes", "phone case", "dress", "lamp", "mug", "wallet"]
    rows = []
    for i in range(n):
        q = leaves[rng.integers(len(leaves))]
        pos = bool(rng.random() < 0.6)
        leaf = q if pos else leaves[(leaves.index(q) + 1 + rng.integers(len(leaves) - 1)) % len(leaves)]
        task = "QC" if i % 2 else "QI"
        target = f"home,stuff,{leaf}" if task == "QC" else f"New 2024 {leaf.title()} Best Quality"
        query = f"{'yes' if pos else 'no'} {q}" if easy else f"cheap {q}"
        rows.append({"id": i, "task": task, "language": "en", "query": query, "target": target,
                     "label": int(pos), "origin": "original", "source_id": pd.NA})
    df = pd.DataFrame(rows)
    df["label"] = df["label"].astype("Int8")
    return df


def params_for(model: str, head: str, method: str = "full", **training) -> Params:
    tp = {"head": head, "method": method, "epochs": 2, "batch_size": 8, "learning_rate": 3e-3,
          "max_length": 64, "warmup_ratio": 0.0, "num_threads": 1, **training}
    return Params(name="t", models={"classifier": model}, training=tp)


def test_prompt_has_shared_prefix_and_levels():
    p = build_prompt("QC", "zapatos", "home & garden,arts,crafts & sewing,soap molds", language="es")
    q = build_prompt("QC", "other query", "shoes,boots", language="fr")
    assert p.prefix == q.prefix and "### Instruction:" in p.prefix
    assert "Category: home & garden > arts,crafts & sewing > soap molds" in p.suffix
    assert "Language: Spanish" in p.suffix and p.suffix.endswith("### Response:")
    assert "Product title: Red Mug" in build_prompt("QI", "mug", "Red Mug").suffix


def test_label_words_must_be_single_tokens():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve("tiny:qwen3"))
    no, yes = label_token_ids(tok)
    assert no != yes
    with pytest.raises(ValueError, match=r"single token.*'\s?absolutely not'"):
        label_token_ids(tok, (" absolutely not", " yes"))


@pytest.mark.parametrize("model", ["tiny:qwen3", "tiny:gemma3"])
def test_yes_no_loss_falls_and_scores_match_plain_forward(model, tmp_path):
    df = toy_pairs(easy=True)
    params = params_for(model, "yes_no", epochs=10, learning_rate=1e-2, freeze_embeddings=False, max_length=128)
    figures = heads.train(df, df, params, output_dir=tmp_path / "m")
    # the loss over the two label words, on the whole set after each epoch
    losses = [h["eval_loss"] for h in figures["log_history"] if "eval_loss" in h]
    assert len(losses) == 10 and losses[-1] < losses[0] - 0.01
    loaded = heads.load(tmp_path / "m")
    assert isinstance(loaded, LoadedModel) and loaded.head == "yes_no" and loaded.folder == tmp_path / "m"
    fast = heads.score(loaded, df, batch_size=7)
    slow = heads.score(loaded, df, batch_size=5, prefix_cache=False)
    enc = transformer.Encoder(loaded.tokenizer, "yes_no", TrainingParams.model_validate(loaded.meta["training"]))
    with torch.inference_mode():
        ref = []
        for f in enc.encode(df.head(12)):
            logits = loaded.model(input_ids=torch.tensor([f["input_ids"]])).logits[0, -1, list(enc.label_ids)]
            ref.append(float(torch.softmax(logits, -1)[1]))
    np.testing.assert_allclose(fast.score, slow.score, atol=1e-5)
    np.testing.assert_allclose(fast.score.to_numpy()[:12], ref, atol=1e-5)
    np.testing.assert_allclose(fast.score, 1 / (1 + np.exp(-fast.logit)), atol=1e-12)  # logit: the log-odds
    assert fast.score.std() > 1e-4  # the scores depend on the input


@pytest.mark.parametrize("model,head", [("tiny:qwen3", "yes_no"), ("tiny:bert", "classifier")])
def test_gradient_accumulation_averages_the_micro_batch_losses(model, head, tmp_path):
    """With gradient accumulation the reported loss (and the gradient) is the mean over the accumulated rows,
    not their sum: at a learning rate too small to move the weights, the epoch's mean training loss equals the
    loss of the same rows evaluated in one pass. (A causal LM's forward takes **kwargs, so the Trainer assumes
    the loss was already divided for accumulation; qckit's restricted loss is a per-batch mean.)"""
    df = toy_pairs(64)
    params = params_for(model, head, epochs=1, batch_size=8, grad_accum=4, learning_rate=1e-12,
                        eval_batch_size=16)
    figures = heads.train(df, df, params, output_dir=tmp_path / "m")
    train_loss = next(h["train_loss"] for h in figures["log_history"] if "train_loss" in h)
    eval_loss = next(h["eval_loss"] for h in figures["log_history"] if "eval_loss" in h)
    assert train_loss == pytest.approx(eval_loss, rel=1e-3)


@pytest.mark.parametrize("num_labels", [1, 2])
def test_classifier_head_learns_the_toy_task(num_labels, tmp_path):
    from sklearn.metrics import roc_auc_score

    df = toy_pairs(160, easy=True)
    params = params_for("tiny:bert", "classifier", num_labels=num_labels, epochs=6, freeze_embeddings=False)
    heads.train(df, df.head(40), params, output_dir=tmp_path / "m")
    preds = heads.score(tmp_path / "m", df)  # a folder: loaded on the way
    assert roc_auc_score(df.label.astype(int), preds.score) > 0.9


def test_classifier_head_trains_at_its_own_learning_rate(tmp_path):
    """head_learning_rate: the new classification layers (and the pooler) move at their rate while the encoder
    moves at learning_rate; here the encoder's rate is too small to change it at all."""
    from transformers import set_seed

    df = toy_pairs(64, easy=True)
    params = params_for("tiny:bert", "classifier", epochs=1, learning_rate=1e-12, head_learning_rate=1e-2,
                        freeze_embeddings=False)
    trained = dict(heads.train(df, None, params, output_dir=tmp_path / "m", keep_model=True)["model"]
                   .named_parameters())
    set_seed(params.run.seed)  # the same initial head as heads.train drew
    initial = dict(transformer.load_base("tiny:bert", params.training)[0].named_parameters())
    moved = {n: float((trained[n].detach() - p.detach()).abs().max()) for n, p in initial.items()}
    head = [n for n in moved if transformer.is_head_parameter(n)]
    assert {n.split(".")[0] for n in head} >= {"classifier"} and any(".pooler." in n for n in head)
    assert min(moved[n] for n in head if n.endswith("weight")) > 1e-3
    assert max(v for n, v in moved.items() if n not in head) < 1e-8


@pytest.mark.parametrize("model,head", [("tiny:qwen3", "yes_no"), ("tiny:bert", "classifier")])
def test_lora_adapter_round_trip_gives_identical_scores(model, head, tmp_path):
    df = toy_pairs(48)
    params = params_for(model, head, method="lora", epochs=1, merge_adapter=True)
    figures = heads.train(df, None, params, output_dir=tmp_path / "m", keep_model=True)
    assert (tmp_path / "m" / "adapter_config.json").exists()
    trained = figures["model"].eval()
    loaded = heads.load(tmp_path / "m")
    in_memory = heads.score(LoadedModel(head, loaded.meta, trained, tokenizer=loaded.tokenizer), df)
    reloaded = heads.score(loaded, df)
    np.testing.assert_allclose(in_memory.score, reloaded.score, atol=1e-6)
    # the merged model is a plain transformers folder (what vLLM or another tool loads) scoring the same
    merged = transformer.auto_class(head).from_pretrained(tmp_path / "m" / "merged").eval()
    assert not (tmp_path / "m" / "merged" / "adapter_config.json").exists()
    merged_scores = heads.score(LoadedModel(head, loaded.meta, merged, tokenizer=loaded.tokenizer), df)
    np.testing.assert_allclose(merged_scores.score, reloaded.score, atol=1e-5)


def test_training_resumes_from_the_last_checkpoint(tmp_path):
    df = toy_pairs(64)
    params = params_for("tiny:bert", "classifier", epochs=2, save_steps=4)
    heads.train(df, None, params, output_dir=tmp_path / "m")
    ckpts = sorted((tmp_path / "m" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert ckpts
    # simulate an interruption: drop the final checkpoint, keep an earlier one
    for extra in ckpts[1:]:
        shutil.rmtree(extra)
    figures = heads.train(df, None, params, output_dir=tmp_path / "m")
    assert figures["resumed_from"] and figures["resumed_from"].endswith(ckpts[0].name)


def test_half_written_checkpoint_is_skipped_and_training_resumes(tmp_path, monkeypatch):
    """Killed between a checkpoint's weights and its trainer_state.json: the next run skips that folder (and
    says so), resumes from the newest complete one and finishes."""
    log = tmp_path / "run.log"
    monkeypatch.setenv("QCKIT_RUN_LOG", str(log))
    df = toy_pairs(64)
    params = params_for("tiny:bert", "classifier", epochs=2, save_steps=4)
    heads.train(df, None, params, output_dir=tmp_path / "m")
    ckpts = sorted((tmp_path / "m" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(ckpts) >= 2  # save_total_limit keeps the last two
    newest, previous = ckpts[-1], ckpts[-2]
    (newest / "trainer_state.json").unlink()  # the kill: weights written, state file not yet
    assert any((newest / n).exists() for n in ("model.safetensors", "pytorch_model.bin"))
    figures = heads.train(df, None, params, output_dir=tmp_path / "m")
    assert figures["resumed_from"] == str(previous)
    assert figures["skipped_checkpoints"] == [str(newest)]
    assert f"skipping incomplete training checkpoint {newest}: no trainer_state.json" in log.read_text()
    assert (tmp_path / "m" / "config.json").exists()  # the model was saved: training finished
    assert any("train_loss" in h for h in figures["log_history"])
    # a folder without weights is incomplete too; with nothing complete left, training starts over
    for ck in (tmp_path / "m" / "checkpoints").glob("checkpoint-*"):
        for weights in ("model.safetensors", "pytorch_model.bin"):
            (ck / weights).unlink(missing_ok=True)
    resumed, skipped = transformer._last_checkpoint(tmp_path / "m" / "checkpoints")
    assert resumed is None and len(skipped) >= 2
    assert "no weights or adapter file" in log.read_text()


def test_torchrun_ddp_two_processes_train_the_same_weights(tmp_path):
    run = Run(tmp_path / "run").ensure()
    df = toy_pairs(64)
    run.write_table("train", df)
    run.write_table("dev", df.head(16))
    params_file = tmp_path / "p.yaml"
    params_file.write_text(
        "name: ddp\nmodels:\n  classifier: tiny:bert\ntraining:\n  epochs: 1\n  batch_size: 4\n"
        "  learning_rate: 0.001\n  num_threads: 1\n  max_length: 48\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as sock:  # a port free now, not a fixed one another run may hold
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", f"--master_port={port}", "-m", "qckit.steps.training", "--params",
         str(params_file), "--run-dir", str(run.root), "--output-dir", str(tmp_path / "m"), "--weights-digest"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json_objects(proc.stdout, '{"rank"')
    assert sorted(d["rank"] for d in digests) == [0, 1]
    assert digests[0]["digest"] == digests[1]["digest"]
    summary = json_objects(proc.stdout, '{"train_rows"')
    assert summary and summary[0]["train_rows"] == 64


def json_objects(text: str, start: str) -> list[dict]:
    """Every JSON object in ``text`` that begins with ``start``, wherever it sits: two ranks share one stdout
    pipe, so one rank's line can be glued to the other's log output."""
    decoder = json.JSONDecoder()
    found, at = [], text.find(start)
    while at >= 0:
        obj, end = decoder.raw_decode(text, at)
        found.append(obj)
        at = text.find(start, end)
    return found


@pytest.mark.gpu
def test_vllm_scorer_matches_hf_scorer(tmp_path):
    pytest.importorskip("vllm")  # a GPU machine without vLLM (the device image here) has nothing to compare
    df = toy_pairs(32)
    heads.train(df, None, params_for("tiny:qwen3", "yes_no", method="lora", epochs=1), output_dir=tmp_path / "m")
    hf = heads.score(tmp_path / "m", df)
    try:  # the same token ids and log-odds as the HF scorer (tests/test_vllm_scoring.py checks it on CPU)
        vl = score_pairs_vllm(tmp_path / "m", df, scoring=ScoringParams(gpu_memory_utilization=0.3,
                                                                        engine={"enforce_eager": True}))
    finally:
        release_vllm_engine()
    np.testing.assert_allclose(hf.score, vl.score, atol=2e-2)


def test_lora_with_gradient_checkpointing_trains_the_adapter(tmp_path):
    """The paper profile's combination (LoRA on a frozen base + gradient checkpointing) moves the adapter."""
    df = toy_pairs(64, easy=True)
    params = params_for("tiny:qwen3", "yes_no", method="lora", epochs=1, gradient_checkpointing=True,
                        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})
    figures = heads.train(df, None, params, output_dir=tmp_path / "m", keep_model=True)
    lora_b = [p for n, p in figures["model"].named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().max()) > 0 for p in lora_b)  # B starts at zero: it moved


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_paper_training_section_trains_and_scores_on_the_gpu(method, tmp_path):
    """What benchmarks/gpu_paths.py checks, on a smaller run: bf16 / 4-bit on the GPU, scorer paths agree."""
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    train, dev = gpu_paths.demo_pairs(tmp_path / "demo")
    result = gpu_paths.check_yes_no(method, gpu_paths.small_qwen3(tmp_path / "small"), tmp_path, train, dev,
                                    train_rows=1500)
    assert result["loaded_device"].startswith("cuda")
    assert result["max_diff_scorer_vs_plain_forward"] < 0.02 and result["max_diff_prefix_cache_vs_none"] < 0.02
    assert result["ok"], result


def test_gpu_paths_speed_check_agrees_with_generate_on_cpu(tmp_path, monkeypatch):
    """benchmarks/gpu_paths' speed check (run on GPUs) compares qckit's scorer with batched generate: on the CPU
    in fp32 the two give the same probabilities, so on a GPU only bf16 rounding can separate them."""
    # on the CPU in fp32 also where a GPU is present (there the check would run in bf16)
    monkeypatch.setattr(gpu_paths, "precision", lambda: torch.float32)
    monkeypatch.setattr(gpu_paths, "inference_device", lambda *a, **k: "cpu")

    df = toy_pairs(24)
    result = gpu_paths.check_speed(Path(resolve("tiny:qwen3")), df, rows=24, batch_size=8)
    assert result["ok"] and result["max_abs_prob_diff_vs_generate"] < 1e-5
    assert result["rows"] == 24 and result["qckit_pairs_per_s"] > 0 and result["generate_pairs_per_s"] > 0


def test_bf16_full_fine_tuning_keeps_fp32_master_weights_and_lora_a_bf16_base():
    """Full fine-tuning in bf16 trains fp32 weights under autocast (bf16 weights would round small updates away);
    LoRA keeps its frozen base in bf16 and its adapter in fp32 (peft's default)."""
    full = params_for("tiny:bert", "classifier", precision="bf16")
    model, _, _ = transformer.load_base("tiny:bert", full.training)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    lora = params_for("tiny:qwen3", "yes_no", method="lora", precision="bf16")
    model, _, _ = transformer.load_base("tiny:qwen3", lora.training)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    wrapped = transformer.prepare_for_training(model, lora.training)
    assert {p.dtype for p in wrapped.parameters() if p.requires_grad} == {torch.float32}
