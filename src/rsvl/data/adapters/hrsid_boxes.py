"""HRSID SAR ship chips with boxes derived from the instance masks.

Layout::

    SOURCE/images/<chip>.png                    8-bit SAR amplitude, stored as 3 identical channels
    SOURCE/masks/<chip>_instance_id_RGB.png     one colour per ship (optional; copied as ``mask``)
    SOURCE/ship_boxes.json                      {"<chip>.png": [{x_min, y_min, x_max, y_max, area_px, label}]}

Box maxima are inclusive in the file and exclusive pixel edges in rows (:mod:`rsvl.data.boxes`).
Each chip is stored as a single-band lossless PNG. Quarantine rules: ``file_exists``,
``image_decode``, ``sar_single_channel`` (channels differ), ``mask_size``, ``box_fields`` and
``box_bounds`` (that box only), ``not_listed`` (no entry in the box file; a chip without ships is
listed with ``[]``), ``unique_id`` (a stem already taken by an accepted chip of another extension;
the first in file-name order keeps it). ``hrsid-tiles`` shares these checks via :func:`hrsid_chips`.
Split: :func:`rsvl.data.adapters.class_folder.hash_split` of the chip's file name (70/10/20).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
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
    # initial=0 so a chip with no pixels does not raise
    dtype = np.uint8 if chip.max(initial=0) <= 255 else np.uint16
    buffer = io.BytesIO()
    Image.fromarray(chip.astype(dtype)).save(buffer, format="PNG")
    return buffer.getvalue()


def parse_boxes(entries: list, where: str, writer: DatasetWriter, sample_id: str,
                width: int, height: int) -> list[tuple[int, dict]]:
    """Turn HRSID box entries (inclusive maxima) into valid manifest boxes, quarantining bad ones.

    Args:
        entries: The chip's list from ``ship_boxes.json``.
        where: Source location of the list (``ship_boxes.json:<chip>``).
        writer: Receives a quarantine record for every rejected box.
        sample_id: The chip's sample id.
        width: Chip width in pixels.
        height: Chip height in pixels.

    Returns:
        ``(index in entries, box)`` per accepted box, in pixel-edge coordinates.
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
        # HRSID's maxima are the last pixel (inclusive); manifest boxes use exclusive pixel edges
        box = make_box(x_min, y_min, x_max + 1, y_max + 1, str(entry.get("label") or "ship"))
        problem = box_problem(box, width, height)
        if problem:
            writer.quarantine(where=box_where, rule="box_bounds", reason=f"{box_where}: {problem}",
                              sample_id=sample_id)
            continue
        boxes.append((index, box))
    return boxes


@dataclass(frozen=True)
class HrsidChip:
    """One HRSID chip that passed the shared checks, ready to become rows.

    Attributes:
        name: File name in ``images/`` (the key in ``ship_boxes.json``).
        where: Source location of its box list (``ship_boxes.json:<chip>``).
        path: The chip file.
        chip: Band 0 as a (height, width) array.
        mask_path: The instance mask when present (its size already matches the chip).
        boxes: The accepted boxes in pixel-edge coordinates of the chip.
        box_entries: For each accepted box, its index in the chip's ``ship_boxes.json`` list.
    """

    name: str
    where: str
    path: Path
    chip: np.ndarray
    mask_path: Path | None
    boxes: list[dict]
    box_entries: list[int]

    @property
    def sample_id(self) -> str:
        """The chip's file stem, used as its sample id (and as the stem of its tiles' ids)."""
        return Path(self.name).stem

    @property
    def split(self) -> str:
        """The split of the chip and of every row cut from it (hash of the file name)."""
        return hash_split(self.name)


