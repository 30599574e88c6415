"""Head ``embedding``: frozen sentence embeddings, nearest-labelled-neighbour features, gradient-boosted trees.

The CPU head: a small encoder's *frozen* embeddings carry signal a tree ensemble can use in seconds, where
fine-tuning the same encoder as a cross-encoder on 2 cores takes tens of minutes to learn less (figures:
benchmarks/profiles.md). Each row gets:

- the pair features of ``qckit.features.pair_features``: ``[q, t, q*t, |q-t|, cos]`` (+ the leaf category for QC);
- lexical features: word and character-trigram overlap of query and target (``LEXICAL_FEATURES``);
- neighbour features: the ``neighbours`` training queries closest to the row's query (faiss, exact inner
  product over the *distinct* training queries, never the row's own query) and what annotators said about
  them: how close their targets are to this row's target, split by label, and whether a close query was
  labelled with (essentially) this very target. "Queries like this one were judged relevant to this
  category" is the signal a small model cannot learn from 18k rows on its own;
- query context (``training.embedding.query_context``): the neighbour and lexical features compared with
  those of the other rows of the same query scored together (gap to the best, rank): it helps where a query
  has several candidates (QI: about six titles per query); QC has about one row per query.

Three optional learned parts (``training.embedding``): ``encoder.fine_tune`` trains the encoder as a bi-encoder
on the pairs first and the trees read its embeddings (helps QC); ``second_encoder.model`` fine-tunes USE multilingual
(``qckit.heads.use_encoder``), cross-fitted, and blends the log-odds of trees on its features in (helps QC);
``cross_encoder.enabled`` trains a mean-pooled cross-encoder beside the trees (``qckit.heads.cross_encoder``;
from ``cross_encoder.model``, by default the same encoder) and each row's log-odds blend the two (helps QI).
With ``tasks_mode: separate``, ``training.per_task`` picks them per task (``params/cpu-best.yaml``).

The estimator is scikit-learn's ``HistGradientBoostingClassifier``, saved with skops and loaded with an
allow-list of the types it holds (``ESTIMATOR_TYPES``): never a pickle, so a model folder received from
someone else runs no code when loaded (``load_estimator`` refuses anything else, and a folder holding a pickle).
The bank of labelled training rows (embeddings in float16, labels, normalised queries) is saved beside it as
npz, so scoring new rows needs only the model folder and the embedder.

Example:
    >>> from qckit.heads import trees
    >>> figures = trees.train(train_df, dev_df, params, output_dir="outputs/x/models/joint")
    >>> logodds = trees.logodds(trees.load("outputs/x/models/joint"), dev_df)
"""
from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qckit.config import Params, TrainingParams
from qckit.data import parse_category_path
from qckit.embed import st_prompt_name
from qckit.features import (
    category_leaves,
    embed_column,
    embed_pairs,
    grouped_folds,
    normalise_queries,
    pair_features,
)
from qckit.heads import use_encoder
from qckit.heads.common import (
    META_FILE,
    LoadedModel,
    f1_metrics,
    peak_memory_mib,
    positive_weight,
    read_meta,
    refuse_unsafe_files,
    sample_rows,
    trainer_progress,
    unsafe_artefact,
)
from qckit.heads.cross_encoder import batch_sampler, cross_encoder_logits, device_args, train_cross_encoder
from qckit.models import inference_device, resolve
from qckit.progress import report, stage

