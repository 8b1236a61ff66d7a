"""iEBAKER's local similarity and its fusion with the global cosine score (PAPERS.md §4), block by block.

Local similarity of text ``t`` and image ``i``: ``Loc[t, i] = ‖C‖_F`` with
``C[a, b] = cos(text_token_a, image_patch_b)`` over every token position given (tokens are
L2-normalised here; an all-zero token stays zero and adds nothing, which is how a caller leaves
padding out). Evaluation scores ``S = w_g · S_global + w_l · S_local`` (iEBAKER: 0.6 and 0.4).

One (text block, image block) of ``Loc`` is a single ``(bt·L, D) @ (bi·P, D)ᵀ`` matmul whose
squares are summed per (text, image), so memory is ``bt·L·bi·P`` floats, never ``T·L·I·P``.
Each value sums its squares one fixed way: over the patches in float32 (a contiguous run of ``P``),
then over the token positions in float64. One float32 sum over all ``L·P`` squares followed the
block's layout and moved by up to 1e-5 between block shapes at local scores near 40, as much as
:data:`~rsvl.evaluate.retrieval.TIE_TOLERANCE`; summed this way, a block and a single pair
(:meth:`LocalScores.pair_scores`) give the same float32 value on the CPU, and should stay within a
float32 step where their cosine matmuls round differently (not yet measured on a GPU).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rsvl.errors import DataError
from rsvl.evaluate.rerank import sar_protocol_ranks
from rsvl.evaluate.retrieval import (
    BLOCK_SIZE,
    CosineScores,
    DenseScores,
    ProtocolRanks,
    ScoreBlocks,
    check_owner,
    pair_scores_of,
    rank_protocols,
    score_matrix,
)

GLOBAL_WEIGHT = 0.6
LOCAL_WEIGHT = 0.4
TOKEN_BLOCK = 64
"""Texts (and images) per local matmul: 64·77 × 64·49 floats ≈ 62 MB for ViT-B-32 at 224 px."""
PAIR_ELEMENTS = 1 << 24
"""Floats :meth:`LocalScores.pair_scores` gathers and multiplies per step (64 MiB): ``(L + P)·dim + L·P``
a pair, so 245 pairs a step at 77 positions × 49 patches × 512 d."""
FUSED_PREFIX = "fused_"
FUSED_SAR_PREFIX = "fused_sar_"


def _frobenius(row_sums: torch.Tensor, dim: int) -> torch.Tensor:
    """``sqrt`` of the sum along ``dim`` of float32 sums of squared cosines, the outer sum in float64."""
    return row_sums.sum(dim=dim, dtype=torch.float64).sqrt_().float()


def _tokens(tokens: torch.Tensor, name: str, device: torch.device) -> torch.Tensor:
    if tokens.dim() != 3 or tokens.shape[1] == 0:
        raise DataError(f"{name} must be (items, tokens, dim) with at least one token, got shape {tuple(tokens.shape)}")
    return nn.functional.normalize(tokens.to(device, torch.float32), dim=-1)


class LocalScores:
    """``Loc[t, i] = ‖C‖_F`` of token cosines, served in blocks (a :class:`ScoreBlocks`).

    Args:
        text_tokens: (texts, L, dim) token states, any scale (normalised here).
        image_tokens: (images, P, dim) patch tokens, any scale.
        text_block: Texts per matmul.
        image_block: Images per matmul; memory is ``text_block·L·image_block·P`` floats.
        device: Where the blocks are scored (default: where the image tokens are). Both token
            tensors are held there normalised in float32: ``4·(texts·L + images·P)·dim`` bytes.

    Raises:
        DataError: A tensor is not 3-D or has no tokens, the widths differ, or a block size is < 1.
    """

    def __init__(self, text_tokens: torch.Tensor, image_tokens: torch.Tensor, *, text_block: int = TOKEN_BLOCK,
                 image_block: int = TOKEN_BLOCK, device: str | torch.device | None = None) -> None:
        if text_block < 1 or image_block < 1:
            raise DataError(f"text_block and image_block must be positive, got {text_block} and {image_block}")
        self.device = torch.device(device) if device is not None else image_tokens.device
        self.texts = _tokens(text_tokens, "text_tokens", self.device)
        self.images = _tokens(image_tokens, "image_tokens", self.device)
        if self.texts.shape[2] != self.images.shape[2]:
            raise DataError(f"text tokens have width {self.texts.shape[2]}, image tokens {self.images.shape[2]}: "
                            "local similarity needs the same width")
        self.n_texts, self.n_images = self.texts.shape[0], self.images.shape[0]
        self.text_block, self.image_block = text_block, image_block

    def block(self, t0: int, t1: int, i0: int, i1: int) -> torch.Tensor:
        """Local similarity of texts ``t0:t1`` and images ``i0:i1``, (t1 - t0, i1 - i0) float32."""
        out = torch.empty(t1 - t0, i1 - i0, dtype=torch.float32, device=self.device)
        length, patches, width = self.texts.shape[1], self.images.shape[1], self.texts.shape[2]
        for ta in range(t0, t1, self.text_block):
            tb = min(ta + self.text_block, t1)
            texts = self.texts[ta:tb].reshape(-1, width)
            for ia in range(i0, i1, self.image_block):
                ib = min(ia + self.image_block, i1)
                cosines = texts @ self.images[ia:ib].reshape(-1, width).T  # (bt·L, bi·P)
                squares = cosines.square_().reshape(tb - ta, length, ib - ia, patches)
                out[ta - t0:tb - t0, ia - i0:ib - i0] = _frobenius(squares.sum(dim=3), dim=1)
        return out

    def pair_scores(self, texts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Local similarity of the pairs ``(texts[k], images[k])`` alone: one ``L × P`` cosine matrix a pair.

        Summed as :meth:`block` sums (see the module docstring), so a value equals the block's
        unless the cosines themselves differ (a batched matmul here, one matmul per block there).

        Args:
            texts: (pairs,) text rows.
            images: (pairs,) image rows, as long as ``texts``.

        Returns:
            (pairs,) float32 on :attr:`device`.
        """
        texts, images = texts.to(self.device), images.to(self.device)
        length, patches, width = self.texts.shape[1], self.images.shape[1], self.texts.shape[2]
        step = max(1, PAIR_ELEMENTS // ((length + patches) * width + length * patches))
        out = torch.empty(texts.numel(), dtype=torch.float32, device=self.device)
        for start in range(0, texts.numel(), step):
            t, i = texts[start:start + step], images[start:start + step]
            cosines = torch.bmm(self.texts[t], self.images[i].transpose(1, 2))  # (pairs, L, P)
            out[start:start + t.numel()] = _frobenius(cosines.square_().sum(dim=2), dim=1)
        return out


def local_similarity(text_tokens: torch.Tensor, image_tokens: torch.Tensor, *, text_block: int = TOKEN_BLOCK,
                     image_block: int = TOKEN_BLOCK) -> torch.Tensor:
    """The whole local similarity matrix (see the module docstring).

    Args:
        text_tokens: (texts, L, dim), any scale.
        image_tokens: (images, P, dim), any scale.
        text_block: Texts per matmul (see :class:`LocalScores`).
        image_block: Images per matmul.

    Returns:
        (texts, images) float32, where the image tokens are.

    Raises:
        DataError: See :class:`LocalScores`.
    """
    scorer = LocalScores(text_tokens, image_tokens, text_block=text_block, image_block=image_block)
    return score_matrix(scorer, block_size=max(scorer.n_texts, scorer.n_images, 1))


class FusedScores:
    """``S = global_weight · S_global + local_weight · S_local``, block by block (a :class:`ScoreBlocks`).

    When both scorers score single pairs (:func:`~rsvl.evaluate.retrieval.pair_scores_of`: the
    default :class:`CosineScores` and :class:`LocalScores` do), so does this one (``pair_scores``),
    and the blocked ranking takes one pass over its blocks instead of two.

    Args:
        global_scorer: Usually :class:`CosineScores` of the pooled embeddings.
        local_scorer: Usually :class:`LocalScores` of the tokens.
        global_weight: Weight of the global score (iEBAKER: 0.6).
        local_weight: Weight of the local score (iEBAKER: 0.4).

    Raises:
        DataError: The two scorers cover different numbers of texts or images.
    """

    def __init__(self, global_scorer: ScoreBlocks, local_scorer: ScoreBlocks, global_weight: float = GLOBAL_WEIGHT,
                 local_weight: float = LOCAL_WEIGHT) -> None:
        shapes = (global_scorer.n_texts, global_scorer.n_images), (local_scorer.n_texts, local_scorer.n_images)
        if shapes[0] != shapes[1]:
            raise DataError(f"global scores are (texts, images) = {shapes[0]}, local scores {shapes[1]}: "
                            "fusion needs the same texts and images")
        self.global_scorer, self.local_scorer = global_scorer, local_scorer
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.n_texts, self.n_images = shapes[0]
        self.device = global_scorer.device
        if pair_scores_of(global_scorer) is not None and pair_scores_of(local_scorer) is not None:
            # an instance attribute: pair_scores_of must find none when a part cannot score pairs
            self.pair_scores = self._pair_scores

    def block(self, t0: int, t1: int, i0: int, i1: int) -> torch.Tensor:
        """Fused scores of texts ``t0:t1`` and images ``i0:i1``, (t1 - t0, i1 - i0) float32."""
        local = self.local_scorer.block(t0, t1, i0, i1).to(self.device)
        return self.global_weight * self.global_scorer.block(t0, t1, i0, i1) + self.local_weight * local

    def _pair_scores(self, texts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Fused scores of the pairs ``(texts[k], images[k])``, from the two scorers' ``pair_scores``.

        Args:
            texts: (pairs,) text rows.
            images: (pairs,) image rows.

        Returns:
            (pairs,) float32 on :attr:`device`.
        """
        local = pair_scores_of(self.local_scorer)(texts, images).to(self.device)
        return self.global_weight * pair_scores_of(self.global_scorer)(texts, images).to(self.device) \
            + self.local_weight * local


def _prefixed(ranks: ProtocolRanks, prefix: str) -> dict[str, float]:
    return {f"{prefix}{key}": value for key, value in ranks.metrics().items()}


def fused_protocol_metrics(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_image: Sequence[int],
    captions: Sequence[str],
    *,
    global_weight: float,
    local_weight: float,
    sar_k: int | None = None,
    block_size: int = BLOCK_SIZE,
    token_block: int = TOKEN_BLOCK,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The seven recalls of both protocols on iEBAKER's fused scores, and optionally after SAR.

    Without SAR the fused scores are ranked block by block in one pass
    (:func:`rsvl.evaluate.retrieval.rank_protocols`; the right answers' scores come from
    ``pair_scores``), so the costly local scores (``T·I·L·P·dim`` multiply-adds) are computed once
    and the matrix is never held whole. SAR needs it whole: then it is assembled block-wise into one
    (texts, images) float32 tensor, ``4·T·I`` bytes (200 MB for NWPU's 15,750 × 3,150), ranked from
    there, and :func:`rsvl.evaluate.rerank.sar_order` adds two more matrices of that size. It is
    smaller than the text tokens themselves (``4·T·L·dim`` bytes) whenever ``I < L·dim``.

    Args:
        image_embeddings: (images, dim) pooled embeddings, any scale.
        text_embeddings: (texts, dim), any scale.
        image_tokens: (images, P, dim') patch tokens, any scale.
        text_tokens: (texts, L, dim') token states, any scale.
        text_image: For each text, the row of its image.
        captions: For each text, its caption (the merged protocol's keys).
        global_weight: Weight of the global cosine score.
        local_weight: Weight of the local similarity.
        sar_k: SAR's candidate count (see :mod:`rsvl.evaluate.rerank`); ``None``: no SAR numbers.
        block_size: Texts and images per score block.
        token_block: Texts and images per local matmul (see :class:`LocalScores`).
        device: Where scores are computed (default: where the image embeddings are).

    Returns:
        ``fused_<key>`` for every key of :meth:`ProtocolRanks.metrics` (``fused_mR``, ``fused_std_mR``,
        ``fused_i2t_r1`` …), and with ``sar_k`` the same under ``fused_sar_``.

    Raises:
        DataError: Sizes disagree (embeddings, tokens, ``text_image``, ``captions``), an image has no
            text, or a block size or ``sar_k`` is < 1.
    """
    device = torch.device(device) if device is not None else image_embeddings.device
    check_owner(image_embeddings.shape[0], text_embeddings.shape[0], text_image)
    if sar_k is not None and (isinstance(sar_k, bool) or not isinstance(sar_k, int) or sar_k < 1):
        raise DataError(f"sar_k must be a positive integer or None, got {sar_k!r}")  # before the costly scores
    fused = FusedScores(
        CosineScores(text_embeddings, image_embeddings, device=device),
        LocalScores(text_tokens, image_tokens, text_block=token_block, image_block=token_block, device=device),
        global_weight, local_weight)
    matrix = None if sar_k is None else score_matrix(fused, block_size=block_size)
    scorer = fused if matrix is None else DenseScores(matrix)
    merged, standard = rank_protocols(scorer, text_image, [captions, None], block_size=block_size)
    metrics = _prefixed(ProtocolRanks(merged=merged, standard=standard), FUSED_PREFIX)
    if matrix is not None:
        sar = sar_protocol_ranks(matrix, text_image, captions, k=sar_k, block_size=block_size)
        metrics.update(_prefixed(sar, FUSED_SAR_PREFIX))
    return metrics
