"""SAR (Sort After Reversed Retrieval) re-ranking of a whole score matrix (PAPERS.md §4, iEBAKER).

iEBAKER does not publish SAR's formula; this is ours. ``S`` is (texts, images), higher is better.

Text→image, for each text ``t``:

1. Candidates: the top ``k`` images by ``S[t, :]`` (ties: lower image index first); candidate
   ``i``'s forward rank ``f`` is its place 0..k-1 in that list.
2. Reverse rank ``r(t, i)`` = the number of texts ``t'`` with ``S[t', i] > S[t, i]``: where ``t``
   stands among all texts retrieved for image ``i`` (ties in its favour).
3. The ``k`` candidates are re-sorted by ``f + r`` ascending, ties by ``f``; images outside the
   top ``k`` keep their order behind them.

Image→text is the same with the roles swapped: query image ``i``, candidates the top ``k`` texts
by ``S[:, i]`` (ties: lower text index first), reverse rank ``r(i, t)`` = the number of images
``i'`` with ``S[t, i'] > S[t, i]``.

``k = 1`` changes nothing; ``k ≥`` the number of candidates re-sorts every one. A "hub" image
that scores high with many texts gets large reverse ranks and is pushed down for the texts it
does not fit best; SAR can also push a right answer down (a text whose own image is such a hub).

The result is handed to the blocked ranking (:func:`rsvl.evaluate.retrieval.ranks_from_scores`)
as re-ranked score matrices: the candidate in SAR place ``p`` gets ``floor(max of the query's
scores) + 1 + k - p``, an integer at least 1.0 above every non-candidate and 1.0 from the next
candidate, so :data:`~rsvl.evaluate.retrieval.TIE_TOLERANCE` never merges them; non-candidates
keep ``S``. Reverse ranks come from one sort per column (per row for image→text) and
``searchsorted``, ``O(T·I·log)``, never a ``T²·I`` loop. Memory: the input plus the two
re-ranked (texts, images) float32 matrices (``3 · 4·T·I`` bytes), a few int64 index arrays of
``queries · k`` entries and buffers of :data:`CHUNK_ELEMENTS` entries.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rsvl.errors import DataError
from rsvl.evaluate.retrieval import (
    BLOCK_SIZE,
    CosineScores,
    DenseScores,
    ProtocolRanks,
    RetrievalRanks,
    check_owner,
    rank_protocols,
    score_matrix,
)

CHUNK_ELEMENTS = 1 << 22
"""Matrix entries sorted at once (16 MB of float32, plus the int64 indices)."""
SAR_PREFIX = "sar_"
_EXACT_INTEGERS = float(1 << 24)  # float32 holds every integer below this exactly


def _check_scores(scores: torch.Tensor, k: int) -> None:
    if scores.dim() != 2 or scores.numel() == 0:
        raise DataError(f"SAR needs a non-empty (texts, images) score matrix, got shape {tuple(scores.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DataError(f"SAR's k must be a positive integer, got {k!r}")
    if not bool(torch.isfinite(scores).all()):
        raise DataError("SAR needs finite scores; the matrix holds inf or nan")
    if float(scores.abs().max()) + max(scores.shape) + 2 >= _EXACT_INTEGERS:
        raise DataError(f"scores up to {float(scores.abs().max()):.3g} are too large for exact re-ranked scores")


def _candidates(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(queries, k) columns of each row's top ``k``, lower column first among ties."""
    rows = max(1, CHUNK_ELEMENTS // scores.shape[1])
    return torch.cat([torch.sort(scores[r0:r0 + rows], dim=1, descending=True, stable=True).indices[:, :k]
                      for r0 in range(0, scores.shape[0], rows)])


def _reverse_ranks(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """For each (row q, column c) of ``candidates``: how many rows score column ``c`` above ``scores[q, c]``."""
    n_rows, k = candidates.shape
    flat_rows = torch.arange(n_rows, device=scores.device).repeat_interleave(k)
    flat_cols = candidates.reshape(-1)
    # group the candidate pairs by column once, so each column chunk takes one contiguous slice
    by_column = torch.argsort(flat_cols)
    sorted_cols = flat_cols[by_column]
    reverse = torch.empty_like(flat_cols)
    width = max(1, CHUNK_ELEMENTS // n_rows)
    for c0 in range(0, scores.shape[1], width):
        c1 = min(c0 + width, scores.shape[1])
        columns = scores[:, c0:c1].T.contiguous()  # (c1 - c0, rows)
        ascending = torch.sort(columns, dim=1).values
        above = n_rows - torch.searchsorted(ascending, columns, right=True)  # strictly greater, per entry
        lo, hi = torch.searchsorted(sorted_cols, torch.tensor([c0, c1], device=scores.device)).tolist()
        pairs = by_column[lo:hi]
        reverse[pairs] = above[flat_cols[pairs] - c0, flat_rows[pairs]]
    return reverse.reshape(n_rows, k)


def _sar_rows(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Re-ranked scores whose row order is SAR's, rows being the queries (see the module docstring)."""
    k = min(k, scores.shape[1])
    candidates = _candidates(scores, k)
    forward = torch.arange(k, device=scores.device)
    key = forward + _reverse_ranks(scores, candidates)
    # candidates sit in forward order, so a stable sort on f + r breaks ties by f
    resorted = candidates.gather(1, torch.sort(key, dim=1, stable=True).indices)
    top = torch.floor(scores.amax(dim=1, keepdim=True)) + 1.0
    reranked = scores.clone()
    reranked.scatter_(1, resorted, top + (k - forward).to(scores.dtype))
    return reranked


def sar_order(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-ranked score matrices carrying SAR's order in each direction (see the module docstring).

    Args:
        scores: (texts, images) scores, higher is better (cast to float32).
        k: Candidates re-sorted per query (clipped to the number of candidates).

    Returns:
        ``(t2i, i2t)``, both (texts, images) float32: ``t2i``'s rows rank images in SAR's
        text→image order, ``i2t``'s columns rank texts in SAR's image→text order.

    Raises:
        DataError: ``scores`` is not a non-empty finite matrix, ``k`` < 1, or scores too large.
    """
    scores = scores.to(torch.float32)
    _check_scores(scores, k)
    return _sar_rows(scores, k), _sar_rows(scores.T, k).T


def _ranks(t2i: torch.Tensor, i2t: torch.Tensor, text_image: Sequence[int],
           key_sets: Sequence[Sequence[str] | None], block_size: int) -> list[RetrievalRanks]:
    """Each protocol's ranks: text→image read from ``t2i``, image→text from ``i2t`` (one pass over each)."""
    forward = rank_protocols(DenseScores(t2i), text_image, key_sets, block_size=block_size)
    backward = rank_protocols(DenseScores(i2t), text_image, key_sets, block_size=block_size)
    return [RetrievalRanks(i2t=back.i2t, t2i=fore.t2i) for fore, back in zip(forward, backward)]


def sar_ranks(scores: torch.Tensor, text_image: Sequence[int], *, k: int, text_keys: Sequence[str] | None = None,
              block_size: int = BLOCK_SIZE) -> RetrievalRanks:
    """Retrieval ranks after SAR: text→image from :func:`sar_order`'s ``t2i``, image→text from its ``i2t``.

    Args:
        scores: (texts, images) scores, higher is better.
        text_image: For each text, the column of its image.
        k: SAR's candidate count.
        text_keys: Captions for the merged protocol (see :func:`rsvl.evaluate.retrieval.ranks_from_scores`).
        block_size: Texts and images per block of the ranking.

    Returns:
        The ranks of both directions.

    Raises:
        DataError: Bad scores or ``k`` (see :func:`sar_order`), or sizes disagree.
    """
    check_owner(scores.shape[1], scores.shape[0], text_image)
    t2i, i2t = sar_order(scores, k)
    return _ranks(t2i, i2t, text_image, [text_keys], block_size)[0]


def sar_protocol_ranks(scores: torch.Tensor, text_image: Sequence[int], captions: Sequence[str], *, k: int,
                       block_size: int = BLOCK_SIZE) -> ProtocolRanks:
    """SAR ranks under both protocols, re-ranking the matrix once.

    Args:
        scores: (texts, images) scores, higher is better.
        text_image: For each text, the column of its image.
        captions: For each text, its caption (the merged protocol's keys).
        k: SAR's candidate count.
        block_size: Texts and images per block of the ranking.

    Returns:
        Merged and standard ranks after SAR.

    Raises:
        DataError: Bad scores or ``k``, or sizes disagree.
    """
    check_owner(scores.shape[1], scores.shape[0], text_image)
    t2i, i2t = sar_order(scores, k)
    merged, standard = _ranks(t2i, i2t, text_image, [captions, None], block_size)
    return ProtocolRanks(merged=merged, standard=standard)


def sar_protocol_metrics(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_image: Sequence[int],
    captions: Sequence[str],
    *,
    k: int,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The seven recalls of both protocols after SAR on the plain cosine matrix.

    The cosine matrix is assembled block-wise into one (texts, images) float32 tensor
    (``4·T·I`` bytes; with SAR's two re-ranked copies, three times that).

    Args:
        image_embeddings: (images, dim), any scale.
        text_embeddings: (texts, dim), any scale.
        text_image: For each text, the row of its image.
        captions: For each text, its caption.
        k: SAR's candidate count.
        block_size: Texts and images per score block.
        device: Where scores are computed (default: where the image embeddings are).

    Returns:
        ``sar_<key>`` for every key of :meth:`ProtocolRanks.metrics` (``sar_mR``, ``sar_std_mR`` …).

    Raises:
        DataError: Sizes disagree, an image has no text, or ``k`` < 1.
    """
    matrix = score_matrix(CosineScores(text_embeddings, image_embeddings, device=device), block_size=block_size)
    ranks = sar_protocol_ranks(matrix, text_image, captions, k=k, block_size=block_size)
    return {f"{SAR_PREFIX}{key}": value for key, value in ranks.metrics().items()}
