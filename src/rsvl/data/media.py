"""Decode media files and caption text, failing with the file and the rule that was broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsvl.data.schema import ARRAY_SUFFIXES, IMAGE_SUFFIXES
from rsvl.errors import DataError

Image.MAX_IMAGE_PIXELS = 20_000 * 20_000


def load_raster(path: str | Path) -> np.ndarray:
    """Load an image or band array as float32 (bands, height, width).

    Images keep their stored values (0..255 for 8-bit); arrays load without unpickling.

    Args:
        path: A PNG/JPEG/TIFF/BMP image or a ``.npy`` array.

    Returns:
        A float32 array of shape (bands, height, width).

    Raises:
        DataError: The file is missing, empty, truncated, not decodable or has the wrong rank.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from err
        if array.ndim != 3:
            raise DataError(f"{path}: array must be (bands, height, width), got shape {array.shape}")
        return array.astype(np.float32, copy=False)
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: unsupported media type {suffix!r}")
    try:
        with Image.open(path) as image:
            image.load()
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot decode image ({err})") from err
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def decode_caption(raw: bytes | str, where: str) -> str:
    """Decode caption bytes as UTF-8 and normalise whitespace.

    Args:
        raw: Caption bytes (or already-decoded text).
        where: File and row, used in the error.

    Returns:
        The caption with runs of whitespace collapsed to single spaces.

    Raises:
        DataError: The bytes are not valid UTF-8.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{where}: caption is not valid UTF-8 ({err.reason} at byte {err.start})") from err
    return " ".join(raw.split())
