"""Shared building blocks of the procedural datasets: seeded randomness, noise, splits, words.

Every sample draws from its own generator seeded by ``(seed, stream, index)``, so a sample does
not change when another dataset or a larger ``scale`` adds samples, and two runs with the same
seed write byte-identical media on any CPU (see :mod:`rsvl.data.synthetic.exact` for how).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
"""Train/val/test shares; 70/15/15 keeps enough test samples per class at ``scale=1``."""

_NUMBER_WORDS = (
    "no", "one", "two", "three", "four", "five", "six",
    "seven", "eight", "nine", "ten", "eleven", "twelve",
)
_THIRD_ROWS = ("upper", "middle", "lower")
_THIRD_COLS = ("left", "middle", "right")


def sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """Return the generator of one sample.

    Args:
        seed: The dataset seed chosen by the user.
        stream: A fixed number per dataset (optical, SAR, S1/S2) so datasets never share draws.
        index: The sample's position within its dataset.

    Returns:
        A NumPy generator that depends only on the three integers.
    """
    # a seed sequence of the three integers, so adding samples elsewhere never shifts these draws
    return np.random.default_rng([seed, stream, index])


def _cubic_taps(size: int, cells: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Source indices (size, 4) and the four Keys-cubic weights (a = -0.5) of each output position."""
    centre = (np.arange(size) + 0.5) * (cells / size) - 0.5  # output pixel centre in grid coordinates
    base = np.floor(centre)
    t = centre - base
    t2 = t * t
    t3 = t2 * t
    weights = [
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    ]
    index = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, cells - 1)
    return index, weights


def _interpolate(grid: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Cubic interpolation of ``grid`` along ``axis`` to ``size`` samples, the four taps summed in order."""
    index, weights = _cubic_taps(size, grid.shape[axis])
    shape = [1, 1]
    shape[axis] = size
    total = None
    for tap in range(4):
        term = np.take(grid, index[:, tap], axis=axis) * weights[tap].reshape(shape)
        # explicit adds in tap order; a library resampler may fuse or reorder them per CPU
        total = term if total is None else total + term
    return total


def smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Draw smooth noise in [0, 1] by bicubic upsampling of a coarse random grid.

    Coarse grids give large blobs (land-cover patches, coastlines), fine grids texture; the taps are
    summed in a fixed order (see :mod:`rsvl.data.synthetic.exact`), so the field is the same on every CPU.

    Args:
        rng: Generator to draw from.
        height: Output rows.
        width: Output columns.
        cells: Grid cells along each side of the coarse grid (2 = one large blob).

    Returns:
        A float64 array of shape (height, width), rescaled to span [0, 1].
    """
    coarse = rng.random((cells, cells))
    field = _interpolate(_interpolate(coarse, width, axis=1), height, axis=0)
    low, high = float(field.min()), float(field.max())
    # the floor avoids dividing by zero for a flat field
    return (field - low) / max(high - low, 1e-6)


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode an 8-bit grey (H, W) or RGB (H, W, 3) array as PNG without metadata.

    The data is stored uncompressed, so the bytes depend on the pixels alone, not on the machine's
    zlib build (compressed deflate streams differ between zlib, zlib-ng and SIMD builds).

    Args:
        pixels: uint8 array.

    Returns:
        The PNG file content; identical arrays always give identical bytes.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    colour_type = 0 if pixels.ndim == 2 else 2
    # each row starts with PNG filter byte 0 ('None'), so no filter choice depends on the encoder
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), pixels.reshape(height, -1)], axis=1)
    raw = rows.tobytes()
    blocks = []
    for start in range(0, len(raw), _STORED_BLOCK):
        chunk = raw[start:start + _STORED_BLOCK]
        final = 1 if start + _STORED_BLOCK >= len(raw) else 0
        blocks.append(struct.pack("<BHH", final, len(chunk), 0xFFFF ^ len(chunk)) + chunk)
    # zlib header 0x78 0x01 (no compression preset), then the stored blocks and the Adler-32 of the raw data
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STORED_BLOCK = 65535  # the largest deflate stored block


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def assign_splits(count: int, rng: np.random.Generator) -> list[str]:
    """Shuffle ``count`` samples into train/val/test with :data:`SPLIT_FRACTIONS`.

    Args:
        count: Number of samples (of one class, for stratified splits).
        rng: Generator used for the shuffle.

    Returns:
        The split name of each sample, by index.
    """
    n_train = round(count * SPLIT_FRACTIONS[0])
    n_val = round(count * SPLIT_FRACTIONS[1])
    ordered = ["train"] * n_train + ["val"] * n_val + ["test"] * (count - n_train - n_val)
    splits = [""] * count
    # shuffle which samples get each split, so the shares are exact and the assignment still random
    for slot, sample in enumerate(rng.permutation(count)):
        splits[sample] = ordered[slot]
    return splits


def number_word(count: int) -> str:
    """Spell a count the way captions do ("no", "one" ... "twelve", then digits)."""
    return _NUMBER_WORDS[count] if 0 <= count < len(_NUMBER_WORDS) else str(count)


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """Return ``"three ships"``, ``"one ship"``, ``"no ships"``."""
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{number_word(count)} {word}"


def third_of(x: float, y: float, width: int, height: int) -> str:
    """Name the image third (a 3×3 grid) holding a point: ``"upper left"``, ``"center"``...

    Args:
        x: Column of the point in pixels.
        y: Row of the point in pixels.
        width: Image width.
        height: Image height.

    Returns:
        One of nine position names used by every caption generator.
    """
    row = _THIRD_ROWS[min(max(int(3 * y // height), 0), 2)]
    col = _THIRD_COLS[min(max(int(3 * x // width), 0), 2)]
    if row == col == "middle":
        return "center"
    if col == "middle":
        return f"{row} middle"
    return f"{row} {col}" if row != "middle" else f"middle {col}"


def join_words(items: list[str]) -> str:
    """Join ``["a", "b", "c"]`` as ``"a, b and c"``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def sentence(text: str) -> str:
    """Capitalise the first letter and end with a full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