ESTIMATOR_FILE = "estimator.skops"
# The types a fitted HistGradientBoostingClassifier holds beyond those skops trusts by itself (scikit-learn's
# estimators, numpy, builtins), as ``skops.io.get_untrusted_types`` lists them for a freshly fitted one
# (scikit-learn 1.9, skops 0.13). ``load_estimator`` trusts these and nothing else; tests/test_safety.py
# checks that a freshly trained head needs nothing more, so a scikit-learn that adds a type fails a test.
ESTIMATOR_TYPES = (
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
ENCODER_DIR = "encoder"
CROSS_ENCODER_DIR = "cross_encoder"
SECOND_ENCODER_DIR = "second_encoder"
# A fine-tuned encoder's embeddings are cached inside the model folder, not in the shared embedding cache:
# each trained model is a new encoder, and its vectors should go when the folder goes.
ENCODER_CACHE_DIR = "encoder_embeddings"
BANK_FILE = "bank.npz"
SAME_TARGET = 0.98  # cosine above which two targets count as the same category/item (paraphrase-level)
SHARPNESS = 20.0  # softmax temperature over neighbour similarities (cosines of e5 sit in a narrow band)
# Where ``train`` spends its time (``phase_seconds``): dropping unlabelled rows and sampling; fine-tuning the
# encoder and training the cross-encoder (when on); embedding train and dev rows (the embedding cache's misses);
# pair, lexical and query-context features; the neighbour search; fitting the trees; the second encoder (when
# on); the training curve (staged predictions on train and dev); writing the model folder.
TRAINING_PHASES = ("preparing", "encoder", "cross_encoder", "embedding", "features", "neighbours", "trees",
                   "second_encoder", "curve", "saving")
NEIGHBOUR_FEATURES = ["cos", "nn_sim_max", "nn_sim_mean", "nn_label_mean", "nn_pos_target_max",
                      "nn_neg_target_max", "nn_pos_target_mean", "nn_neg_target_mean", "nn_same_target_pos",
                      "nn_same_target_neg"]


@dataclass
class Bank:
    """The labelled training rows neighbours are drawn from: one entry per distinct normalised query."""

    query_emb: np.ndarray  # (queries, dim) float32, L2-normalised
    query_keys: np.ndarray  # (queries,) normalised query text
    row_query: np.ndarray  # (rows,) index into query_emb of each labelled row
    target_emb: np.ndarray  # (rows, dim) float32
    labels: np.ndarray  # (rows,) float
    idf: dict[str, float] = field(default_factory=dict)  # word -> inverse document frequency over training targets

    @classmethod
    def build(cls, queries: pd.Series, query_emb: np.ndarray, target_emb: np.ndarray, labels,
              targets: pd.Series | None = None) -> Bank:
        keys = normalise_queries(queries).to_numpy()
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        return cls(np.ascontiguousarray(query_emb[first], np.float32), uniq.astype(object), inverse.astype(np.int64),
                   np.asarray(target_emb, np.float32), np.asarray(labels, np.float64),
                   target_idf(targets) if targets is not None else {})

    def save(self, path: Path) -> None:
        words = np.array(sorted(self.idf), dtype=str)
        np.savez_compressed(path, query_emb=self.query_emb.astype(np.float16), query_keys=self.query_keys.astype(str),
                            row_query=self.row_query, target_emb=self.target_emb.astype(np.float16), labels=self.labels,
                            idf_words=words, idf_values=np.array([self.idf[w] for w in words], np.float32))

    @classmethod
    def load(cls, path: Path) -> Bank:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["query_emb"].astype(np.float32), z["query_keys"].astype(object), z["row_query"],
                       z["target_emb"].astype(np.float32), z["labels"],
                       dict(zip(z["idf_words"].tolist(), z["idf_values"].astype(float).tolist())))


def neighbour_features(query_emb: np.ndarray, target_emb: np.ndarray, query_keys, bank: Bank, *,
                       neighbours: int = 30, batch_size: int = 4096) -> np.ndarray:
    """``NEIGHBOUR_FEATURES`` for every row, against the bank, leaving out the bank's copy of the row's query.

    Leaving the row's own query out makes training rows look like new rows: without it a training row
    would find its own label among its neighbours and the trees would learn to read it back.
    """
    import faiss

    n = len(query_emb)
    out = np.zeros((n, len(NEIGHBOUR_FEATURES)), np.float32)
    if n == 0:
        return out
    q = np.ascontiguousarray(query_emb, np.float32)
    t = np.asarray(target_emb, np.float32)
    out[:, 0] = np.sum(q * t, axis=1)
    if neighbours == 0 or len(bank.query_emb) == 0:
        return out
    # rows of each bank query, as a CSR layout: rows_of[start[j]:start[j+1]]
    rows_of = np.argsort(bank.row_query, kind="stable")
    start = np.searchsorted(bank.row_query[rows_of], np.arange(len(bank.query_emb) + 1))
    index = faiss.IndexFlatIP(q.shape[1])
    index.add(bank.query_emb)
    k = min(neighbours + 1, len(bank.query_emb))
    own = {key: j for j, key in enumerate(bank.query_keys)}
    keys = np.asarray(query_keys, dtype=object)
    for lo in range(0, n, batch_size):  # bounded memory: one batch of similarities at a time
        sims, ids = index.search(q[lo:lo + batch_size], k)
        for b in range(len(ids)):
            i = lo + b
            self_id = own.get(keys[i], -1)
            keep = (ids[b] >= 0) & (ids[b] != self_id)
            s, nb = sims[b][keep][:neighbours], ids[b][keep][:neighbours]
            if len(nb) == 0:
                continue
            w = np.exp((s - s.max()) * SHARPNESS)
            rows = np.concatenate([rows_of[start[j]:start[j + 1]] for j in nb])
            counts = start[nb + 1] - start[nb]
            row_w = np.repeat(w / counts, counts)  # each neighbour query weighs the same, however many rows
            row_s = np.repeat(s, counts)
            y = bank.labels[rows]
            tau = bank.target_emb[rows] @ t[i]
            pos, neg = y >= 0.5, y < 0.5
            total = row_w.sum()
            same = tau >= SAME_TARGET
            out[i, 1:] = (s.max(), s.mean(), (row_w * y).sum() / total,
                          tau[pos].max(initial=-1.0), tau[neg].max(initial=-1.0),
                          (row_w * tau * pos).sum() / total, (row_w * tau * neg).sum() / total,
                          row_s[same & pos].max(initial=0.0), row_s[same & neg].max(initial=0.0))
    return out


