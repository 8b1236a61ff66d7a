"""Decode media files and caption text, failing with the file and the rule that was broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsvl.data.schema import ARRAY_SUFFIXES, IMAGE_SUFFIXES
from rsvl.errors import DataError

MAX_IMAGE_PIXELS = 10_000 * 10_000
"""The most pixels an image header may declare (1.2 GB as float32 RGB): larger ones are refused before decoding."""
# Pillow's own limit, as a second guard: it warns above this and raises above twice it
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# modes stored as another mode: palette indices and CMYK ink are not intensities, so they decode to
# RGB (and 1-bit to 8-bit grey); every other mode keeps its stored values
_DECODED_MODE = {"P": "RGB", "PA": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "1": "L"}
_PILLOW_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


REAL_KINDS = "biuf"
"""NumPy dtype kinds a band may have (bool, int, uint, float): a complex band would lose its imaginary
part in the float32 cast, and strings or objects are not measurements."""


def decoded_mode(mode: str) -> str:
    """The Pillow mode an image of ``mode`` is decoded to (``P``/``CMYK`` become ``RGB``, ``1`` becomes ``L``)."""
    return _DECODED_MODE.get(mode, mode)


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: header declares {width}×{height} = {width * height:,} pixels, above the limit of "
                        f"{MAX_IMAGE_PIXELS:,} (rule image_pixels: a decompression bomb or an untiled scene; "
                        f"cut it into tiles)")


def _bomb(path: Path, err: Exception) -> DataError:
    return DataError(f"{path}: header declares more pixels than the limit of {MAX_IMAGE_PIXELS:,} "
                     f"(rule image_pixels: {err})")


def image_header(path: str | Path) -> tuple[int, int, int]:
    """Read width, height and decoded band count from an image header without decoding the pixels.

    Args:
        path: The image file.

    Returns:
        ``(width, height, bands)``; ``bands`` counts the decoded mode's bands (:func:`decoded_mode`).

    Raises:
        DataError: The file cannot be identified as an image, or declares more than
            :data:`MAX_IMAGE_PIXELS` pixels.
    """
    path = Path(path)
    try:
        # Image.open reads only the header; the pixels are never loaded here
        with Image.open(path) as image:
            width, height, mode = image.width, image.height, image.mode
    # Pillow raises any of these for a truncated or corrupt header, or a size past its own bomb limit
    except _PILLOW_ERRORS as err:
        if isinstance(err, Image.DecompressionBombError):
            raise _bomb(path, err) from err
        raise DataError(f"{path}: cannot read image header ({err})") from err
    _check_pixels(path, width, height)
    return width, height, Image.getmodebands(decoded_mode(mode))


def load_raster(path: str | Path) -> np.ndarray:
    """Load an image or band array as float32 (bands, height, width).

    Images keep their stored values (0..255 for 8-bit); arrays load without unpickling.

    Args:
        path: A PNG/JPEG/TIFF/BMP image or a ``.npy`` array.

    Returns:
        A float32 array of shape (bands, height, width).

    Raises:
        DataError: The file is missing, empty, truncated, not decodable, declares more than
            :data:`MAX_IMAGE_PIXELS` pixels or has the wrong rank. Palette and CMYK images decode
            to RGB (:func:`decoded_mode`).
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
        if array.dtype.kind not in REAL_KINDS:
            raise DataError(f"{path}: array dtype {array.dtype} is not a real number type (bool, int, uint or float)")
        return array.astype(np.float32, copy=False)
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: unsupported media type {suffix!r}")
    try:
        with Image.open(path) as image:
            _check_pixels(path, image.width, image.height)  # a decompression bomb is refused before decoding
            image.load()
            target = decoded_mode(image.mode)
            array = np.asarray(image if target == image.mode else image.convert(target))
    except _PILLOW_ERRORS as err:
        if isinstance(err, Image.DecompressionBombError):
            raise _bomb(path, err) from err
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
