"""Blocked retrieval ranking equals a dense reference, for every block size, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsvl.errors import DataError
from rsvl.evaluate.retrieval import (
    TIE_TOLERANCE,
    metrics_from_ranks,
    recall_curve,
    recall_metrics,
    retrieval_ranks,
)

BLOCK_SIZES = [1, 3, 7, 64, 100_000]


def dense_reference_ranks(images, texts, owner, tolerance):
    """Ranks from the whole float64 score matrix, one query at a time (the protocol read literally)."""
    images = np.asarray(images, dtype=np.float64)
    texts = np.asarray(texts, dtype=np.float64)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    scores = texts @ images.T
    owner = np.asarray(owner)
    t2i = []
    for t in range(len(texts)):
        own = scores[t, owner[t]]
        t2i.append(sum(scores[t, j] >= own - tolerance for j in range(len(images)) if j != owner[t]))
    i2t = []
    for i in range(len(images)):
        best = scores[owner == i, i].max()
        i2t.append(sum(scores[t, i] >= best - tolerance for t in range(len(texts)) if owner[t] != i))
    return np.array(i2t), np.array(t2i)


def reference_recall(ranks, ks):
    return [100.0 * float(np.mean(ranks < k)) for k in ks]


def captions_per_image(rng, n_images):
    counts = rng.integers(1, 6, size=n_images)
    return [i for i, c in enumerate(counts) for _ in range(c)]


def quantised_case(seed=0, n_images=40, dim=16):
    """±1 vectors times powers of two: normalising and dot products are exact, and ties abound."""
    rng = np.random.default_rng(seed)
    owner = captions_per_image(rng, n_images)
    images = rng.choice([-1.0, 1.0], size=(n_images, dim))
    images[5] = images[4]  # duplicate images: their captions tie on both
    texts = np.where(rng.random((len(owner), dim)) < 0.8, images[owner], -images[owner])
    texts[3] = texts[2]
    images *= 2.0 ** rng.integers(-3, 4, size=(n_images, 1))
    texts *= 2.0 ** rng.integers(-3, 4, size=(len(owner), 1))
    return torch.tensor(images, dtype=torch.float32), torch.tensor(texts, dtype=torch.float32), owner


def continuous_case(seed=1, n_images=30, dim=8):
    rng = np.random.default_rng(seed)
    owner = captions_per_image(rng, n_images)
    images = rng.normal(size=(n_images, dim))
    images[7] = images[6]
    texts = images[owner] + rng.normal(scale=1.5, size=(len(owner), dim))
    texts[10] = texts[9]
    return torch.tensor(images, dtype=torch.float32), torch.tensor(texts, dtype=torch.float32), owner


@pytest.mark.parametrize("case", [quantised_case, continuous_case])
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_blocked_ranks_equal_the_dense_reference(case, block_size):
    images, texts, owner = case()
    want_i2t, want_t2i = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE)
    ranks = retrieval_ranks(images, texts, owner, block_size=block_size)
    assert ranks.i2t.tolist() == want_i2t.tolist()
    assert ranks.t2i.tolist() == want_t2i.tolist()


def test_quantised_case_really_has_ties():
    images, texts, owner = quantised_case()
    _, t2i = dense_reference_ranks(images, texts, owner, 0.0)
    _, t2i_strict = dense_reference_ranks(images, texts, owner, -1e-9)  # ">" instead of ">="
    assert (t2i != t2i_strict).sum() >= 5


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_metrics_and_curve_match_the_reference(block_size):
    images, texts, owner = quantised_case(seed=3)
    want_i2t, want_t2i = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE)
    metrics = recall_metrics(images, texts, owner, block_size=block_size)
    ks = (1, 5, 10)
    assert [metrics[f"i2t_r{k}"] for k in ks] == pytest.approx(reference_recall(want_i2t, ks))
    assert [metrics[f"t2i_r{k}"] for k in ks] == pytest.approx(reference_recall(want_t2i, ks))
    six = reference_recall(want_i2t, ks) + reference_recall(want_t2i, ks)
    assert metrics["mR"] == pytest.approx(sum(six) / 6)
    curve = recall_curve(retrieval_ranks(images, texts, owner, block_size=block_size), max_k=30)
    assert curve["k"] == list(range(1, 31))
    assert curve["i2t"] == pytest.approx(reference_recall(want_i2t, curve["k"]))
    assert curve["t2i"] == pytest.approx(reference_recall(want_t2i, curve["k"]))


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_collapsed_embeddings_score_zero_for_every_block_size(block_size):
    vector = torch.randn(1, 24)
    ranks = retrieval_ranks(vector.repeat(15, 1), (vector * 3).repeat(45, 1), [i // 3 for i in range(45)],
                            block_size=block_size)
    metrics = metrics_from_ranks(ranks)
    assert all(value == 0.0 for value in metrics.values())


def test_block_size_must_be_positive():
    with pytest.raises(DataError, match="block_size"):
        retrieval_ranks(torch.eye(2), torch.eye(2), [0, 1], block_size=0)
