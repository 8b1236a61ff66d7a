"""Question/answer pairs generated from detection boxes and land/sea masks (SAR VQA).

Question types, each asked only where the annotations decide the answer:

* ``presence``: "Is there a ship in the image?" → ``yes``/``no`` (any box of that label).
* ``count``: "How many ships are there in the image?" → the exact number of boxes as digits
  (``"0"``, ``"3"``, ``"47"``). No bucketing: the answer is the annotation's count, as in RSVQA,
  so it can be checked against the source boxes; a closed-set model can only answer counts it
  has seen in training, which is its honest limit.
* ``position``: "Where is the largest ship?" → the 3×3 image third of the centre of the
  largest box by area (``"upper left"``, ``"center"``, ``"lower middle"``... the names the
  SAR-Narrator captions use); asked only when there is at least one box.
* ``land_sea``: "Is the image mostly land or sea?" → ``land`` when strictly more than half of
  the mask's pixels are land, else ``sea``; asked only when the dataset declares its mask values
  as sea/land (``dataset.json`` ``mask_values``, e.g. the synthetic SAR chips: 0 sea, 1 land).
  HRSID's instance masks are not land/sea masks, so its chips get no such question.
  On the synthetic chips land covers at most about half of a coastal chip, so this answer is
  almost always ``sea`` (a degenerate type there; kept because real harbour scenes vary).
* ``land``: "Is there any land in the image?" → ``yes`` when at least :data:`MIN_LAND_SHARE` of
  the mask is land, else ``no``; same condition as ``land_sea``. This is the informative mask
  question on the synthetic chips (open sea vs coast).

Presence, count and position are asked for every box label found in the dataset, so a chip
with no ship still gets "Is there a ship?" → ``no``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from rsvl.caption.words import plural_noun
from rsvl.data.dataset import ManifestDataset
from rsvl.data.media import load_raster
from rsvl.data.schema import SPLITS
from rsvl.data.store import relative_to_dataset
from rsvl.data.synthetic import third_of
from rsvl.errors import DataError
from rsvl.vqa.llava import make_record

QUESTION_TYPES: Final[tuple[str, ...]] = ("presence", "count", "position", "land", "land_sea")
LAND_QUESTION: Final[str] = "Is there any land in the image?"
LAND_SEA_QUESTION: Final[str] = "Is the image mostly land or sea?"
MIN_LAND_SHARE: Final[float] = 0.01
"""Share of land pixels from which the image counts as showing land (ignores a few stray pixels)."""


@dataclass(frozen=True)
class QA:
    """One generated question, its answer and its type."""

    question: str
    answer: str
    type: str


def presence_question(label: str) -> str:
    """The presence question for a label."""
    article = "an" if label[:1].lower() in "aeiou" else "a"
    return f"Is there {article} {label} in the image?"


def count_question(label: str) -> str:
    """The count question for a label."""
    return f"How many {plural_noun(label)} are there in the image?"


def position_question(label: str) -> str:
    """The position question for a label."""
    return f"Where is the largest {label}?"


_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("presence", re.compile(r"^Is there an? (?P<label>.+) in the image\?$")),
    ("count", re.compile(r"^How many (?P<plural>.+) are there in the image\?$")),
    ("position", re.compile(r"^Where is the largest (?P<label>.+)\?$")),
)


def parse_question(question: str) -> tuple[str | None, str | None]:
    """Recognise a generated question (the LLaVA format has no type field).

    Args:
        question: Question text, ``<image>`` token already removed.

    Returns:
        ``(type, noun)``: one of :data:`QUESTION_TYPES` (``None`` for a question this module
        does not write) and the object noun it names (plural for counts; ``None`` for land/sea).
    """
    if question == LAND_SEA_QUESTION:
        return "land_sea", None
    if question == LAND_QUESTION:
        return "land", None
    for kind, pattern in _PATTERNS:
        match = pattern.match(question)
        if match:
            return kind, match.group(1)
    return None, None


def question_type(question: str) -> str | None:
    """The type of a generated question, or ``None`` (see :func:`parse_question`)."""
    return parse_question(question)[0]


def _area(box: dict) -> float:
    return (box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"])


def box_questions(boxes: list[dict], labels: list[str], width: int, height: int) -> list[QA]:
    """Presence, count and position questions of one image.

    Args:
        boxes: Manifest boxes (pixel edges, max exclusive).
        labels: Every label to ask about (the dataset's labels, so absent ones get ``no``/``0``).
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        Presence and count for every label, position for labels with at least one box.
    """
    out: list[QA] = []
    for label in labels:
        mine = [box for box in boxes if box["label"] == label]
        out.append(QA(presence_question(label), "yes" if mine else "no", "presence"))
        out.append(QA(count_question(label), str(len(mine)), "count"))
        if mine:
            largest = max(mine, key=_area)
            centre = ((largest["x_min"] + largest["x_max"]) / 2, (largest["y_min"] + largest["y_max"]) / 2)
            out.append(QA(position_question(label), third_of(*centre, width, height), "position"))
    return out


def mask_questions(mask: np.ndarray, land_value: float) -> list[QA]:
    """The land and land/sea questions of one image from its sea/land mask.

    Args:
        mask: Mask array, any shape.
        land_value: The value marking land.

    Returns:
        ``land`` (any land: at least :data:`MIN_LAND_SHARE`) then ``land_sea`` (``land`` when
        strictly more than half the pixels are land, else ``sea``).
    """
    share = float(np.mean(mask == land_value))
    return [QA(LAND_QUESTION, "yes" if share >= MIN_LAND_SHARE else "no", "land"),
            QA(LAND_SEA_QUESTION, "land" if share > 0.5 else "sea", "land_sea")]


def land_value_of(meta: dict[str, Any]) -> float | None:
    """The mask value meaning land when ``dataset.json`` declares a sea/land mask, else ``None``."""
    values = meta.get("mask_values") or {}
    names = {str(name).lower(): key for key, name in values.items()}
    if "land" not in names or "sea" not in names:
        return None
    return float(names["land"])


def vqa_from_dataset(dataset_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Generate LLaVA VQA records for every image of a detection dataset's split.

    Args:
        dataset_dir: Canonical dataset directory with a ``boxes`` column (and optionally a
            sea/land ``mask`` declared in ``dataset.json``).
        split: ``train``/``val``/``test``, or ``None`` for every row.

    Returns:
        One record per row with an image, in manifest order; ``image`` is relative to
        ``dataset_dir``. Question order: presence, count, position per label, then land and land/sea.

    Raises:
        DataError: Unknown split, a row without an image, or a mask whose size differs from the
            image (the sample id is named).
    """
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS} or None")
    dataset = ManifestDataset(dataset_dir, split=split, load_media=False)
    everything = ManifestDataset(dataset_dir, load_media=False).frame
    labels = sorted({box["label"] for boxes in everything["boxes"] if boxes is not None for box in boxes})
    land_value = land_value_of(dataset.meta)
    records = []
    for index in range(len(dataset)):
        row = dataset.record(index)
        where = f"{dataset.root} sample {row['sample_id']!r}"
        if row["image"] is None:
            raise DataError(f"{where}: VQA generation needs an image")
        boxes = list(row["boxes"]) if row["boxes"] is not None else []
        qas = box_questions(boxes, labels, int(row["width"]), int(row["height"]))
        if land_value is not None and row["mask"] is not None:
            mask = load_raster(relative_to_dataset(dataset.root, row["mask"]))
            if mask.shape[-2:] != (int(row["height"]), int(row["width"])):
                raise DataError(f"{where}: mask is {mask.shape[-1]}x{mask.shape[-2]}, "
                                f"image is {row['width']}x{row['height']}")
            qas.extend(mask_questions(mask, land_value))
        if qas:
            records.append(make_record(row["sample_id"], row["image"], [(qa.question, qa.answer) for qa in qas]))
    return records