LEXICAL_FEATURES = ["word_coverage", "char3_coverage", "char3_jaccard", "query_chars", "target_chars",
                    "query_words", "idf_coverage", "missing_idf_max", "last_word_hit", "first_word_hit",
                    "number_hit", "prefix4_coverage"]
_WORD = re.compile(r"\w+")


def _stem(word: str) -> str:
    """The crudest plural folding ("drills" -> "drill"): enough for overlap counts, harmless elsewhere."""
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.casefold())]


def target_idf(targets: pd.Series) -> dict[str, float]:
    """Smoothed inverse document frequency of every (folded) word over the training targets."""
    texts = targets.fillna("").astype(str)
    counts = Counter(w for text in texts for w in set(_words(text)))
    n = len(texts)
    return {w: float(np.log((n + 1) / (k + 1))) for w, k in counts.items()}


def lexical_features(queries: pd.Series, targets: pd.Series, idf: dict[str, float] | None = None) -> np.ndarray:
    """``LEXICAL_FEATURES``: how much of the query's words and character trigrams the target repeats.

    Typos and brand names ("milwaukeee", "dewalt") are where embeddings of a small model are weakest and
    character overlap strongest; trigrams also work for scripts without spaces (ja, ko). Words are weighed
    by their rarity among training targets (``idf``; unseen words weigh most): "dewalt" missing from a title
    says more than "for" missing. The last word of a query is usually its head noun ("cordless *drill*"),
    numbers are sizes and model numbers; both are checked on their own.
    """
    idf = idf or {}
    unseen = max(idf.values(), default=1.0)

    def grams(text: str) -> set[str]:
        text = f" {' '.join(text.split())} "
        return {text[i:i + 3] for i in range(len(text) - 2)}

    out = np.zeros((len(queries), len(LEXICAL_FEATURES)), np.float32)
    for i, (q, t) in enumerate(zip(queries.fillna("").astype(str).str.casefold(),
                                   targets.fillna("").astype(str).str.casefold())):
        q_tokens, t_tokens = _WORD.findall(q), _WORD.findall(t)  # q and t are case-folded already
        qw, tw = set(q_tokens), set(t_tokens)
        qg, tg = grams(q), grams(t)
        shared = len(qg & tg)
        out[i, :6] = (len(qw & tw) / max(len(qw), 1), shared / max(len(qg), 1), shared / max(len(qg | tg), 1),
                      len(q), len(t), len(qw))
        folded, title = [_stem(w) for w in q_tokens], {_stem(w) for w in t_tokens}
        if not folded:
            out[i, 6:] = (0.0, 0.0, 0.0, 0.0, -1.0, 0.0)
            continue
        hit = np.array([w in title for w in folded])
        weight = np.array([idf.get(w, unseen) for w in folded])
        numbers = [w in title for w in folded if any(c.isdigit() for c in w)]
        prefixes = {w[:4] for w in title}
        out[i, 6:] = ((weight * hit).sum() / max(weight.sum(), 1e-9), weight[~hit].max(initial=0.0),
                      float(hit[-1]), float(hit[0]), float(np.mean(numbers)) if numbers else -1.0,
                      float(np.mean([w[:4] in prefixes for w in folded])))
    return out


# The per-row features that are also compared across the candidates of one query (query_context_features).
CONTEXT_BASE = NEIGHBOUR_FEATURES + [f for f in LEXICAL_FEATURES if f not in ("query_chars", "query_words")]


def query_context_features(df: pd.DataFrame, base: np.ndarray) -> np.ndarray:
    """How each row compares with the other rows of the same task and query in ``df``.

    For every column of ``base``: the gap to the query's best row, the gap to its mean, the row's rank
    (fraction of the query's rows at or below it), and the number of rows the query has. A title that
    matches the query less well than the query's other candidates is less likely relevant, whatever its
    absolute similarity: search results come as lists, and a list tells what "close" means for this query.
    The price: a row's score depends on the rows scored with it (a single row gets gap 0 and rank 1).
    """
    if len(df) == 0:
        return np.zeros((0, 3 * base.shape[1] + 1), np.float32)
    # Rows of one query share their neighbours, so their neighbour features tie exactly in theory; faiss and
    # BLAS give them ~1e-7 apart depending on which rows were searched together. Rounding keeps ties as
    # ties, so ranks do not depend on how the rows were batched.
    base = np.round(np.asarray(base, np.float64), 4)
    key = (df["task"].astype(str) + "\t" + normalise_queries(df["query"])).to_numpy()
    grouped = pd.DataFrame(base).groupby(key, sort=False)
    size = pd.Series(key).map(pd.Series(key).value_counts()).to_numpy(np.float32)[:, None]
    return np.hstack([base - grouped.transform("max").to_numpy(), base - grouped.transform("mean").to_numpy(),
                      grouped.rank(pct=True).to_numpy(), size]).astype(np.float32)


