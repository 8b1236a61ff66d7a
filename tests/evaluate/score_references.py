"""Plain float64 references for score-matrix ranking, iEBAKER's local similarity and SAR re-ranking.

Explicit loops over the definitions (PAPERS.md §4 and the SAR rule written in
``rsvl.evaluate.rerank``'s docstring), no code from ``rsvl.evaluate``: tests compare the blocked,
vectorised code against these.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def right_matrix(owner: Sequence[int], n_images: int, keys: Sequence[str] | None = None) -> np.ndarray:
    """(texts, images) booleans: text ``t`` is right for image ``i`` (its own, or an owner of its key)."""
    keys = list(range(len(owner))) if keys is None else [" ".join(k.split()).casefold() for k in keys]
    owned = [{keys[t] for t in range(len(owner)) if owner[t] == i} for i in range(n_images)]
    return np.array([[keys[t] in owned[i] for i in range(n_images)] for t in range(len(owner))])


def matrix_ranks(scores, owner: Sequence[int], tolerance: float, keys: Sequence[str] | None = None):
    """Ranks of the first right answer from a whole (texts, images) matrix, ties against the query.

    Returns:
        ``(i2t, t2i)`` integer arrays.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n_texts, n_images = scores.shape
    right = right_matrix(owner, n_images, keys)
    t2i = [sum(scores[t, j] >= scores[t, right[t]].max() - tolerance for j in range(n_images) if not right[t, j])
           for t in range(n_texts)]
    i2t = [sum(scores[u, i] >= scores[right[:, i], i].max() - tolerance for u in range(n_texts) if not right[u, i])
           for i in range(n_images)]
    return np.array(i2t), np.array(t2i)


def local_similarity_loops(text_tokens, image_tokens) -> np.ndarray:
    """``Loc[t, i] = sqrt(Σ_a Σ_b cos(text_a, patch_b)²)``, one cosine at a time (zero tokens give 0)."""
    texts = np.asarray(text_tokens, dtype=np.float64)
    images = np.asarray(image_tokens, dtype=np.float64)
    out = np.zeros((len(texts), len(images)))
    for t in range(len(texts)):
        for i in range(len(images)):
            total = 0.0
            for a in texts[t]:
                for b in images[i]:
                    norms = np.linalg.norm(a) * np.linalg.norm(b)
                    total += (float(a @ b) / norms) ** 2 if norms > 0 else 0.0
            out[t, i] = math.sqrt(total)
    return out


def sar_query_order(scores, query: int, k: int) -> list[int]:
    """SAR's order of the candidates for row ``query`` (rows are queries, columns candidates)."""
    scores = np.asarray(scores, dtype=np.float64)
    n_rows, n_cols = scores.shape
    order = sorted(range(n_cols), key=lambda c: (-scores[query, c], c))
    top = order[:k]
    reverse = {c: sum(scores[other, c] > scores[query, c] for other in range(n_rows)) for c in top}
    resorted = sorted(range(len(top)), key=lambda f: (f + reverse[top[f]], f))
    return [top[f] for f in resorted] + order[k:]


def sar_orders(scores, k: int) -> tuple[list[list[int]], list[list[int]]]:
    """SAR's text→image order of images for every text, and image→text order of texts for every image."""
    scores = np.asarray(scores, dtype=np.float64)
    t2i = [sar_query_order(scores, t, k) for t in range(scores.shape[0])]
    i2t = [sar_query_order(scores.T, i, k) for i in range(scores.shape[1])]
    return t2i, i2t


def ranks_from_orders(t2i_orders, i2t_orders, owner: Sequence[int], keys: Sequence[str] | None = None):
    """Wrong answers before the first right one in each query's order (orders without ties).

    Returns:
        ``(i2t, t2i)`` integer arrays.
    """
    right = right_matrix(owner, len(i2t_orders), keys)
    t2i = [next(p for p, i in enumerate(order) if right[t, i]) for t, order in enumerate(t2i_orders)]
    i2t = [next(p for p, t in enumerate(order) if right[t, i]) for i, order in enumerate(i2t_orders)]
    return np.array(i2t), np.array(t2i)


def seven_numbers(i2t, t2i, prefix: str = "") -> dict[str, float]:
    """R@1/5/10 both ways in percent and their mean, keyed as the protocol keys them."""
    metrics = {}
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in (1, 5, 10):
            metrics[f"{prefix}{direction}_r{k}"] = 100.0 * float(np.mean(np.asarray(ranks) < k))
    metrics[f"{prefix}mR"] = sum(metrics.values()) / 6
    return metrics
