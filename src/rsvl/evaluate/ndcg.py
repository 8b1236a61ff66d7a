"""nDCG@k for text→image retrieval with graded label-overlap relevance (CLOSP's metric, PAPERS.md §2).

The relevance of an image to a query is the number of labels they share,
``rel = |query labels ∩ image labels|`` (ours: CLOSP does not publish its grading). The gain of
the image at rank ``i`` (1-based) is ``(2^rel − 1) / log2(i + 1)``; DCG@k sums the first ``k``;
IDCG@k is the DCG@k of the images sorted by relevance; nDCG@k = DCG@k / IDCG@k, averaged over
queries. Tied scores are ordered least relevant first (then by image row), so ties count against
the query as in retrieval recall. Each query keeps only its top ``k`` images (``torch.topk``, never a
full sort of the images). Labels are compared lower-cased and stripped.

Queries come from the labels themselves: on a multi-label set every distinct label set of the
split is one query, its text the labels in alphabetical order joined with ``". "`` (CLOSP's label
text); on a single-label set every class is one query (class-level retrieval: the images of
that class are relevant with gain 1, every other image 0).

Per class (:func:`label_means`): the nDCG@k of a label is the mean nDCG@k of the queries whose
label set contains it (queries without a relevant image left out), so one location-dependent class
(flooded area, burned area) can be compared between models (GeoCLOSP against CLOSP), where the
overall mean is dominated by the common land-cover classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from rsvl.data.labels import labels_to_text, unique_labels
from rsvl.errors import DataError
from rsvl.evaluate.retrieval import count_true

QUERY_BLOCK = 64


def label_set(labels: Iterable[str]) -> frozenset[str]:
    """Normalise labels for matching: stripped, lower-cased, without blanks or repeats."""
    return frozenset(unique_labels(str(label).lower() for label in labels))


def dcg(relevances: Sequence[float] | torch.Tensor, k: int) -> float:
    """DCG@k of relevances listed in ranked order: ``Σ_{i≤k} (2^rel_i − 1) / log2(i + 1)``.

    Args:
        relevances: Relevance of the item at rank 1, 2, ...
        k: Cut-off.
    """
    return float(_dcg_rows(torch.as_tensor(relevances, dtype=torch.float64)[None, :k])[0])


def _dcg_rows(relevances: torch.Tensor) -> torch.Tensor:
    rel = relevances.double()
    discounts = torch.log2(torch.arange(2, rel.shape[1] + 2, dtype=torch.float64))
    return ((2.0 ** rel - 1.0) / discounts).sum(dim=1)


@dataclass(frozen=True)
class NdcgResult:
    """nDCG@k of a set of queries.

    Attributes:
        k: Cut-off.
        mean: Mean nDCG@k over queries with at least one relevant image, in [0, 1].
        per_query: nDCG@k of each query (``nan`` where no image is relevant).
        top: Row indices of each query's first ``k`` images, best first.
    """

    k: int
    mean: float
    per_query: list[float]
    top: list[list[int]]


def _label_columns(query_labels: Sequence[frozenset[str]],
                   item_labels: Sequence[frozenset[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and items as 0/1 rows over the labels either side holds: their products are the relevances."""
    vocabulary = sorted(set().union(*query_labels, *item_labels))
    column = {label: i for i, label in enumerate(vocabulary)}

    def one_hot(sets: Sequence[frozenset[str]]) -> torch.Tensor:
        matrix = torch.zeros(len(sets), max(len(vocabulary), 1))
        rows = [row for row, labels in enumerate(sets) for _ in labels]
        columns = [column[label] for labels in sets for label in labels]
        matrix[rows, columns] = 1.0  # one scatter, not one indexing call a row
        return matrix

    return one_hot(query_labels), one_hot(item_labels)


def _relevance(query_labels: Sequence[frozenset[str]], item_labels: Sequence[frozenset[str]]) -> torch.Tensor:
    """(queries, items) shared-label counts, whole numbers in float32 (sums of 0/1 products, exact)."""
    queries, items = _label_columns(query_labels, item_labels)
    return queries @ items.T


