"""Image fingerprints for de-duplication: a content hash of the pixels and two perceptual hashes.

* :func:`pixel_digest`: SHA-256 of the decoded pixels and their shape, so one picture stored
  twice (another container, extra metadata, another compression) has one digest.
* :func:`dhash` (difference hash) and :func:`phash` (DCT hash), written here with NumPy: both
  reduce the picture to a tiny grey thumbnail and keep one bit per coarse structure, so a copy
  that was slightly cropped, brightened or re-compressed differs in a few bits only
  (:func:`hamming`), while two different scenes differ in about half of them.

Thumbnails are made by area averaging (:func:`area_resize`: each output cell is the mean of the
input area it covers, fractional pixels weighted by their overlap), the resampling that keeps
the mean brightness of every cell. Comparisons use a small tolerance (:data:`TOLERANCE`) so that
cells of a flat region, equal up to rounding, give the same bit on every CPU.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rsvl.errors import DataError

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights of R, G and B in the grey value."""
TOLERANCE = 1e-6
"""A bit is set only when its comparison wins by more than this (grey levels 0..255)."""
PHASH_FACTOR = 4
"""pHash takes the low ``hash_size`` × ``hash_size`` DCT coefficients of a ``4 × hash_size`` thumbnail."""


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and values: equal pixels give equal digests.

    Args:
        pixels: A decoded raster, e.g. (bands, height, width) float32 from
            :func:`rsvl.data.media.load_raster`.

    Returns:
        The hex digest.
    """
    array = np.ascontiguousarray(pixels)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """Grey values of a (bands, height, width) raster.

    Args:
        pixels: One band (taken as is), three or four bands (RGB luma, :data:`LUMA`; a fourth
            band, alpha, is ignored) or any other count (the band mean).

    Returns:
        float64 (height, width).

    Raises:
        DataError: ``pixels`` is not three-dimensional or has no pixels.
    """
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise DataError(f"a raster must be (bands, height, width) with pixels, got shape {pixels.shape}")
    bands = pixels.astype(np.float64, copy=False)
    if bands.shape[0] == 1:
        return bands[0]
    if bands.shape[0] in (3, 4):
        return LUMA[0] * bands[0] + LUMA[1] * bands[1] + LUMA[2] * bands[2]
    return bands.mean(axis=0)


def _area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix: row ``i`` averages the input pixels under output cell ``i``."""
    edges = np.arange(size_out + 1, dtype=np.float64) * (size_in / size_out)
    starts, stops = edges[:-1, None], edges[1:, None]
    pixel = np.arange(size_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(stops, pixel + 1) - np.maximum(starts, pixel), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def area_resize(grey: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Resize a grey image by area averaging (also upsamples: a cell then copies its pixel).

    Args:
        grey: (height, width) values.
        rows: Output height.
        cols: Output width.

    Returns:
        float64 (rows, cols); cell ``(i, j)`` is the overlap-weighted mean of the input pixels
        under it.
    """
    height, width = grey.shape
    return _area_weights(height, rows) @ grey.astype(np.float64, copy=False) @ _area_weights(width, cols).T


def dhash(pixels: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """Difference hash: is each thumbnail cell brighter than its left neighbour?

    The grey image is area-resized to ``hash_size`` rows × ``hash_size + 1`` columns; bit
    ``(r, c)`` is set when cell ``(r, c + 1)`` is brighter than cell ``(r, c)`` by more than
    :data:`TOLERANCE`. A uniform brightness change leaves the bits as they are.

    Args:
        pixels: (bands, height, width) raster.
        hash_size: Bits per side (``hash_size**2`` bits in all).

    Returns:
        The bits packed into uint8 (``ceil(hash_size**2 / 8)`` bytes, row-major, first bit high).
    """
    small = area_resize(to_grey(pixels), hash_size, hash_size + 1)
    return np.packbits((small[:, 1:] - small[:, :-1]) > TOLERANCE)


def dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``dct_matrix(n) @ x`` is the DCT-II of ``x`` (``norm="ortho"``).

    Args:
        size: Signal length.

    Returns:
        float64 (size, size); row ``k`` is ``s_k cos(pi (2 n + 1) k / (2 size))`` with
        ``s_0 = sqrt(1 / size)`` and ``s_k = sqrt(2 / size)`` otherwise.
    """
    k = np.arange(size, dtype=np.float64)[:, None]
    n = np.arange(size, dtype=np.float64)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def phash(pixels: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """Perceptual (DCT) hash: which low-frequency coefficients lie above their median?

    The grey image is area-resized to a ``4 hash_size`` square, transformed by the 2-D DCT-II
    (:func:`dct_matrix`), and the top-left ``hash_size`` × ``hash_size`` block is kept; bit
    ``(u, v)`` is set when coefficient ``(u, v)`` exceeds the median of the block's coefficients
    without the DC term by more than :data:`TOLERANCE`. Leaving the DC term (the mean) out of the
    median makes the bits, the DC bit aside, independent of a uniform brightness change.

    Args:
        pixels: (bands, height, width) raster.
        hash_size: Bits per side (``hash_size**2`` bits in all).

    Returns:
        The bits packed into uint8, row-major.
    """
    side = PHASH_FACTOR * hash_size
    small = area_resize(to_grey(pixels), side, side)
    basis = dct_matrix(side)
    block = (basis @ small @ basis.T)[:hash_size, :hash_size]
    median = np.median(block.ravel()[1:])
    return np.packbits((block - median) > TOLERANCE)


def hamming(hashes: np.ndarray, one: np.ndarray) -> np.ndarray:
    """Bits that differ between each row of ``hashes`` and ``one``.

    Args:
        hashes: (n, bytes) packed hashes.
        one: (bytes,) packed hash.

    Returns:
        int64 (n,) Hamming distances.
    """
    return np.bitwise_count(np.bitwise_xor(hashes, one[None, :])).sum(axis=1, dtype=np.int64)
