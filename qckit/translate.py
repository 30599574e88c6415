"""Machine translation behind one interface: Apertium, Hugging Face seq2seq / causal LMs, and vLLM.

Every backend is a ``Translator``: ``check(source, target)`` says whether it can serve a language pair
(and if not, why), ``translate(texts, source, target)`` returns one output per input, in order, and
``cache_id(source, target)`` names what produced an output, for the on-disk cache. Languages are qckit
codes (``vn``, not ``vi``); each backend maps them to its own codes.

- ``apertium``: Debian's Apertium, offline on CPU. Pairs are read from ``apertium -l``; many lines go
  through one process call; ``pivot`` chains two pairs (en→es→it) where no direct pair exists.
- ``hf-seq2seq``: Marian (``{src}``/``{tgt}`` in the model name picks a model per pair), NLLB, M2M100.
- ``hf-causal``: a causal translation LLM with its prompt; Seed-X-PPO-7B's format is built in.
- ``vllm``: the same prompts through vLLM offline batched generation (GPU), greedy, bounded length.

``translate_cached`` puts a ``TranslationCache`` (SQLite, keyed by backend, model, pair and text) in front
of any backend, so a second run translates nothing.

Example:
    >>> tr = ApertiumTranslator()
    >>> tr.check("es", "it").supported, tr.check("es", "de").reason
    (True, "no Apertium pair for es→de (installed: ...)")
    >>> tr.translate(["zapatillas de deporte hombre"], "es", "it")
    ['scarpe da ginnastica uomo']
    >>> build_prompt("funda movil", "es", "de")
    'Translate the following Spanish sentence into German:\\nfunda movil <de>'
"""
from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from qckit.models import ModelNotFound, default_cache_dir, inference_device, resolve

BACKENDS = ("apertium", "hf-seq2seq", "hf-causal", "vllm")

# qckit code -> (ISO 639-1, ISO 639-3 as Apertium and Marian multi-target tokens use, English name)
LANGUAGE_CODES: dict[str, tuple[str, str, str]] = {
    "en": ("en", "eng", "English"), "fr": ("fr", "fra", "French"), "es": ("es", "spa", "Spanish"),
    "ko": ("ko", "kor", "Korean"), "pt": ("pt", "por", "Portuguese"), "ja": ("ja", "jpn", "Japanese"),
    "de": ("de", "deu", "German"), "it": ("it", "ita", "Italian"), "pl": ("pl", "pol", "Polish"),
    "ar": ("ar", "ara", "Arabic"), "th": ("th", "tha", "Thai"), "vn": ("vi", "vie", "Vietnamese"),
    "id": ("id", "ind", "Indonesian"),
}
NLLB_CODES = {
    "en": "eng_Latn", "fr": "fra_Latn", "es": "spa_Latn", "ko": "kor_Hang", "pt": "por_Latn",
    "ja": "jpn_Jpan", "de": "deu_Latn", "it": "ita_Latn", "pl": "pol_Latn", "ar": "arb_Arab",
    "th": "tha_Thai", "vn": "vie_Latn", "id": "ind_Latn",
}
SEED_X_PROMPT = "Translate the following {source_name} sentence into {target_name}:\n{text} <{target_code}>"
PROMPTS = {"seed-x": SEED_X_PROMPT}
APERTIUM_LINES_PER_CALL = 5000


class TranslationError(RuntimeError):
    """A backend failed on input it claimed to support; the message says which backend and pair."""


def iso639_1(lang: str) -> str:
    """qckit code -> ISO 639-1 (``vn`` -> ``vi``); unknown codes pass through."""
    return LANGUAGE_CODES.get(lang, (lang,))[0]


def language_name(lang: str) -> str:
    return LANGUAGE_CODES[lang][2] if lang in LANGUAGE_CODES else lang


def one_line(text: str) -> str:
    """Text on one line: every line break (``\\n``, ``\\r``, U+2028, ...) and NUL becomes a space."""
    return " ".join(str(text).replace("\x00", " ").splitlines())


@dataclass(frozen=True)
class Coverage:
    """Whether a backend serves a pair: ``route`` says how (a mode, a model), ``reason`` why not."""

    supported: bool
    route: str = ""
    reason: str = ""


class Translator(Protocol):
    name: str

    def check(self, source: str, target: str) -> Coverage: ...

    def cache_id(self, source: str, target: str) -> str: ...

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]: ...


