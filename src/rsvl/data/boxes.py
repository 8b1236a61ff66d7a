"""Detection boxes in the manifest's one convention, and the rule that a box must obey.

Boxes are pixel-edge coordinates, as in COCO: ``x_min, y_min`` is the top-left corner of the first
pixel covered and ``x_max, y_max`` the bottom-right corner of the last one, so a box covering the
single pixel (3, 5) is ``(3, 5, 4, 6)`` and ``width = x_max - x_min``. Adapters whose source counts
the last pixel inclusively (HRSID's ``ship_boxes.json``) add 1 to ``x_max``/``y_max``.
"""

from __future__ import annotations

import math


def make_box(x_min: float, y_min: float, x_max: float, y_max: float, label: str) -> dict:
    """Build a manifest box (a dict matching :data:`rsvl.data.schema.BOX_TYPE`).

    Args:
        x_min: Left edge in pixels.
        y_min: Top edge in pixels.
        x_max: Right edge in pixels (exclusive of the next pixel).
        y_max: Bottom edge in pixels.
        label: Object class name.

    Returns:
        ``{"x_min", "y_min", "x_max", "y_max", "label"}`` with float coordinates.
    """
    return {"x_min": float(x_min), "y_min": float(y_min), "x_max": float(x_max),
            "y_max": float(y_max), "label": label}


def box_problem(box: dict, width: int, height: int) -> str | None:
    """Say what is wrong with a box, or return ``None`` when it is valid.

    A valid box has finite coordinates, ``0 <= x_min < x_max <= width``,
    ``0 <= y_min < y_max <= height`` and a non-empty label.

    Args:
        box: A manifest box.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        A sentence naming the broken condition, or ``None``.
    """
    coords = [box["x_min"], box["y_min"], box["x_max"], box["y_max"]]
    if not all(math.isfinite(c) for c in coords):
        return f"box {coords} has a non-finite coordinate"
    if not box["x_min"] < box["x_max"] or not box["y_min"] < box["y_max"]:
        return f"box {coords} is empty or inverted (needs x_min < x_max and y_min < y_max)"
    if box["x_min"] < 0 or box["y_min"] < 0 or box["x_max"] > width or box["y_max"] > height:
        return f"box {coords} lies outside the {width}x{height} image"
    if not box["label"]:
        return f"box {coords} has no label"
    return None
