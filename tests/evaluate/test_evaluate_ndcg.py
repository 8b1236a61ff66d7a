"""nDCG@k with graded label-overlap relevance, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from rsvl.errors import DataError
from rsvl.evaluate.ndcg import dcg, label_queries, ndcg_at_k


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