def scaled_cosine_bce_loss(model):
    """A loss module: binary cross-entropy on ``scale * (cos(q, t) - offset)``, both learned with the encoder.

    sentence-transformers has no pointwise binary loss for bi-encoders (its ``BinaryCrossEntropyLoss`` is for
    cross-encoders, ``CosineSimilarityLoss`` regresses the cosine onto 0/1); this one is a loss module in
    its documented form (``forward(sentence_features, labels)``), trained by its Trainer like any other.
    Scale and offset train at the encoder's learning rate, so they stay close to where they start.
    """
    import torch

    class _Loss(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            # e5's cosines sit in a narrow band around 0.8: start at logit 0 there, slope 20
            self.scale, self.offset = torch.nn.Parameter(torch.tensor(20.0)), torch.nn.Parameter(torch.tensor(0.8))

        def forward(self, sentence_features, labels):
            q, t = (torch.nn.functional.normalize(self.model(f)["sentence_embedding"], dim=-1)
                    for f in sentence_features)
            logits = self.scale * ((q * t).sum(-1) - self.offset)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())

    return _Loss(model)


def fine_tune_encoder(train_df: pd.DataFrame, base: str, output_dir: Path, tp: TrainingParams, *, seed: int,
                      models_dir: str | None = None) -> dict[str, Any]:
    """Fine-tune the sentence encoder on the labelled pairs and save it (a sentence-transformers folder).

    Loss (``training.embedding.encoder.loss``): ``bce``, binary cross-entropy on the scaled cosine of query and target
    (``scaled_cosine_bce_loss``), or sentence-transformers' ``CoSENTLoss`` (within each batch, every
    relevant pair's cosine ranked above every irrelevant pair's). Either way the cosine, which the trees and
    the neighbour search read, learns relevance. Each side gets the model's own prompt (``query: `` /
    ``passage: `` for e5). The two losses compared on real QC: benchmarks/profiles.md.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    e = tp.embedding.encoder
    rows = sample_rows(train_df, e.max_rows, seed).reset_index(drop=True)
    model = SentenceTransformer(str(resolve(base, cache_dir=models_dir)), device=inference_device())
    if tp.freeze_embeddings:  # most of a multilingual encoder's weights: frozen, a step costs half as much
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    # each column gets the model's own prompt for its side ("query: " / "passage: " for e5)
    prompts = {column: model.prompts.get(st_prompt_name(model.prompts, kind) or "", "")
               for column, kind in (("query", "query"), ("target", "passage"))}
    data = Dataset.from_dict({"query": rows["query"].fillna("").astype(str).tolist(),
                              "target": rows["target"].fillna("").astype(str).tolist(),
                              "score": rows["label"].astype(float).tolist()})
    steps = int(np.ceil(len(rows) / e.batch_size * e.epochs))
    scratch = tempfile.TemporaryDirectory(prefix="qckit-encoder-")  # the Trainer's output_dir: nothing kept there
    args = SentenceTransformerTrainingArguments(
        output_dir=scratch.name, num_train_epochs=e.epochs,
        per_device_train_batch_size=e.batch_size, learning_rate=e.learning_rate,
        warmup_steps=int(np.ceil(0.06 * steps)), seed=seed, save_strategy="no", report_to=[],
        logging_steps=max(1, steps // 20), prompts=prompts,
        batch_sampler=batch_sampler(tp.embedding.length_grouping),
        **device_args(),
        disable_tqdm=True,
    )
    loss = CoSENTLoss(model) if e.loss == "cosent" else scaled_cosine_bce_loss(model)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss,
                                         callbacks=trainer_progress("fine-tuning the encoder"))
    start = time.perf_counter()
    with scratch:
        trainer.train()
    seconds = time.perf_counter() - start
    model.save(str(output_dir))
    return {"encoder_rows": len(rows), "encoder_seconds": seconds,
            "encoder_log_history": [h for h in trainer.state.log_history if "loss" in h]}


def _embeddings(df: pd.DataFrame, embedder: str, cache: str | None, models_dir: str | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Query, target and (QC rows only) leaf-category embeddings; other tasks' rows get a zero leaf."""
    q, t = embed_pairs(df, model=embedder, cache_dir=cache, models_dir=models_dir)
    qc = (df["task"] == "QC").to_numpy()
    if not qc.any():
        return q, t, None
    leaf = embed_column(category_leaves(df["target"]), "passage", embedder, cache, models_dir)
    leaf[~qc] = 0.0
    return q, t, leaf


