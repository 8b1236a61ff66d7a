"""Per-row facts about a manifest: what its media files and texts actually hold.

Validation checks facts rather than raw rows: every media file is opened once (in a thread pool,
decoding dominates the cost) and summarised as flat columns (``image_exists``, ``image_bands``,
``s2_max`` ...), captions become word and character counts, boxes, coordinates, timestamps and
QA pairs become counts of broken entries. The expectation suites in :mod:`rsvl.data.suites` then
state rules about these columns, and a failing row points back to its manifest row via ``row``.
"""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from rsvl.data.media import load_raster
from rsvl.data.schema import ARRAY_SUFFIXES, MEDIA_COLUMNS
from rsvl.data.store import relative_to_dataset
from rsvl.errors import DataError

U8 = "8-bit image"
S2_REFLECTANCE = "S2 reflectance x10000"
S1_DB = "S1 backscatter dB"

VALUE_RANGES: Final[dict[str, tuple[float, float]]] = {
    U8: (0.0, 255.0),
    S2_REFLECTANCE: (0.0, 30000.0),
    S1_DB: (-60.0, 30.0),
}
"""Accepted value range per kind of raster.

Images (PNG/JPEG/TIFF) are canonical 8-bit renderings. Sentinel-2 L2A reflectance is stored
x10000, nominally 0..10000, but snow, cloud tops and glint exceed 1.0 (BigEarthNet holds values
above 14000), so up to 3.0 is accepted; a larger value means a wrong scale or a saturated
(65535) pixel. Sentinel-1 sigma0 in dB lies well inside -60..+30 for real scenes.
"""

MIN_SIDE: Final[int] = 4
"""The fewest pixels a raster may have along a side: a 1×1 or 3×3 "image" is a placeholder, not a scene."""
S1_DB_DARKEST: Final[float] = -1.0
"""An S1 dB raster's darkest value must lie below this: every real scene has pixels under 0 dB (sea,
smooth ground, radar shadow sit near -15..-25 dB), while linear power is never negative, so a raster
whose minimum is not below -1 dB is linear power stored as if it were dB (convert with 10·log10)."""

COPIED_COLUMNS: Final[tuple[str, ...]] = (
    "sample_id", "split", "modality", *MEDIA_COLUMNS, "label", "bands", "width", "height", "lat", "lon",
)
"""Manifest columns copied into the facts as they are."""
RASTER_ORDER: Final[tuple[str, ...]] = ("image", "s2", "s1")
"""The ``bands``/``width``/``height`` columns describe the first of these a row holds."""


def value_range(column: str, path: str, modality: str | None) -> str | None:
    """Name the value range a media file must respect.

    Args:
        column: Media column (``image``, ``s1``, ``s2``, ``mask``).
        path: The file's path as stored in the manifest.
        modality: The row's modality.

    Returns:
        A key of :data:`VALUE_RANGES`, or ``None`` when no range applies (masks, unknown arrays).
    """
    if column == "mask":
        return None
    if Path(path).suffix.lower() not in ARRAY_SUFFIXES:
        return U8
    if column == "s2" or (column == "image" and modality == "multispectral"):
        return S2_REFLECTANCE
    if column == "s1" or (column == "image" and modality == "sar"):
        return S1_DB
    return None


def media_facts(dataset_dir: Path, rel: str) -> dict:
    """Open one media file and summarise it.

    Args:
        dataset_dir: Dataset directory.
        rel: Path as stored in a media column.

    Returns:
        ``exists``, ``decodes``, ``error`` (the decode error text), and for decoded files
        ``bands``, ``height``, ``width``, ``min_side``, ``nonfinite`` (count of NaN/inf values), ``min``, ``max``
        over the finite values.
    """
    try:
        path = relative_to_dataset(dataset_dir, rel)
    except DataError as err:
        return {"exists": False, "error": str(err)}
    if not path.is_file():
        return {"exists": False, "error": f"{path} does not exist"}
    try:
        array = load_raster(path)
    except DataError as err:
        return {"exists": True, "decodes": False, "error": str(err)}
    finite = np.isfinite(array)
    n_finite = int(finite.sum())
    values = array if n_finite == array.size else array[finite]
    return {
        "exists": True,
        "decodes": True,
        "bands": array.shape[0],
        "height": array.shape[1],
        "width": array.shape[2],
        "min_side": min(array.shape[1], array.shape[2]),
        "nonfinite": int(array.size - n_finite),
        "min": float(values.min()) if n_finite else None,
        "max": float(values.max()) if n_finite else None,
    }


def _blank(text: str | None) -> bool:
    return text is not None and not text.strip()


def caption_facts(captions: list[str], long_caption: str | None) -> dict:
    """Count words and characters of a row's captions; blank ones are counted apart.

    Args:
        captions: The row's short captions.
        long_caption: The row's long caption, if any.

    Returns:
        ``caption_count``, ``caption_blank`` and, over the non-blank captions,
        ``caption_min_words``, ``caption_max_words``, ``caption_max_chars``; plus
        ``long_caption_blank`` and ``long_caption_chars`` (``None`` without a long caption).
    """
    texts = [c for c in captions if not _blank(c)]
    words = [len(c.split()) for c in texts]
    return {
        "caption_count": len(captions),
        "caption_blank": len(captions) - len(texts),
        "caption_min_words": min(words) if words else None,
        "caption_max_words": max(words) if words else None,
        "caption_max_chars": max(len(c) for c in texts) if texts else None,
        "long_caption_blank": None if long_caption is None else _blank(long_caption),
        "long_caption_chars": None if long_caption is None else len(long_caption),
    }


