"""Eliminate-Before-Align (iEBAKER, PAPERS.md §4): a queue of positive-pair similarities and its threshold.

:class:`SimilarityQueue` keeps the last ``queue_size`` positive-pair similarities (first in, first
out). At each epoch start :meth:`SimilarityQueue.threshold` fixes τ, the ``drop_ratio`` quantile of
what the queue holds: the entry at ``int(drop_ratio * filled)`` of its sorted values, the reference
code's rule. The reference fills its queue with random normal values at the start, so until real
similarities push them out τ is drawn from noise; ours starts empty and ranks only real values
(τ is ``-inf``, nothing dropped, while it is empty). From epoch ``start_epoch`` on
:func:`kept_pairs` lets a pair anchor the loss only when its similarity is above τ, and always
keeps the pair with the highest similarity, so no batch is left empty.

:class:`DroppedPairs` records every dropped pair (epoch, step, sample, caption, similarity, τ) for
the run's ``eba_dropped.csv`` artifact: which captions EBA judged too weak to align.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import torch

DROPPED_COLUMNS = ("epoch", "step", "kind", "sample_id", "caption", "similarity", "tau")


class SimilarityQueue:
    """A FIFO queue of positive-pair similarities.

    Args:
        size: Capacity (iEBAKER: 200,000).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = torch.empty(0, dtype=torch.float32)

    def push(self, similarities: torch.Tensor) -> None:
        """Append a batch's positive-pair similarities, forgetting the oldest beyond capacity."""
        new = similarities.detach().float().flatten().cpu()
        self.values = torch.cat([self.values, new])[-self.size:]

    def threshold(self, drop_ratio: float) -> float:
        """τ: the value at ``int(drop_ratio * filled)`` of the sorted queue; ``-inf`` while empty."""
        filled = self.values.numel()
        if filled == 0:
            return -math.inf
        index = min(int(drop_ratio * filled), filled - 1)
        return float(torch.sort(self.values).values[index])

    def state_dict(self) -> dict[str, Any]:
        """The queue's contents, for a checkpoint."""
        return {"size": self.size, "values": self.values.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the contents written by :meth:`state_dict`."""
        self.values = state["values"].float().cpu()[-self.size:]


def kept_pairs(similarities: torch.Tensor, tau: float) -> torch.Tensor:
    """Which positive pairs take part: similarity above τ, and at least the highest one.

    Args:
        similarities: ``(N,)`` positive-pair similarities.
        tau: The epoch's threshold.

    Returns:
        ``(N,)`` booleans.
    """
    keep = similarities > tau
    if not bool(keep.any()):
        keep = torch.zeros_like(keep)
        keep[int(torch.argmax(similarities))] = True
    return keep


@dataclass
class DroppedPairs:
    """The pairs EBA left out of the loss, one record each (see :data:`DROPPED_COLUMNS`)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, *, epoch: int, step: int, kind: str, sample_ids: list[Any], captions: list[str],
            similarities: torch.Tensor, keep: torch.Tensor, tau: float) -> int:
        """Record the pairs of one batch that ``keep`` leaves out; return how many."""
        dropped = (~keep).nonzero().flatten().tolist()
        for row in dropped:
            self.rows.append({"epoch": epoch, "step": step, "kind": kind, "sample_id": str(sample_ids[row]),
                              "caption": captions[row], "similarity": float(similarities[row]), "tau": tau})
        return len(dropped)

    def to_csv(self) -> str:
        """The records as CSV text with a header row."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=DROPPED_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()
