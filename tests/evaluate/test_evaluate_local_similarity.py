"""iEBAKER's local similarity ‖C‖_F of token cosines and the 0.6/0.4 fusion: equal to loop and einsum
references at every block shape (uneven last blocks included), and the fused blocked ranks and
metrics equal to those of the whole fused matrix, with and without SAR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from score_references import (
    local_similarity_loops,
    matrix_ranks,
    ranks_from_orders,
    sar_orders,
    seven_numbers,
)

from rsvl.errors import DataError
from rsvl.evaluate.local_similarity import (
    FusedScores,
    LocalScores,
    fused_protocol_metrics,
    local_similarity,
)
from rsvl.evaluate.retrieval import (
    TIE_TOLERANCE,
    CosineScores,
    DenseScores,
    pair_scores_of,
    ranks_from_scores,
    score_matrix,
)

TOKEN_BLOCKS = [(1, 1), (2, 3), (3, 2), (4, 5), (64, 64)]


def tokens(seed=0, n_texts=9, n_images=7, length=4, patches=5, dim=6):
    rng = np.random.default_rng(seed)
    texts = rng.normal(size=(n_texts, length, dim)) * rng.uniform(0.2, 3.0, size=(n_texts, length, 1))
    images = rng.normal(size=(n_images, patches, dim)) * rng.uniform(0.2, 3.0, size=(n_images, patches, 1))
    return torch.tensor(texts, dtype=torch.float32), torch.tensor(images, dtype=torch.float32)


def einsum_reference(text_tokens, image_tokens):
    """The full (T, I, L, P) cosine tensor in float64, then the Frobenius norm over (L, P)."""
    texts = text_tokens.double() / text_tokens.double().norm(dim=-1, keepdim=True)
    images = image_tokens.double() / image_tokens.double().norm(dim=-1, keepdim=True)
    return torch.einsum("tad,ibd->tiab", texts, images).square().sum(dim=(2, 3)).sqrt()


def test_hand_computed_example():
    # text tokens e1, e2; patches e1, (e1 + e2)/√2 → C = [[1, 1/√2], [0, 1/√2]], ‖C‖_F = √2
    texts = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    images = torch.tensor([[[3.0, 0.0], [1.0, 1.0]]])
    assert local_similarity(texts, images).item() == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("text_block, image_block", TOKEN_BLOCKS)
def test_local_similarity_equals_the_loop_reference(text_block, image_block):
    texts, images = tokens()
    want = local_similarity_loops(texts, images)
    got = local_similarity(texts, images, text_block=text_block, image_block=image_block)
    assert got.dtype == torch.float32 and got.shape == (9, 7)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(einsum_reference(texts, images).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("text_block, image_block", TOKEN_BLOCKS)
@pytest.mark.parametrize("window", [(0, 9, 0, 7), (1, 6, 2, 7), (8, 9, 3, 4), (2, 9, 0, 5)])
def test_any_block_of_local_scores_is_that_part_of_the_matrix(text_block, image_block, window):
    texts, images = tokens(seed=1)
    t0, t1, i0, i1 = window
    scorer = LocalScores(texts, images, text_block=text_block, image_block=image_block)
    want = einsum_reference(texts, images)[t0:t1, i0:i1]
    np.testing.assert_allclose(scorer.block(t0, t1, i0, i1).numpy(), want.numpy(), rtol=1e-5)


def test_zero_tokens_add_nothing_and_scale_does_not_matter():
    texts, images = tokens(seed=2)
    padded = torch.cat([texts, torch.zeros(9, 3, 6)], dim=1)  # three padding positions per text
    np.testing.assert_allclose(local_similarity(padded * 4.0, images * 0.1).numpy(),
                               local_similarity_loops(texts, images), rtol=1e-5)


def test_fused_block_is_the_weighted_sum():
    texts, images = tokens(seed=3)
    rng = np.random.default_rng(3)
    text_emb = torch.tensor(rng.normal(size=(9, 4)), dtype=torch.float32)
    image_emb = torch.tensor(rng.normal(size=(7, 4)), dtype=torch.float32)
    fused = FusedScores(CosineScores(text_emb, image_emb), LocalScores(texts, images, text_block=2, image_block=3),
                        global_weight=0.6, local_weight=0.4)
    unit_t = text_emb.double() / text_emb.double().norm(dim=1, keepdim=True)
    unit_i = image_emb.double() / image_emb.double().norm(dim=1, keepdim=True)
    want = 0.6 * unit_t @ unit_i.T + 0.4 * torch.tensor(local_similarity_loops(texts, images))
    np.testing.assert_allclose(fused.block(2, 9, 1, 6).numpy(), want[2:9, 1:6].numpy(), rtol=1e-5)


def fused_case(seed=4, n_images=12, length=3, patches=4):
    """Pooled embeddings and tokens of images with 1–4 captions each (some captions repeated)."""
    rng = np.random.default_rng(seed)
    owner = [i for i, c in enumerate(rng.integers(1, 5, size=n_images)) for _ in range(c)]
    image_emb = rng.normal(size=(n_images, 8))
    text_emb = image_emb[owner] + rng.normal(scale=1.2, size=(len(owner), 8))
    image_tok = rng.normal(size=(n_images, patches, 5))
    text_tok = image_tok[owner][:, :length] + rng.normal(scale=1.5, size=(len(owner), length, 5))
    captions = ["a dense residential area" if rng.random() < 0.2 else f"caption {t}" for t in range(len(owner))]
    as_tensor = lambda array: torch.tensor(array, dtype=torch.float32)  # noqa: E731
    return as_tensor(image_emb), as_tensor(text_emb), as_tensor(image_tok), as_tensor(text_tok), owner, captions


def fused_reference(image_emb, text_emb, image_tok, text_tok, global_weight=0.6, local_weight=0.4):
    unit_t = text_emb.double() / text_emb.double().norm(dim=1, keepdim=True)
    unit_i = image_emb.double() / image_emb.double().norm(dim=1, keepdim=True)
    return (global_weight * unit_t @ unit_i.T + local_weight * einsum_reference(text_tok, image_tok)).numpy()


@pytest.mark.parametrize("block_size", [1, 5, 7, 1000])
@pytest.mark.parametrize("token_block", [1, 3, 64])
def test_blocked_fused_ranks_equal_the_dense_fused_matrix(block_size, token_block):
    image_emb, text_emb, image_tok, text_tok, owner, captions = fused_case()
    dense = fused_reference(image_emb, text_emb, image_tok, text_tok)
    fused = FusedScores(CosineScores(text_emb, image_emb),
                        LocalScores(text_tok, image_tok, text_block=token_block, image_block=token_block))
    for keys in (None, captions):
        want_i2t, want_t2i = matrix_ranks(dense, owner, TIE_TOLERANCE, keys)
        ranks = ranks_from_scores(fused, owner, text_keys=keys, block_size=block_size)
        assert ranks.i2t.tolist() == want_i2t.tolist() and ranks.t2i.tolist() == want_t2i.tolist()
        whole = ranks_from_scores(DenseScores(torch.tensor(dense, dtype=torch.float32)), owner, text_keys=keys)
        assert whole.i2t.tolist() == want_i2t.tolist() and whole.t2i.tolist() == want_t2i.tolist()


def test_fusion_changes_the_ranking():
    image_emb, text_emb, image_tok, text_tok, owner, _ = fused_case()
    dense = fused_reference(image_emb, text_emb, image_tok, text_tok)
    global_only = fused_reference(image_emb, text_emb, image_tok, text_tok, 1.0, 0.0)
    assert matrix_ranks(dense, owner, 0.0)[1].tolist() != matrix_ranks(global_only, owner, 0.0)[1].tolist()


@pytest.mark.parametrize("sar_k", [None, 1, 3, 50])
def test_fused_protocol_metrics_equal_the_references(sar_k):
    image_emb, text_emb, image_tok, text_tok, owner, captions = fused_case(seed=6)
    weights = {"global_weight": 0.7, "local_weight": 0.3}
    metrics = fused_protocol_metrics(image_emb, text_emb, image_tok, text_tok, owner, captions,
                                     sar_k=sar_k, block_size=5, token_block=3, **weights)
    dense = fused_reference(image_emb, text_emb, image_tok, text_tok, 0.7, 0.3)
    want = {**seven_numbers(*matrix_ranks(dense, owner, TIE_TOLERANCE, captions), "fused_"),
            **seven_numbers(*matrix_ranks(dense, owner, TIE_TOLERANCE), "fused_std_")}
    if sar_k is not None:
        t2i_orders, i2t_orders = sar_orders(dense, sar_k)
        want.update(seven_numbers(*ranks_from_orders(t2i_orders, i2t_orders, owner, captions), "fused_sar_"))
        want.update(seven_numbers(*ranks_from_orders(t2i_orders, i2t_orders, owner), "fused_sar_std_"))
    assert sorted(metrics) == sorted(want)
    assert metrics == pytest.approx(want)
    assert "fused_mR" in metrics and "fused_std_i2t_r1" in metrics


def test_bad_inputs_are_refused():
    texts, images = tokens()
    with pytest.raises(DataError, match="text_tokens must be"):
        LocalScores(texts[:, 0], images)
    with pytest.raises(DataError, match="image_tokens must be"):
        LocalScores(texts, images[:, :0])
    with pytest.raises(DataError, match="same width"):
        LocalScores(texts, images[..., :3])
    with pytest.raises(DataError, match="text_block"):
        LocalScores(texts, images, text_block=0)
    with pytest.raises(DataError, match="same texts and images"):
        FusedScores(CosineScores(torch.randn(9, 4), torch.randn(6, 4)), LocalScores(texts, images))


def test_fused_protocol_metrics_refuse_bad_inputs():
    image_emb, text_emb, image_tok, text_tok, owner, captions = fused_case()
    weights = {"global_weight": 0.6, "local_weight": 0.4}
    with pytest.raises(DataError, match="sar_k"):
        fused_protocol_metrics(image_emb, text_emb, image_tok, text_tok, owner, captions, sar_k=0, **weights)
    with pytest.raises(DataError, match="same texts and images"):
        fused_protocol_metrics(image_emb, text_emb, image_tok, text_tok[:-1], owner, captions, **weights)
    with pytest.raises(DataError, match="image row"):
        fused_protocol_metrics(image_emb, text_emb, image_tok, text_tok, owner[:-1], captions, **weights)
    with pytest.raises(DataError, match="text_keys"):
        fused_protocol_metrics(image_emb, text_emb, image_tok, text_tok, owner, captions[:-1], **weights)


def large_tokens(seed=7, n_texts=20, n_images=14, length=77, patches=49, dim=16):
    """Tokens sharing one direction, so local scores pass 32 (√(L·P) = 61 at most), where a float32
    step is 3.8e-6, close to TIE_TOLERANCE; images 1 and 5 are copies of image 0 (exact ties)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=dim)
    texts = rng.normal(scale=0.5, size=(n_texts, length, dim)) + common
    images = rng.normal(scale=0.5, size=(n_images, patches, dim)) + common
    images[[1, 5]] = images[0]
    return torch.tensor(texts, dtype=torch.float32), torch.tensor(images, dtype=torch.float32)


