"""Sentinel-1 ↔ Sentinel-2 retrieval of paired patches (CLOSP's SAR↔optical test, PAPERS.md §2).

Each row of a paired set holds an S1 and an S2 patch of the same place. An S1 query's one right
answer is its own row's S2 patch, and the other way round; every other patch is wrong. Ranks come
from the blocked ranking of text↔image retrieval (:func:`rsvl.evaluate.retrieval.retrieval_ranks`,
the S1 embeddings in the place of the texts, each owning its row's S2 patch), so ties count against
the query and no full score matrix is built.

Metric keys (percent): ``s1_to_s2_r1 s1_to_s2_r5 s1_to_s2_r10 s2_to_s1_r1 s2_to_s1_r5
s2_to_s1_r10`` and ``cross_mR``, their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsvl.errors import DataError
from rsvl.evaluate.retrieval import BLOCK_SIZE, RECALL_KS, recall_at, retrieval_ranks

DIRECTIONS = ("s1_to_s2", "s2_to_s1")
CROSS_KEYS: tuple[str, ...] = (*(f"{d}_r{k}" for d in DIRECTIONS for k in RECALL_KS), "cross_mR")
"""The seven metric names, in report order."""


@dataclass(frozen=True)
class CrossSensorRanks:
    """Where each query's own other-sensor patch lands (0 = top).

    Attributes:
        s1_to_s2: For each S1 query, how many foreign S2 patches score at least as high as its own.
        s2_to_s1: For each S2 query, how many foreign S1 patches score at least as high as its own.
    """

    s1_to_s2: torch.Tensor
    s2_to_s1: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Recall@1/5/10 of both directions and ``cross_mR``, in percent (keys :data:`CROSS_KEYS`)."""
        out = {f"{direction}_r{k}": recall_at(getattr(self, direction), k)
               for direction in DIRECTIONS for k in RECALL_KS}
        out["cross_mR"] = sum(out.values()) / len(out)
        return out

    def curve(self, max_k: int) -> dict[str, list[float]]:
        """Recall@K for K = 1..max_k of both directions, for the details JSON.

        Args:
            max_k: Largest K.

        Returns:
            ``{"k": [1..max_k], "s1_to_s2": [...], "s2_to_s1": [...]}`` in percent.
        """
        ks = list(range(1, max_k + 1))
        return {"k": ks, **{direction: [recall_at(getattr(self, direction), k) for k in ks]
                            for direction in DIRECTIONS}}


def cross_sensor_ranks(
    s1_embeddings: torch.Tensor,
    s2_embeddings: torch.Tensor,
    *,
    block_size: int = BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> CrossSensorRanks:
    """Rank every row's other-sensor patch for S1→S2 and S2→S1 queries.

    Args:
        s1_embeddings: (rows, dim) S1 embeddings, any scale; row ``i`` pairs with S2 row ``i``.
        s2_embeddings: (rows, dim) S2 embeddings, any scale.
        block_size: Patches per score block (see :func:`retrieval_ranks`).
        device: Where the blocks are scored (default: where the embeddings are).

    Returns:
        The ranks of both directions, ties counted against the query.

    Raises:
        DataError: The two sides have different row counts or none.
    """
    rows = s1_embeddings.shape[0]
    if rows != s2_embeddings.shape[0]:
        raise DataError(f"cross-sensor retrieval needs one S2 patch per S1 patch, got {rows} S1 and "
                        f"{s2_embeddings.shape[0]} S2 embeddings")
    # S2 patches play the images and S1 patches the texts, each S1 row owning its S2 row
    ranks = retrieval_ranks(s2_embeddings, s1_embeddings, range(rows), block_size=block_size, device=device)
    return CrossSensorRanks(s1_to_s2=ranks.t2i, s2_to_s1=ranks.i2t)
