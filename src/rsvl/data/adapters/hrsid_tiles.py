"""HRSID SAR ship chips cut into 200 px tiles, so ships stay visible at the model's input size.

Same source layout, parsing and shared quarantine rules as ``hrsid-boxes``
(:mod:`rsvl.data.adapters.hrsid_boxes`, including ``not_listed`` and ``unique_id``); each accepted
chip then becomes tiles by the rules of :mod:`rsvl.data.tiling`, with these rules of its own:

- Tiles are non-overlapping 200 px squares from the top-left corner, so an 800×800 chip gives
  4×4 = 16 tiles; a chip whose side is not a multiple of 200 keeps only its whole tiles (the
  right/bottom margin is dropped and listed under ``tiling.margins`` in ``dataset.json``), and a
  chip smaller than one tile is quarantined (``tile_size``).
- ``image_decode`` also covers an instance mask that is not 1 band or 3/4 bands of 8 bits (it could
  not be cut without loss).
- A ship box belongs to a tile when at least half of its area lies inside it; it is clipped to the
  tile in pixel-edge coordinates. Parts under half are left out of that tile: ``dataset.json``
  lists them under ``tiling.left_out`` (tile id -> indices into the chip's ``ship_boxes.json``
  list) and counts them in ``tiling.box_parts_left_out``. A box that no tile takes is quarantined
  (``tile_box_lost``, one record per box).
- The instance mask, when present, is cut the same way (``mask`` of each tile).
- Tiles without ships are kept: they are real negatives (empty sea or harbour).

Rows: ``sample_id`` is ``<chip stem>_r<row>_c<col>`` (tile row and column, from 0), ``source``
is ``ship_boxes.json:<chip>#x=<left>,y=<top>,size=200`` (the source chip and the tile's pixel
offset in it), and the files table names the source chip of every tile image.

Split: every tile takes its chip's split (:func:`rsvl.data.adapters.class_folder.hash_split` of the
chip's file name, as ``hrsid-boxes``), so tiles of one chip never straddle train and test.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from rsvl.data.adapters import register
from rsvl.data.adapters.hrsid_boxes import MASK_SUFFIX, HrsidChip, hrsid_chips, read_listing, single_band_png
from rsvl.data.media import load_raster
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.data.tiling import Tile, assign_boxes, tile_grid, unassigned_boxes
from rsvl.errors import DataError

TILE_PX = 200


def tile_id(chip_stem: str, tile: Tile) -> str:
    """Sample id of a tile: the chip's stem with the tile's grid row and column.

    Args:
        chip_stem: The source chip's file stem.
        tile: The tile.
    """
    return f"{chip_stem}_r{tile.row}_c{tile.col}"


def check_mask(mask: np.ndarray, path: Path) -> None:
    """Refuse an instance mask that cannot be cut and re-encoded without loss.

    Args:
        mask: The decoded mask (bands, height, width).
        path: Its file, named in the error.

    Raises:
        DataError: The mask is not one band (ids) or three/four 8-bit bands (one colour per ship).
    """
    if mask.shape[0] != 1 and (mask.shape[0] not in (3, 4) or mask.max(initial=0) > 255):
        raise DataError(f"{path}: an instance mask must be 1 band or 3/4 bands of 8 bits, got "
                        f"{mask.shape[0]} bands up to {mask.max(initial=0):g}")


def mask_png(mask: np.ndarray) -> bytes:
    """Encode a cut of an instance mask (bands, height, width) losslessly as PNG.

    Args:
        mask: A cut of a mask that passed :func:`check_mask`.

    Returns:
        The PNG bytes.
    """
    if mask.shape[0] == 1:
        return single_band_png(mask[0])
    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(mask, 0, -1).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Tally:
    """What tiling kept and left out, written to ``dataset.json`` under ``tiling``."""

    def __init__(self) -> None:
        self.chips = self.tiles = self.empty_tiles = 0
        self.boxes_in_chips = self.boxes_in_tiles = self.parts_left_out = self.lost = 0
        self.left_out: dict[str, list[int]] = {}
        self.margins: dict[str, dict[str, int]] = {}

    def as_meta(self) -> dict:
        return {
            "tile_px": TILE_PX,
            "rule": "non-overlapping tiles from the top-left, whole tiles only; a box belongs to a tile "
                    "when at least half its area is inside, clipped to the tile",
            "chips": self.chips,
            "tiles": self.tiles,
            "tiles_without_ships": self.empty_tiles,
            "boxes_in_chips": self.boxes_in_chips,
            "boxes_in_tiles": self.boxes_in_tiles,
            "box_parts_left_out": self.parts_left_out,
            "boxes_in_no_tile": self.lost,
            "left_out": self.left_out,
            "margins": self.margins,
        }


def _tile_chip(chip: HrsidChip, writer: DatasetWriter, tally: _Tally) -> None:
    height, width = chip.chip.shape
    tiles = tile_grid(width, height, TILE_PX)
    if not tiles:
        writer.quarantine(where=chip.where, rule="tile_size", sample_id=chip.sample_id,
                          reason=f"{chip.path} is {width}x{height}, smaller than one {TILE_PX} px tile")
        return
    mask = None
    if chip.mask_path is not None:
        try:
            mask = load_raster(chip.mask_path)
            check_mask(mask, chip.mask_path)
        except DataError as err:
            writer.quarantine(where=chip.where, rule="image_decode", reason=str(err), sample_id=chip.sample_id)
            return
    tally.chips += 1
    tally.boxes_in_chips += len(chip.boxes)
    if width % TILE_PX or height % TILE_PX:
        tally.margins[chip.name] = {"right_px": width % TILE_PX, "bottom_px": height % TILE_PX}
    for index in unassigned_boxes(chip.boxes, tiles):
        entry = chip.box_entries[index]
        best = max(tile.contains_share(chip.boxes[index]) for tile in tiles)
        writer.quarantine(where=f"{chip.where}[{entry}]", rule="tile_box_lost", sample_id=chip.sample_id,
                          reason=f"{chip.where}[{entry}]: no {TILE_PX} px tile holds half of the box "
                                 f"(largest share {best:.0%}), so no tile keeps it")
        tally.lost += 1
    for tile in tiles:
        sample_id = tile_id(chip.sample_id, tile)
        assigned = assign_boxes(chip.boxes, tile)
        rows, cols = slice(tile.y, tile.y + TILE_PX), slice(tile.x, tile.x + TILE_PX)
        mask_rel = None
        if mask is not None:
            mask_rel = writer.write_bytes(mask_png(mask[:, rows, cols]), f"masks/{sample_id}{MASK_SUFFIX}",
                                          str(chip.mask_path))
        writer.add_row(
            sample_id=sample_id,
            split=chip.split,
            modality="sar",
            image=writer.write_bytes(single_band_png(chip.chip[rows, cols]), f"images/{sample_id}.png",
                                     str(chip.path)),
            mask=mask_rel,
            bands=1,
            width=TILE_PX,
            height=TILE_PX,
            boxes=assigned.boxes,
            source=f"{chip.where}#x={tile.x},y={tile.y},size={TILE_PX}",
        )
        tally.tiles += 1
        tally.empty_tiles += not assigned.boxes
        tally.boxes_in_tiles += len(assigned.boxes)
        if assigned.left_out:
            tally.left_out[sample_id] = [chip.box_entries[i] for i in assigned.left_out]
            tally.parts_left_out += len(assigned.left_out)


@register("hrsid-tiles")
def ingest_hrsid_tiles(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest HRSID chips as 200 px tiles with their ship boxes, a SAR detection dataset.

    Args:
        source: Directory with ``images/``, ``masks/`` and ``ship_boxes.json``.
        out: Destination dataset directory.
        name: Dataset name (default: the source folder name).

    Returns:
        The ingest report; lost boxes and unusable chips are quarantined, and ``dataset.json``
        carries the tiling tally (``tiling``: tiles, boxes kept, parts left out per tile).

    Raises:
        DataError: ``ship_boxes.json`` is missing or is not a JSON object of lists.
    """
    listing = read_listing(source)
    tally = _Tally()
    with DatasetWriter(out, name=name or source.name, kind="detection", adapter="hrsid-tiles",
                       source=str(source)) as writer:
        for chip in hrsid_chips(source, listing, writer):
            _tile_chip(chip, writer, tally)
        writer.meta["tiling"] = tally.as_meta()
    return writer.report
