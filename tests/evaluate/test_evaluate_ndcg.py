"""nDCG@k with graded label-overlap relevance, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from references import ndcg_reference

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
