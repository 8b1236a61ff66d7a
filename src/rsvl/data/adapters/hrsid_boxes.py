"""HRSID SAR ship chips with boxes derived from the instance masks.

Layout::

    SOURCE/images/<chip>.png                    8-bit SAR amplitude, stored as 3 identical channels
    SOURCE/masks/<chip>_instance_id_RGB.png     one colour per ship (optional; copied as ``mask``)
    SOURCE/ship_boxes.json                      {"<chip>.png": [{x_min, y_min, x_max, y_max, area_px, label}]}

The box file counts ``x_max``/``y_max`` inclusively (the last pixel of the ship); rows store them
in the manifest's pixel-edge convention (:mod:`rsvl.data.boxes`), so 1 is added to both.

Each chip is stored as a single-band lossless PNG: channel 0 is kept after checking that every
channel is identical. Quarantine rules:

- ``file_exists``: the chip named in the box file is not in ``images/``.
- ``image_decode``: the chip or its mask cannot be decoded.
- ``sar_single_channel``: the channels differ, so the chip is not a replicated single-band image.
- ``mask_size``: the mask's size differs from the chip's (the row is kept out).
- ``box_fields``: a box entry lacks a coordinate or has a non-numeric one (that box only).
- ``box_bounds``: a box is empty, inverted or outside the chip (that box only; the chip keeps
  its other boxes).

Split (ours, deterministic): :func:`rsvl.data.adapters.class_folder.hash_split` of the chip's file
name (70/10/20 by SHA-256), since HRSID's own split files are not part of this layout.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from rsvl.data.adapters import register
from rsvl.data.adapters.class_folder import hash_split
from rsvl.data.adapters.row_checks import image_header
from rsvl.data.boxes import box_problem, make_box
from rsvl.data.media import load_raster
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

BOXES_FILE = "ship_boxes.json"
MASK_SUFFIX = "_instance_id_RGB.png"
_COORDS = ("x_min", "y_min", "x_max", "y_max")


def single_band_png(chip: np.ndarray) -> bytes:
    """Encode one band of SAR amplitude as a lossless PNG (8-bit, or 16-bit above 255).

    Args:
        chip: A (height, width) array of non-negative integer amplitudes.

    Returns:
        The PNG bytes.
    """
    dtype = np.uint8 if chip.max(initial=0) <= 255 else np.uint16
    buffer = io.BytesIO()
    Image.fromarray(chip.astype(dtype)).save(buffer, format="PNG")
    return buffer.getvalue()


def parse_boxes(entries: list, where: str, writer: DatasetWriter, sample_id: str,
                width: int, height: int) -> list[dict]:
    """Turn HRSID box entries (inclusive maxima) into valid manifest boxes, quarantining bad ones.

    Args:
        entries: The chip's list from ``ship_boxes.json``.
        where: Source location of the list (``ship_boxes.json:<chip>``).
        writer: Receives a quarantine record for every rejected box.
        sample_id: The chip's sample id.
        width: Chip width in pixels.
        height: Chip height in pixels.

    Returns:
        The accepted boxes in pixel-edge coordinates.
    """
    boxes = []
    for index, entry in enumerate(entries):
        box_where = f"{where}[{index}]"
        try:
            x_min, y_min, x_max, y_max = (float(entry[key]) for key in _COORDS)
        except (KeyError, TypeError, ValueError):
            writer.quarantine(where=box_where, rule="box_fields", sample_id=sample_id,
                              reason=f"{box_where}: box needs numeric {', '.join(_COORDS)}, got {entry!r}")
            continue
        box = make_box(x_min, y_min, x_max + 1, y_max + 1, str(entry.get("label") or "ship"))
        problem = box_problem(box, width, height)
        if problem:
            writer.quarantine(where=box_where, rule="box_bounds", reason=f"{box_where}: {problem}",
                              sample_id=sample_id)
            continue
        boxes.append(box)
    return boxes


@register("hrsid-boxes")
def ingest_hrsid_boxes(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest HRSID chips and their ship boxes as a SAR detection dataset.

    Args:
        source: Directory with ``images/``, ``masks/`` and ``ship_boxes.json``.
        out: Destination dataset directory.
        name: Dataset name (default: the source folder name).

    Returns:
        The ingest report.

    Raises:
        DataError: ``ship_boxes.json`` is missing or is not a JSON object of lists.
    """
    boxes_path = source / BOXES_FILE
    if not boxes_path.is_file():
        raise DataError(f"{source}: {BOXES_FILE} is missing")
    try:
        listing = json.loads(boxes_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{boxes_path}: not valid UTF-8 JSON ({err})") from err
    if not isinstance(listing, dict) or not all(isinstance(v, list) for v in listing.values()):
        raise DataError(f"{boxes_path}: must be an object mapping image names to lists of boxes")
    with DatasetWriter(out, name=name or source.name, kind="detection", adapter="hrsid-boxes",
                       source=str(source)) as writer:
        for chip_name, entries in sorted(listing.items()):
            where = f"{BOXES_FILE}:{chip_name}"
            sample_id = Path(chip_name).stem
            path = source / "images" / chip_name
            if not path.is_file():
                writer.quarantine(where=where, rule="file_exists", reason=f"{path} does not exist",
                                  sample_id=sample_id)
                continue
            try:
                bands = load_raster(path)
            except DataError as err:
                writer.quarantine(where=where, rule="image_decode", reason=str(err), sample_id=sample_id)
                continue
            if np.any(bands != bands[:1]):
                writer.quarantine(where=where, rule="sar_single_channel", sample_id=sample_id,
                                  reason=f"{path}: its {bands.shape[0]} channels differ, so it is not "
                                         "a single-band SAR chip")
                continue
            chip = bands[0]
            height, width = chip.shape
            mask = None
            mask_path = source / "masks" / f"{sample_id}{MASK_SUFFIX}"
            if mask_path.is_file():
                try:
                    mask_size = image_header(mask_path)[:2]
                except DataError as err:
                    writer.quarantine(where=where, rule="image_decode", reason=str(err), sample_id=sample_id)
                    continue
                if mask_size != (width, height):
                    writer.quarantine(where=where, rule="mask_size", sample_id=sample_id,
                                      reason=f"{mask_path} is {mask_size}, the chip is {(width, height)}")
                    continue
                mask = writer.copy_media(mask_path, f"masks/{mask_path.name}")
            boxes = parse_boxes(entries, where, writer, sample_id, width, height)
            writer.add_row(
                sample_id=sample_id,
                split=hash_split(chip_name),
                modality="sar",
                image=writer.write_bytes(single_band_png(chip), f"images/{sample_id}.png", str(path)),
                mask=mask,
                bands=1,
                width=width,
                height=height,
                boxes=boxes,
                source=where,
            )
    return writer.report