def read_listing(source: Path) -> dict[str, list]:
    """Read ``ship_boxes.json``, the index of chips and their boxes.

    Args:
        source: Directory with ``images/``, ``masks/`` and ``ship_boxes.json``.

    Returns:
        Chip file name -> list of box entries.

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
    return listing


def _load_chip(source: Path, chip_name: str, entries: list, writer: DatasetWriter) -> HrsidChip | None:
    where = f"{BOXES_FILE}:{chip_name}"
    sample_id = Path(chip_name).stem
    path = source / "images" / chip_name
    if not path.is_file():
        writer.quarantine(where=where, rule="file_exists", reason=f"{path} does not exist", sample_id=sample_id)
        return None
    try:
        bands = load_raster(path)
    except DataError as err:
        writer.quarantine(where=where, rule="image_decode", reason=str(err), sample_id=sample_id)
        return None
    if np.any(bands != bands[:1]):
        writer.quarantine(where=where, rule="sar_single_channel", sample_id=sample_id,
                          reason=f"{path}: its {bands.shape[0]} channels differ, so it is not "
                                 "a single-band SAR chip")
        return None
    chip = bands[0]
    height, width = chip.shape
    mask_path: Path | None = source / "masks" / f"{sample_id}{MASK_SUFFIX}"
    if mask_path.is_file():
        try:
            # the header is enough, since the mask is copied as is, never decoded here
            mask_size = image_header(mask_path)[:2]
        except DataError as err:
            writer.quarantine(where=where, rule="image_decode", reason=str(err), sample_id=sample_id)
            return None
        if mask_size != (width, height):
            writer.quarantine(where=where, rule="mask_size", sample_id=sample_id,
                              reason=f"{mask_path} is {mask_size}, the chip is {(width, height)}")
            return None
    else:
        mask_path = None
    accepted = parse_boxes(entries, where, writer, sample_id, width, height)
    return HrsidChip(chip_name, where, path, chip, mask_path, [box for _, box in accepted],
                     [index for index, _ in accepted])


def _quarantine_unlisted(source: Path, listing: dict[str, list], writer: DatasetWriter) -> None:
    images = source / "images"
    if not images.is_dir():
        return
    for path in sorted(images.iterdir()):
        if path.is_file() and path.name not in listing:
            writer.quarantine(where=f"images/{path.name}", rule="not_listed", sample_id=path.stem,
                              reason=f"{path} has no entry in {source / BOXES_FILE}, so its boxes are unknown "
                                     "(not_listed: every chip needs an entry, [] when it has no ships)")


def hrsid_chips(source: Path, listing: dict[str, list], writer: DatasetWriter) -> Iterator[HrsidChip]:
    """Yield the chips of ``listing`` that pass the shared quarantine rules, in file-name order.

    Files in ``images/`` missing from the listing are quarantined (``not_listed``) first.

    Args:
        source: Directory with ``images/`` and ``masks/``.
        listing: What :func:`read_listing` returned.
        writer: Receives a quarantine record for every rejected chip or box.

    Yields:
        The accepted chips with their valid boxes.
    """
    _quarantine_unlisted(source, listing, writer)
    taken: dict[str, str] = {}
    # file-name order decides which of two same-stem chips keeps the sample id
    for chip_name, entries in sorted(listing.items()):
        sample_id = Path(chip_name).stem
        if sample_id in taken:
            where = f"{BOXES_FILE}:{chip_name}"
            writer.quarantine(where=where, rule="unique_id", sample_id=sample_id,
                              reason=f"{where}: sample_id {sample_id!r} (the file stem) is already used by "
                                     f"{taken[sample_id]}")
            continue
        chip = _load_chip(source, chip_name, entries, writer)
        if chip is not None:
            # only an accepted chip claims its stem, so a rejected a.jpg leaves it to a.png
            taken[sample_id] = chip_name
            yield chip


@register("hrsid-boxes")
def ingest_hrsid_boxes(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest HRSID chips and their ship boxes as a SAR detection dataset, one row per chip.

    Args:
        source: Directory with ``images/``, ``masks/`` and ``ship_boxes.json``.
        out: Destination dataset directory.
        name: Dataset name (default: the source folder name).

    Returns:
        The ingest report.

    Raises:
        DataError: ``ship_boxes.json`` is missing or is not a JSON object of lists.
    """
    listing = read_listing(source)
    with DatasetWriter(out, name=name or source.name, kind="detection", adapter="hrsid-boxes",
                       source=str(source)) as writer:
        for chip in hrsid_chips(source, listing, writer):
            mask = None
            if chip.mask_path is not None:
                mask = writer.copy_media(chip.mask_path, f"masks/{chip.mask_path.name}")
            height, width = chip.chip.shape
            writer.add_row(
                sample_id=chip.sample_id,
                split=chip.split,
                modality="sar",
                image=writer.write_bytes(single_band_png(chip.chip), f"images/{chip.sample_id}.png",
                                         str(chip.path)),
                mask=mask,
                bands=1,
                width=width,
                height=height,
                boxes=chip.boxes,
                source=chip.where,
            )
    return writer.report