# prompts and output parsing -----------------------------------------------------------------------
def build_prompt(text: str, source: str, target: str, template: str = "seed-x") -> str:
    """The prompt of a causal translation LLM; ``template`` is a name in ``PROMPTS`` or a format string
    with ``{text}``, ``{source_name}``, ``{target_name}``, ``{source_code}``, ``{target_code}``.

    Example:
        >>> build_prompt("zapatillas", "es", "vn")
        'Translate the following Spanish sentence into Vietnamese:\\nzapatillas <vi>'
    """
    fmt = PROMPTS.get(template, template)
    return fmt.format(text=one_line(text), source_name=language_name(source), target_name=language_name(target),
                      source_code=iso639_1(source), target_code=iso639_1(target))


_TAG = re.compile(r"^\s*<[a-z]{2,3}(?:_[A-Za-z]+)?>\s*")


def parse_generation(text: str) -> str:
    """A model's continuation cut to the translation: first non-empty line, a leading ``<xx>`` tag and
    surrounding whitespace removed.

    Example:
        >>> parse_generation(" <it> scarpe da corsa\\nTranslate the following ...")
        'scarpe da corsa'
    """
    for line in str(text).splitlines():
        line = _TAG.sub("", line).strip()
        if line:
            return line
    return ""


# Apertium -----------------------------------------------------------------------------------------
def apertium_modes(binary: str = "apertium") -> list[str]:
    """Translation modes Apertium lists (``apertium -l``); empty when Apertium is not installed."""
    exe = shutil.which(binary)
    if exe is None:
        return []
    proc = subprocess.run([exe, "-l"], check=False, capture_output=True, text=True, timeout=60)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _mode_table(modes: Iterable[str]) -> dict[tuple[str, str], str]:
    """(iso1 source, iso1 target) -> mode. Plain modes (``spa-ita``, ``es-pt``) win over regional
    variants (``es-pt_BR``); prefixed modes such as ``eco-es-fr`` are left out."""
    to_qckit = {}
    for code, (iso1, iso3, _) in LANGUAGE_CODES.items():
        to_qckit[iso1] = to_qckit[iso3] = code
    table: dict[tuple[str, str], str] = {}
    for mode in modes:
        m = re.fullmatch(r"([a-z]{2,3})-([a-z]{2,3})(_[A-Za-z]+)?", mode)
        if not m or m[1] not in to_qckit or m[2] not in to_qckit:
            continue
        key = (to_qckit[m[1]], to_qckit[m[2]])
        if key not in table or (m[3] is None and "_" in table[key]):
            table[key] = mode
    return table


