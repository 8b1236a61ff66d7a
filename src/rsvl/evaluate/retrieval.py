"""Image-text retrieval recall (PAPERS.md "Shared retrieval protocol"), computed block by block.

Scores are ``S = T · Iᵀ`` of L2-normalised embeddings; R@K for K ∈ {1, 5, 10} in both directions,
in percent, and ``mR`` their mean. Ties count against the query and the score matrix is never held
whole (see ``docs/evaluation-and-gate.md``). Two protocols, one ranking code (:func:`ranks_from_scores`,
which reads any :class:`ScoreBlocks`; :func:`retrieval_ranks` is it over :class:`CosineScores`):

* merged: captions with the same text are one answer, right for every image owning it;
* standard (the literature's): each caption its own answer, right only for its own image.

Metric keys (MLflow-safe): merged ``i2t_r1 i2t_r5 i2t_r10 t2i_r1 t2i_r5 t2i_r10 mR``; standard the
same after ``std_`` (``std_i2t_r1`` … ``std_mR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from rsvl.config.evaluate import STANDARD_PREFIX
from rsvl.data.dataset import ManifestDataset
from rsvl.errors import DataError
from rsvl.evaluate.embedding import EMBED_BATCH, captions_of, embed_images, embed_texts

RECALL_KS = (1, 5, 10)
BLOCK_SIZE = 4096
TIE_TOLERANCE = 1e-5
"""Cosine scores this close to the true one tie with it (float32 summation noise is ~1e-7)."""
PAIR_CHUNK = 1 << 13
"""Pairs scored per step by :meth:`CosineScores.pair_scores`: two ``PAIR_CHUNK · dim`` float gathers
(16 MiB at 512 d), which measured faster than 2¹⁰ or 2¹⁶ pairs a step."""
MAX_RIGHT_PAIRS = 1 << 26
"""Right (text, image) pairs one ranking may hold (16 bytes each): a caption shared by thousands of
images, times its thousands of texts, would need more."""


@dataclass(frozen=True)
class RetrievalRanks:
    """Where the first right answer of every query lands (0 = top).

    Attributes:
        i2t: For each image, how many foreign texts score at least as high as its best caption.
        t2i: For each text, how many foreign images score at least as high as its own image.
    """

    i2t: torch.Tensor
    t2i: torch.Tensor


def caption_key(caption: str) -> str:
    """What makes two captions the same answer: their words, ignoring case and spacing."""
    return " ".join(caption.split()).casefold()


def check_owner(n_images: int, n_texts: int, text_image: Sequence[int]) -> torch.Tensor:
    """Check that every text names an image and every image has a text.

    Args:
        n_images: Images (score columns).
        n_texts: Texts (score rows).
        text_image: For each text, the index of its image.

    Returns:
        ``text_image`` as a long tensor.

    Raises:
        DataError: Nothing to score, a text without a valid image row, or an image without a text.
    """
    owner = torch.as_tensor(list(text_image), dtype=torch.long)
    if n_images == 0 or n_texts == 0:
        raise DataError("retrieval needs at least one image and one text")
    if owner.numel() != n_texts or owner.min() < 0 or owner.max() >= n_images:
        raise DataError(f"text_image must give an image row in [0, {n_images}) for each of the {n_texts} texts")
    if torch.bincount(owner, minlength=n_images).min() == 0:
        raise DataError("every image needs at least one text")
    return owner


class ScoreBlocks(Protocol):
    """A (texts, images) score matrix handed out block by block (see :func:`ranks_from_scores`).

    Attributes:
        n_texts: Rows of the matrix.
        n_images: Columns of the matrix.
        device: Where :meth:`block` puts its blocks.
    """

    n_texts: int
    n_images: int
    device: torch.device

    def block(self, t0: int, t1: int, i0: int, i1: int) -> torch.Tensor:
        """Scores of texts ``t0:t1`` against images ``i0:i1``, higher is better.

        The same arguments must give the same values every time (ranking reads each block twice).

        Args:
            t0: First text row.
            t1: One past the last text row.
            i0: First image column.
            i1: One past the last image column.

        Returns:
            (t1 - t0, i1 - i0) float32 on :attr:`device`.
        """
        ...


def pair_scores_of(scorer: ScoreBlocks) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """A scorer's optional ``pair_scores(texts, images)``: the scores of given (text, image) pairs.

    A scorer that has it (:class:`CosineScores`, :class:`DenseScores`, and the iEBAKER
    ``LocalScores`` and ``FusedScores`` of :mod:`rsvl.evaluate.local_similarity`) is ranked in one
    pass over its blocks; any other in two, the first gathering the right answers' scores from the
    blocks. The ranking's bars come from its values, so they must equal the blocks' up to
    summation noise well below :data:`TIE_TOLERANCE`.

    Args:
        scorer: Any :class:`ScoreBlocks`.

    Returns:
        The bound method, or ``None``.
    """
    return getattr(scorer, "pair_scores", None)


class CosineScores:
    """``S = T · Iᵀ`` of L2-normalised embeddings, one block at a time (PAPERS.md "Shared retrieval protocol").

    Args:
        text_embeddings: (texts, dim), any scale (normalised here).
        image_embeddings: (images, dim), any scale.
        device: Where the blocks are scored (default: where the image embeddings are).

    Raises:
        DataError: The two sides have different widths.
    """

    def __init__(self, text_embeddings: torch.Tensor, image_embeddings: torch.Tensor,
                 device: str | torch.device | None = None) -> None:
        if text_embeddings.shape[-1] != image_embeddings.shape[-1]:
            raise DataError(f"text embeddings have width {text_embeddings.shape[-1]}, image embeddings "
                            f"{image_embeddings.shape[-1]}: cosine scores need the same width")
        self.device = torch.device(device) if device is not None else image_embeddings.device
        # score in float32 whatever dtype the embeddings come in (fp16/bf16 under AMP)
        self.texts = nn.functional.normalize(text_embeddings.to(self.device, torch.float32), dim=-1)
        self.images = nn.functional.normalize(image_embeddings.to(self.device, torch.float32), dim=-1)
        self.n_texts, self.n_images = self.texts.shape[0], self.images.shape[0]

    def block(self, t0: int, t1: int, i0: int, i1: int) -> torch.Tensor:
        """Cosine scores of texts ``t0:t1`` against images ``i0:i1``, (t1 - t0, i1 - i0) float32."""
        return self.texts[t0:t1] @ self.images[i0:i1].T

    def pair_scores(self, texts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Cosine scores of the pairs ``(texts[k], images[k])``: row-wise dot products, not a matrix."""
        out = torch.empty(texts.numel(), dtype=torch.float32, device=self.device)
        for start in range(0, texts.numel(), PAIR_CHUNK):
            t, i = texts[start:start + PAIR_CHUNK], images[start:start + PAIR_CHUNK]
            out[start:start + t.numel()] = (self.texts[t] * self.images[i]).sum(dim=-1)
        return out


