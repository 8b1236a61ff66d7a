"""Plain float64 reference implementations of the evaluation metrics, for tests to compare against.

Each function reads its metric's definition literally, with explicit loops and no code from
``rsvl.evaluate``: a test feeds the same embeddings to the code under test and to these, and
expects the same numbers. Label and class names are normalised here the way the protocols say
(class names: ``_`` and ``/`` become spaces, lower case; label sets: stripped, lower case), written
out again rather than imported.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np


def unit_rows(matrix) -> np.ndarray:
    """``matrix`` as float64 with every row scaled to unit length."""
    rows = np.array(matrix, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def class_key(name: str) -> str:
    """A class name as zero-shot classification compares it: ``_``/``/`` as spaces, lower case, single spaces."""
    return " ".join(re.sub(r"[_/]", " ", str(name)).lower().split())


def zero_shot_reference(images, class_weights, labels: Sequence[str], class_names: Sequence[str]) -> dict:
    """Zero-shot top-1, per-class accuracy and confusion, one image at a time in float64.

    The prediction of an image is the class whose (unit) vector has the largest cosine with the
    (unit) image; on equal scores the class listed first wins.

    Args:
        images: (images, dim) image embeddings, any scale.
        class_weights: (classes, dim) class vectors, any scale.
        labels: True class name of every image.
        class_names: The classes, in ``class_weights`` order.

    Returns:
        ``{"top1", "per_class", "mean_per_class", "confusion", "predictions"}``: accuracies in
        percent, ``per_class`` keyed by normalised class name over classes that have an image,
        ``confusion[true][predicted]`` counts.
    """
    images, weights = unit_rows(images), unit_rows(class_weights)
    classes = [class_key(name) for name in class_names]
    confusion = [[0] * len(classes) for _ in classes]
    predictions = []
    for image, label in zip(images, labels, strict=True):
        scores = [float(np.dot(image, weight)) for weight in weights]
        best = 0
        for c in range(1, len(scores)):
            if scores[c] > scores[best]:
                best = c
        predictions.append(best)
        confusion[classes.index(class_key(label))][best] += 1
    correct = sum(confusion[c][c] for c in range(len(classes)))
    per_class = {classes[c]: 100.0 * confusion[c][c] / sum(confusion[c])
                 for c in range(len(classes)) if sum(confusion[c])}
    return {"top1": 100.0 * correct / len(predictions), "per_class": per_class,
            "mean_per_class": sum(per_class.values()) / len(per_class), "confusion": confusion,
            "predictions": predictions}


def label_set(labels: Iterable[str]) -> frozenset[str]:
    """Labels as nDCG compares them: stripped, lower case, blanks dropped."""
    return frozenset(str(label).strip().lower() for label in labels if str(label).strip())


def ndcg_reference(queries, images, query_labels: Sequence[Iterable[str]], image_labels: Sequence[Iterable[str]],
                   k: int) -> tuple[float, list[float]]:
    """nDCG@k from its textbook definition, one query at a time in float64.

    Relevance is the number of labels a query and an image share; the gain at rank ``i`` (1-based)
    is ``(2^rel - 1) / log2(i + 1)``. Images are ranked by cosine score, and on equal scores the
    less relevant image first (ties count against the query). IDCG@k ranks by relevance alone.
    ``k`` is capped at the number of images.

    Returns:
        The mean over queries with a relevant image, and every query's value (``nan`` where none is).
    """
    queries, images = unit_rows(queries), unit_rows(images)
    image_sets = [label_set(labels) for labels in image_labels]
    k = min(k, len(images))
    per_query = []
    for query, labels in zip(queries, query_labels, strict=True):
        wanted = label_set(labels)
        relevance = [len(wanted & found) for found in image_sets]
        scores = [float(np.dot(query, image)) for image in images]
        ranked = sorted(range(len(images)), key=lambda j: (-scores[j], relevance[j]))
        dcg = sum((2 ** relevance[j] - 1) / math.log2(rank + 2) for rank, j in enumerate(ranked[:k]))
        ideal = sorted(relevance, reverse=True)
        idcg = sum((2 ** rel - 1) / math.log2(rank + 2) for rank, rel in enumerate(ideal[:k]))
        per_query.append(dcg / idcg if idcg > 0 else math.nan)
    valid = [value for value in per_query if not math.isnan(value)]
    return sum(valid) / len(valid), per_query


def recall_reference(images, texts, owner: Sequence[int], keys: Sequence[str], tolerance: float,
                     ks=(1, 5, 10)) -> dict[str, float]:
    """Image↔text recall@K and mR in percent, one query at a time in float64.

    Text ``t`` is right for image ``i`` when ``i`` owns a text with ``t``'s key (a caption that
    several images carry is right for each of them). A query's rank is the number of wrong
    candidates scoring at least its best right one's score minus ``tolerance`` (ties count against
    it), and recall@K is the share of queries ranked below K; mR is the mean of the six recalls.
    """
    images, texts = unit_rows(images), unit_rows(texts)
    owned = [{keys[t] for t in range(len(texts)) if owner[t] == i} for i in range(len(images))]
    scores = texts @ images.T
    right = np.array([[keys[t] in owned[i] for i in range(len(images))] for t in range(len(texts))])
    t2i = [sum(scores[t, j] >= scores[t, right[t]].max() - tolerance for j in range(len(images)) if not right[t, j])
           for t in range(len(texts))]
    i2t = [sum(scores[t, i] >= scores[right[:, i], i].max() - tolerance for t in range(len(texts)) if not right[t, i])
           for i in range(len(images))]
    out = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * sum(rank < k for rank in ranks) / len(ranks)
    out["mR"] = sum(out.values()) / len(out)
    return out
