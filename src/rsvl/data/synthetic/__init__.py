"""Shared building blocks of the procedural datasets: seeded randomness, noise, splits, words.

Every sample draws from its own generator seeded by ``(seed, stream, index)``, so a sample does
not change when another dataset or a larger ``scale`` adds samples, and two runs with the same
seed write byte-identical media.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

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
    return np.random.default_rng([seed, stream, index])


def smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Draw smooth noise in [0, 1] by bicubic upsampling of a coarse random grid.

    Coarse grids give large blobs (land-cover patches, coastlines), fine grids give texture; it is
    much cheaper than filtering white noise and looks natural enough for learning.

    Args:
        rng: Generator to draw from.
        height: Output rows.
        width: Output columns.
        cells: Grid cells along each side of the coarse grid (2 = one large blob).

    Returns:
        A float32 array of shape (height, width), rescaled to span [0, 1].
    """
    coarse = rng.random((cells, cells)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode an 8-bit grey (H, W) or RGB (H, W, 3) array as PNG without metadata.

    Args:
        pixels: uint8 array.

    Returns:
        The PNG file content; identical arrays always give identical bytes.
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


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
