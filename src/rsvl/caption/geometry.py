"""Where boxes sit, how big they are and how they are arranged, in the words captions use.

Positions are the nine cells of a 3x3 grid over the chip (image thirds); sizes are a box's area
as a share of the chip's; arrangement comes from a land mask when one is known (ships touching
or next to land are moored along the coast) and otherwise from nearest-neighbour distances.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


REGIONS = ("upper left", "upper middle", "upper right", "middle left", "center", "middle right",
           "lower left", "lower middle", "lower right")
"""The nine region phrases, row by row; no phrase is a substring of another."""

SIZES = ("small", "medium", "large")
"""The size words of :func:`size_word`, smallest first."""


def box_centre(box: dict) -> tuple[float, float]:
    """Return the centre (x, y) of a manifest box in pixels."""
    return (box["x_min"] + box["x_max"]) / 2, (box["y_min"] + box["y_max"]) / 2


def size_word(box: dict, width: float, height: float, thresholds: tuple[float, float]) -> str:
    """Call a box small, medium or large by its area share of the chip.

    Args:
        box: Manifest box.
        width: Chip width.
        height: Chip height.
        thresholds: Area shares (fractions) where medium and large begin.

    Returns:
        ``"small"``, ``"medium"`` or ``"large"``.
    """
    share = (box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"]) / (width * height)
    return "small" if share < thresholds[0] else "medium" if share < thresholds[1] else "large"


def box_sizes(boxes: list[dict], width: float, height: float, thresholds: tuple[float, float]) -> Counter:
    """Count boxes per :func:`size_word`; captions are drafted from and checked against this.

    Args:
        boxes: Manifest boxes.
        width: Chip width.
        height: Chip height.
        thresholds: Area shares (fractions) where medium and large begin.

    Returns:
        Boxes per size word.
    """
    return Counter(size_word(b, width, height, thresholds) for b in boxes)


def near_land(box: dict, land: np.ndarray, margin: int) -> bool:
    """Whether land lies inside a box grown by ``margin`` pixels (the ship touches or nears land).

    Args:
        box: Manifest box.
        land: Boolean (height, width) land mask.
        margin: Pixels added on every side.
    """
    height, width = land.shape
    x0 = max(int(math.floor(box["x_min"])) - margin, 0)
    y0 = max(int(math.floor(box["y_min"])) - margin, 0)
    x1 = min(int(math.ceil(box["x_max"])) + margin, width)
    y1 = min(int(math.ceil(box["y_max"])) + margin, height)
    return bool(land[y0:y1, x0:x1].any())


def spread(boxes: list[dict], width: float, height: float) -> str:
    """Say how a group of boxes is laid out: ``"in a line"``, ``"clustered"`` or ``"scattered"``.

    Boxes are in a line when their centres' second principal axis is under 8% of the first and the
    group spans a quarter of the chip; clustered when the median nearest-neighbour distance is under
    12% of the chip diagonal; scattered otherwise. Fewer than three boxes are never "in a line".

    Args:
        boxes: Two or more manifest boxes.
        width: Chip width.
        height: Chip height.
    """
    centres = np.array([box_centre(b) for b in boxes], dtype=float)
    diagonal = math.hypot(width, height)
    if len(centres) >= 3:
        spreads = np.sqrt(np.maximum(np.linalg.eigvalsh(np.cov(centres.T)), 0.0))
        if spreads[1] > 0 and spreads[0] < 0.08 * spreads[1] and spreads[1] * 4 > 0.25 * diagonal:
            return "in a line"
    distances = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distances, np.inf)
    return "clustered" if float(np.median(distances.min(axis=1))) < 0.12 * diagonal else "scattered"


def land_sides(land: np.ndarray) -> list[str]:
    """Name the chip edges along which land lies (``"north"`` = top row), most land first.

    An edge counts when at least 40% of the band of rows/columns next to it (a sixth of the chip)
    is land.

    Args:
        land: Boolean (height, width) mask.
    """
    height, width = land.shape
    band_h, band_w = max(height // 6, 1), max(width // 6, 1)
    shares = {
        "north": land[:band_h].mean(), "south": land[-band_h:].mean(),
        "west": land[:, :band_w].mean(), "east": land[:, -band_w:].mean(),
    }
    return [side for side, share in sorted(shares.items(), key=lambda item: (-item[1], item[0]))
            if share >= 0.4]
