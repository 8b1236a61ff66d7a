"""Blocked retrieval ranking against its floor: one plain ``texts @ images.T`` pass over the same blocks.

Prints, best of ``--repeats`` runs of each side by side in one process (same threads, same data):

* ``floor``: the matmuls alone, block by block, nothing kept;
* ``ranks``: :func:`rsvl.evaluate.retrieval.ranks_from_scores` over :class:`CosineScores`, one protocol;
* ``protocols``: :func:`rsvl.evaluate.retrieval.protocol_ranks`, merged and standard together;

and their ratios to the floor (issue goal: ``ranks`` ≤ 1.25×), then the memory a 100k images ×
500k captions plan would hold (computed from the sizes, not run). Then nDCG@k over the same images
and ``--ndcg-queries`` label-set queries, against its own floor (``queries @ images.T`` over the
same 64-query blocks): :func:`rsvl.evaluate.ndcg.ndcg_at_k` (``torch.topk`` per block) and the full
sort it replaced (two stable argsorts of every image and a sort of the relevances per block, written
out here), whose per-query values and top lists it must equal.

Usage: ``python bench/eval_retrieval.py [--images 6000 --captions 30000 --dim 512 --repeats 3
--ndcg-queries 3000 --ndcg-k 100]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from rsvl.evaluate.ndcg import QUERY_BLOCK, NdcgResult, _dcg_rows, _relevance, label_set, ndcg_at_k
from rsvl.evaluate.retrieval import (
    BLOCK_SIZE,
    CosineScores,
    protocol_ranks,
    ranks_from_scores,
)


def _data(images: int, captions: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int], list[str]]:
    """Unit embeddings, five captions an image (each near its image), one caption in ten shared by many images."""
    generator = torch.Generator().manual_seed(seed)
    image_embeddings = torch.nn.functional.normalize(torch.randn(images, dim, generator=generator), dim=-1)
    owner = [t % images for t in range(captions)]
    noise = torch.randn(captions, dim, generator=generator)
    text_embeddings = torch.nn.functional.normalize(image_embeddings[owner] + 0.8 * noise / dim**0.5 * 8, dim=-1)
    keys = [f"shared {t % 50}" if t % 10 == 0 else f"caption {t}" for t in range(captions)]
    return image_embeddings, text_embeddings, owner, keys


def _floor(scorer: CosineScores, block_size: int) -> None:
    for t0 in range(0, scorer.n_texts, block_size):
        for i0 in range(0, scorer.n_images, block_size):
            scorer.texts[t0:t0 + block_size] @ scorer.images[i0:i0 + block_size].T


def _best(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def plan_memory(images: int, captions: int, dim: int, block_size: int = BLOCK_SIZE,
                right_pairs_per_caption: float = 1.0) -> dict[str, float]:
    """Bytes one ranking holds for a plan of this size (float32 embeddings, one score block).

    Args:
        images: Images (score columns).
        captions: Captions (score rows).
        dim: Embedding width.
        block_size: Texts and images per block.
        right_pairs_per_caption: Right (text, image) pairs per caption (1 in the standard protocol).

    Returns:
        GiB per part and in all.
    """
    gib = 2.0**30
    parts = {
        "embeddings (float32)": 4.0 * (images + captions) * dim,
        "one score block (float32)": 4.0 * min(block_size, captions) * min(block_size, images),
        "one comparison (bool)": 1.0 * min(block_size, captions) * min(block_size, images),
        "bars and counts": (4.0 + 8.0) * (images + captions),
        "right pairs (2 × int64)": 16.0 * captions * right_pairs_per_caption,
    }
    out = {name: value / gib for name, value in parts.items()}
    out["total"] = sum(out.values())
    return out


LABELS = [f"label {i}" for i in range(24)]


def _label_data(images: int, queries: int, seed: int = 1) -> tuple[list[list[str]], list[list[str]]]:
    """Image labels (each of 24 labels with chance 0.15) and the queries' label sets (one to three labels)."""
    generator = torch.Generator().manual_seed(seed)
    image_labels = [[LABELS[i] for i in torch.nonzero(row < 0.15).flatten().tolist()]
                    for row in torch.rand(images, len(LABELS), generator=generator)]
    sizes = torch.randint(1, 4, (queries,), generator=generator).tolist()
    query_labels = [[LABELS[i] for i in torch.randperm(len(LABELS), generator=generator)[:size].tolist()]
                    for size in sizes]
    return image_labels, query_labels


def _ndcg_floor(queries: torch.Tensor, images: torch.Tensor) -> None:
    queries = torch.nn.functional.normalize(queries, dim=-1)
    images = torch.nn.functional.normalize(images, dim=-1)
    for q0 in range(0, queries.shape[0], QUERY_BLOCK):
        queries[q0:q0 + QUERY_BLOCK] @ images.T


