"""nDCG@k with graded label-overlap relevance, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from references import label_set, ndcg_reference, unit_rows

from rsvl.errors import DataError
from rsvl.evaluate.ndcg import dcg, label_means, label_queries, ndcg_at_k


def test_dcg_by_hand():
    # (2^3-1)/1 + (2^2-1)/log2(3) + (2^3-1)/2 + 0 + (2^1-1)/log2(6)
    expected = 7 + 3 / math.log2(3) + 7 / 2 + 0 + 1 / math.log2(6)
    assert dcg([3, 2, 3, 0, 1, 2], 5) == pytest.approx(expected)


def test_graded_overlap_relevance_by_hand():
    query = torch.tensor([[1.0, 0.0]])
    images = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])  # ranked 0, 1, 2, 3
    image_labels = [["water"], ["Trees", "water"], [], ["trees", "crops", "water"]]
    result = ndcg_at_k(query, images, [["water", "trees"]], image_labels, k=3)
    got = (2**1 - 1) / 1 + (2**2 - 1) / math.log2(3) + 0
    ideal = (2**2 - 1) / 1 + (2**2 - 1) / math.log2(3) + (2**1 - 1) / 2
    assert result.mean == pytest.approx(got / ideal)
    assert result.top == [[0, 1, 2]]


def test_ties_count_against_the_query():
    same = torch.ones(3, 2)
    result = ndcg_at_k(torch.ones(1, 2), same, [["a"]], [["a"], ["b"], ["b"]], k=3)
    # pessimistic order b, b, a: 1/log2(4); ideal a first: 1
    assert result.mean == pytest.approx(1 / math.log2(4))


def test_class_level_retrieval_on_single_labels():
    texts, sets = label_queries([["forest"], ["water"], ["forest"]])
    assert texts == ["forest", "water"]
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    images = torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.9, 0.0]])
    result = ndcg_at_k(queries, images, sets, [["forest"], ["water"], ["forest"]], k=10)
    assert result.k == 3 and result.mean == pytest.approx(1.0)


def test_multi_label_queries_are_the_distinct_label_sets():
    texts, sets = label_queries([["water", "Trees"], ["trees", "water"], ["built"], []])
    assert texts == ["built", "trees. water"]
    assert sets == [frozenset({"built"}), frozenset({"trees", "water"})]


def test_queries_without_relevant_images_are_left_out_and_none_is_an_error():
    result = ndcg_at_k(torch.eye(2), torch.eye(2), [["a"], ["z"]], [["a"], ["b"]], k=1)
    assert result.mean == 1.0 and math.isnan(result.per_query[1])
    with pytest.raises(DataError, match="no query has a relevant image"):
        ndcg_at_k(torch.eye(2)[:1], torch.eye(2), [["z"]], [["a"], ["b"]], k=1)


def test_per_label_means_by_hand():
    query_labels = [["water"], ["Water", "trees"], [" TREES "], ["bare"], ["water", "bare"]]
    per_query = [0.5, 0.7, math.nan, math.nan, 0.3]
    means = label_means(query_labels, per_query)
    assert list(means) == ["bare", "trees", "water"]
    assert means["water"] == pytest.approx((0.5 + 0.7 + 0.3) / 3)
    assert means["trees"] == pytest.approx(0.7)  # the nan query with trees is left out
    assert means["bare"] == pytest.approx(0.3)
    assert math.isnan(label_means([["z"]], [math.nan])["z"])
    with pytest.raises(DataError, match="one nDCG value per query"):
        label_means([["a"]], [])


VOCABULARY = ["water", "Trees", "crops", "built area", "bare"]


def random_case(seed: int, quantised: bool, n_queries: int = 12, n_images: int = 40, dim: int = 16):
    """Multi-label images and queries (some labels repeated, re-cased or padded, some rows unlabelled).

    Quantised: ±1 embeddings times powers of two (normalising and dot products are exact in
    float32) with repeated images, so tied scores occur; continuous: Gaussian embeddings.
    """
    rng = np.random.default_rng(seed)

    def labels(count: int) -> list[list[str]]:
        rows = []
        for _ in range(count):
            chosen = [VOCABULARY[i] for i in np.flatnonzero(rng.random(len(VOCABULARY)) < 0.35)]
            rows.append([f" {label.upper()} " if rng.random() < 0.2 else label for label in chosen]
                        + chosen[:1] * int(rng.random() < 0.2))
        return rows

    if quantised:
        images = rng.choice([-1.0, 1.0], size=(n_images, dim))
        images[1::6] = images[0]
        queries = rng.choice([-1.0, 1.0], size=(n_queries, dim))
        images *= 2.0 ** rng.integers(-3, 4, size=(n_images, 1))
    else:
        images, queries = rng.normal(size=(n_images, dim)), rng.normal(size=(n_queries, dim))
    return torch.tensor(queries, dtype=torch.float32), torch.tensor(images, dtype=torch.float32), \
        labels(n_queries), labels(n_images)


@pytest.mark.parametrize("quantised", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 5, 40, 1000])
@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_ndcg_equals_the_textbook_reference(seed, quantised, k, block_size):
    queries, images, query_labels, image_labels = random_case(seed, quantised)
    want_mean, want_per_query = ndcg_reference(queries.numpy(), images.numpy(), query_labels, image_labels, k)
    result = ndcg_at_k(queries, images, query_labels, image_labels, k, block_size=block_size)
    assert result.k == min(k, len(images))
    assert [math.isnan(v) for v in result.per_query] == [math.isnan(v) for v in want_per_query]
    assert [v for v in result.per_query if v == v] == pytest.approx([v for v in want_per_query if v == v], abs=1e-9)
    assert result.mean == pytest.approx(want_mean, abs=1e-9)


def test_random_cases_have_ties_and_queries_without_relevant_images():
    queries, images, query_labels, image_labels = random_case(0, quantised=True)
    scores = (images / images.norm(dim=1, keepdim=True)).numpy() @ (queries / queries.norm(dim=1, keepdim=True)).numpy().T
    assert all(len(np.unique(scores[:, q])) < len(images) for q in range(len(queries)))
    _, per_query = ndcg_reference(queries.numpy(), images.numpy(), query_labels, image_labels, 5)
    assert any(math.isnan(v) for v in per_query) and 0.0 < min(v for v in per_query if v == v) < 1.0


def full_sort_ndcg(queries, images, query_labels, image_labels, k, block_size):
    """The full-sort nDCG this module had before top-k (every image sorted twice per query), kept as a peer."""
    from rsvl.evaluate.ndcg import _dcg_rows, _relevance, label_set

    queries = torch.nn.functional.normalize(queries.float(), dim=-1)
    images = torch.nn.functional.normalize(images.float(), dim=-1)
    relevance = _relevance([label_set(q) for q in query_labels], [label_set(i) for i in image_labels])
    k = min(k, images.shape[0])
    per_query, top = [], []
    for q0 in range(0, queries.shape[0], block_size):
        scores = queries[q0:q0 + block_size] @ images.T
        rel = relevance[q0:q0 + block_size]
        by_relevance = rel.argsort(dim=1, stable=True)
        order = by_relevance.gather(1, scores.gather(1, by_relevance).argsort(dim=1, descending=True, stable=True))
        got = _dcg_rows(rel.gather(1, order[:, :k]))
        best = _dcg_rows(rel.sort(dim=1, descending=True).values[:, :k])
        per_query.extend(torch.where(best > 0, got / best.clamp(min=1e-300), torch.nan).tolist())
        top.extend(order[:, :k].tolist())
    return per_query, top


def sorted_reference(queries, images, query_labels, image_labels, k):
    """Top-k rows and nDCG@k by Python's ``sorted`` on the key (−score, relevance, row), in float64.

    Only for quantised embeddings (see :func:`random_case`), whose cosines float64 and float32 both
    hold exactly, so the tie order is knowable.
    """
    scores = unit_rows(queries.numpy()) @ unit_rows(images.numpy()).T
    image_sets = [label_set(labels) for labels in image_labels]
    k = min(k, len(images))
    tops, per_query = [], []
    for q, labels in enumerate(query_labels):
        wanted = label_set(labels)
        relevance = [len(wanted & found) for found in image_sets]
        ranked = sorted(range(len(images)), key=lambda j: (-scores[q, j], relevance[j], j))[:k]
        dcg = sum((2 ** relevance[j] - 1) / math.log2(rank + 2) for rank, j in enumerate(ranked))
        idcg = sum((2 ** rel - 1) / math.log2(rank + 2) for rank, rel in enumerate(sorted(relevance, reverse=True)[:k]))
        tops.append(ranked)
        per_query.append(dcg / idcg if idcg > 0 else math.nan)
    return tops, per_query


TIE_CASES = [(seed, dim) for seed in (0, 1, 2) for dim in (4, 16)]


@pytest.mark.parametrize("seed,dim", TIE_CASES)
@pytest.mark.parametrize("k", [1, 3, 17, 90, 1000])
@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_top_k_order_equals_the_sorted_reference_and_the_full_sort(seed, dim, k, block_size):
    queries, images, query_labels, image_labels = random_case(seed, True, n_queries=30, n_images=90, dim=dim)
    want_top, want_per_query = sorted_reference(queries, images, query_labels, image_labels, k)
    result = ndcg_at_k(queries, images, query_labels, image_labels, k, block_size=block_size)
    assert result.top == want_top
    assert [math.isnan(v) for v in result.per_query] == [math.isnan(v) for v in want_per_query]
    assert [v for v in result.per_query if v == v] == pytest.approx([v for v in want_per_query if v == v],
                                                                       rel=1e-12, abs=0)
    # bit for bit what the full sort gave
    old_per_query, old_top = full_sort_ndcg(queries, images, query_labels, image_labels, k, block_size)
    assert result.top == old_top
    assert np.array_equal(np.array(result.per_query), np.array(old_per_query), equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 10, 1000])
def test_top_k_equals_the_full_sort_on_continuous_scores(seed, k):
    queries, images, query_labels, image_labels = random_case(seed, False, n_queries=40, n_images=300)
    result = ndcg_at_k(queries, images, query_labels, image_labels, k, block_size=16)
    old_per_query, old_top = full_sort_ndcg(queries, images, query_labels, image_labels, k, 16)
    assert result.top == old_top
    assert np.array_equal(np.array(result.per_query), np.array(old_per_query), equal_nan=True)


def test_tie_cases_share_the_k_th_score_across_the_cut():
    """The cases above reach the second top-k: a query whose k-th score more images share than places are left."""
    crowded = 0
    for seed, dim in TIE_CASES:
        queries, images, _, _ = random_case(seed, True, n_queries=30, n_images=90, dim=dim)
        scores = np.sort(unit_rows(queries.numpy()) @ unit_rows(images.numpy()).T, axis=1)[:, ::-1]
        for k in (1, 3, 17):
            crowded += int(((scores >= scores[:, k - 1:k]).sum(axis=1) > k).sum())
    assert crowded > 100


def test_non_finite_embeddings_are_an_error():
    with pytest.raises(DataError, match="finite embeddings"):
        ndcg_at_k(torch.tensor([[1.0, float("nan")]]), torch.eye(2), [["a"]], [["a"], ["b"]], k=1)
