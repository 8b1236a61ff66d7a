"""Scoring VQA models: exact-match accuracy per question type and overall, with baselines.

Answers are compared after stripping blanks and lower-casing. Accuracy is the share of questions
answered exactly (overall: over all questions, so types with more questions weigh more; RSVQA's
"overall accuracy"). The random baseline is the *expected* accuracy of answering uniformly at
random from each question's closed answer set, computed exactly rather than sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from rsvl.data.media import load_raster
from rsvl.data.store import relative_to_dataset
from rsvl.errors import DataError
from rsvl.vqa.llava import qa_pairs
from rsvl.vqa.models import VqaModel
from rsvl.vqa.questions import question_type

OTHER = "other"
"""Type of a question :func:`rsvl.vqa.questions.question_type` does not recognise."""


@dataclass(frozen=True)
class VqaScores:
    """Accuracy of one model (or baseline) on one set of questions.

    Attributes:
        overall: Share of all questions answered exactly, in [0, 1].
        per_type: Accuracy of each question type present.
        support: Number of questions of each type.
        predictions: ``(record id, question, truth, answer)`` for every question (empty for baselines).
    """

    overall: float
    per_type: dict[str, float]
    support: dict[str, int]
    predictions: list[tuple[str, str, str, str]] = field(default_factory=list)


def normalise_answer(answer: str) -> str:
    """Answers match after stripping blanks and lower-casing."""
    return " ".join(str(answer).lower().split())


def load_images(records: Sequence[dict[str, Any]], image_root: str | Path) -> list[np.ndarray]:
    """Load each record's image (relative to ``image_root``) as float32 (bands, H, W).

    Raises:
        DataError: A path leaves ``image_root`` or the image cannot be read (the record is named).
    """
    images = []
    for record in records:
        try:
            images.append(load_raster(relative_to_dataset(Path(image_root), record["image"])))
        except DataError as err:
            raise DataError(f"record {record['id']!r}: {err}") from err
    return images


class RecordImages(Sequence):
    """The records' images, read from disk only when indexed: a slice reads just its own images.

    Embedding a whole train split (tens of thousands of tiles) through
    :meth:`rsvl.vqa.models.ClipImageEncoder.embed_sequence` so holds one batch of float32
    images at a time instead of all of them.

    Args:
        records: LLaVA records.
        image_root: Folder their ``image`` paths are relative to (the dataset directory).
    """

    def __init__(self, records: Sequence[dict[str, Any]], image_root: str | Path) -> None:
        self.records, self.image_root = records, Path(image_root)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return load_images(self.records[index], self.image_root)
        return load_images([self.records[index]], self.image_root)[0]


def _scores(hits: list[tuple[str, float]], predictions: list[tuple[str, str, str, str]]) -> VqaScores:
    if not hits:
        raise DataError("no questions to score")
    support: dict[str, int] = {}
    right: dict[str, float] = {}
    for kind, hit in hits:
        support[kind] = support.get(kind, 0) + 1
        right[kind] = right.get(kind, 0.0) + float(hit)
    return VqaScores(overall=sum(right.values()) / len(hits),
                     per_type={kind: right[kind] / support[kind] for kind in sorted(support)},
                     support=dict(sorted(support.items())), predictions=predictions)


def evaluate_vqa(model: VqaModel, records: Sequence[dict[str, Any]], image_root: str | Path,
                 batch_records: int = 32) -> VqaScores:
    """Ask ``model`` every question of ``records`` and score exact-match accuracy.

    Args:
        model: Any :class:`rsvl.vqa.models.VqaModel`.
        records: LLaVA records (the test split's).
        image_root: Folder the records' ``image`` paths are relative to (the dataset directory).
        batch_records: Records whose images are loaded and answered per call.

    Returns:
        Overall and per-type accuracy, support and every prediction.

    Raises:
        DataError: No questions, or the model returns the wrong number of answers.
    """
    hits: list[tuple[str, float]] = []
    predictions: list[tuple[str, str, str, str]] = []
    for start in range(0, len(records), batch_records):
        chunk = records[start:start + batch_records]
        images = load_images(chunk, image_root)
        flat = [(record["id"], image, q, a) for record, image in zip(chunk, images) for q, a in qa_pairs(record)]
        answers = model.answer([f[1] for f in flat], [f[2] for f in flat])
        if len(answers) != len(flat):
            raise DataError(f"{type(model).__name__} returned {len(answers)} answers for {len(flat)} questions")
        for (record_id, _, question, truth), answer in zip(flat, answers):
            hits.append((question_type(question) or OTHER, float(normalise_answer(answer) == normalise_answer(truth))))
            predictions.append((record_id, question, truth, answer))
    return _scores(hits, predictions)


def random_baseline(records: Sequence[dict[str, Any]], vocabulary: dict[str, list[str]]) -> VqaScores:
    """Expected accuracy of a uniformly random answer from each question's closed answer set.

    Args:
        records: The records scored (test split).
        vocabulary: Candidate answers per question (:func:`rsvl.vqa.models.answer_vocabulary` of
            the train split); a question absent from it, or a truth outside its set, scores 0.

    Returns:
        Expected accuracies (``predictions`` empty).
    """
    hits: list[tuple[str, float]] = []
    for record in records:
        for question, truth in qa_pairs(record):
            candidates = {normalise_answer(a) for a in vocabulary.get(question, [])}
            chance = 1.0 / len(candidates) if normalise_answer(truth) in candidates else 0.0
            hits.append((question_type(question) or OTHER, chance))
    return _scores(hits, [])


def format_report(scores: dict[str, VqaScores]) -> str:
    """A plain-text table: one row per model/baseline, columns overall and each type.

    Args:
        scores: ``{name: scores}``, rows in this order.

    Returns:
        The table, accuracies in percent, support in the header.
    """
    kinds = sorted({kind for result in scores.values() for kind in result.per_type})
    support = next(iter(scores.values())).support if scores else {}
    header = ["model", "overall"] + [f"{k} (n={support.get(k, 0)})" for k in kinds]
    rows = [[name, f"{100 * r.overall:.1f}"] + [f"{100 * r.per_type[k]:.1f}" if k in r.per_type else "-"
                                                  for k in kinds] for name, r in scores.items()]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in [header, *rows])