class DenseScores:
    """A score matrix already held whole, served in blocks.

    Args:
        matrix: (texts, images) scores (cast to float32).
        device: Where the blocks go (default: where ``matrix`` is).

    Raises:
        DataError: ``matrix`` is not two-dimensional.
    """

    def __init__(self, matrix: torch.Tensor, device: str | torch.device | None = None) -> None:
        if matrix.dim() != 2:
            raise DataError(f"a score matrix must be (texts, images), got shape {tuple(matrix.shape)}")
        self.device = torch.device(device) if device is not None else matrix.device
        self.matrix = matrix.to(self.device, torch.float32)
        self.n_texts, self.n_images = self.matrix.shape

    def block(self, t0: int, t1: int, i0: int, i1: int) -> torch.Tensor:
        """The stored scores of texts ``t0:t1`` against images ``i0:i1``."""
        return self.matrix[t0:t1, i0:i1]

    def pair_scores(self, texts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The stored scores of the pairs ``(texts[k], images[k])``."""
        return self.matrix[texts.to(self.device), images.to(self.device)]


def _blocks(n_texts: int, n_images: int, block_size: int) -> list[tuple[int, int, int, int]]:
    if block_size < 1:
        raise DataError(f"block_size must be positive, got {block_size}")
    return [(t0, min(t0 + block_size, n_texts), i0, min(i0 + block_size, n_images))
            for t0 in range(0, n_texts, block_size) for i0 in range(0, n_images, block_size)]


def score_matrix(scorer: ScoreBlocks, *, block_size: int = BLOCK_SIZE) -> torch.Tensor:
    """Assemble a scorer's whole (texts, images) matrix from its blocks.

    Args:
        scorer: Any :class:`ScoreBlocks`.
        block_size: Texts and images per block asked of the scorer.

    Returns:
        (texts, images) float32 on the scorer's device: ``4 · texts · images`` bytes.

    Raises:
        DataError: ``block_size`` < 1.
    """
    matrix = torch.empty(scorer.n_texts, scorer.n_images, dtype=torch.float32, device=scorer.device)
    for t0, t1, i0, i1 in _blocks(scorer.n_texts, scorer.n_images, block_size):
        matrix[t0:t1, i0:i1] = scorer.block(t0, t1, i0, i1)
    return matrix


def ranks_from_scores(
    scorer: ScoreBlocks,
    text_image: Sequence[int],
    *,
    text_keys: Sequence[str] | None = None,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> RetrievalRanks:
    """Rank the right answers of every query from a score matrix seen one block at a time.

    One pass over the blocks (:func:`rank_protocols`): each query's best right answer is scored
    first, on the few right pairs alone; then each block counts the answers scoring at least that
    minus :data:`TIE_TOLERANCE` (ties count against the query) and takes back the right ones.

    Args:
        scorer: The (texts, images) scores, higher is better.
        text_image: For each text, the column of its image.
        text_keys: Each text's caption: a text is then right for every image owning the same
            :func:`caption_key` (the merged protocol). ``None``: only for its own image (the standard one).
        block_size: Texts and images per score block; memory is about ``block_size²`` floats
            plus what the scorer needs for one block.
        device: Where the blocks are ranked (default: the scorer's device).

    Returns:
        The ranks of both directions, on the CPU.

    Raises:
        DataError: Sizes disagree, an image has no text, nothing to score, ``block_size`` < 1, or
            more right pairs than :data:`MAX_RIGHT_PAIRS`.
    """
    return rank_protocols(scorer, text_image, [text_keys], block_size=block_size, device=device)[0]


def rank_protocols(
    scorer: ScoreBlocks,
    text_image: Sequence[int],
    key_sets: Sequence[Sequence[str] | None],
    *,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> list[RetrievalRanks]:
    """Rank every query under several definitions of the right answers, in one pass over the blocks.

    Each block is scored once and counted for every protocol, so ranking the merged and the
    standard protocol together costs one matrix pass, not two (or four, before the best right
    answers were scored on their own pairs). A scorer without ``pair_scores``
    (:func:`pair_scores_of`) takes one more pass, which gathers the right answers' scores.

    Args:
        scorer: The (texts, images) scores, higher is better.
        text_image: For each text, the column of its image.
        key_sets: One entry per protocol: the texts' captions (merged) or ``None`` (standard); see
            :func:`ranks_from_scores`.
        block_size: Texts and images per score block.
        device: Where the blocks are ranked (default: the scorer's device).

    Returns:
        The ranks of each protocol, in ``key_sets`` order, on the CPU.

    Raises:
        DataError: See :func:`ranks_from_scores`.
    """
    n_images, n_texts = scorer.n_images, scorer.n_texts
    blocks = _blocks(n_texts, n_images, block_size)
    device = torch.device(device) if device is not None else scorer.device
    owner = check_owner(n_images, n_texts, text_image).to(device)
    plans = [_RightPairs(owner, n_images, keys, block_size) for keys in key_sets]
    pairs = pair_scores_of(scorer)
    if pairs is not None:
        for plan in plans:
            plan.set_bar(pairs(plan.texts, plan.images).to(device))
    else:
        gathered = [torch.empty(plan.texts.numel(), dtype=torch.float32, device=device) for plan in plans]
        for number, (t0, t1, i0, i1) in enumerate(blocks):
            scores = scorer.block(t0, t1, i0, i1).to(device)
            for plan, values in zip(plans, gathered):
                start, end, texts, images = plan.in_block(number)
                values[start:end] = scores[texts - t0, images - i0]
        for plan, values in zip(plans, gathered):
            plan.set_bar(values)
    for number, (t0, t1, i0, i1) in enumerate(blocks):
        scores = scorer.block(t0, t1, i0, i1).to(device)
        for plan in plans:
            plan.count(number, scores, t0, t1, i0, i1)
    return [RetrievalRanks(i2t=plan.i2t.cpu(), t2i=plan.t2i.cpu()) for plan in plans]


def retrieval_ranks(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_image: Sequence[int],
    *,
    text_keys: Sequence[str] | None = None,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> RetrievalRanks:
    """Rank the right answers of every query by cosine score without building the full score matrix.

    :func:`ranks_from_scores` over :class:`CosineScores`.

    Args:
        image_embeddings: (images, dim), any scale (normalised here).
        text_embeddings: (texts, dim), any scale.
        text_image: For each text, the row of its image.
        text_keys: Each text's caption: a text is then right for every image owning the same
            :func:`caption_key` (the merged protocol). ``None``: only for its own image (the standard one).
        block_size: Texts and images per score block; memory is about ``block_size²`` floats.
        device: Where the blocks are scored (default: where the embeddings are).

    Returns:
        The ranks of both directions (ties counted against the query).

    Raises:
        DataError: Sizes disagree, an image has no text, nothing to score, or ``block_size`` < 1.
    """
    scorer = CosineScores(text_embeddings, image_embeddings, device=device)
    return ranks_from_scores(scorer, text_image, text_keys=text_keys, block_size=block_size)


LANE_MAX = 255
"""Booleans summed per byte lane before a lane could carry into the next (0/1 values, 8-bit lanes)."""


def count_true(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``True`` entries of each row (``dim=1``) or column (``dim=0``) of a 2-D bool tensor.

    A plain ``mask.sum(dim)`` widens every byte to int64 and costs several times the comparison
    that made the mask; here the mask is read as int64 words, eight booleans a word, and words are
    summed in groups of at most :data:`LANE_MAX`, so no byte lane carries into the next: each byte
    of a group's sum is a count, whatever the machine's byte order.

    Args:
        mask: (rows, columns) booleans.
        dim: 1 for a count per row, 0 for a count per column.

    Returns:
        (rows,) or (columns,) int64 counts, on the mask's device.
    """
    rows, cols = mask.shape
    if cols % 8:  # whole words a row: pad with False columns
        padded = torch.zeros(rows, cols + 8 - cols % 8, dtype=torch.bool, device=mask.device)
        padded[:, :cols] = mask
        mask = padded
    words = mask.contiguous().view(torch.int64)  # (rows, cols / 8): byte k of word w is column 8w + k
    if dim == 1:
        words = words.T  # a row's words down a column: the groups below run along it
    full = words.shape[0] // LANE_MAX
    groups = []
    if full:
        groups.append(words[:full * LANE_MAX].reshape(full, LANE_MAX, -1).sum(dim=1))
    if words.shape[0] % LANE_MAX:
        groups.append(words[full * LANE_MAX:].sum(dim=0, keepdim=True))
    lanes = torch.cat(groups).contiguous().view(torch.uint8)  # (groups, 8 · words a line): per-lane counts
    if dim == 0:
        return lanes.sum(dim=0, dtype=torch.long)[:cols]
    return lanes.reshape(lanes.shape[0], rows, 8).sum(dim=(0, 2), dtype=torch.long)


class _RightPairs:
    """One protocol's right (text, image) pairs, grouped by score block, and its counts.

    A text is right for its own image, and (merged protocol) for every image owning a text with its
    :func:`caption_key`. Each query's bar is its best right answer's score minus
    :data:`TIE_TOLERANCE`; :meth:`count` adds the block's answers at or above the bar and takes
    back the right ones among them, read from the same block values.
    """

    def __init__(self, owner: torch.Tensor, n_images: int, text_keys: Sequence[str] | None, block_size: int) -> None:
        n_texts, device = owner.numel(), owner.device
        if text_keys is None:
            texts, images = torch.arange(n_texts, device=device), owner
        else:
            if len(text_keys) != n_texts:
                raise DataError(f"text_keys must give a caption for each of the {n_texts} texts, got {len(text_keys)}")
            ids: dict[str, int] = {}
            key = torch.tensor([ids.setdefault(caption_key(k), len(ids)) for k in text_keys], device=device)
            # the (key, image) ownerships, sorted by key: key k's images are owned[starts[k]:starts[k] + counts[k]]
            owned = torch.unique(key * n_images + owner)
            owned_images = owned % n_images
            counts = torch.bincount(owned // n_images, minlength=len(ids))
            starts = counts.cumsum(0) - counts
            per_text = counts[key]
            total = int(per_text.sum())
            if total > MAX_RIGHT_PAIRS:
                raise DataError(f"{total} right (text, image) pairs under the merged protocol (captions shared by "
                                f"many images), more than {MAX_RIGHT_PAIRS}: rank with the standard protocol")
            texts = torch.repeat_interleave(torch.arange(n_texts, device=device), per_text)
            # each pair's place among its text's pairs: 0, 1, .. per_text[t] - 1
            within = torch.arange(total, device=device) - torch.repeat_interleave(per_text.cumsum(0) - per_text, per_text)
            images = owned_images[starts[key[texts]] + within]
        image_blocks = -(-n_images // block_size)
        block_of = (texts // block_size) * image_blocks + images // block_size
        order = torch.argsort(block_of, stable=True)
        self.texts, self.images = texts[order], images[order]
        blocks = -(-n_texts // block_size) * image_blocks
        self.bounds = torch.cat([torch.zeros(1, dtype=torch.long, device=device),
                                 torch.bincount(block_of, minlength=blocks).cumsum(0)]).tolist()
        self.t2i = torch.zeros(n_texts, dtype=torch.long, device=device)
        self.i2t = torch.zeros(n_images, dtype=torch.long, device=device)
        self.text_bar = self.image_bar = None

    def in_block(self, number: int) -> tuple[int, int, torch.Tensor, torch.Tensor]:
        """Where block ``number``'s right pairs sit in :attr:`texts`/:attr:`images`, and the pairs."""
        start, end = self.bounds[number], self.bounds[number + 1]
        return start, end, self.texts[start:end], self.images[start:end]

    def set_bar(self, scores: torch.Tensor) -> None:
        """Each query's bar from the scores of the right pairs (in :attr:`texts` order)."""
        best_text = torch.full(self.t2i.shape, -torch.inf, device=scores.device)
        best_image = torch.full(self.i2t.shape, -torch.inf, device=scores.device)
        best_text.scatter_reduce_(0, self.texts, scores, "amax")
        best_image.scatter_reduce_(0, self.images, scores, "amax")
        # lower the bar by TIE_TOLERANCE so block-shape summation noise counts as a tie, against the query
        self.text_bar, self.image_bar = best_text - TIE_TOLERANCE, best_image - TIE_TOLERANCE

    def count(self, number: int, scores: torch.Tensor, t0: int, t1: int, i0: int, i1: int) -> None:
        """Add block ``number``'s wrong answers at or above each query's bar."""
        self.t2i[t0:t1] += count_true(scores >= self.text_bar[t0:t1, None], dim=1)
        self.i2t[i0:i1] += count_true(scores >= self.image_bar[None, i0:i1], dim=0)
        _, _, texts, images = self.in_block(number)
        if texts.numel():
            values = scores[texts - t0, images - i0]
            self.t2i.index_add_(0, texts, -(values >= self.text_bar[texts]).long())
            self.i2t.index_add_(0, images, -(values >= self.image_bar[images]).long())


def recall_at(ranks: torch.Tensor, k: int) -> float:
    """Percent of queries whose first right answer is in the top ``k``."""
    return 100.0 * int((ranks < k).sum()) / ranks.numel()


def metrics_from_ranks(ranks: RetrievalRanks, prefix: str = "") -> dict[str, float]:
    """The seven protocol numbers from :func:`retrieval_ranks` (see the module docstring).

    Args:
        ranks: Output of :func:`retrieval_ranks`.
        prefix: Put before every key (:data:`STANDARD_PREFIX` for the standard protocol).

    Returns:
        ``<prefix>i2t_r{K}``, ``<prefix>t2i_r{K}`` for K in 1, 5, 10, and ``<prefix>mR``, in percent.
    """
    recalls = [recall_at(ranks.i2t, k) for k in RECALL_KS] + [recall_at(ranks.t2i, k) for k in RECALL_KS]
    names = [f"i2t_r{k}" for k in RECALL_KS] + [f"t2i_r{k}" for k in RECALL_KS]
    metrics = {f"{prefix}{name}": value for name, value in zip(names, recalls)}
    metrics[f"{prefix}mR"] = sum(recalls) / len(recalls)
    return metrics


@dataclass(frozen=True)
class ProtocolRanks:
    """The ranks of one model's embeddings under both protocols.

    Attributes:
        merged: Captions with the same :func:`caption_key` are one answer (the unprefixed metrics).
        standard: Each caption its own answer, as in the literature (the ``std_`` metrics).
    """

    merged: RetrievalRanks
    standard: RetrievalRanks

    def metrics(self) -> dict[str, float]:
        """The seven merged numbers, then the seven standard ones under :data:`STANDARD_PREFIX`."""
        return {**metrics_from_ranks(self.merged), **metrics_from_ranks(self.standard, STANDARD_PREFIX)}


def protocol_ranks(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_image: Sequence[int],
    captions: Sequence[str],
    *,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> ProtocolRanks:
    """Rank every query under both protocols in one pass over the cosine blocks (:func:`rank_protocols`).

    Args:
        image_embeddings: (images, dim), any scale (normalised here).
        text_embeddings: (texts, dim), any scale.
        text_image: For each text, the row of its image.
        captions: For each text, its caption (merges identical captions in ``merged``).
        block_size: Texts and images per score block (see :func:`retrieval_ranks`).
        device: Where the blocks are scored (default: where the embeddings are).

    Returns:
        The merged and the standard ranks.

    Raises:
        DataError: Sizes disagree, an image has no text, or there is nothing to score.
    """
    scorer = CosineScores(text_embeddings, image_embeddings, device=device)
    merged, standard = rank_protocols(scorer, text_image, [captions, None], block_size=block_size)
    return ProtocolRanks(merged=merged, standard=standard)


def recall_curve(ranks: RetrievalRanks, max_k: int = 50) -> dict[str, list[float]]:
    """Recall@K for K = 1..max_k in both directions, for plots.

    Args:
        ranks: Output of :func:`retrieval_ranks`.
        max_k: Largest K.

    Returns:
        ``{"k": [1..max_k], "i2t": [...], "t2i": [...]}`` in percent.
    """
    curve: dict[str, list[float]] = {"k": list(range(1, max_k + 1))}
    for direction in ("i2t", "t2i"):
        ranked = getattr(ranks, direction)
        # ranks past max_k go to one overflow bin, which [:max_k] drops
        hits = torch.bincount(ranked.clamp(max=max_k), minlength=max_k + 1)[:max_k].cumsum(0)
        curve[direction] = (100.0 * hits.double() / ranked.numel()).tolist()
    return curve


def recall_metrics(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_image: Sequence[int],
    *,
    text_keys: Sequence[str] | None = None,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Compute the seven retrieval numbers, block by block.

    Args:
        image_embeddings: (images, dim), any scale (normalised here).
        text_embeddings: (texts, dim), any scale.
        text_image: For each text, the row of its image.
        text_keys: For each text, its caption (see :func:`retrieval_ranks`).
        block_size: Texts and images per score block (see :func:`retrieval_ranks`).
        device: Where the blocks are scored (default: where the embeddings are).

    Returns:
        ``i2t_r{K}``, ``t2i_r{K}`` for K in 1, 5, 10, and ``mR``, in percent.

    Raises:
        DataError: Sizes disagree, an image has no text, or there is nothing to score.
    """
    ranks = retrieval_ranks(image_embeddings, text_embeddings, text_image, text_keys=text_keys,
                            block_size=block_size, device=device)
    return metrics_from_ranks(ranks)


def embed_pairs(
    model: nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    dataset: ManifestDataset,
    media: str = "image",
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[str]]:
    """Embed every image of ``dataset`` and every one of its captions, one batch at a time.

    Args:
        model: An open_clip model (unwrapped), put in eval mode by the caller.
        preprocess: Validation preprocessing.
        tokenizer: The model's tokenizer.
        dataset: The split to score.
        media: Media column the image tower reads.
        batch_size: Images or texts per forward pass.
        device: Where the model lives.

    Returns:
        ``(image embeddings, text embeddings, image row of each text, the captions)``, tensors on the CPU.

    Raises:
        DataError: A sample has no captions or no ``media``.
    """
    captions, owner = captions_of(dataset, media)
    images = embed_images(model, preprocess, dataset, media, batch_size, device)
    return images, embed_texts(model, tokenizer, captions, batch_size, device), owner, captions


def evaluate_retrieval(
    model: nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    dataset_dir: str | Path,
    split: str | None = "test",
    media: str = "image",
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score a model's retrieval on one split of a canonical dataset.

    Args:
        model: An open_clip model (unwrapped); left in the mode it had.
        preprocess: Validation preprocessing.
        tokenizer: The model's tokenizer.
        dataset_dir: Canonical dataset directory.
        split: Split to score (``None``: all rows).
        media: Media column the image tower reads; only the rows that have it are scored.
        device: Where the model lives.

    Returns:
        The seven numbers of :func:`recall_metrics`.

    Raises:
        DataError: The split is empty or a sample cannot be scored.
    """
    dataset = ManifestDataset(dataset_dir, split=split).with_media(media)
    if len(dataset) == 0:
        raise DataError(f"{dataset_dir}: split {split!r} has no {media!r} rows; nothing to evaluate")
    was_training = model.training
    model.eval()
    try:
        image_emb, text_emb, owner, captions = embed_pairs(model, preprocess, tokenizer, dataset, media, device=device)
    finally:
        model.train(was_training)
    return recall_metrics(image_emb, text_emb, owner, text_keys=captions, device=device)
