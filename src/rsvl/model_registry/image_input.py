"""Turn one ``image`` cell of a serving request into a (bands, H, W) array the model can read.

A cell is a local file path, a ``file://`` URI, base64-encoded file bytes (optionally as a
``data:<type>;base64,`` URI) or raw bytes. The bytes are a PNG/JPEG/TIFF/BMP image or a ``.npy``
array of shape (bands, H, W); arrays are read without unpickling. A model reads one band count,
or several when it has an image tower per sensor (CLOSP: 2 bands for Sentinel-1, 12 for
Sentinel-2). A model that reads three bands reads every image file as RGB (palette, grey and RGBA
images are converted, as the preprocessing does for PIL images); otherwise an array or image must
have one of the model's band counts exactly. Remote URIs (``http://``, ``s3://``) are refused:
serving runs offline.

Every image is held to :data:`MAX_IMAGE_BYTES` file bytes and :data:`MAX_IMAGE_PIXELS` pixels,
both checked before anything is decoded (a file's size, a base64 text's length, an image's or
array's header), so a request cannot make a server decode a bomb; they raise
:class:`~rsvl.errors.PayloadTooLarge`.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsvl.errors import DataError, ModelError, PayloadTooLarge

NPY_MAGIC = b"\x93NUMPY"
DATA_URI = re.compile(r"^data:[^,;]*(;[^,;]*)*;base64,", re.IGNORECASE)
URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
LOCAL_HOSTS = ("", "localhost")
SHOWN_CHARS = 60
RGB_BANDS = 3
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # one request image's file bytes
MAX_IMAGE_PIXELS = 4096 * 4096  # one request image's height × width


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "...")


def _path_of_file_uri(uri: str, where: str) -> Path:
    parsed = urlparse(uri)
    if parsed.netloc not in LOCAL_HOSTS:
        raise DataError(f"{where}: file URI {_shown(uri)} names host {parsed.netloc!r}; only local files are read")
    return Path(url2pathname(parsed.path))


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file; False for text no file system takes as a name."""
    try:
        return Path(text).is_file()
    # base64 text can hold a 'path component' longer than NAME_MAX (ENAMETOOLONG) or a NUL byte
    except (OSError, ValueError):
        return False


