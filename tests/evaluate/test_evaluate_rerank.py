"""SAR re-ranking (our documented rule, rsvl.evaluate.rerank): a hand-worked matrix, a loop reference
on random and heavily tied matrices in both directions for several k (chunked or not), k = 1 and
k ≥ the candidates, the re-ranked scores' spacing, and two planted cases: a hub image pushed down
(R@1 improves) and a right answer pushed down (SAR can hurt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from score_references import matrix_ranks, ranks_from_orders, sar_orders, seven_numbers

from rsvl.errors import DataError
from rsvl.evaluate import rerank
from rsvl.evaluate.rerank import sar_order, sar_protocol_metrics, sar_protocol_ranks, sar_ranks
from rsvl.evaluate.retrieval import TIE_TOLERANCE, DenseScores, metrics_from_ranks, ranks_from_scores


def row_orders(matrix: torch.Tensor) -> list[list[int]]:
    """Each row's columns by score, highest first, lower index first among ties."""
    return torch.sort(matrix, dim=1, descending=True, stable=True).indices.tolist()


def orders_of(scores, k):
    t2i, i2t = sar_order(torch.as_tensor(scores, dtype=torch.float32), k)
    return row_orders(t2i), row_orders(i2t.T)


def test_hand_worked_example():
    scores = torch.tensor([[0.90, 0.80, 0.10, 0.00],
                           [0.95, 0.10, 0.45, 0.20],
                           [0.92, 0.60, 0.50, 0.70]])
    t2i, i2t = orders_of(scores, k=2)
    # t0: candidates i0 (f 0), i1 (f 1); reverse ranks: 0.95 and 0.92 beat 0.90 in column 0 → 2;
    #     nothing beats 0.80 in column 1 → 0; keys 2 and 1, so i1 goes first; i2, i3 stay behind.
    # t1: i0 (f 0, r 0, key 0), i2 (f 1, 0.50 beats 0.45 → r 1, key 2): unchanged, then i3 (0.2), i1 (0.1).
    # t2: i0 (f 0, 0.95 beats 0.92 → key 1), i3 (f 1, r 0 → key 1): tie, forward order wins; then i1, i2.
    assert t2i == [[1, 0, 2, 3], [0, 2, 3, 1], [0, 3, 1, 2]]
    # i0: t1 (f 0, nothing in row 1 beats 0.95 → key 0), t2 (f 1, r 0 → key 1), then t0.
    # i1: t0 (f 0, 0.90 beats 0.80 → key 1), t2 (f 1, 0.92 and 0.70 beat 0.60 → key 3), then t1.
    # i2: t2 (f 0, 0.92, 0.60, 0.70 beat 0.50 → key 3), t1 (f 1, 0.95 beats 0.45 → key 2): t1 first.
    # i3: t2 (f 0, 0.92 beats 0.70 → key 1), t1 (f 1, 0.95 and 0.45 beat 0.20 → key 3), then t0.
    assert i2t == [[1, 2, 0], [0, 2, 1], [1, 2, 0], [2, 1, 0]]
    assert row_orders(scores)[0] == [0, 1, 2, 3] and row_orders(scores.T)[2] == [2, 1, 0]  # SAR moved these


def random_matrix(seed, shape=(23, 9)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def tied_matrix(seed, shape=(17, 8)):
    return np.random.default_rng(seed).integers(0, 4, size=shape).astype(np.float32)


@pytest.mark.parametrize("make", [random_matrix, tied_matrix])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 9, 40])
@pytest.mark.parametrize("chunk", [1, 5, 1 << 22])
def test_orders_equal_the_loop_reference(make, seed, k, chunk, monkeypatch):
    monkeypatch.setattr(rerank, "CHUNK_ELEMENTS", chunk)  # many column and row chunks, or one
    scores = make(seed)
    want_t2i, want_i2t = sar_orders(scores, k)
    got_t2i, got_i2t = orders_of(scores, k)
    assert got_t2i == want_t2i
    assert got_i2t == want_i2t


def test_the_reference_cases_do_reorder():
    scores = random_matrix(0)
    t2i, i2t = sar_orders(scores, 5)
    assert t2i != row_orders(torch.from_numpy(scores)) and i2t != row_orders(torch.from_numpy(scores).T)


@pytest.mark.parametrize("make", [random_matrix, tied_matrix])
def test_k_one_changes_no_order(make):
    scores = torch.from_numpy(make(3))
    t2i, i2t = orders_of(scores, 1)
    assert t2i == row_orders(scores) and i2t == row_orders(scores.T)


def test_k_one_keeps_the_ranks_of_a_tie_free_matrix():
    scores, owner = torch.from_numpy(random_matrix(4, (30, 10))), [t % 10 for t in range(30)]
    plain = ranks_from_scores(DenseScores(scores), owner)
    after = sar_ranks(scores, owner, k=1)
    assert after.i2t.tolist() == plain.i2t.tolist() and after.t2i.tolist() == plain.t2i.tolist()


def test_k_past_the_candidates_resorts_every_one():
    scores = random_matrix(5, (6, 4))
    assert orders_of(scores, 4) == orders_of(scores, 1000) == sar_orders(scores, 4)


@pytest.mark.parametrize("k", [1, 3, 9])
def test_re_ranked_scores_are_spaced_and_keep_the_rest(k):
    scores = torch.from_numpy(random_matrix(6)) * 5.0
    t2i, i2t = sar_order(scores, k)
    for reranked, original in ((t2i, scores), (i2t.T, scores.T)):
        for row, plain in zip(reranked, original):
            ordered = torch.sort(row, descending=True).values
            candidates, rest = ordered[:k], ordered[k:]
            assert (candidates[:-1] - candidates[1:] >= 1.0).all()
            if rest.numel():
                assert candidates[-1] - rest.max() >= 1.0
            kept = row <= plain.max()  # the non-candidates
            assert int(kept.sum()) == row.numel() - k and torch.equal(row[kept], plain[kept])