def full_sort_ndcg(queries: torch.Tensor, images: torch.Tensor, query_labels: list[list[str]],
                   image_labels: list[list[str]], k: int) -> NdcgResult:
    """nDCG@k as it was before ``torch.topk``: every image sorted twice per query block (the peer)."""
    queries = torch.nn.functional.normalize(queries.float(), dim=-1)
    images = torch.nn.functional.normalize(images.float(), dim=-1)
    relevance = _relevance([label_set(q) for q in query_labels], [label_set(i) for i in image_labels])
    k = min(k, images.shape[0])
    per_query: list[float] = []
    top: list[list[int]] = []
    for q0 in range(0, queries.shape[0], QUERY_BLOCK):
        scores = queries[q0:q0 + QUERY_BLOCK] @ images.T
        rel = relevance[q0:q0 + QUERY_BLOCK]
        by_relevance = rel.argsort(dim=1, stable=True)
        order = by_relevance.gather(1, scores.gather(1, by_relevance).argsort(dim=1, descending=True, stable=True))
        got = _dcg_rows(rel.gather(1, order[:, :k]))
        best = _dcg_rows(rel.sort(dim=1, descending=True).values[:, :k])
        per_query.extend(torch.where(best > 0, got / best.clamp(min=1e-300), torch.nan).tolist())
        top.extend(order[:, :k].tolist())
    valid = [value for value in per_query if value == value]
    return NdcgResult(k=k, mean=sum(valid) / len(valid), per_query=per_query, top=top)


def _same(a: NdcgResult, b: NdcgResult) -> bool:
    same_values = all(x == y or (x != x and y != y) for x, y in zip(a.per_query, b.per_query))
    return a.top == b.top and same_values and len(a.per_query) == len(b.per_query)


def _ndcg_table(images: torch.Tensor, queries: int, k: int, repeats: int) -> None:
    """Time nDCG@k (top-k and full sort) against its matmul floor, and check they agree."""
    image_labels, query_labels = _label_data(images.shape[0], queries)
    generator = torch.Generator().manual_seed(2)
    # random queries: what the ranking means does not change what it costs
    query_embeddings = torch.randn(queries, images.shape[1], generator=generator)
    print(f"nDCG@{k}, {images.shape[0]} images x {queries} label-set queries x {images.shape[1]} d, "
          f"{QUERY_BLOCK} queries a block, best of {repeats}")
    floor, floor_all = _best(lambda: _ndcg_floor(query_embeddings, images), repeats)
    new, new_all = _best(lambda: ndcg_at_k(query_embeddings, images, query_labels, image_labels, k), repeats)
    old, old_all = _best(lambda: full_sort_ndcg(query_embeddings, images, query_labels, image_labels, k), repeats)
    same = _same(ndcg_at_k(query_embeddings, images, query_labels, image_labels, k),
                 full_sort_ndcg(query_embeddings, images, query_labels, image_labels, k))
    print(f"{'what':<44} {'best s':>8} {'ratio':>7}  all runs (s)")
    for name, best, runs in (("floor: queries @ images.T over the same blocks", floor, floor_all),
                             ("ndcg_at_k (torch.topk)", new, new_all),
                             ("full sort (before)", old, old_all)):
        print(f"{name:<44} {best:8.3f} {best / floor:6.2f}x  {', '.join(f'{t:.3f}' for t in runs)}")
    print(f"top-k and full sort give the same per-query values and top lists: {same}")


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--captions", type=int, default=30000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=BLOCK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ndcg-queries", type=int, default=3000)
    parser.add_argument("--ndcg-k", type=int, default=100)
    args = parser.parse_args()

    images, texts, owner, keys = _data(args.images, args.captions, args.dim)
    scorer = CosineScores(texts, images)
    print(f"retrieval ranking, {args.images} images x {args.captions} captions x {args.dim} d, "
          f"block {args.block_size}, {torch.get_num_threads()} threads, best of {args.repeats}")
    floor, floor_all = _best(lambda: _floor(scorer, args.block_size), args.repeats)
    ranks, ranks_all = _best(lambda: ranks_from_scores(scorer, owner, block_size=args.block_size), args.repeats)
    both, both_all = _best(lambda: protocol_ranks(images, texts, owner, keys, block_size=args.block_size),
                           args.repeats)
    print(f"{'what':<44} {'best s':>8} {'ratio':>7}  all runs (s)")
    for name, best, runs in (("floor: texts @ images.T over the same blocks", floor, floor_all),
                             ("ranks_from_scores (one protocol)", ranks, ranks_all),
                             ("protocol_ranks (merged + standard)", both, both_all)):
        print(f"{name:<44} {best:8.3f} {best / floor:6.2f}x  {', '.join(f'{t:.3f}' for t in runs)}")
    print("memory of a 100k images x 500k captions x 512 d plan (computed, not run), GiB:")
    for name, gib in plan_memory(100_000, 500_000, 512, args.block_size).items():
        print(f"  {name:<28} {gib:8.3f}")
    _ndcg_table(images, args.ndcg_queries, args.ndcg_k, args.repeats)


if __name__ == "__main__":
    main()
