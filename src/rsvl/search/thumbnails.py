"""Small PNG previews of indexed media: SAR with an amplitude stretch, Sentinel-2 as an RGB composite.

A SAR chip's values crowd a narrow range with a long bright tail (speckle, ships), so it is shown
stretched between its 2nd and 98th percentiles; a Sentinel-1 pair shows its VV band (dB) the same
way; a Sentinel-2 patch (12 bands, B1..B12 without B10) shows B4, B3, B2 as red, green and blue,
each stretched alike. Three-band optical images are stretched jointly, which leaves an 8-bit
photo almost as it was.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SIDE = 160
S2_RGB = (3, 2, 1)
"""Band indices of B4, B3, B2 in a 12-band Sentinel-2 array (B1, B2, B3, B4, ...)."""


def _stretch(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = np.percentile(finite, [2, 98])
    scaled = (np.nan_to_num(values, nan=low) - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def display_array(array: np.ndarray, media: str) -> np.ndarray:
    """The (H, W) or (H, W, 3) uint8 picture of a (bands, H, W) medium.

    Args:
        array: Stored values, bands first.
        media: ``image``, ``s1`` or ``s2``.
    """
    bands = array.shape[0]
    if media == "s2" or bands >= 4:
        picked = [band for band in S2_RGB if band < bands] or [0]
        return np.stack([_stretch(array[band]) for band in picked], axis=-1) if len(picked) == 3 else _stretch(array[0])
    if bands == 3:
        return _stretch(array).transpose(1, 2, 0)
    return _stretch(array[0])  # SAR amplitude, or a Sentinel-1 pair's VV band


def thumbnail_png(array: np.ndarray, media: str, side: int = SIDE) -> bytes:
    """A PNG of at most ``side`` pixels a side.

    Args:
        array: Stored values, bands first.
        media: ``image``, ``s1`` or ``s2``.
        side: Longest side in pixels.
    """
    picture = Image.fromarray(display_array(array, media))
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()
