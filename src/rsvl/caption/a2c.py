"""Route A2C (annotation to caption): detection boxes become sentences.

Every sentence states the count of each class, so the quality filter can hold it to the boxes;
positions are the image thirds holding at least one box centre, sizes are area shares, and the
arrangement comes from the land mask (moored along the quay) or from the box spacing.
"""

from __future__ import annotations

import random
from collections import Counter

from rsvl.caption.geometry import REGIONS, SIZES, box_centre, box_sizes, near_land, spread
from rsvl.data.synthetic import third_of
from rsvl.caption.numbers import number_to_words
from rsvl.caption.scene import Scene
from rsvl.caption.words import count_phrase, join_words, sentence

_SPREAD_WORDS = {
    "in a line": "lined up in a row",
    "clustered": "clustered together",
    "scattered": "scattered across the scene",
}


def region_phrase(found: Counter) -> str:
    """Name the image thirds holding box centres.

    Args:
        found: Box centres per region phrase (:data:`~rsvl.caption.geometry.REGIONS`).

    Returns:
        ``"the upper left and center"``, or for more than four regions
        ``"several parts, with the most in the <busiest>"``.
    """
    if len(found) <= 4:
        return "the " + join_words([r for r in REGIONS if r in found])
    busiest = max(REGIONS, key=lambda r: found.get(r, 0))
    return f"several parts, with the most in the {busiest}"


def size_phrase(found: Counter, count: int) -> str:
    """Say the sizes of a class's boxes.

    Args:
        found: Boxes per size word (``small``, ``medium``, ``large``).
        count: Number of boxes.

    Returns:
        ``"small in size"`` (one box), ``"all small"`` or ``"of small and large size"``.
    """
    words = [w for w in SIZES if w in found]
    if count == 1:
        return f"{words[0]} in size"
    if len(words) == 1:
        return f"all {words[0]}"
    return "of " + join_words(words) + " size"


def layout_phrase(count: int, land: str | None, moored: int, spread_kind: str | None) -> str:
    """Say how a class's boxes are arranged.

    Args:
        count: Number of boxes.
        land: ``None`` without a sea/land mask, ``"none"`` for a mask without land, else ``"some"``.
        moored: Boxes next to land (only read when ``land == "some"``).
        spread_kind: :func:`~rsvl.caption.geometry.spread` of the boxes (``None`` for one box).

    Returns:
        The arrangement words, for example ``"moored along the quay"`` or ``"scattered at sea"``.
    """
    at_sea = None if spread_kind is None else _SPREAD_WORDS[spread_kind].replace("across the scene", "at sea")
    if land == "some":
        if moored == count:
            return "moored along the quay"
        if moored == 0:
            return "at sea, away from the coast" if count == 1 else at_sea
        return f", {number_to_words(moored)} of them moored along the quay and the rest at sea"
    if land == "none":
        return "on open sea" if count == 1 else at_sea
    if count == 1:
        return "alone in the scene"
    if count == 2:
        return "close together" if spread_kind == "clustered" else "far apart"
    return _SPREAD_WORDS[spread_kind]


def land_state(scene: Scene) -> str | None:
    """Return ``None`` without a sea/land mask, ``"none"`` when it has no land, else ``"some"``."""
    land = scene.land
    if land is None:
        return None
    return "some" if land.any() else "none"


def _layout(scene: Scene, boxes: list[dict], margin: int) -> str:
    state = land_state(scene)
    moored = sum(near_land(b, scene.land, margin) for b in boxes) if state == "some" else 0
    kind = spread(boxes, scene.width, scene.height) if len(boxes) > 1 else None
    return layout_phrase(len(boxes), state, moored, kind)


def class_templates(label: str, count: int, where: str, sizes: str, layout: str) -> list[str]:
    """Fill the sentence shapes of one class.

    Args:
        label: Box class noun.
        count: Number of boxes (one or more).
        where: :func:`region_phrase` output.
        sizes: :func:`size_phrase` output.
        layout: :func:`layout_phrase` output.

    Returns:
        Six unfinished sentences (see :func:`~rsvl.caption.words.sentence`).
    """
    phrase = count_phrase(count, label)
    verb = "is" if count == 1 else "are"
    return [
        f"there {verb} {phrase} in this SAR image",
        f"{phrase} in {where} of the image",
        f"a SAR image with {phrase}, {sizes}",
        f"{phrase} {layout}",
        f"the radar scene shows {phrase} {layout}, in {where}",
        f"{phrase}, {sizes}, {layout}",
    ]


def _class_templates(scene: Scene, label: str, boxes: list[dict], thresholds, margin) -> list[str]:
    where = region_phrase(Counter(third_of(*box_centre(b), scene.width, scene.height) for b in boxes))
    sizes = size_phrase(box_sizes(boxes, scene.width, scene.height, thresholds), len(boxes))
    return class_templates(label, len(boxes), where, sizes, _layout(scene, boxes, margin))


def empty_templates(labels: list[str], land: str | None) -> list[str]:
    """Fill the sentence shapes of a chip without boxes.

    Args:
        labels: Classes to state as absent.
        land: :func:`land_state` of the chip.

    Returns:
        Three unfinished sentences.
    """
    nothing = join_words([count_phrase(0, label) for label in labels])
    backdrop = {None: "", "none": " only open sea", "some": " only sea and coastline"}[land]
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
        templates = empty_templates(list(labels), land_state(scene))
    else:
        per_class = [_class_templates(scene, label, boxes, thresholds, land_margin_px)
                     for label, boxes in sorted(by_label.items())]
        templates = ["; ".join(parts) for parts in zip(*per_class)]
    rng = random.Random(f"{seed}:{scene.sample_id}:a2c")
    rng.shuffle(templates)
    return [sentence(text) for text in templates[:count]]
