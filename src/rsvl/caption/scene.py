"""What the caption routes know about one image: its size, boxes and semantic mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WATER_NAMES = frozenset({"sea", "water", "ocean"})
LAND_NAMES = frozenset({"land"})


@dataclass
class Scene:
    """Annotations of one chip, the facts every caption is drafted from and checked against.

    Attributes:
        sample_id: Manifest id (seeds the per-image template choice).
        width: Chip width in pixels.
        height: Chip height in pixels.
        boxes: Manifest boxes (pixel edges, max exclusive).
        boxes_known: Whether an empty ``boxes`` list means "no objects" (a detection dataset)
            rather than "not annotated"; only then are counts stated and checked.
        mask: Semantic class map (height, width) of integers, or ``None``.
        mask_classes: Class name of each mask value.
    """

    sample_id: str
    width: int
    height: int
    boxes: list[dict] = field(default_factory=list)
    boxes_known: bool = True
    mask: np.ndarray | None = None
    mask_classes: dict[int, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of boxes per class label (empty when boxes are not annotated)."""
        found: dict[str, int] = {}
        for box in self.boxes:
            found[box["label"]] = found.get(box["label"], 0) + 1
        return found

    @property
    def land(self) -> np.ndarray | None:
        """Boolean land map when the mask has a land class (a sea/land mask), else ``None``."""
        if self.mask is None:
            return None
        values = [v for v, name in self.mask_classes.items() if name.lower() in LAND_NAMES]
        if not values:
            return None
        return np.isin(self.mask, values)

    def shares(self) -> dict[str, float]:
        """Fraction of mask pixels per class name (empty without a mask)."""
        if self.mask is None:
            return {}
        total = self.mask.size
        return {name: float((self.mask == value).sum()) / total for value, name in self.mask_classes.items()}