def _top_rows(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's first ``k`` columns by score descending, then relevance ascending, then column ascending.

    The order a full stable sort by relevance and then by score would give, from ``torch.topk``:
    the columns scoring above the ``k``-th best score all make the cut; when the ``k``-th score is
    shared by more columns than places are left, the least relevant of them (then the lowest) take
    the places, which needs a second top-k over that row. The ``k`` picked columns are then put in
    order by three stable sorts of ``k`` entries each.

    Args:
        scores: (queries, items) finite scores.
        relevance: (queries, items) relevance, whole numbers.
        k: Columns kept, at most ``items``.

    Returns:
        (queries, k) int64 columns, best first.
    """
    values, picked = scores.topk(k, dim=1, sorted=False)
    kth = values.amin(dim=1, keepdim=True)
    # rows whose k-th score is shared beyond the cut: topk picked among the tied columns arbitrarily
    crowded = torch.nonzero(count_true(scores >= kth, dim=1) > k).flatten()
    if crowded.numel():
        row_scores, row_kth = scores[crowded], kth[crowded]
        columns = torch.arange(scores.shape[1], device=scores.device)
        tie_key = relevance[crowded].long() * scores.shape[1] + columns
        # above the k-th score: always in (-1); tied with it: least relevant, then lowest, first; below: never
        tied_or_out = torch.where(row_scores == row_kth, tie_key, torch.iinfo(torch.long).max)
        key = torch.where(row_scores > row_kth, -1, tied_or_out)
        picked[crowded] = key.topk(k, dim=1, largest=False).indices
    picked = picked.sort(dim=1).values
    picked = picked.gather(1, relevance.gather(1, picked).argsort(dim=1, stable=True))
    return picked.gather(1, scores.gather(1, picked).argsort(dim=1, descending=True, stable=True))


def ndcg_at_k(
    query_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    query_labels: Sequence[Iterable[str]],
    item_labels: Sequence[Iterable[str]],
    k: int,
    *,
    block_size: int = QUERY_BLOCK,
) -> NdcgResult:
    """Rank every image for every query by cosine score and compute nDCG@k.

    Args:
        query_embeddings: (queries, dim) text embeddings, any scale.
        item_embeddings: (images, dim) image embeddings, any scale.
        query_labels: Labels of each query.
        item_labels: Labels of each image.
        k: Cut-off (capped at the number of images).
        block_size: Queries scored at once; memory is ``block_size × images`` scores and relevances.

    Returns:
        Mean and per-query nDCG@k, and each query's top-k rows.

    Raises:
        DataError: Sizes disagree, ``k`` is not positive, an embedding is inf or nan, or no query has
            a relevant image.
    """
    if k < 1:
        raise DataError(f"nDCG needs k >= 1, got {k}")
    if query_embeddings.shape[0] != len(query_labels) or item_embeddings.shape[0] != len(item_labels):
        raise DataError("need one label list per query and per image")
    if not len(query_labels) or not len(item_labels):
        raise DataError("nDCG needs at least one query and one image")
    if not (bool(torch.isfinite(query_embeddings).all()) and bool(torch.isfinite(item_embeddings).all())):
        raise DataError("nDCG needs finite embeddings; the query or image embeddings hold inf or nan")
    queries = nn.functional.normalize(query_embeddings.float(), dim=-1)
    items = nn.functional.normalize(item_embeddings.float(), dim=-1)
    query_columns, item_columns = _label_columns([label_set(q) for q in query_labels],
                                                 [label_set(i) for i in item_labels])
    k = min(k, items.shape[0])
    per_query: list[float] = []
    top: list[list[int]] = []
    for q0 in range(0, queries.shape[0], block_size):
        scores = queries[q0:q0 + block_size] @ items.T
        rel = query_columns[q0:q0 + block_size] @ item_columns.T  # relevance, a block at a time like the scores
        order = _top_rows(scores, rel, k)
        got = _dcg_rows(rel.gather(1, order))
        best = _dcg_rows(rel.topk(k, dim=1).values)
        per_query.extend(torch.where(best > 0, got / best.clamp(min=1e-300), torch.nan).tolist())
        top.extend(order.tolist())
    valid = [value for value in per_query if value == value]
    if not valid:
        raise DataError("no query has a relevant image; nDCG is undefined")
    return NdcgResult(k=k, mean=sum(valid) / len(valid), per_query=per_query, top=top)


def label_means(query_labels: Sequence[Iterable[str]], per_query: Sequence[float]) -> dict[str, float]:
    """Mean nDCG per label: over the queries whose label set contains it, ``nan`` queries left out.

    Args:
        query_labels: Labels of each query (normalised with :func:`label_set`).
        per_query: nDCG of each query, in the same order (``nan`` where no image is relevant).

    Returns:
        Normalised label → mean nDCG, sorted by label; a label all of whose queries are ``nan``
        maps to ``nan``.

    Raises:
        DataError: The two sequences differ in length.
    """
    if len(query_labels) != len(per_query):
        raise DataError(f"need one nDCG value per query: {len(query_labels)} queries, {len(per_query)} values")
    values: dict[str, list[float]] = {}
    for labels, value in zip(query_labels, per_query):
        for label in label_set(labels):
            values.setdefault(label, [])
            if value == value:  # nan is the one value unequal to itself
                values[label].append(float(value))
    return {label: sum(found) / len(found) if found else float("nan") for label, found in sorted(values.items())}


def label_queries(rows_labels: Sequence[Iterable[str]]) -> tuple[list[str], list[frozenset[str]]]:
    """The distinct label sets of a split as query texts (see the module docstring).

    Args:
        rows_labels: Labels of every row (one label per row on single-label sets).

    Returns:
        ``(query texts, query label sets)``, sorted by text; rows without labels add no query.
    """
    sets = {label_set(labels) for labels in rows_labels}
    sets.discard(frozenset())
    queries = sorted((labels_to_text(sorted(labels)), labels) for labels in sets)
    return [text for text, _ in queries], [labels for _, labels in queries]