def _too_many_bytes(size: int, limit: int, where: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{where}: image is {size:,} bytes; the limit is {limit:,} bytes")


def _read_file(path: Path, where: str, max_bytes: int) -> bytes:
    if not path.is_file():
        raise DataError(f"{where}: {path} does not exist or is not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise _too_many_bytes(size, max_bytes, where)
    data = path.read_bytes()
    if not data:
        raise DataError(f"{where}: {path} is empty (0 bytes)")
    return data


def image_bytes(value: Any, where: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Return the file bytes an ``image`` cell refers to or carries.

    Args:
        value: Path, ``file://`` URI, base64 text (plain or ``data:`` URI) or bytes.
        where: Row named in errors (``"row 3 image"``).
        max_bytes: The most file bytes one image may have.

    Raises:
        DataError: Missing file, remote URI, or text that is neither a file nor base64.
        PayloadTooLarge: More than ``max_bytes`` (found before a file is read or base64 decoded).
    """
    if isinstance(value, (bytes, bytearray)):
        if len(value) > max_bytes:
            raise _too_many_bytes(len(value), max_bytes, where)
        return bytes(value)
    if isinstance(value, Path):
        return _read_file(value, where, max_bytes)
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a path, file:// URI or base64 string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise DataError(f"{where}: empty string; give a path, a file:// URI or base64 image bytes")
    if text.lower().startswith("file://"):
        return _read_file(_path_of_file_uri(text, where), where, max_bytes)
    if URI_SCHEME.match(text):
        raise DataError(f"{where}: {_shown(text)} is a remote URI; serving is offline, send base64 bytes instead")
    data_uri = DATA_URI.match(text)
    if data_uri is None and len(text) < 4096 and _is_file(text):
        return _read_file(Path(text), where, max_bytes)
    payload = re.sub(r"\s+", "", text[data_uri.end():] if data_uri else text)
    decoded_size = len(payload) * 3 // 4 - payload[-2:].count("=")
    if decoded_size > max_bytes:
        raise _too_many_bytes(decoded_size, max_bytes, where)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise DataError(
            f"{where}: {_shown(text)} is not an existing file, a file:// URI or base64 image bytes ({err})"
        ) from err


def accepted_bands(in_bands: int | Collection[int]) -> tuple[int, ...]:
    """The band counts a model reads, sorted: ``4`` → ``(4,)``, ``{12, 2}`` → ``(2, 12)``.

    Args:
        in_bands: One band count, or the counts of a sensor model's towers.

    Raises:
        ModelError: No band count, or one below 1 (a broken model spec).
    """
    counts = (in_bands,) if isinstance(in_bands, (int, np.integer)) else tuple(in_bands)
    if not counts or any(int(count) < 1 for count in counts):
        raise ModelError(f"a model reads at least one band count >= 1, got {in_bands!r}")
    return tuple(sorted({int(count) for count in counts}))


def _band_counts_text(counts: tuple[int, ...]) -> str:
    return " or ".join(str(count) for count in counts)


def _check_pixels(width: int, height: int, max_pixels: int, where: str) -> None:
    if width * height > max_pixels:
        raise PayloadTooLarge(f"{where}: image is {width}x{height} pixels; the limit is {max_pixels:,} pixels")


def _npy_shape(data: bytes, where: str) -> tuple[int, ...]:
    """The shape an ``.npy`` file's header declares, read without loading its data."""
    stream = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        return read_header(stream)[0]
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{where}: not a readable .npy array ({err})") from err


def decode_image(data: bytes, in_bands: int | Collection[int], where: str,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode image or ``.npy`` bytes into a float32 (bands, H, W) array in stored units.

    Args:
        data: File bytes.
        in_bands: Band count the model reads, or the counts of its sensor towers; a model
            reading 3 bands gets every image file (PNG, JPEG, ...) converted to RGB.
        where: Row named in errors.
        max_pixels: The most height × width the header may declare (checked before decoding).

    Raises:
        DataError: Undecodable bytes, a wrong rank, or a band count the model cannot read
            (the message names the accepted counts).
        PayloadTooLarge: The header declares more than ``max_pixels`` pixels.
    """
    counts = accepted_bands(in_bands)
    if data.startswith(NPY_MAGIC):
        shape = _npy_shape(data, where)
        if len(shape) != 3:
            raise DataError(f"{where}: array must be (bands, height, width), got shape {shape}")
        _check_pixels(shape[2], shape[1], max_pixels, where)
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{where}: not a readable .npy array ({err})") from err
    else:
        try:
            with Image.open(io.BytesIO(data)) as image:
                _check_pixels(*image.size, max_pixels, where)  # the header's size: nothing is decoded yet
                image.load()
                if RGB_BANDS in counts:
                    image = image.convert("RGB")
                array = np.asarray(image)
        except Image.DecompressionBombError as err:  # Pillow's own guard, raised while it opens the header
            raise PayloadTooLarge(f"{where}: image header declares too many pixels ({err})") from err
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DataError(f"{where}: bytes are neither a decodable image nor a .npy array ({err})") from err
        array = array[:, :, None] if array.ndim == 2 else array
        array = array.transpose(2, 0, 1)
    if array.shape[0] not in counts:
        raise DataError(f"{where}: image has {array.shape[0]} bands, the model reads {_band_counts_text(counts)}")
    return np.ascontiguousarray(array, dtype=np.float32)


def read_image(value: Any, in_bands: int | Collection[int], where: str) -> np.ndarray:
    """Resolve and decode one ``image`` cell (see :func:`image_bytes` and :func:`decode_image`).

    Args:
        value: The cell: path, ``file://`` URI, base64 text or bytes.
        in_bands: Band count the model reads, or the counts of its sensor towers.
        where: Row named in errors (``"row 3 image"``).

    Returns:
        A float32 (bands, H, W) array with one of the accepted band counts.

    Raises:
        DataError: The cell cannot be resolved or decoded, or has a band count the model cannot read.
        PayloadTooLarge: The image is over :data:`MAX_IMAGE_BYTES` or :data:`MAX_IMAGE_PIXELS`.
    """
    return decode_image(image_bytes(value, where), in_bands, where)


def encode_image(array: np.ndarray) -> str:
    """Base64 text of an image for a request: PNG for 8-bit RGB/grey, ``.npy`` otherwise.

    Args:
        array: (bands, H, W) values; uint8 with 1 or 3 bands becomes a PNG.
    """
    buffer = io.BytesIO()
    if array.dtype == np.uint8 and array.shape[0] in (1, RGB_BANDS):
        pixels = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
        Image.fromarray(pixels).save(buffer, format="PNG")
    else:
        np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