def bad_boxes(boxes: list[dict], width: float | None, height: float | None) -> list[int]:
    """Return the indices of boxes that are empty, inverted or outside the image.

    Args:
        boxes: Boxes with ``x_min``, ``y_min``, ``x_max``, ``y_max``.
        width: Image width in pixels (``None`` skips the right edge test).
        height: Image height in pixels (``None`` skips the bottom edge test).
    """
    bad = []
    for index, box in enumerate(boxes):
        x0, y0, x1, y1 = (box.get(k) for k in ("x_min", "y_min", "x_max", "y_max"))
        if None in (x0, y0, x1, y1) or not (0 <= x0 < x1 and 0 <= y0 < y1):
            bad.append(index)
        elif (width is not None and x1 > width) or (height is not None and y1 > height):
            bad.append(index)
    return bad


def timestamp_ok(text: str | None) -> bool | None:
    """Say whether ``text`` parses as ISO 8601 (``None`` when there is no timestamp)."""
    if text is None:
        return None
    try:
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def blank_qa(pairs: list[dict]) -> list[int]:
    """Return the indices of QA pairs with a missing or blank question, or a blank answer.

    A null answer is allowed: upstream withholds the answers of some test splits (HRVQA).
    """
    return [i for i, qa in enumerate(pairs) if _blank(qa.get("question") or "") or _blank(qa.get("answer"))]


def _decode_all(dataset_dir: Path, manifest: pd.DataFrame, columns: list[str], workers: int) -> dict:
    jobs = [(i, c, p) for c in columns for i, p in enumerate(manifest[c]) if p is not None]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda job: media_facts(dataset_dir, job[2]), jobs)
        return {(i, c): facts for (i, c, _), facts in zip(jobs, results)}


def compute_facts(
    dataset_dir: str | Path,
    manifest: pd.DataFrame,
    stored_columns: list[str] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Build the facts table of a manifest, one row per manifest row (same order).

    Args:
        dataset_dir: Dataset directory the media paths are relative to.
        manifest: The manifest (:func:`rsvl.data.store.read_manifest`).
        stored_columns: Columns actually stored in the manifest file; copied columns missing from
            it are left out of the facts so a schema expectation can notice. Default: all.
        workers: Decoding threads (default: CPU count, at most 8).

    Returns:
        A DataFrame with ``row`` (manifest row number, from 0), :data:`COPIED_COLUMNS`, and
        per present media column ``<col>_exists``, ``_decodes``, ``_error``, ``_bands``,
        ``_height``, ``_width``, ``_min_side``, ``_nonfinite``, ``_min``, ``_max``, ``_range``,
        ``_db_scaled`` (S1 dB rasters only: the minimum is below :data:`S1_DB_DARKEST`); then
        ``raster_bands``/``raster_width``/``raster_height`` (see :data:`RASTER_ORDER`),
        ``media_count``, caption counts, ``boxes_count``, ``boxes_bad``, ``timestamp_ok``,
        ``vqa_count`` and ``vqa_blank``.
    """
    dataset_dir = Path(dataset_dir)
    workers = workers or min(8, os.cpu_count() or 1)
    stored = set(stored_columns if stored_columns is not None else manifest.columns)
    media = [c for c in MEDIA_COLUMNS if c in manifest and manifest[c].notna().any()]
    decoded = _decode_all(dataset_dir, manifest, media, workers)
    rows = []
    for i, record in enumerate(manifest.to_dict("records")):
        facts: dict = {"row": i}
        facts.update({c: record.get(c) for c in COPIED_COLUMNS if c in stored})
        for column in media:
            info = decoded.get((i, column), {})
            facts.update({f"{column}_{key}": info.get(key) for key in
                          ("exists", "decodes", "error", "bands", "height", "width", "min_side", "nonfinite", "min",
                           "max")})
            path = record[column]
            facts[f"{column}_range"] = value_range(column, path, record.get("modality")) if path else None
            low = info.get("min")
            # only S1 dB rasters get this fact: is their darkest value below S1_DB_DARKEST, as dB must be?
            facts[f"{column}_db_scaled"] = (low < S1_DB_DARKEST if facts[f"{column}_range"] == S1_DB and low is not None
                                            else None)
        raster = next((decoded[(i, c)] for c in RASTER_ORDER if (i, c) in decoded), {})
        facts.update(raster_bands=raster.get("bands"), raster_width=raster.get("width"),
                     raster_height=raster.get("height"))
        facts["media_count"] = sum(record.get(c) is not None for c in MEDIA_COLUMNS)
        facts.update(caption_facts(record.get("captions") or [], record.get("long_caption")))
        boxes = record.get("boxes") or []
        facts["boxes_count"] = len(boxes)
        facts["boxes_bad"] = len(bad_boxes(boxes, raster.get("width") or record.get("width"),
                                           raster.get("height") or record.get("height")))
        facts["timestamp_ok"] = timestamp_ok(record.get("timestamp"))
        pairs = record.get("vqa") or []
        facts["vqa_count"] = len(pairs)
        facts["vqa_blank"] = len(blank_qa(pairs))
        rows.append(facts)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["row", *COPIED_COLUMNS])