class ApertiumTranslator:
    """Apertium on CPU; one process call per up to ``APERTIUM_LINES_PER_CALL`` lines.

    Args:
        pivot: language to go through where no direct pair exists (``"es"``: en→es→it); None: direct only.
        binary: the ``apertium`` executable.
        modes: the installed modes; None reads ``apertium -l``.
    """

    name = "apertium"

    def __init__(self, *, pivot: str | None = None, binary: str = "apertium", modes: Sequence[str] | None = None):
        self.binary, self.pivot = binary, pivot
        self.installed = shutil.which(binary) is not None
        self.modes = list(modes) if modes is not None else apertium_modes(binary)
        self.table = _mode_table(self.modes)
        self._broken: dict[str, str | None] = {}

    def route(self, source: str, target: str) -> list[str] | None:
        """The modes that take ``source`` to ``target``: one, two through the pivot, or None."""
        if (source, target) in self.table:
            return [self.table[source, target]]
        p = self.pivot
        if p and (source, p) in self.table and (p, target) in self.table:
            return [self.table[source, p], self.table[p, target]]
        return None

    def check(self, source: str, target: str) -> Coverage:
        if not self.installed:
            return Coverage(False, reason="Apertium is not installed (apt-get install apertium apertium-spa-ita "
                                          "apertium-eng-spa apertium-es-pt apertium-fr-es)")
        modes = self.route(source, target)
        if modes is None:
            pairs = ", ".join(f"{s}→{t}" for s, t in sorted(self.table)) or "none"
            via = f" or through {self.pivot}" if self.pivot else ""
            return Coverage(False, reason=f"no Apertium pair for {source}→{target}{via} (installed: {pairs})")
        for mode in modes:
            if self.broken(mode):
                return Coverage(False, reason=f"Apertium mode {mode} is installed but fails: {self.broken(mode)}")
        return Coverage(True, route=" + ".join(modes) + (f" (pivot {self.pivot})" if len(modes) > 1 else ""))

    def broken(self, mode: str) -> str | None:
        """Why a listed mode does not work (a missing helper such as ``cg-proc``), or None; tried once."""
        if mode not in self._broken:
            try:
                out = self._call(["casa"], mode)
                self._broken[mode] = None if "".join(out).strip() else "it translated a test word to nothing"
            except (TranslationError, OSError) as err:
                self._broken[mode] = str(err)
        return self._broken[mode]

    def cache_id(self, source: str, target: str) -> str:
        return "+".join(self.route(source, target) or ["none"])

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        modes = self.route(source, target)
        if modes is None:
            raise TranslationError(self.check(source, target).reason)
        out = [one_line(t) for t in texts]
        for mode in modes:
            out = [y for i in range(0, len(out), APERTIUM_LINES_PER_CALL)
                   for y in self._lines(out[i:i + APERTIUM_LINES_PER_CALL], mode)]
        # Apertium capitalises what it takes for a sentence start; queries typed in lower case stay so
        return [" ".join(y.split()).lower() if x == x.lower() else " ".join(y.split()) for x, y in zip(texts, out)]

    def _call(self, lines: Sequence[str], mode: str) -> list[str]:
        # one line per text; Apertium's txt deformatter keeps line breaks and escapes []^$/\@*<>{}
        proc = subprocess.run([self.binary, "-u", mode], input="\n".join(lines) + "\n", check=False,
                              capture_output=True, text=True, encoding="utf-8", errors="replace")
        # a pipeline stage that is missing fails inside apertium's shell script: exit 0, no output, stderr
        if proc.returncode != 0 or (not proc.stdout.strip() and proc.stderr.strip() and any(x.strip() for x in lines)):
            raise TranslationError(f"apertium {mode} failed (exit {proc.returncode}): {proc.stderr.strip()[:500]}")
        out = proc.stdout.split("\n")
        return out[:-1] if out and out[-1] == "" else out

    def _lines(self, lines: Sequence[str], mode: str) -> list[str]:
        """Translate lines; where the output has another number of lines, translate halves apart."""
        if not lines:
            return []
        out = self._call(lines, mode)
        if len(out) == len(lines):
            return out
        if len(lines) == 1:
            return [" ".join(x.strip() for x in out if x.strip())]
        half = len(lines) // 2
        return self._lines(lines[:half], mode) + self._lines(lines[half:], mode)


# Hugging Face ------------------------------------------------------------------------------------
def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), max(size, 1)):
        yield items[i:i + size]


@dataclass
class _Loaded:
    spec: str = ""
    model: Any = None
    tokenizer: Any = None
    family: str = ""


class HFSeq2SeqTranslator:
    """Marian, NLLB or M2M100 through transformers, greedy.

    Args:
        model: a model spec for ``qckit.models.resolve``; ``{src}`` / ``{tgt}`` (ISO 639-1) pick one model
            per pair, as Marian's ``Helsinki-NLP/opus-mt-{src}-{tgt}``.
        family: ``marian``, ``nllb`` or ``m2m100``; None reads it from the model's config and tokenizer.
    """

    name = "hf-seq2seq"

    def __init__(self, model: str, *, family: str | None = None, batch_size: int = 16, max_new_tokens: int = 64,
                 cache_dir: str | Path | None = None):
        self.model, self.family, self.batch_size = model, family, batch_size
        self.max_new_tokens, self.cache_dir = max_new_tokens, cache_dir
        self._loaded = _Loaded()

    def spec(self, source: str, target: str) -> str:
        return self.model.format(src=iso639_1(source), tgt=iso639_1(target))

    def cache_id(self, source: str, target: str) -> str:
        return f"{self.spec(source, target)}|greedy|{self.max_new_tokens}"

    def _load(self, spec: str) -> _Loaded:
        if self._loaded.spec != spec:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer


            path = resolve(spec, cache_dir=self.cache_dir)
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSeq2SeqLM.from_pretrained(path).to(inference_device()).eval()
            self._loaded = _Loaded(spec, model, tok, self.family or _seq2seq_family(model.config, tok))
        return self._loaded

    def check(self, source: str, target: str) -> Coverage:
        try:
            loaded = self._load(self.spec(source, target))
        except (ModelNotFound, OSError, ValueError) as err:
            return Coverage(False, reason=f"model {self.spec(source, target)!r} cannot be loaded: {err}")
        codes = _seq2seq_codes(loaded, source, target)
        if codes is None:
            return Coverage(False, reason=f"{loaded.family} model {loaded.spec!r} has no language code for "
                                          f"{source} or {target}")
        return Coverage(True, route=f"{loaded.family} {loaded.spec}")

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        import torch

        loaded = self._load(self.spec(source, target))
        codes = _seq2seq_codes(loaded, source, target)
        if codes is None:
            raise TranslationError(self.check(source, target).reason)
        prefix, src_lang, forced_bos = codes
        tok, model = loaded.tokenizer, loaded.model
        if src_lang is not None:
            tok.src_lang = src_lang
        out: list[str] = []
        for batch in _batches([prefix + one_line(t) for t in texts], self.batch_size):
            enc = tok(list(batch), return_tensors="pt", padding=True, truncation=True).to(model.device)
            kwargs = {"forced_bos_token_id": forced_bos} if forced_bos is not None else {}
            with torch.inference_mode():
                ids = model.generate(**enc, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
                                     **kwargs)
            out += [parse_generation(x) for x in tok.batch_decode(ids, skip_special_tokens=True)]
        return out


