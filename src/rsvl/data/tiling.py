"""Cut large images into square tiles and hand each tile the boxes that mostly lie inside it.

Large chips (HRSID's 800 px) shrink so much at the model's input size that small targets vanish;
tiles keep them visible. The rules, shared by every tiling adapter:

- Tiles are non-overlapping squares of ``size`` px laid from the top-left corner; an image whose
  side is not a multiple of ``size`` keeps only the whole tiles (the right/bottom margin is dropped).
- A box belongs to a tile when at least half of its area lies inside the tile (so a box cut exactly
  in two belongs to both halves); it is then clipped to the tile and shifted to tile coordinates.
- A box with less than half inside is left out of that tile; a box that no tile takes (split among
  several tiles, or mostly in the dropped margin) is lost, and adapters must report it.

Boxes use the manifest's pixel-edge convention (:mod:`rsvl.data.boxes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rsvl.data.boxes import make_box

MIN_SHARE_INSIDE = 0.5


@dataclass(frozen=True)
class Tile:
    """One square tile of an image: grid position and pixel offset of its top-left corner."""

    row: int
    col: int
    x: int
    y: int
    size: int

    def contains_share(self, box: dict) -> float:
        """Share of the box's area (0..1) that lies inside this tile.

        Args:
            box: A manifest box with positive area.
        """
        inside_w = min(box["x_max"], self.x + self.size) - max(box["x_min"], self.x)
        inside_h = min(box["y_max"], self.y + self.size) - max(box["y_min"], self.y)
        if inside_w <= 0 or inside_h <= 0:
            return 0.0
        return inside_w * inside_h / ((box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"]))

    def clip(self, box: dict) -> dict:
        """Clip a box to this tile and express it in the tile's own pixel coordinates.

        Args:
            box: A manifest box in image coordinates that overlaps the tile.
        """
        return make_box(max(box["x_min"], self.x) - self.x, max(box["y_min"], self.y) - self.y,
                        min(box["x_max"], self.x + self.size) - self.x,
                        min(box["y_max"], self.y + self.size) - self.y, box["label"])


def tile_grid(width: int, height: int, size: int) -> list[Tile]:
    """Lay whole, non-overlapping ``size`` px tiles over an image, row by row.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        size: Tile side in pixels (positive).

    Returns:
        ``(height // size) * (width // size)`` tiles; empty when the image is smaller than one tile.
    """
    if size <= 0:
        raise ValueError(f"tile size must be positive, got {size}")
    return [Tile(row, col, col * size, row * size, size)
            for row in range(height // size) for col in range(width // size)]


@dataclass(frozen=True)
class TileBoxes:
    """The boxes of one tile and the indices of the boxes left out of it."""

    boxes: list[dict]
    left_out: list[int]


def assign_boxes(boxes: list[dict], tile: Tile) -> TileBoxes:
    """Pick the boxes that belong to ``tile`` (at least half inside), clipped to it.

    Args:
        boxes: Valid boxes (positive area) in image coordinates.
        tile: The tile.

    Returns:
        The clipped boxes in tile coordinates, and the indices (into ``boxes``) of the boxes that
        overlap the tile by less than half.
    """
    kept, left_out = [], []
    for index, box in enumerate(boxes):
        share = tile.contains_share(box)
        if share >= MIN_SHARE_INSIDE:
            kept.append(tile.clip(box))
        elif share > 0:
            left_out.append(index)
    return TileBoxes(kept, left_out)


def unassigned_boxes(boxes: list[dict], tiles: list[Tile]) -> list[int]:
    """Indices of the boxes that no tile takes, so callers can report them as lost.

    Args:
        boxes: Valid boxes in image coordinates.
        tiles: The image's tiles (:func:`tile_grid`).
    """
    return [index for index, box in enumerate(boxes)
            if not any(tile.contains_share(box) >= MIN_SHARE_INSIDE for tile in tiles)]