def float32_steps(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest ``|got − want|`` in float32 steps (spacing) of ``want``."""
    spacing = np.spacing(np.abs(want.numpy().astype(np.float32)))
    return float((np.abs(got.numpy().astype(np.float64) - want.numpy().astype(np.float64)) / spacing).max())


@pytest.mark.parametrize("text_block, image_block", TOKEN_BLOCKS)
@pytest.mark.parametrize("case", ["small", "large"])
def test_pair_scores_are_the_block_values(text_block, image_block, case):
    texts, images = tokens(seed=8) if case == "small" else large_tokens()
    scorer = LocalScores(texts, images, text_block=text_block, image_block=image_block)
    matrix = score_matrix(scorer, block_size=5)
    rows, cols = torch.meshgrid(torch.arange(len(texts)), torch.arange(len(images)), indexing="ij")
    pairs = scorer.pair_scores(rows.flatten(), cols.flatten()).reshape(matrix.shape)
    # the same sums in the same order: equal but where two matmuls round a cosine differently
    assert float32_steps(pairs, matrix) <= 1.0
    # and no block shape moves a value by more than a float32 step (a float32 sum over L·P did, by 3)
    widest = score_matrix(LocalScores(texts, images), block_size=1000)
    assert float32_steps(matrix, widest) <= 1.0
    np.testing.assert_allclose(matrix.numpy(), einsum_reference(texts, images).numpy(), rtol=2e-7)
    if case == "large":
        assert matrix.min() > 32 and bool((matrix[:, 0] == matrix[:, 1]).all())


def test_pair_scores_take_any_pairs_in_chunks(monkeypatch):
    import rsvl.evaluate.local_similarity as local

    texts, images = large_tokens(n_texts=9, n_images=7)
    scorer = LocalScores(texts, images)
    rng = np.random.default_rng(9)
    rows, cols = torch.tensor(rng.integers(0, 9, size=40)), torch.tensor(rng.integers(0, 7, size=40))
    whole = scorer.pair_scores(rows, cols)
    monkeypatch.setattr(local, "PAIR_ELEMENTS", 1)  # one pair a step
    assert torch.equal(scorer.pair_scores(rows, cols), whole)
    assert float32_steps(whole, score_matrix(scorer)[rows, cols]) <= 1.0
    assert scorer.pair_scores(rows[:0], cols[:0]).shape == (0,)


class BlocksOnly:
    """A local scorer without ``pair_scores``: only blocks."""

    def __init__(self, scorer):
        self.scorer, self.n_texts, self.n_images, self.device = scorer, scorer.n_texts, scorer.n_images, scorer.device

    def block(self, t0, t1, i0, i1):
        return self.scorer.block(t0, t1, i0, i1)


def large_fused_case():
    """:func:`large_tokens` with pooled embeddings (images 1 and 5 again copies of image 0) and owners."""
    text_tok, image_tok = large_tokens()
    rng = np.random.default_rng(10)
    owner = [t % 14 for t in range(20)]
    image_emb = rng.normal(size=(14, 8))
    image_emb[[1, 5]] = image_emb[0]
    text_emb = image_emb[owner] + rng.normal(scale=1.0, size=(20, 8))
    captions = [f"caption {t % 11}" for t in range(20)]
    return (torch.tensor(image_emb, dtype=torch.float32), torch.tensor(text_emb, dtype=torch.float32),
            image_tok, text_tok, owner, captions)


@pytest.mark.parametrize("block_size", [3, 8, 1000])
@pytest.mark.parametrize("token_block", [2, 64])
def test_fused_ranks_in_one_pass_equal_the_whole_matrix_with_exact_ties(block_size, token_block):
    image_emb, text_emb, image_tok, text_tok, owner, captions = large_fused_case()
    local = LocalScores(text_tok, image_tok, text_block=token_block, image_block=token_block)
    fused = FusedScores(CosineScores(text_emb, image_emb), local)
    assert pair_scores_of(fused) is not None
    assert pair_scores_of(FusedScores(fused.global_scorer, BlocksOnly(local))) is None
    matrix = score_matrix(fused, block_size=block_size)
    rows, cols = torch.meshgrid(torch.arange(20), torch.arange(14), indexing="ij")
    assert float32_steps(fused.pair_scores(rows.flatten(), cols.flatten()).reshape(matrix.shape), matrix) <= 1.0
    dense = fused_reference(image_emb, text_emb, image_tok, text_tok)
    for keys in (None, captions):
        want_i2t, want_t2i = matrix_ranks(dense, owner, TIE_TOLERANCE, keys)
        for scorer in (fused, DenseScores(matrix), FusedScores(fused.global_scorer, BlocksOnly(local))):
            ranks = ranks_from_scores(scorer, owner, text_keys=keys, block_size=block_size)
            assert ranks.i2t.tolist() == want_i2t.tolist() and ranks.t2i.tolist() == want_t2i.tolist()
    # the copies tie: texts of image 0 rank both copies ahead (ties count against the query)
    assert all(rank >= 2 for rank in matrix_ranks(dense, owner, TIE_TOLERANCE)[1][[0, 14]])