def _seq2seq_family(config: Any, tokenizer: Any) -> str:
    if config.model_type == "marian":
        return "marian"
    vocab = tokenizer.get_vocab()
    return "nllb" if "Nllb" in type(tokenizer).__name__ or "spa_Latn" in vocab else "m2m100"


def _seq2seq_codes(loaded: _Loaded, source: str, target: str) -> tuple[str, str | None, int | None] | None:
    """(text prefix, tokenizer src_lang, forced BOS id) for a pair; None when the model lacks a code."""
    vocab = loaded.tokenizer.get_vocab()
    if loaded.family == "marian":
        # multi-target Marian models choose the target with a >>xxx<< token in front of the text
        for token in (f">>{LANGUAGE_CODES.get(target, ('', target))[1]}<<", f">>{iso639_1(target)}<<"):
            if token in vocab:
                return token + " ", None, None
        has_targets = any(t.startswith(">>") and t.endswith("<<") for t in vocab)
        return None if has_targets else ("", None, None)
    if loaded.family == "nllb":
        src, tgt = NLLB_CODES.get(source), NLLB_CODES.get(target)
        src_token, tgt_token = src, tgt
    else:
        src, tgt = iso639_1(source), iso639_1(target)
        src_token, tgt_token = f"__{src}__", f"__{tgt}__"
    if src_token not in vocab or tgt_token not in vocab:
        return None
    return "", src, vocab[tgt_token]


class HFCausalTranslator:
    """A causal translation LLM through transformers: prompt in, greedy continuation, first line out.

    Args:
        model: a model spec for ``qckit.models.resolve`` (``ByteDance-Seed/Seed-X-PPO-7B``, ``tiny:qwen3``).
        prompt: a name in ``PROMPTS`` (``seed-x``) or a template (see ``build_prompt``).
    """

    name = "hf-causal"

    def __init__(self, model: str, *, prompt: str = "seed-x", batch_size: int = 8, max_new_tokens: int = 64,
                 cache_dir: str | Path | None = None):
        self.model, self.prompt, self.batch_size = model, prompt, batch_size
        self.max_new_tokens, self.cache_dir = max_new_tokens, cache_dir
        self._loaded = _Loaded()

    def cache_id(self, source: str, target: str) -> str:
        return f"{self.model}|{PROMPTS.get(self.prompt, self.prompt)}|greedy|{self.max_new_tokens}"

    def _load(self) -> _Loaded:
        if self._loaded.model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer


            path = resolve(self.model, cache_dir=self.cache_dir)
            tok = AutoTokenizer.from_pretrained(path, padding_side="left")
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            model = AutoModelForCausalLM.from_pretrained(path).to(inference_device()).eval()
            self._loaded = _Loaded(self.model, model, tok, "causal")
        return self._loaded

    def check(self, source: str, target: str) -> Coverage:
        if source not in LANGUAGE_CODES or target not in LANGUAGE_CODES:
            return Coverage(False, reason=f"no language name for {source} or {target} in the prompt")
        try:
            self._load()
        except (ModelNotFound, OSError, ValueError) as err:
            return Coverage(False, reason=f"model {self.model!r} cannot be loaded: {err}")
        return Coverage(True, route=f"{self.model} ({self.prompt if self.prompt in PROMPTS else 'custom'} prompt)")

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        import torch

        loaded = self._load()
        tok, model = loaded.tokenizer, loaded.model
        out: list[str] = []
        for batch in _batches([build_prompt(t, source, target, self.prompt) for t in texts], self.batch_size):
            enc = tok(list(batch), return_tensors="pt", padding=True).to(model.device)
            with torch.inference_mode():
                ids = model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                     pad_token_id=tok.pad_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]  # the prompt is not part of the answer
            out += [parse_generation(x) for x in tok.batch_decode(new, skip_special_tokens=True)]
        return out


