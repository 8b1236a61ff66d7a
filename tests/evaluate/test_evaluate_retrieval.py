"""Retrieval recall: the seven numbers of the shared protocol by hand, and blocked ranking equal to a dense
reference for every block size, ties included (counted against the query), under both protocols
(identical captions merged; standard: each caption its own answer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsvl.errors import DataError
from rsvl.evaluate.retrieval import (
    STANDARD_PREFIX,
    TIE_TOLERANCE,
    metrics_from_ranks,
    protocol_ranks,
    recall_curve,
    recall_metrics,
    retrieval_ranks,
)

BLOCK_SIZES = [1, 3, 7, 64, 100_000]
KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]


def dense_reference_ranks(images, texts, owner, tolerance, keys=None):
    """Ranks from the whole float64 score matrix, one query at a time (the protocol read literally).

    With ``keys``, text ``t`` is right for image ``i`` when ``i`` owns a text with ``t``'s key.
    """
    images = np.asarray(images, dtype=np.float64)
    texts = np.asarray(texts, dtype=np.float64)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    scores = texts @ images.T
    keys = list(range(len(owner))) if keys is None else keys
    owned = [{keys[t] for t in range(len(texts)) if owner[t] == i} for i in range(len(images))]
    right = np.array([[keys[t] in owned[i] for i in range(len(images))] for t in range(len(texts))])
    t2i = []
    for t in range(len(texts)):
        best = scores[t, right[t]].max()
        t2i.append(sum(scores[t, j] >= best - tolerance for j in range(len(images)) if not right[t, j]))
    i2t = []
    for i in range(len(images)):
        best = scores[right[:, i], i].max()
        i2t.append(sum(scores[t, i] >= best - tolerance for t in range(len(texts)) if not right[t, i]))
    return np.array(i2t), np.array(t2i)


def shared_captions(owner, seed=0):
    """A caption per text where some captions recur across images (one in five is "same")."""
    rng = np.random.default_rng(seed)
    return ["same  Caption" if rng.random() < 0.2 else f"caption {t}" for t in range(len(owner))]


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


@pytest.mark.parametrize("case", [quantised_case, continuous_case])
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_shared_captions_are_right_for_every_owner(case, block_size):
    images, texts, owner = case()
    captions = shared_captions(owner)
    texts[[t for t, c in enumerate(captions) if c.startswith("same")]] = texts[0].clone()  # one text, one embedding
    keys = [" ".join(c.split()).lower() for c in captions]
    want_i2t, want_t2i = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE, keys)
    ranks = retrieval_ranks(images, texts, owner, text_keys=captions, block_size=block_size)
    assert ranks.i2t.tolist() == want_i2t.tolist()
    assert ranks.t2i.tolist() == want_t2i.tolist()
    plain_i2t, _ = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE)
    assert (want_i2t < plain_i2t).any()  # the shared caption no longer counts against its other owners


def test_unique_captions_rank_as_without_captions():
    images, texts, owner = continuous_case()
    plain = retrieval_ranks(images, texts, owner)
    keyed = retrieval_ranks(images, texts, owner, text_keys=[f"caption {t % 7} of {o}" for t, o in enumerate(owner)])
    assert keyed.i2t.tolist() == plain.i2t.tolist() and keyed.t2i.tolist() == plain.t2i.tolist()


def test_empty_tiles_with_one_caption_do_not_cap_recall():
    # Ten ship-less tiles narrated alike and six tiles with their own caption; the text tower maps
    # every caption onto its images exactly (a perfect model).
    images = torch.eye(16)
    captions = ["There are no ships in this SAR image."] * 10 + [f"{n} ships" for n in range(6)]
    texts = torch.cat([images[:10].mean(dim=0, keepdim=True).repeat(10, 1), images[10:]])
    owner = list(range(16))
    without = metrics_from_ranks(retrieval_ranks(images, texts, owner))
    keyed = metrics_from_ranks(retrieval_ranks(images, texts, owner, text_keys=captions))
    assert without["i2t_r1"] == pytest.approx(100 * 6 / 16)
    assert keyed["i2t_r1"] == 100.0 and keyed["t2i_r1"] == 100.0


@pytest.mark.parametrize("case", [quantised_case, continuous_case])
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_both_protocols_equal_their_dense_references_with_shared_captions(case, block_size):
    images, texts, owner = case()
    captions = shared_captions(owner, seed=2)
    texts[[t for t, c in enumerate(captions) if c.startswith("same")]] = texts[1].clone()
    keys = [" ".join(c.split()).lower() for c in captions]
    merged_i2t, merged_t2i = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE, keys)
    std_i2t, std_t2i = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE)
    ranks = protocol_ranks(images, texts, owner, captions, block_size=block_size)
    assert (ranks.merged.i2t.tolist(), ranks.merged.t2i.tolist()) == (merged_i2t.tolist(), merged_t2i.tolist())
    assert (ranks.standard.i2t.tolist(), ranks.standard.t2i.tolist()) == (std_i2t.tolist(), std_t2i.tolist())
    metrics, ks = ranks.metrics(), (1, 5, 10)
    assert list(metrics) == KEYS + [f"std_{key}" for key in KEYS]
    assert [metrics[f"std_i2t_r{k}"] for k in ks] == pytest.approx(reference_recall(std_i2t, ks))
    assert [metrics[f"std_t2i_r{k}"] for k in ks] == pytest.approx(reference_recall(std_t2i, ks))
    assert [metrics[f"i2t_r{k}"] for k in ks] == pytest.approx(reference_recall(merged_i2t, ks))
    assert [metrics[f"t2i_r{k}"] for k in ks] == pytest.approx(reference_recall(merged_t2i, ks))
    assert (merged_i2t != std_i2t).any() and (merged_t2i != std_t2i).any()  # the case tells the protocols apart


def test_the_standard_protocol_counts_identical_captions_of_other_images_as_wrong():
    # Ten ship-less tiles narrated alike and six with their own caption; a perfect model.
    # Standard: each empty tile's caption ties with the nine copies (and its text with the nine other
    # empty tiles), so its rank is 9: missed at R@1 and R@5, found at R@10, in both directions.
    # R@1 = R@5 = 6/16 = 37.5 %, R@10 = 100 %; std_mR = (4 × 37.5 + 2 × 100) / 6 = 350/6; merged: all 100.
    images = torch.eye(16)
    captions = ["There are no ships in this SAR image."] * 10 + [f"{n} ships" for n in range(6)]
    texts = torch.cat([images[:10].mean(dim=0, keepdim=True).repeat(10, 1), images[10:]])
    owner = list(range(16))
    ranks = protocol_ranks(images, texts, owner, captions, block_size=5)
    metrics = ranks.metrics()
    assert ranks.standard.i2t.tolist() == ranks.standard.t2i.tolist() == [9] * 10 + [0] * 6
    want_i2t, want_t2i = dense_reference_ranks(images, texts, owner, TIE_TOLERANCE)
    assert (ranks.standard.i2t.tolist(), ranks.standard.t2i.tolist()) == (want_i2t.tolist(), want_t2i.tolist())
    assert all(metrics[key] == 100.0 for key in KEYS)
    for direction in ("i2t", "t2i"):
        assert [metrics[f"std_{direction}_r{k}"] for k in (1, 5, 10)] == [37.5, 37.5, 100.0]
    assert metrics["std_mR"] == pytest.approx(350 / 6)
    assert metrics["mR"] - metrics["std_mR"] == pytest.approx(250 / 6)
    standard = {key: value for key, value in metrics.items() if key.startswith("std_")}
    assert metrics_from_ranks(ranks.standard, STANDARD_PREFIX) == standard


def test_text_keys_must_match_the_texts():
    with pytest.raises(DataError, match="text_keys"):
        retrieval_ranks(torch.eye(2), torch.eye(2), [0, 1], text_keys=["a"])


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


def test_hand_computed_example():
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0], [0.6, 0.8, 0]])
    # text -> image: t0 and t2 find their image first; t1 (image 0) and t3 (image 2) rank it third.
    # image -> text: image 0 finds t0 first; image 1 ties with a foreign text; image 2 is beaten by 3.
    scores = recall_metrics(images, texts, [0, 0, 1, 2])
    assert list(scores) == KEYS
    assert scores["t2i_r1"] == pytest.approx(50.0) and scores["t2i_r5"] == scores["t2i_r10"] == 100.0
    assert scores["i2t_r1"] == pytest.approx(100 / 3) and scores["i2t_r5"] == scores["i2t_r10"] == 100.0
    assert scores["mR"] == pytest.approx((100 / 3 + 50 + 400) / 6)


def test_perfect_and_scale_free():
    images = torch.randn(20, 8)
    texts = torch.cat([images * 3.0, images * 0.5])
    scores = recall_metrics(images, texts, list(range(20)) * 2)
    assert all(value == 100.0 for value in scores.values())


def test_identical_embeddings_score_no_better_than_last_place():
    scores = recall_metrics(torch.ones(12, 4), torch.ones(24, 4), [i // 2 for i in range(24)])
    assert scores["i2t_r1"] == scores["i2t_r10"] == 0.0
    assert scores["t2i_r1"] == scores["t2i_r10"] == 0.0


def test_bad_inputs_are_refused():
    with pytest.raises(DataError, match="image row"):
        recall_metrics(torch.eye(2), torch.eye(2), [0, 2])
    with pytest.raises(DataError, match="image row"):
        recall_metrics(torch.eye(2), torch.eye(2), [0])
    with pytest.raises(DataError, match="at least one text"):
        recall_metrics(torch.eye(3), torch.eye(3)[:2], [0, 1])


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1, 8), (255, 2040), (256, 2041), (600, 3000), (1000, 1903)])
@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_count_true_counts_every_row_and_column_as_a_plain_sum(shape, share):
    from rsvl.evaluate.retrieval import count_true

    generator = torch.Generator().manual_seed(shape[0] * 7 + shape[1])
    mask = torch.rand(shape, generator=generator) < share  # all False, mixed, all True (lanes at their limit)
    assert count_true(mask, dim=1).tolist() == mask.sum(dim=1).tolist()
    assert count_true(mask, dim=0).tolist() == mask.sum(dim=0).tolist()
    assert count_true(mask.T, dim=0).tolist() == mask.sum(dim=1).tolist()  # a transposed (strided) mask too
