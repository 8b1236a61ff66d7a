"""Blocked ranking of any score matrix (``ranks_from_scores``): equal to a whole-matrix float64 reference
for dense, cosine and arbitrary scorers at every block size, and the cosine path equal to ``retrieval_ranks``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from score_references import matrix_ranks

from rsvl.errors import DataError
from rsvl.evaluate.retrieval import (
    TIE_TOLERANCE,
    CosineScores,
    DenseScores,
    rank_protocols,
    ranks_from_scores,
    retrieval_ranks,
    score_matrix,
)

BLOCK_SIZES = [1, 3, 7, 64, 100_000]


def owner_of(rng, n_images):
    counts = rng.integers(1, 5, size=n_images)
    return [i for i, c in enumerate(counts) for _ in range(c)]


def tied_matrix(seed=0, n_images=13):
    """Integer scores in 0..5 (exact in float32): ties everywhere, and a caption list with repeats."""
    rng = np.random.default_rng(seed)
    owner = owner_of(rng, n_images)
    scores = rng.integers(0, 6, size=(len(owner), n_images)).astype(np.float32)
    captions = ["a harbour" if rng.random() < 0.25 else f"caption {t}" for t in range(len(owner))]
    return scores, owner, captions


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("merged", [False, True])
def test_dense_scores_rank_as_the_reference(block_size, merged):
    scores, owner, captions = tied_matrix()
    keys = captions if merged else None
    want_i2t, want_t2i = matrix_ranks(scores, owner, TIE_TOLERANCE, keys)
    ranks = ranks_from_scores(DenseScores(torch.from_numpy(scores)), owner, text_keys=keys, block_size=block_size)
    assert ranks.i2t.tolist() == want_i2t.tolist() and ranks.t2i.tolist() == want_t2i.tolist()


def test_the_tied_matrix_really_has_ties():
    scores, owner, _ = tied_matrix()
    _, with_ties = matrix_ranks(scores, owner, 0.0)
    _, strict = matrix_ranks(scores, owner, -0.5)  # ">" instead of ">=" on integer scores
    assert (with_ties != strict).sum() >= 5


class NegatedDistance:
    """A scorer that is not a cosine: minus the squared distance, and records the blocks it is asked for."""

    def __init__(self, texts: torch.Tensor, images: torch.Tensor) -> None:
        self.texts, self.images = texts, images
        self.n_texts, self.n_images, self.device = len(texts), len(images), torch.device("cpu")
        self.asked: list[tuple[int, int, int, int]] = []

    def block(self, t0, t1, i0, i1):
        self.asked.append((t0, t1, i0, i1))
        return -torch.cdist(self.texts[t0:t1], self.images[i0:i1]).square()


def distance_case(seed: int, scorer_class: type[NegatedDistance]):
    """11 images with texts near them: (owner, the float64 reference matrix, a float32 scorer of it)."""
    rng = np.random.default_rng(seed)
    owner = owner_of(rng, 11)
    images = rng.normal(size=(11, 5))
    texts = images[owner] + rng.normal(scale=1.0, size=(len(owner), 5))
    reference = -((texts[:, None, :] - images[None, :, :]) ** 2).sum(axis=-1)
    scorer = scorer_class(torch.tensor(texts, dtype=torch.float32), torch.tensor(images, dtype=torch.float32))
    return owner, reference, scorer


def coverage(scorer: NegatedDistance, block_size: int) -> np.ndarray:
    """How many times each (text, image) score was asked for; every block at most ``block_size`` a side."""
    cover = np.zeros((scorer.n_texts, scorer.n_images), dtype=int)
    for t0, t1, i0, i1 in scorer.asked:
        assert t1 - t0 <= block_size and i1 - i0 <= block_size
        cover[t0:t1, i0:i1] += 1
    return cover


@pytest.mark.parametrize("block_size", [1, 4, 9, 1000])
def test_any_scorer_ranks_as_its_whole_matrix(block_size):
    owner, reference, scorer = distance_case(4, NegatedDistance)
    want_i2t, want_t2i = matrix_ranks(reference, owner, TIE_TOLERANCE)
    ranks = ranks_from_scores(scorer, owner, block_size=block_size)
    assert ranks.i2t.tolist() == want_i2t.tolist() and ranks.t2i.tolist() == want_t2i.tolist()
    # no pair_scores: two passes (gathering the right answers' scores, then counting), each covering every pair once
    assert (coverage(scorer, block_size) == 2).all()


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_cosine_scorer_is_retrieval_ranks(block_size):
    rng = np.random.default_rng(5)
    owner = owner_of(rng, 17)
    images = torch.tensor(rng.normal(size=(17, 6)), dtype=torch.float32)
    texts = images[owner] * 2.5 + torch.tensor(rng.normal(size=(len(owner), 6)), dtype=torch.float32)
    captions = [f"caption {t % 9}" for t in range(len(owner))]
    scorer = CosineScores(texts, images)
    for keys in (None, captions):
        mine = ranks_from_scores(scorer, owner, text_keys=keys, block_size=block_size)
        theirs = retrieval_ranks(images, texts, owner, text_keys=keys, block_size=block_size)
        assert mine.i2t.tolist() == theirs.i2t.tolist() and mine.t2i.tolist() == theirs.t2i.tolist()
    unit_t = texts.double() / texts.double().norm(dim=1, keepdim=True)
    unit_i = images.double() / images.double().norm(dim=1, keepdim=True)
    assert score_matrix(scorer, block_size=block_size).double() == pytest.approx(unit_t @ unit_i.T, abs=1e-6)


@pytest.mark.parametrize("block_size", [1, 2, 5, 50])
def test_score_matrix_assembles_every_block(block_size):
    matrix = torch.arange(35, dtype=torch.float32).reshape(7, 5)
    assert torch.equal(score_matrix(DenseScores(matrix), block_size=block_size), matrix)


def test_bad_scorers_are_refused():
    with pytest.raises(DataError, match="texts, images"):
        DenseScores(torch.zeros(3))
    with pytest.raises(DataError, match="same width"):
        CosineScores(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(DataError, match="block_size"):
        ranks_from_scores(DenseScores(torch.eye(2)), [0, 1], block_size=0)
    with pytest.raises(DataError, match="image row"):
        ranks_from_scores(DenseScores(torch.eye(2)), [0, 5])


class PairedNegatedDistance(NegatedDistance):
    """The same scorer with ``pair_scores``: ranked in one pass over its blocks."""

    def pair_scores(self, texts, images):
        return -(self.texts[texts] - self.images[images]).square().sum(dim=-1)


@pytest.mark.parametrize("block_size", [1, 4, 9, 1000])
def test_a_scorer_of_pairs_ranks_both_protocols_in_one_pass_as_its_whole_matrix(block_size):
    owner, reference, scorer = distance_case(6, PairedNegatedDistance)
    captions = [f"caption {t % 7}" for t in range(len(owner))]  # shared across images: the merged protocol differs
    merged, standard = rank_protocols(scorer, owner, [captions, None], block_size=block_size)
    for ranks, keys in ((merged, captions), (standard, None)):
        want_i2t, want_t2i = matrix_ranks(reference, owner, TIE_TOLERANCE, keys)
        assert ranks.i2t.tolist() == want_i2t.tolist() and ranks.t2i.tolist() == want_t2i.tolist()
    assert merged.t2i.tolist() != standard.t2i.tolist()
    assert (coverage(scorer, block_size) == 1).all()  # both protocols from one pass: every score computed once


def test_too_many_right_pairs_are_refused_with_the_count(monkeypatch):
    import rsvl.evaluate.retrieval as retrieval

    monkeypatch.setattr(retrieval, "MAX_RIGHT_PAIRS", 10)
    images = torch.eye(4)
    owner = [0, 1, 2, 3, 0, 1]
    with pytest.raises(DataError, match="24 right .* more than 10"):  # one caption owned by 4 images, 6 texts
        ranks_from_scores(CosineScores(images[owner], images), owner, text_keys=["same"] * 6)
    assert ranks_from_scores(CosineScores(images[owner], images), owner).t2i.tolist() == [0] * 6