class VLLMTranslator:
    """The causal prompts through vLLM's offline engine (GPU): one batched ``generate`` per call.

    Args:
        model: a model spec for ``qckit.models.resolve``.
        engine: keyword arguments for ``vllm.LLM`` (``tensor_parallel_size``, ``max_model_len``, ...).
        llm: an engine already built (tests pass a stand-in with a ``generate(prompts, params)`` method).
    """

    name = "vllm"

    def __init__(self, model: str, *, prompt: str = "seed-x", max_new_tokens: int = 64,
                 engine: Mapping[str, Any] | None = None, cache_dir: str | Path | None = None, llm: Any = None):
        self.model, self.prompt, self.max_new_tokens = model, prompt, max_new_tokens
        self.engine, self.cache_dir, self.llm = dict(engine or {}), cache_dir, llm

    def cache_id(self, source: str, target: str) -> str:
        return f"{self.model}|{PROMPTS.get(self.prompt, self.prompt)}|greedy|{self.max_new_tokens}"

    def sampling_kwargs(self) -> dict[str, Any]:
        """Greedy, bounded, stopping at the end of the line: the translation is one line."""
        return {"temperature": 0.0, "max_tokens": self.max_new_tokens, "stop": ["\n"]}

    def check(self, source: str, target: str) -> Coverage:
        if source not in LANGUAGE_CODES or target not in LANGUAGE_CODES:
            return Coverage(False, reason=f"no language name for {source} or {target} in the prompt")
        if self.llm is None:
            try:
                import vllm  # noqa: F401
            except ImportError:
                return Coverage(False, reason="vllm is not installed (pip install 'qckit[gpu]'; needs a CUDA GPU)")
        return Coverage(True, route=f"vllm {self.model}")

    def _engine(self) -> Any:
        if self.llm is None:
            try:
                from vllm import LLM
            except ImportError as err:
                raise ImportError("the vllm translation backend needs vllm on a GPU machine: "
                                  "pip install 'qckit[gpu]'") from err
            self.llm = LLM(model=str(resolve(self.model, cache_dir=self.cache_dir)), **self.engine)
        return self.llm

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        llm = self._engine()
        try:
            from vllm import SamplingParams

            sampling: Any = SamplingParams(**self.sampling_kwargs())
        except ImportError:  # a stand-in engine in tests
            sampling = self.sampling_kwargs()
        prompts = [build_prompt(t, source, target, self.prompt) for t in texts]
        results = llm.generate(prompts, sampling)
        return [parse_generation(r.outputs[0].text if r.outputs else "") for r in results]


def make_translator(backend: str, *, model: str | None = None, prompt: str = "seed-x", pivot: str | None = None,
                    batch_size: int = 32, max_new_tokens: int = 64, engine: Mapping[str, Any] | None = None,
                    cache_dir: str | Path | None = None) -> Translator:
    """A backend by name (``BACKENDS``); hf and vllm backends need ``model``.

    Example:
        >>> make_translator("hf-causal", model="tiny:qwen3").check("es", "de").supported
        True
    """
    if backend == "apertium":
        return ApertiumTranslator(pivot=pivot)
    if backend not in BACKENDS:
        raise ValueError(f"unknown translation backend {backend!r}; known: {', '.join(BACKENDS)}")
    if model is None:
        return _Unavailable(backend, f"backend {backend} needs translation.model (a model spec)")
    if backend == "hf-seq2seq":
        return HFSeq2SeqTranslator(model, batch_size=batch_size, max_new_tokens=max_new_tokens, cache_dir=cache_dir)
    if backend == "hf-causal":
        return HFCausalTranslator(model, prompt=prompt, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                  cache_dir=cache_dir)
    return VLLMTranslator(model, prompt=prompt, max_new_tokens=max_new_tokens, engine=engine, cache_dir=cache_dir)