def _query_keys(df: pd.DataFrame) -> np.ndarray:
    return normalise_queries(df["query"]).to_numpy()


@contextlib.contextmanager
def timed_phase(phases: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the block's wall-clock seconds to ``phases[name]`` (nothing when ``phases`` is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if phases is not None:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


def features(df: pd.DataFrame, q: np.ndarray, t: np.ndarray, leaf: np.ndarray | None, bank: Bank,
             tp: TrainingParams, *, has_leaf: bool, phases: dict[str, float] | None = None) -> np.ndarray:
    """The estimator's input: pair features, the task as a column (joint models), neighbour features,
    lexical features and (``query_context``) how they compare with the other candidates of the row's query.

    ``phases``: where to add the seconds spent on the neighbour search (``neighbours``) and on the others
    (``features``)."""
    with timed_phase(phases, "features"):
        if has_leaf and leaf is None:
            leaf = np.zeros_like(t)
        pair = pair_features(q, t, leaf if has_leaf else None)
    with timed_phase(phases, "neighbours"):
        nn = neighbour_features(q, t, _query_keys(df), bank, neighbours=tp.embedding.neighbours)
    with timed_phase(phases, "features"):
        task = (df["task"] == "QI").to_numpy(np.float32)[:, None]
        lexical = lexical_features(df["query"], df["target"], bank.idf)
        parts = [pair, task, nn, lexical]
        if tp.embedding.query_context:
            named = dict(zip(NEIGHBOUR_FEATURES + LEXICAL_FEATURES, np.hstack([nn, lexical]).T))
            parts.append(query_context_features(df, np.stack([named[f] for f in CONTEXT_BASE], axis=1)))
        return np.hstack(parts).astype(np.float32)


def _use_texts(df: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Query, target and leaf texts for the USE encoder: a QC path as ``a > b > c`` and its leaf; QI leaf ''."""
    qc = (df["task"] == "QC").to_numpy()
    targets = df["target"].fillna("").astype(str)
    levels = [parse_category_path(p) or [""] if is_qc else [p] for p, is_qc in zip(targets, qc)]
    return (df["query"].fillna("").astype(str).tolist(), [" > ".join(x) for x in levels],
            [x[-1] if is_qc else "" for x, is_qc in zip(levels, qc)])


def _second_bank(encoder, df: pd.DataFrame) -> Bank:
    queries, targets, _ = _use_texts(df)
    return Bank.build(df["query"], encoder.encode(queries), encoder.encode(targets), df["label"].to_numpy(float))


def _second_features(encoder, df: pd.DataFrame, bank: Bank, idf: dict[str, float], tp: TrainingParams) -> np.ndarray:
    """The second trees' input: the first trees' lexical features, then the USE encoder's neighbour features
    against its own bank, its cosine to the leaf category (QC rows), and how these compare within the query."""
    queries, targets, leaves = _use_texts(df)
    q, t = encoder.encode(queries), encoder.encode(targets)
    leaf_cos = np.where([bool(x) for x in leaves], np.sum(q * encoder.encode(leaves), axis=1), 0.0)
    nn = neighbour_features(q, t, _query_keys(df), bank, neighbours=tp.embedding.neighbours)
    base = np.hstack([nn, leaf_cos[:, None]])
    parts = [lexical_features(df["query"], df["target"], idf), base]
    if tp.embedding.query_context:
        parts.append(query_context_features(df, base))
    return np.hstack(parts).astype(np.float32)


def train_second_encoder(train_df: pd.DataFrame, tp: TrainingParams, idf: dict[str, float], output_dir: Path, *,
                         seed: int) -> dict[str, Any]:
    """``training.embedding.second_encoder``: USE fine-tuned on the pairs, cross-fitted, with trees of its own.

    Fine-tuned on every training row, USE's training-row cosine is far better than on new rows (real QC: AUC
    0.92 vs 0.74), and trees fitted on it would trust it too much. So the rows are split into query-grouped
    folds and each fold's features come from an encoder fine-tuned on the other folds, with a neighbour bank of
    those folds only: the trees see features as new rows will get them. The encoder and bank saved for scoring
    are trained on all rows. Saves encoder, bank and trees in ``output_dir``; returns figures.
    """
    from sklearn.metrics import roc_auc_score

    e = tp.embedding.second_encoder
    start = time.perf_counter()
    y = train_df["label"].to_numpy(int)
    queries, targets, _ = _use_texts(train_df)
    tune = {"epochs": e.epochs, "learning_rate": e.learning_rate, "batch_size": e.batch_size, "seed": seed}
    try:  # query-grouped (a translation stays with its source row), stratified, at most one fold per query
        fold_of = grouped_folds(train_df, e.folds, seed=seed)
    except ValueError as err:
        raise ValueError(f"training.embedding.second_encoder is cross-fitted: {err}") from err
    folds = int(fold_of.max()) + 1
    X = None
    for k in range(folds):
        a, b = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        report(f"second encoder: fine-tuning USE on fold {k + 1} of {folds} ({len(a):,} rows)")
        encoder, _ = use_encoder.fine_tune_use([queries[i] for i in a], [targets[i] for i in a], y[a], **tune)
        held = _second_features(encoder, train_df.iloc[b], _second_bank(encoder, train_df.iloc[a]), idf, tp)
        X = np.zeros((len(y), held.shape[1]), np.float32) if X is None else X
        X[b] = held
    encoder, history = use_encoder.fine_tune_use(queries, targets, y, **tune)
    encoder.save(output_dir, folds=folds, **{k: v for k, v in tune.items() if k != "seed"})
    _second_bank(encoder, train_df).save(output_dir / BANK_FILE)
    trees = _estimator(tp, seed, positive_weight(y.astype(float), tp)).fit(X, y)
    save_estimator(trees, output_dir / ESTIMATOR_FILE)
    cos = X[:, len(LEXICAL_FEATURES)]  # out-of-fold: how well the encoder reads rows it was not tuned on
    return {"second_encoder_seconds": time.perf_counter() - start, "second_encoder_log_history": history,
            "second_encoder_oof_cosine_auc": float(roc_auc_score(y, cos)) if len(set(y)) == 2 else None}


def second_encoder_logits(folder: str | Path, df: pd.DataFrame, idf: dict[str, float], tp: TrainingParams
                          ) -> np.ndarray:
    """Log-odds of the second encoder's trees for df's rows (a folder written by ``train_second_encoder``)."""
    folder = Path(folder)
    estimator = load_estimator(folder / ESTIMATOR_FILE)  # refuses a folder holding a pickle first
    X = _second_features(use_encoder.UseEncoder.load(folder), df, Bank.load(folder / BANK_FILE), idf, tp)
    return _tree_logits(estimator, X)


def save_estimator(estimator, path: Path) -> None:
    """Save a fitted estimator with skops (no pickle); ``load_estimator`` reads it back."""
    import skops.io

    path.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(estimator, path)


def load_estimator(path: str | Path):
    """The HistGradientBoostingClassifier saved by ``save_estimator``, loaded with no code from the file.

    Refuses (``UnsafeArtefactError``, naming the file and why) a folder that holds a pickle, a file that is
    not a skops file, one that would need types outside ``ESTIMATOR_TYPES``, and any other estimator.
    """
    import skops.io
    from sklearn.ensemble import HistGradientBoostingClassifier

    path = Path(path)
    refuse_unsafe_files(path.parent)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the folder holds no estimator saved by this qckit version "
                                "(train the model again)")
    try:
        needed = skops.io.get_untrusted_types(file=path)
    except Exception as err:  # a zip without skops' schema, or no zip: whatever it is, it is not loaded
        why = " ".join(str(err).split())[:200]  # one line
        raise unsafe_artefact(path, f"not a skops file ({type(err).__name__}: {why})") from err
    extra = sorted(set(needed) - set(ESTIMATOR_TYPES))
    if extra:
        raise unsafe_artefact(path, f"it needs types outside qckit's allow-list: {', '.join(extra)}")
    estimator = skops.io.load(path, trusted=list(ESTIMATOR_TYPES))
    if type(estimator) is not HistGradientBoostingClassifier:
        raise unsafe_artefact(path, f"it holds a {type(estimator).__name__}, not a HistGradientBoostingClassifier")
    return estimator


def _tree_logits(estimator, X: np.ndarray) -> np.ndarray:
    """Log-odds of p(yes) from a fitted estimator, clipped away from 0 and 1."""
    p = np.clip(estimator.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _estimator(tp: TrainingParams, seed: int, positive_weight: float):
    from sklearn.ensemble import HistGradientBoostingClassifier

    e = tp.embedding
    return HistGradientBoostingClassifier(
        max_iter=e.trees, learning_rate=e.learning_rate, max_leaf_nodes=e.max_leaf_nodes,
        l2_regularization=e.l2_regularization, max_features=e.max_features, early_stopping=False, random_state=seed,
        class_weight=None if positive_weight == 1.0 else {0: 1.0, 1: positive_weight},
    )


def _curve(model, X: np.ndarray, y: np.ndarray, X_dev: np.ndarray | None, y_dev: np.ndarray | None,
           every: int) -> list[dict[str, float]]:
    """Training log-loss and dev F1 every `every` trees (the Trainer's log_history shape, for step 05's figure)."""
    from sklearn.metrics import log_loss

    history: list[dict[str, float]] = []
    dev_stages = model.staged_predict_proba(X_dev) if X_dev is not None else None
    for step, p in enumerate(model.staged_predict_proba(X), start=1):
        p_dev = next(dev_stages)[:, 1] if dev_stages is not None else None
        if step % every and step != model.n_iter_:
            continue
        loss = float(log_loss(y, p[:, 1], labels=[0, 1]))
        history.append({"step": step, "epoch": step / model.n_iter_, "loss": loss})
        if p_dev is not None:
            logodds = np.log(np.clip(p_dev, 1e-12, 1)) - np.log(np.clip(1 - p_dev, 1e-12, 1))
            metrics = f1_metrics(_EvalPred(logodds, y_dev))
            history.append({"step": step, "epoch": step / model.n_iter_,
                            "eval_loss": float(log_loss(y_dev, p_dev, labels=[0, 1])),
                            **{f"eval_{k}": v for k, v in metrics.items()}})
    return history


@dataclass
class _EvalPred:
    predictions: np.ndarray
    label_ids: np.ndarray


def train(train_df: pd.DataFrame, dev_df: pd.DataFrame | None, params: Params, *,
          output_dir: str | Path) -> dict[str, Any]:
    """Fit the trees on the labelled rows; save estimator, bank and qckit metadata in output_dir.

    Returns the same figures as ``qckit.heads.transformer.train`` (time, rows/s, peak memory, log_history),
    and ``phase_seconds``: where the whole call's wall time went (``TRAINING_PHASES``, those that ran),
    so step 05's metrics say what a slow run spent its time on.
    """
    tp, seed = params.training, params.run.seed
    embedder = params.models.classifier
    output_dir = Path(output_dir)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    with timed_phase(phases, "preparing"):
        train_df = sample_rows(train_df.dropna(subset=["label"]), tp.max_train_rows, seed).reset_index(drop=True)
        y = train_df["label"].to_numpy(int)
        caches = (params.negatives.cache_dir, params.models.cache_dir)
    extra: dict[str, Any] = {}
    if tp.embedding.encoder.fine_tune:
        with timed_phase(phases, "encoder"):
            extra = fine_tune_encoder(train_df, embedder, output_dir / ENCODER_DIR, tp, seed=seed,
                                      models_dir=params.models.cache_dir)
        embedder = str((output_dir / ENCODER_DIR).resolve())
        caches = (str(output_dir / ENCODER_CACHE_DIR), params.models.cache_dir)
    if tp.embedding.cross_encoder.enabled:
        base = tp.embedding.cross_encoder.model or params.models.classifier
        with timed_phase(phases, "cross_encoder"):
            extra.update(train_cross_encoder(train_df, base, output_dir / CROSS_ENCODER_DIR, tp,
                                             seed=seed, models_dir=params.models.cache_dir))
    with timed_phase(phases, "embedding"):
        q, t, leaf = _embeddings(train_df, embedder, *caches)
    has_leaf = leaf is not None
    with timed_phase(phases, "features"):
        bank = Bank.build(train_df["query"], q, t, y, targets=train_df["target"])
    with stage(f"neighbour and lexical features of {len(train_df):,} training rows"):
        X = features(train_df, q, t, leaf, bank, tp, has_leaf=has_leaf, phases=phases)
    X_dev = y_dev = None
    if dev_df is not None and len(dev_df.dropna(subset=["label"])):
        with timed_phase(phases, "preparing"):
            dev = sample_rows(dev_df.dropna(subset=["label"]), tp.dev_eval_rows, seed).reset_index(drop=True)
        with timed_phase(phases, "embedding"):
            dq, dt, dleaf = _embeddings(dev, embedder, *caches)
        X_dev = features(dev, dq, dt, dleaf, bank, tp, has_leaf=has_leaf, phases=phases)
        y_dev = dev["label"].to_numpy(int)
    with stage(f"fitting {tp.embedding.trees} trees on {X.shape[0]:,} rows x {X.shape[1]:,} features"), \
            timed_phase(phases, "trees"):
        model = _estimator(tp, seed, positive_weight(y.astype(float), tp)).fit(X, y)
    if tp.embedding.second_encoder.model:
        with timed_phase(phases, "second_encoder"):
            extra.update(train_second_encoder(train_df, tp, bank.idf, output_dir / SECOND_ENCODER_DIR, seed=seed))
    seconds = time.perf_counter() - start
    with timed_phase(phases, "curve"):
        history = _curve(model, X, y, X_dev, y_dev, every=max(1, tp.embedding.trees // 20))
    with timed_phase(phases, "saving"):
        _save(model, bank, output_dir, _meta(params, tp, has_leaf, X.shape[1]))
    report("time per phase: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    return {"train_rows": len(train_df), "seconds": seconds, "resumed_from": None,
            "rows_per_second": len(train_df) / max(seconds, 1e-9), "peak_memory_mib": peak_memory_mib(),
            "log_history": history, "trees": int(model.n_iter_), "features": int(X.shape[1]),
            "phase_seconds": {k: round(v, 3) for k, v in phases.items()}, **extra}


def _meta(params: Params, tp: TrainingParams, has_leaf: bool, n_features: int) -> dict[str, Any]:
    return {"head": "embedding", "method": "fine-tuned encoder" if tp.embedding.encoder.fine_tune else "frozen",
            "base_model": params.models.classifier, "base_spec": params.models.classifier,
            "encoder": ENCODER_DIR if tp.embedding.encoder.fine_tune else None,
            "cross_encoder": CROSS_ENCODER_DIR if tp.embedding.cross_encoder.enabled else None,
            "second_encoder": SECOND_ENCODER_DIR if tp.embedding.second_encoder.model else None,
            "has_leaf": has_leaf, "features": n_features, "training": tp.model_dump(mode="json"),
            "negatives_cache_dir": params.negatives.cache_dir, "models_cache_dir": params.models.cache_dir}


def _save(model, bank: Bank, output_dir: Path, meta: dict[str, Any]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    save_estimator(model, output_dir / ESTIMATOR_FILE)
    bank.save(output_dir / BANK_FILE)
    (output_dir / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


# The sub-folders a model folder may name in its metadata (never a path elsewhere).
SUB_FOLDERS = {"encoder": ENCODER_DIR, "cross_encoder": CROSS_ENCODER_DIR, "second_encoder": SECOND_ENCODER_DIR}


def load(model_dir: str | Path) -> LoadedModel:
    """The estimator, neighbour bank and metadata of a folder written by ``train``.

    Nothing in the folder runs code: the estimator is read with skops and an allow-list of types, the bank
    as npz without pickles, encoders as safetensors; a folder holding a pickle (a model saved by an earlier
    qckit with joblib, or a planted file) is refused with ``UnsafeArtefactError`` before anything is read.
    """
    model_dir = Path(model_dir)
    refuse_unsafe_files(model_dir)
    meta = read_meta(model_dir)
    for key, name in SUB_FOLDERS.items():
        if meta.get(key) not in (None, name):  # a part is read from the model folder, never from elsewhere
            raise unsafe_artefact(model_dir / META_FILE, f"{key} names {meta[key]!r}; it must be {name!r} or null")
    meta["model_dir"] = str(model_dir.resolve())  # where a fine-tuned encoder is found
    return LoadedModel("embedding", meta, load_estimator(model_dir / ESTIMATOR_FILE), folder=model_dir,
                       bank=Bank.load(model_dir / BANK_FILE))


def logodds(loaded: LoadedModel, df: pd.DataFrame) -> np.ndarray:
    """Log-odds of p(yes) for df's rows (``qckit.heads.score`` turns them into scores)."""
    estimator, bank, meta = loaded.model, loaded.bank, loaded.meta
    tp = TrainingParams.model_validate(meta["training"])
    df = df.reset_index(drop=True)
    if df.empty:
        return np.zeros(0)
    # a fine-tuned encoder lives in the model folder (found wherever the folder was moved to)
    embedder, cache = meta["base_model"], meta.get("negatives_cache_dir")
    if meta.get("encoder"):
        embedder, cache = (str(Path(meta["model_dir"]) / name) for name in (meta["encoder"], ENCODER_CACHE_DIR))
    q, t, leaf = _embeddings(df, embedder, cache, meta.get("models_cache_dir"))
    X = features(df, q, t, leaf, bank, tp, has_leaf=meta["has_leaf"])
    if X.shape[1] != meta["features"]:
        raise ValueError(f"{meta['model_dir']}: the model was trained on {meta['features']} features, this qckit "
                         f"computes {X.shape[1]}: it was written by another qckit version; train it again")
    logits = _tree_logits(estimator, X)
    if meta.get("second_encoder"):  # blend the two sets of trees (training.embedding.second_encoder.weight)
        w = tp.embedding.second_encoder.weight
        second = second_encoder_logits(Path(meta["model_dir"]) / meta["second_encoder"], df, bank.idf, tp)
        logits = (1 - w) * logits + w * second
    if meta.get("cross_encoder"):  # blend the two log-odds (training.embedding.cross_encoder.weight)
        w = tp.embedding.cross_encoder.weight
        ce = cross_encoder_logits(Path(meta["model_dir"]) / meta["cross_encoder"], df, batch_size=tp.eval_batch_size)
        logits = (1 - w) * logits + w * ce
    return logits
