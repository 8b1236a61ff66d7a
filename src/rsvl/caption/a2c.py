"""Route A2C (annotation to caption): detection boxes become sentences.

Every sentence states the count of each class, so the quality filter can hold it to the boxes;
positions are the image thirds holding at least one box centre, sizes are area shares, and the
arrangement comes from the land mask (moored along the quay) or from the box spacing.
"""

from __future__ import annotations

import random
from collections import Counter

from rsvl.caption.geometry import REGIONS, box_centre, near_land, size_word, spread
from rsvl.data.synthetic import third_of
from rsvl.caption.numbers import number_to_words
from rsvl.caption.scene import Scene
from rsvl.caption.words import count_phrase, join_words, sentence

_SPREAD_WORDS = {
    "in a line": "lined up in a row",
    "clustered": "clustered together",
    "scattered": "scattered across the scene",
}


def _regions(scene: Scene, boxes: list[dict]) -> str:
    found = Counter(third_of(*box_centre(b), scene.width, scene.height) for b in boxes)
    if len(found) <= 4:
        return "the " + join_words([r for r in REGIONS if r in found])
    busiest = max(REGIONS, key=lambda r: found.get(r, 0))
    return f"several parts, with the most in the {busiest}"


def _sizes(scene: Scene, boxes: list[dict], thresholds: tuple[float, float]) -> str:
    found = Counter(size_word(b, scene.width, scene.height, thresholds) for b in boxes)
    words = [w for w in ("small", "medium", "large") if w in found]
    if len(boxes) == 1:
        return f"{words[0]} in size"
    if len(words) == 1:
        return f"all {words[0]}"
    return "of " + join_words(words) + " size"


def _at_sea(scene: Scene, boxes: list[dict]) -> str:
    return _SPREAD_WORDS[spread(boxes, scene.width, scene.height)].replace("across the scene", "at sea")


def _arrangement(scene: Scene, boxes: list[dict], margin: int) -> str:
    land = scene.land
    if land is not None and land.any():
        moored = sum(near_land(b, land, margin) for b in boxes)
        if moored == len(boxes):
            return "moored along the quay"
        if moored == 0:
            return "at sea, away from the coast" if len(boxes) == 1 else _at_sea(scene, boxes)
        return f", {number_to_words(moored)} of them moored along the quay and the rest at sea"
    if land is not None:
        return "on open sea" if len(boxes) == 1 else _at_sea(scene, boxes)
    if len(boxes) == 1:
        return "alone in the scene"
    if len(boxes) == 2:
        return "close together" if spread(boxes, scene.width, scene.height) == "clustered" else "far apart"
    return _SPREAD_WORDS[spread(boxes, scene.width, scene.height)]


def _class_templates(scene: Scene, label: str, boxes: list[dict], thresholds, margin) -> list[str]:
    phrase = count_phrase(len(boxes), label)
    verb = "is" if len(boxes) == 1 else "are"
    where = _regions(scene, boxes)
    sizes = _sizes(scene, boxes, thresholds)
    layout = _arrangement(scene, boxes, margin)
    return [
        f"there {verb} {phrase} in this SAR image",
        f"{phrase} in {where} of the image",
        f"a SAR image with {phrase}, {sizes}",
        f"{phrase} {layout}",
        f"the radar scene shows {phrase} {layout}, in {where}",
        f"{phrase}, {sizes}, {layout}",
    ]


def _empty_templates(scene: Scene, labels: list[str]) -> list[str]:
    nothing = join_words([count_phrase(0, label) for label in labels])
    land = scene.land
    backdrop = "" if land is None else " only open sea" if not land.any() else " only sea and coastline"
    return [
        f"there are {nothing} in this SAR image",
        f"{nothing} are visible in this radar scene",
        f"a SAR image with {nothing}" + (f",{backdrop}" if backdrop else ""),
    ]


def draft_a2c(scene: Scene, *, count: int, seed: int, thresholds: tuple[float, float],
              land_margin_px: int, labels: tuple[str, ...] = ("ship",)) -> list[str]:
    """Draft up to ``count`` different captions of a chip's boxes.

    Templates are shuffled by a generator seeded with ``(seed, sample_id)``, so the same seed gives
    the same captions and different chips get different sentence shapes. Chips with several
    classes get one clause per class joined into each caption.

    Args:
        scene: The chip's annotations.
        count: Captions wanted.
        seed: Run seed.
        thresholds: Area shares where medium and large sizes begin.
        land_margin_px: Distance to land under which a ship counts as moored.
        labels: Classes to state as absent when the chip has no boxes.

    Returns:
        Distinct sentences; empty when the scene's boxes are not annotated.
    """
    if not scene.boxes_known or count == 0:
        return []
    by_label: dict[str, list[dict]] = {}
    for box in scene.boxes:
        by_label.setdefault(box["label"], []).append(box)
    if not by_label:
        templates = _empty_templates(scene, list(labels))
    else:
        per_class = [_class_templates(scene, label, boxes, thresholds, land_margin_px)
                     for label, boxes in sorted(by_label.items())]
        templates = ["; ".join(parts) for parts in zip(*per_class)]
    rng = random.Random(f"{seed}:{scene.sample_id}:a2c")
    rng.shuffle(templates)
    return [sentence(text) for text in templates[:count]]