@dataclass
class _Unavailable:
    """A backend that cannot run at all here: every pair is uncovered with the same reason."""

    name: str
    reason: str

    def check(self, source: str, target: str) -> Coverage:
        return Coverage(False, reason=self.reason)

    def cache_id(self, source: str, target: str) -> str:
        return "unavailable"

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        raise TranslationError(self.reason)


# the cache ---------------------------------------------------------------------------------------
def default_translation_cache(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$QCKIT_CACHE/translations``, else ``~/.cache/qckit/translations``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()

    return default_cache_dir() / "translations"


class TranslationCache:
    """Translations on disk (SQLite), keyed by backend, model, source, target and text.

    Example:
        >>> cache = TranslationCache("/tmp/tr-cache")
        >>> cache.put("apertium", "spa-ita", "es", "it", {"hola": "ciao"})
        >>> cache.get("apertium", "spa-ita", "es", "it", ["hola", "adiós"])
        {'hola': 'ciao'}
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder).expanduser() / "translations.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS translations (backend TEXT, model TEXT, source TEXT, "
                       "target TEXT, text TEXT, output TEXT, PRIMARY KEY (backend, model, source, target, text))")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")  # readers and one writer at a time, across processes
        return db

    def get(self, backend: str, model: str, source: str, target: str, texts: Iterable[str]) -> dict[str, str]:
        texts = list(dict.fromkeys(texts))
        found: dict[str, str] = {}
        with self._connect() as db:
            for i in range(0, len(texts), 500):  # SQLite limits the number of bound variables
                chunk = texts[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT text, output FROM translations WHERE backend=? AND model=? AND source=? "
                                  f"AND target=? AND text IN ({marks})", (backend, model, source, target, *chunk))
                found.update(rows)
        return found

    def put(self, backend: str, model: str, source: str, target: str, outputs: Mapping[str, str]) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?, ?)",
                           [(backend, model, source, target, k, v) for k, v in outputs.items()])

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]


@dataclass
class TranslateStats:
    """What one ``translate_cached`` call did: texts asked, taken from the cache, translated, seconds."""

    texts: int = 0
    cache_hits: int = 0
    translated: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sentences_per_s(self) -> float | None:
        return self.translated / self.seconds if self.translated and self.seconds > 0 else None


def translate_cached(translator: Translator, texts: Sequence[str], source: str, target: str, *,
                     cache: TranslationCache | None = None, batch_size: int = 256,
                     progress: Callable[..., Any] | None = None) -> tuple[dict[str, str], TranslateStats]:
    """Translate the distinct ``texts``, reading and filling ``cache``; returns text -> output and stats.

    Args:
        batch_size: texts per backend call (and per progress-bar step); the cache is written after each.
        progress: a tqdm-like factory (``qckit.progress.progress``); None shows nothing.
    """
    unique = list(dict.fromkeys(texts))
    model = translator.cache_id(source, target)
    found = cache.get(translator.name, model, source, target, unique) if cache is not None else {}
    todo = [t for t in unique if t not in found]
    stats = TranslateStats(texts=len(unique), cache_hits=len(unique) - len(todo))
    bar = progress(total=len(todo), desc=f"{source}→{target}", unit="text") if progress and todo else None
    start = time.perf_counter()
    for batch in _batches(todo, batch_size):
        outputs = translator.translate(list(batch), source, target)
        if len(outputs) != len(batch):
            raise TranslationError(f"{translator.name} {source}→{target} returned {len(outputs)} outputs "
                                   f"for {len(batch)} texts")
        new = dict(zip(batch, outputs))
        found.update(new)
        if cache is not None:
            cache.put(translator.name, model, source, target, new)
        if bar is not None:
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - start
    stats.translated = len(todo)
    if bar is not None:
        bar.close()
    return found, stats


def apertium_available() -> bool:
    """Apertium is on PATH and lists at least one mode."""
    return bool(shutil.which("apertium")) and bool(apertium_modes())


__all__ = [
    "BACKENDS", "LANGUAGE_CODES", "NLLB_CODES", "PROMPTS", "SEED_X_PROMPT", "ApertiumTranslator", "Coverage",
    "HFCausalTranslator", "HFSeq2SeqTranslator", "TranslateStats", "TranslationCache", "TranslationError",
    "Translator", "VLLMTranslator", "apertium_available", "apertium_modes", "build_prompt",
    "default_translation_cache", "iso639_1", "language_name", "make_translator", "one_line", "parse_generation",
    "translate_cached",
]
