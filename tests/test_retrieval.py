"""Retrieval recall: the seven numbers of the shared protocol, with ties counted against the query."""

from __future__ import annotations

import pytest
import torch

from rsvl.errors import DataError
from rsvl.evaluate.retrieval import recall_metrics

KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"]


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