def shared_captions(owner, seed):
    rng = np.random.default_rng(seed)
    return ["a baseball field" if rng.random() < 0.25 else f"caption {t}" for t in range(len(owner))]


@pytest.mark.parametrize("k", [1, 2, 4, 12])
@pytest.mark.parametrize("merged", [False, True])
def test_sar_ranks_equal_the_reference_ranks(k, merged):
    rng = np.random.default_rng(7)
    owner = [i for i, c in enumerate(rng.integers(1, 5, size=12)) for _ in range(c)]
    scores = rng.normal(size=(len(owner), 12)).astype(np.float32)
    scores[np.arange(len(owner)), owner] += 1.0
    keys = shared_captions(owner, 8) if merged else None
    want_i2t, want_t2i = ranks_from_orders(*sar_orders(scores, k), owner, keys)
    got = sar_ranks(torch.from_numpy(scores), owner, k=k, text_keys=keys, block_size=5)
    assert got.i2t.tolist() == want_i2t.tolist() and got.t2i.tolist() == want_t2i.tolist()


def test_a_hub_image_is_pushed_down():
    # Image 0 is a hub: its two captions score it 0.9 and 0.85, and every other text scores it 0.8,
    # above its own image (0.7). Plain t2i R@1: only t0 and t1 = 40 %. With k = 2, for t2..t4 the hub
    # has reverse rank 2 (key 0 + 2) and the own image reverse rank 0 (key 1 + 0): the own image wins.
    scores = torch.tensor([[0.90, 0.1, 0.1, 0.1],
                           [0.85, 0.1, 0.1, 0.1],
                           [0.80, 0.7, 0.1, 0.1],
                           [0.80, 0.1, 0.7, 0.1],
                           [0.80, 0.1, 0.1, 0.7]])
    owner = [0, 0, 1, 2, 3]
    plain = metrics_from_ranks(ranks_from_scores(DenseScores(scores), owner))
    after = metrics_from_ranks(sar_ranks(scores, owner, k=2))
    assert plain["t2i_r1"] == pytest.approx(40.0) and after["t2i_r1"] == 100.0


def test_sar_can_hurt():
    # t1's own image 0 is beaten in column 0 by t0 (0.9) and t2 (0.85): reverse rank 2, key 0 + 2;
    # image 1 is t1's best column-1 score (0.75): key 1 + 0. SAR puts the wrong image 1 first.
    # t2 stays wrong (image 0 key 0 + 1 = 1 < image 1 key 1 + 1), t0 stays right.
    # Plain t2i R@1 = 2/3, after SAR 1/3: the re-ranking is a heuristic and can lose.
    scores = torch.tensor([[0.90, 0.20],
                           [0.80, 0.75],
                           [0.85, 0.70]])
    owner = [0, 0, 1]
    plain = metrics_from_ranks(ranks_from_scores(DenseScores(scores), owner))
    after = metrics_from_ranks(sar_ranks(scores, owner, k=2))
    assert plain["t2i_r1"] == pytest.approx(200 / 3) and after["t2i_r1"] == pytest.approx(100 / 3)


def test_protocol_ranks_and_metrics_on_cosine_scores():
    rng = np.random.default_rng(9)
    owner = [i for i, c in enumerate(rng.integers(1, 4, size=10)) for _ in range(c)]
    images = rng.normal(size=(10, 6))
    texts = images[owner] + rng.normal(scale=1.3, size=(len(owner), 6))
    captions = shared_captions(owner, 10)
    cosine = (texts / np.linalg.norm(texts, axis=1, keepdims=True)) @ (
        images / np.linalg.norm(images, axis=1, keepdims=True)).T
    orders = sar_orders(cosine, 3)
    want = {**seven_numbers(*ranks_from_orders(*orders, owner, captions), "sar_"),
            **seven_numbers(*ranks_from_orders(*orders, owner), "sar_std_")}
    as_tensor = lambda array: torch.tensor(array, dtype=torch.float32)  # noqa: E731
    metrics = sar_protocol_metrics(as_tensor(images), as_tensor(texts), owner, captions, k=3, block_size=4)
    assert sorted(metrics) == sorted(want) and metrics == pytest.approx(want)
    plain = seven_numbers(*matrix_ranks(cosine, owner, TIE_TOLERANCE))
    assert plain["mR"] != pytest.approx(want["sar_std_mR"])  # SAR changed something here
    ranks = sar_protocol_ranks(as_tensor(cosine), owner, captions, k=3)
    assert ranks.standard.t2i.tolist() == ranks_from_orders(*orders, owner)[1].tolist()


def test_bad_inputs_are_refused():
    with pytest.raises(DataError, match="positive integer"):
        sar_order(torch.eye(3), 0)
    with pytest.raises(DataError, match="positive integer"):
        sar_order(torch.eye(3), 2.0)
    with pytest.raises(DataError, match="non-empty"):
        sar_order(torch.zeros(3), 1)
    with pytest.raises(DataError, match="finite"):
        sar_order(torch.tensor([[0.0, float("nan")]]), 1)
    with pytest.raises(DataError, match="too large"):
        sar_order(torch.tensor([[1e9, 0.0]]), 1)
    with pytest.raises(DataError, match="image row"):
        sar_ranks(torch.eye(3), [0, 1, 7], k=2)
